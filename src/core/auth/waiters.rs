//! The requests of one VM that wait, paused, for a usable ChatGPT token: resumed with the
//! token's headers once a refresh lands, failed when no token will come or after
//! [`REFRESH_WAIT_SECONDS`].

use std::cell::RefCell;

use crate::core::auth::auth_json::missing_credentials;
use crate::core::auth::token::{Availability, REFRESH_WAIT_SECONDS, TokenRecord, refresh_timeout};
use crate::core::config::upstream::UpstreamAuth;
use crate::core::error::ApiError;
use crate::core::port::Port;
use crate::core::reply::Reply;

/// More paused requests than this on one VM means the refresh is not coming; later ones are
/// answered at once instead of holding memory.
pub const MAX_WAITERS: usize = 4096;

struct Waiter {
    context_id: u32,
    deadline: u64,
}

/// The requests of this VM paused for a token, and the generations resumed ones were given.
#[derive(Default)]
pub struct WaitList {
    waiters: Vec<Waiter>,
    /// Token generations given to resumed requests, to tell whether a later backend 401 is
    /// about the current token.
    resumed: Vec<(u32, u64)>,
}

impl WaitList {
    /// Parks a request until a token is usable; `Err` when too many already wait.
    pub fn wait(&mut self, context_id: u32, now: u64) -> Result<(), ApiError> {
        if self.waiters.len() >= MAX_WAITERS {
            return Err(refresh_timeout());
        }
        self.waiters.push(Waiter {
            context_id,
            deadline: now.saturating_add(REFRESH_WAIT_SECONDS),
        });
        Ok(())
    }

    /// No request waits; the background tick may slow down.
    pub fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    /// The generation a resumed request was sent with; forgets it.
    pub fn take_resumed(&mut self, context_id: u32) -> Option<u64> {
        let at = self.resumed.iter().position(|(id, _)| *id == context_id)?;
        Some(self.resumed.swap_remove(at).1)
    }

    /// A request ends: it no longer waits for anything.
    pub fn forget(&mut self, context_id: u32) {
        self.waiters.retain(|w| w.context_id != context_id);
        self.resumed.retain(|(id, _)| *id != context_id);
    }

    /// Resumes the waiting requests of `list` when `record` is usable, fails them when it will
    /// not be or when they waited too long, and keeps the rest waiting.
    ///
    /// The list is not borrowed while the port acts: resuming or failing a request can run
    /// that request's own callbacks at once (a local reply ends it, Envoy logs it, and its
    /// context forgets itself here), so those callbacks must find the list free.
    pub fn serve(list: &RefCell<Self>, port: &dyn Port, auth: &UpstreamAuth, record: Option<&TokenRecord>) {
        let waiters = std::mem::take(&mut list.borrow_mut().waiters);
        if waiters.is_empty() {
            return;
        }
        let now = port.now();
        let availability = record.map(|r| r.availability(now));
        let mut still_waiting = Vec::new();
        for waiter in waiters {
            let id = waiter.context_id;
            match &availability {
                Some(Availability::Usable(tokens)) => {
                    let headers = auth.credential_headers(Some(tokens));
                    let generation = record.map_or(0, |r| r.generation);
                    // Remembered first: the request may end (and forget it) during the resume.
                    list.borrow_mut().resumed.push((id, generation));
                    if !port.resume(id, &headers) {
                        list.borrow_mut().resumed.retain(|(resumed, _)| *resumed != id);
                    }
                }
                Some(Availability::Wait) if now < waiter.deadline => still_waiting.push(waiter),
                Some(Availability::Wait) => port.fail(id, &Reply::from(refresh_timeout())),
                Some(Availability::Dead(error)) => port.fail(id, &Reply::from(error.clone())),
                None => port.fail(id, &Reply::from(missing_credentials())),
            }
        }
        list.borrow_mut().waiters.extend(still_waiting);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::auth::auth_json::ChatgptTokens;
    use crate::core::config::upstream::Credential;
    use crate::core::port::{MemoryPort, SharedMemory};

    fn auth() -> UpstreamAuth {
        UpstreamAuth {
            credential: Credential::ChatgptToken,
            header: "authorization".into(),
            scheme: Some("Bearer".into()),
        }
    }

    fn record(expires_at: u64, generation: u64) -> TokenRecord {
        let mut tokens = ChatgptTokens::from_parts("at".into(), Some("rt".into()), None, None);
        tokens.expires_at = Some(expires_at);
        tokens.account_id = Some("acct".into());
        TokenRecord {
            generation,
            ..TokenRecord::new(tokens, "login".into())
        }
    }

    fn statuses(port: &MemoryPort) -> Vec<(u32, u16)> {
        port.failed
            .borrow()
            .iter()
            .map(|(id, r)| (*id, r.status))
            .collect()
    }

    #[test]
    fn waiters_resume_with_the_token_headers_once_it_is_usable() {
        let shared = SharedMemory::at(1_000);
        let port = MemoryPort::new(&shared);
        let list = RefCell::new(WaitList::default());
        list.borrow_mut().wait(7, 1_000).unwrap();
        list.borrow_mut().wait(8, 1_000).unwrap();
        // Expired: still waiting for the refresh.
        WaitList::serve(&list, &port, &auth(), Some(&record(900, 0)));
        assert!(port.resumed.borrow().is_empty() && !list.borrow().is_empty());
        WaitList::serve(&list, &port, &auth(), Some(&record(5_000, 1)));
        let resumed = port.resumed.borrow();
        assert_eq!(resumed.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [7, 8]);
        assert_eq!(
            resumed[0].1,
            [
                ("authorization".to_string(), "Bearer at".to_string()),
                ("chatgpt-account-id".to_string(), "acct".to_string())
            ]
        );
        assert!(list.borrow().is_empty());
        assert_eq!(list.borrow_mut().take_resumed(8), Some(1));
        assert_eq!(list.borrow_mut().take_resumed(8), None);
    }

    #[test]
    fn a_waiter_gives_up_with_503_after_the_wait_limit() {
        let shared = SharedMemory::at(1_000);
        let port = MemoryPort::new(&shared);
        let list = RefCell::new(WaitList::default());
        list.borrow_mut().wait(1, 1_000).unwrap();
        shared.advance(REFRESH_WAIT_SECONDS - 1);
        WaitList::serve(&list, &port, &auth(), Some(&record(900, 0)));
        assert!(statuses(&port).is_empty());
        shared.advance(1);
        WaitList::serve(&list, &port, &auth(), Some(&record(900, 0)));
        assert_eq!(statuses(&port), [(1, 503)]);
        let body = String::from_utf8(port.failed.borrow()[0].1.body.clone()).unwrap();
        assert!(body.contains("token_refresh_pending"), "{body}");
        assert!(list.borrow().is_empty());
    }

    #[test]
    fn waiters_fail_with_401_when_no_token_will_come() {
        let shared = SharedMemory::at(1_000);
        let port = MemoryPort::new(&shared);
        let list = RefCell::new(WaitList::default());
        list.borrow_mut().wait(1, 1_000).unwrap();
        list.borrow_mut().wait(2, 1_000).unwrap();
        let mut dead = record(900, 0);
        dead.tokens.refresh_token = None;
        WaitList::serve(&list, &port, &auth(), Some(&dead));
        list.borrow_mut().wait(3, 1_000).unwrap();
        WaitList::serve(&list, &port, &auth(), None);
        assert_eq!(statuses(&port), [(1, 401), (2, 401), (3, 401)]);
    }

    #[test]
    fn a_gone_request_is_not_resumed_or_remembered() {
        let shared = SharedMemory::at(1_000);
        let port = MemoryPort::new(&shared);
        let list = RefCell::new(WaitList::default());
        list.borrow_mut().wait(1, 1_000).unwrap();
        list.borrow_mut().wait(2, 1_000).unwrap();
        list.borrow_mut().forget(1);
        port.gone.borrow_mut().push(2);
        WaitList::serve(&list, &port, &auth(), Some(&record(5_000, 0)));
        assert!(port.resumed.borrow().is_empty());
        assert_eq!(list.borrow_mut().take_resumed(2), None);
    }

    /// A port whose request ends while the port acts on it, as a local reply from the router
    /// does during a resume: the request's own callback forgets it.
    struct EndsAtOnce<'a> {
        inner: MemoryPort,
        list: &'a RefCell<WaitList>,
    }

