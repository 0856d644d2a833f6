//! One upstream attempt through the credentials instance (`FILTER_ROLE=credentials`, in the
//! Codex cluster's filter chain). It runs once per attempt, so when the backend answers 401
//! and Envoy retries, the retry carries the token the refresher fetched in between: attach
//! the current token (or wait for one), and mark it stale when the backend refuses it.
//!
//! With several accounts it also picks each attempt's account (the conversation's, else the
//! one with the most headroom), and a 429 marks that account exhausted, so Envoy's retry of
//! the 429 goes out on another account before anything reaches the client. When no account
//! can serve, the attempt is answered here with the 429 (`Retry-After`: the earliest reset),
//! marked `x-envoy-ratelimited` so that Envoy does not retry that answer.
//! With one account a 429 is marked so too: the route may retry 429s for accounts a reload adds.

use crate::core::accounts::account::ACCOUNT_HEADER;
use crate::core::accounts::pool::{self, Pick};
use crate::core::flow::headers::HeaderView;
use crate::core::flow::step::{Next, Step, Steps};
use crate::core::port::Port;
use crate::core::reply::Reply;
use crate::core::translate::response::upstream_error::LimitHeaders;
use crate::core::vm::VmState;

/// Envoy does not retry a response carrying this header (it means "an Envoy rate-limited
/// this"); the route removes it before the client sees it.
pub const NO_RETRY_HEADER: &str = "x-envoy-ratelimited";

/// The request header that carries the conversation key upstream (the main instance sets it).
pub const SESSION_HEADER: &str = "session-id";

/// The machine of one upstream attempt in the credentials instance; one per HTTP context.
pub struct CredentialsFlow {
    context_id: u32,
    /// The token generation this attempt was sent with.
    generation: Option<u64>,
    /// The account this attempt went out on.
    account: usize,
    /// The attempt joined a wait list (and must leave it when it ends).
    waited: bool,
}

impl CredentialsFlow {
    /// `context_id` is the host's id for this attempt, used to park and resume it.
    pub fn new(context_id: u32) -> Self {
        Self {
            context_id,
            generation: None,
            account: 0,
            waited: false,
        }
    }

    /// Attaches the chosen account's credentials, parks the attempt until a refresh lands,
    /// or answers with the error no refresh can fix (401, 429 when every account is spent,
    /// or 503 when too many already wait). `session` reads the attempt's conversation key,
    /// only in a pool (one login has no account to choose).
    pub fn request_headers(
        &mut self,
        vm: &VmState,
        port: &dyn Port,
        session: impl FnOnce() -> Option<Vec<u8>>,
    ) -> Steps {
        let session = vm.is_pool().then(session).flatten();
        let session = session.as_deref().and_then(|s| std::str::from_utf8(s).ok());
        match pool::pick(vm, port, session) {
            Pick::Use {
                index,
                tokens,
                generation,
            } => {
                self.account = index;
                self.generation = Some(generation);
                let writes = vm
                    .config
                    .auth
                    .credential_headers(Some(&tokens))
                    .into_iter()
                    .map(|(name, value)| Step::SetRequestHeader(name, value))
                    .collect();
                Steps::then(writes, Next::Continue)
            }
            Pick::Wait(index) => {
                self.account = index;
                let Some(account) = vm.account(index) else {
                    return Steps::pause();
                };
                match account.waiters.borrow_mut().wait(self.context_id, port.now()) {
                    Ok(()) => {
                        self.waited = true;
                        Steps::pause()
                    }
                    Err(error) => Steps::reply(error),
                }
            }
            Pick::Refuse(error) => {
                let mut reply = Reply::from(error);
                if reply.status == 429 {
                    reply.headers.push((NO_RETRY_HEADER, "true".to_string()));
                }
                Steps::reply(reply)
            }
        }
    }

