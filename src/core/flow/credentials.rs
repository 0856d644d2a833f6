//! One upstream attempt through the credentials instance (`FILTER_ROLE=credentials`, in the
//! Codex cluster's filter chain). It runs once per attempt, so when the backend answers 401
//! and Envoy retries, the retry carries the token the refresher fetched in between: attach
//! the current token (or wait for one), and mark it stale when the backend refuses it.

use crate::core::auth::token;
use crate::core::flow::step::{Next, Step, Steps};
use crate::core::port::Port;
use crate::core::vm::VmState;

/// The machine of one upstream attempt in the credentials instance; one per HTTP context.
pub struct CredentialsFlow {
    context_id: u32,
    /// The token generation this attempt was sent with.
    generation: Option<u64>,
}

impl CredentialsFlow {
    /// `context_id` is the host's id for this attempt, used to park and resume it.
    pub fn new(context_id: u32) -> Self {
        Self {
            context_id,
            generation: None,
        }
    }

    /// Attaches the current credentials, parks the attempt until a refresh lands, or answers
    /// with the error no refresh can fix (401, or 503 when too many already wait).
    pub fn request_headers(&mut self, vm: &VmState, port: &dyn Port) -> Steps {
        let now = port.now();
        let record = vm.tokens.read(port);
        match token::for_request(record.as_ref(), now) {
            Ok(Some(tokens)) => {
                self.generation = record.as_ref().map(|r| r.generation);
                let writes = vm
                    .config
                    .auth
                    .credential_headers(Some(tokens))
                    .into_iter()
                    .map(|(name, value)| Step::SetRequestHeader(name, value))
                    .collect();
                Steps::then(writes, Next::Continue)
            }
            Ok(None) => match vm.waiters.borrow_mut().wait(self.context_id, now) {
                Ok(()) => Steps::pause(),
                Err(error) => Steps::reply(error),
            },
            Err(error) => Steps::reply(error),
        }
    }

    /// `status` is the response's `:status` value as the host gave it.
    pub fn response_headers(&mut self, vm: &VmState, port: &dyn Port, status: Option<&[u8]>) -> Steps {
        if status == Some(b"401".as_slice()) {
            let generation = self
                .generation
                .or_else(|| vm.waiters.borrow_mut().take_resumed(self.context_id));
            if let Some(generation) = generation {
                vm.token_rejected(port, generation);
            }
        }
        Steps::go_on()
    }

    /// The attempt ended (the host's log callback): drops it from the wait list, so a later
    /// refresh does not try to resume a context that is gone.
    pub fn log(&mut self, vm: &VmState) {
        vm.waiters.borrow_mut().forget(self.context_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::flow::request::tests::{Vm, vm_with};
    use crate::core::reply::Reply;

    fn reply_status(steps: &Steps) -> Option<u16> {
        steps.writes.iter().find_map(|step| match step {
            Step::Reply(Reply { status, .. }) => Some(*status),
            _ => None,
        })
    }

    #[test]
    fn attaches_the_current_token() {
        let Vm { vm, port, .. } = vm_with(&[("FILTER_ROLE", "credentials")]);
        let mut flow = CredentialsFlow::new(1);
        let steps = flow.request_headers(&vm, &port);
        assert_eq!(steps.next, Next::Continue);
        let names: Vec<&str> = steps
            .writes
            .iter()
            .map(|step| match step {
                Step::SetRequestHeader(name, _) => name.as_str(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(names, ["authorization", "chatgpt-account-id"]);
        assert_eq!(flow.generation, Some(0));
    }

    #[test]
    fn a_401_marks_the_token_it_was_sent_with_and_only_that() {
        let Vm { vm, port, .. } = vm_with(&[("FILTER_ROLE", "credentials")]);
        let mut flow = CredentialsFlow::new(1);
        flow.request_headers(&vm, &port);
        assert_eq!(flow.response_headers(&vm, &port, Some(b"200")), Steps::go_on());
        assert!(!vm.tokens.read(&port).unwrap().stale);
        flow.response_headers(&vm, &port, Some(b"401"));
        assert!(vm.tokens.read(&port).unwrap().stale);
    }

    #[test]
    fn without_a_usable_token_the_attempt_waits_then_a_401_after_resuming_marks_that_token() {
        let Vm { vm, port, shared } = vm_with(&[("FILTER_ROLE", "credentials")]);
        shared.advance(20 * 86_400); // past the token's expiry: a refresh is due
        let mut flow = CredentialsFlow::new(9);
        assert_eq!(flow.request_headers(&vm, &port), Steps::pause());
        // The refresher lands a new token (generation 1) and resumes the attempt.
        crate::core::flow::request::tests::refresh(&vm, &port);
        let record = vm.tokens.read(&port);
        crate::core::auth::waiters::WaitList::serve(&vm.waiters, &port, &vm.config.auth, record.as_ref());
        assert_eq!(port.resumed.borrow().first().map(|(id, _)| *id), Some(9));
        flow.response_headers(&vm, &port, Some(b"401"));
        let record = vm.tokens.read(&port).unwrap();
        assert_eq!((record.generation, record.stale), (1, true));
        flow.log(&vm);
        assert!(vm.waiters.borrow().is_empty());
    }

    #[test]
    fn no_credentials_is_a_401_and_a_full_wait_list_a_503() {
        let Vm { vm, port, .. } = vm_with(&[("FILTER_ROLE", "credentials"), ("OPENAI_CODEX_AUTH", "")]);
        assert_eq!(
            reply_status(&CredentialsFlow::new(1).request_headers(&vm, &port)),
            Some(401)
        );
        let Vm { vm, port, shared } = vm_with(&[("FILTER_ROLE", "credentials")]);
        shared.advance(20 * 86_400);
        for id in 0..crate::core::auth::waiters::MAX_WAITERS {
            vm.waiters.borrow_mut().wait(id as u32 + 100, port.now()).unwrap();
        }
        assert_eq!(
            reply_status(&CredentialsFlow::new(1).request_headers(&vm, &port)),
            Some(503)
        );
    }
}