    impl Port for EndsAtOnce<'_> {
        fn now_ms(&self) -> u64 {
            self.inner.now_ms()
        }
        fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.inner.shared_get(key)
        }
        fn shared_set(
            &self,
            key: &str,
            value: &[u8],
            cas: Option<u32>,
        ) -> Result<(), crate::core::port::SharedWriteError> {
            self.inner.shared_set(key, value, cas)
        }
        fn dispatch(&self, call: &crate::core::port::Dispatch) -> Option<u32> {
            self.inner.dispatch(call)
        }
        fn resume(&self, context_id: u32, headers: &[(String, String)]) -> bool {
            self.list.borrow_mut().forget(context_id);
            self.inner.resume(context_id, headers)
        }
        fn fail(&self, context_id: u32, reply: &Reply) {
            self.list.borrow_mut().forget(context_id);
            self.inner.fail(context_id, reply)
        }
        fn metric(&self, metric: crate::core::metrics::Metric) {
            self.inner.metric(metric)
        }
        fn metric_for(&self, owner: crate::core::metrics::Owner<'_>, metric: crate::core::metrics::Metric) {
            self.inner.metric_for(owner, metric)
        }
    }

    #[test]
    fn a_request_that_ends_while_it_is_served_finds_the_list_free() {
        let shared = SharedMemory::at(1_000);
        let list = RefCell::new(WaitList::default());
        let port = EndsAtOnce {
            inner: MemoryPort::new(&shared),
            list: &list,
        };
        list.borrow_mut().wait(1, 1_000).unwrap();
        list.borrow_mut().wait(2, 1_000).unwrap();
        WaitList::serve(&list, &port, &auth(), Some(&record(5_000, 3)));
        assert_eq!(port.inner.resumed.borrow().len(), 2);
        assert_eq!(
            list.borrow_mut().take_resumed(1),
            None,
            "an ended request is not remembered"
        );
        list.borrow_mut().wait(3, 1_000).unwrap();
        WaitList::serve(&list, &port, &auth(), None);
        assert_eq!(statuses(&port.inner), [(3, 401)]);
        assert!(list.borrow().is_empty());
    }

    #[test]
    fn the_list_is_bounded() {
        let list = RefCell::new(WaitList::default());
        for id in 0..MAX_WAITERS {
            list.borrow_mut().wait(id as u32, 1_000).unwrap();
        }
        assert_eq!(
            list.borrow_mut().wait(u32::MAX, 1_000).map_err(|e| e.status),
            Err(503)
        );
    }
}