    /// The attempt's response headers: `status` is their `:status`; `map` reads the whole
    /// serialized map, only for a pool's 429 (its limit headers).
    pub fn response_headers(
        &mut self,
        vm: &VmState,
        port: &dyn Port,
        status: Option<&[u8]>,
        map: impl FnOnce() -> Vec<u8>,
    ) -> Steps {
        let status = status.unwrap_or_default();
        if status == b"401" {
            let generation = self.generation.or_else(|| {
                vm.account(self.account)
                    .and_then(|a| a.waiters.borrow_mut().take_resumed(self.context_id))
            });
            if let Some(generation) = generation {
                vm.account_token_rejected(port, self.account, generation);
            }
        }
        let no_retry = Step::SetResponseHeader(NO_RETRY_HEADER, "true".to_string());
        if !vm.is_pool() {
            // The route may retry 429s all the same (sized for accounts a reload may add):
            // with one account there is nobody to send the retry to.
            return match status {
                b"429" => Steps::then(vec![no_retry], Next::Continue),
                _ => Steps::go_on(),
            };
        }
        // A 429 is retried only when another account can take the request: when the last
        // usable account just ran out, the answer goes on to the main instance as it is.
        let label = vm.account(self.account).map_or("", |a| a.label).to_string();
        let mut writes = vec![Step::SetResponseHeader(ACCOUNT_HEADER, label)];
        if status == b"429" {
            let map = map();
            let view = HeaderView::parse(&map).unwrap_or_default();
            let limits = LimitHeaders::from_pairs(view.text.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            if !pool::limited(vm, port, self.account, &limits, None) {
                writes.push(no_retry);
            }
        }
        Steps::then(writes, Next::Continue)
    }

    /// The attempt ended (the host's log callback): drops it from the wait list, so a later
    /// refresh does not try to resume a context that is gone.
    pub fn log(&mut self, vm: &VmState) {
        if !self.waited {
            return;
        }
        for account in vm.accounts() {
            account.waiters.borrow_mut().forget(self.context_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::flow::request::tests::{Vm, vm_with};
    use crate::core::reply::Reply;

    /// The response callback with only `:status` read (the map must not be needed).
    fn answered(flow: &mut CredentialsFlow, vm: &VmState, port: &dyn Port, status: &str) -> Steps {
        flow.response_headers(vm, port, Some(status.as_bytes()), || panic!("map read"))
    }

    fn answered_with(flow: &mut CredentialsFlow, vm: &VmState, port: &dyn Port, map: Vec<u8>) -> Steps {
        let status = crate::core::flow::headers::HeaderView::parse(&map)
            .unwrap_or_default()
            .get(":status")
            .map(|s| s.as_bytes().to_vec());
        flow.response_headers(vm, port, status.as_deref(), move || map)
    }

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
        // One login: no account to choose, so the conversation key is not read.
        let steps = flow.request_headers(&vm, &port, || panic!("session read"));
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
        flow.request_headers(&vm, &port, || None);
        assert_eq!(answered(&mut flow, &vm, &port, "200"), Steps::go_on());
        assert!(!vm.tokens.read(&port).unwrap().stale);
        answered(&mut flow, &vm, &port, "401");
        assert!(vm.tokens.read(&port).unwrap().stale);
    }

    #[test]
    fn without_a_usable_token_the_attempt_waits_then_a_401_after_resuming_marks_that_token() {
        let Vm { vm, port, shared } = vm_with(&[("FILTER_ROLE", "credentials")]);
        shared.advance(20 * 86_400); // past the token's expiry: a refresh is due
        let mut flow = CredentialsFlow::new(9);
        assert_eq!(flow.request_headers(&vm, &port, || None), Steps::pause());
        // The refresher lands a new token (generation 1) and resumes the attempt.
        crate::core::flow::request::tests::refresh(&vm, &port);
        let record = vm.tokens.read(&port);
        crate::core::auth::waiters::WaitList::serve(&vm.waiters, &port, &vm.config.auth, record.as_ref());
        assert_eq!(port.resumed.borrow().first().map(|(id, _)| *id), Some(9));
        answered(&mut flow, &vm, &port, "401");
        let record = vm.tokens.read(&port).unwrap();
        assert_eq!((record.generation, record.stale), (1, true));
        flow.log(&vm);
        assert!(vm.waiters.borrow().is_empty());
    }

    #[test]
    fn no_credentials_is_a_401_and_a_full_wait_list_a_503() {
        let Vm { vm, port, .. } = vm_with(&[("FILTER_ROLE", "credentials"), ("OPENAI_CODEX_AUTH", "")]);
        assert_eq!(
            reply_status(&CredentialsFlow::new(1).request_headers(&vm, &port, || None)),
            Some(401)
        );
        let Vm { vm, port, shared } = vm_with(&[("FILTER_ROLE", "credentials")]);
        shared.advance(20 * 86_400);
        for id in 0..crate::core::auth::waiters::MAX_WAITERS {
            vm.waiters.borrow_mut().wait(id as u32 + 100, port.now()).unwrap();
        }
        assert_eq!(
            reply_status(&CredentialsFlow::new(1).request_headers(&vm, &port, || None)),
            Some(503)
        );
    }

    fn limited(resets_at: u64) -> Vec<u8> {
        let reset = resets_at.to_string();
        crate::core::wire::header_map::serialize(&[
            (":status", "429"),
            ("x-codex-primary-used-percent", "100"),
            ("x-codex-primary-reset-at", reset.as_str()),
        ])
    }

    fn conv() -> Option<Vec<u8>> {
        Some(b"conv".to_vec())
    }

    fn account_of(steps: &Steps) -> Option<String> {
        steps.writes.iter().find_map(|step| match step {
            Step::SetRequestHeader(name, value) if name == "chatgpt-account-id" => Some(value.clone()),
            _ => None,
        })
    }

    #[test]
    fn in_a_pool_each_attempt_picks_an_account_and_a_429_moves_the_retry() {
        let auth = crate::core::flow::request::tests::pool_auth();
        let Vm { vm, port, .. } = vm_with(&[
            ("FILTER_ROLE", "credentials"),
            ("OPENAI_CODEX_AUTH", auth.as_str()),
        ]);
        let now = port.now();
        let mut attempt = CredentialsFlow::new(1);
        let first = account_of(&attempt.request_headers(&vm, &port, conv)).unwrap();
        // The attempt's answer names its account for the main instance.
        let steps = answered_with(&mut attempt, &vm, &port, limited(now + 300));
        let label = first.trim_start_matches("acct-").to_string();
        assert_eq!(
            steps.writes,
            [Step::SetResponseHeader(ACCOUNT_HEADER, label)],
            "retried: another account can serve"
        );
        // Envoy's retry of the same request: another account, then the conversation stays there.
        let mut retry = CredentialsFlow::new(2);
        let second = account_of(&retry.request_headers(&vm, &port, conv)).unwrap();
        assert_ne!(second, first);
        assert_eq!(
            account_of(&CredentialsFlow::new(3).request_headers(&vm, &port, conv)),
            Some(second.clone())
        );
        answered_with(&mut retry, &vm, &port, limited(now + 200));
        let mut third = CredentialsFlow::new(4);
        let last = account_of(&third.request_headers(&vm, &port, conv)).unwrap();
        assert!(last != first && last != second);
        let steps = answered_with(&mut third, &vm, &port, limited(now + 900));
        assert!(
            steps
                .writes
                .contains(&Step::SetResponseHeader(NO_RETRY_HEADER, "true".into())),
            "the last account ran out: not retried"
        );
        // Spent: answered here, with the earliest reset, and not retried by Envoy.
        let steps = CredentialsFlow::new(5).request_headers(&vm, &port, conv);
        let Some(Step::Reply(reply)) = steps.writes.first() else {
            panic!("{steps:?}")
        };
        assert_eq!(reply.status, 429);
        assert!(
            reply.headers.contains(&("retry-after", "200".to_string())),
            "{:?}",
            reply.headers
        );
        assert!(reply.headers.contains(&(NO_RETRY_HEADER, "true".to_string())));
    }

    #[test]
    fn with_one_account_a_429_is_marked_not_to_be_retried_and_nothing_else_changes() {
        let Vm { vm, port, .. } = vm_with(&[("FILTER_ROLE", "credentials")]);
        let mut attempt = CredentialsFlow::new(1);
        attempt.request_headers(&vm, &port, || None);
        // One login: the status alone decides (the limit headers are the pool's business).
        assert_eq!(
            answered(&mut attempt, &vm, &port, "429"),
            Steps::then(
                vec![Step::SetResponseHeader(NO_RETRY_HEADER, "true".into())],
                Next::Continue
            ),
            "one login: a route that retries 429s must not send the 429 to the same account again"
        );
        assert_eq!(answered(&mut attempt, &vm, &port, "200"), Steps::go_on());
        assert!(account_of(&CredentialsFlow::new(2).request_headers(&vm, &port, || None)).is_some());
    }
}
