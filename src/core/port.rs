//! What the core asks of its host besides the event it is handling: the clock, Envoy shared
//! data (one copy for every worker VM), outbound calls, and acting on another request's
//! behalf (resuming or failing a request that waited). The host glue implements it with
//! proxy-wasm calls; [`MemoryPort`] implements it in memory so every path is a native test.

use crate::core::metrics::{Metric, Owner};
use crate::core::reply::Reply;

/// An outbound HTTP call through one of Envoy's clusters; its answer comes back later as an
/// event carrying the token `dispatch` returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch {
    pub cluster: String,
    /// Pseudo-headers (`:method`, `:path`, `:authority`) included.
    pub headers: Vec<(&'static str, String)>,
    /// Headers whose names come from the configuration (the upstream credential), sent
    /// after `headers`.
    pub credentials: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout_ms: u64,
}

/// Why shared data was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedWriteError {
    /// Another VM wrote the key since it was read.
    CasMismatch,
    /// The host refused for another reason.
    Failed,
}

/// Everything the core machines need from outside the event at hand. Calls are synchronous:
/// the host acts at once, and [`Port::resume`]/[`Port::fail`] may run that request's callbacks
/// before they return.
pub trait Port {
    /// Unix time in milliseconds.
    fn now_ms(&self) -> u64;

    /// Unix time in seconds.
    fn now(&self) -> u64 {
        self.now_ms() / 1000
    }

    /// The value of a shared-data key and its compare-and-swap token.
    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)>;

    /// Writes a shared-data key; with `cas`, only if nobody wrote it since that token.
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedWriteError>;

    /// Sends a call; `None` when the host refused it (for example, an unknown cluster).
    fn dispatch(&self, call: &Dispatch) -> Option<u32>;

    /// Sets `headers` on a paused request of this VM and lets it continue; false when that
    /// request is gone.
    fn resume(&self, context_id: u32, headers: &[(String, String)]) -> bool;

    /// Answers a paused request of this VM with `reply`.
    fn fail(&self, context_id: u32, reply: &Reply);

    /// Counts what happened.
    fn metric(&self, metric: Metric);

    /// Counts what happened in the stats of one key or account (`codex_openai_wrapper.key.<name>.*`).
    fn metric_for(&self, owner: Owner<'_>, metric: Metric);
}

#[cfg(test)]
pub use memory::{MemoryPort, SharedMemory};

#[cfg(test)]
mod memory {
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;
    use std::rc::Rc;

    use super::{Dispatch, Port, SharedWriteError};
    use crate::core::metrics::{Metric, Owner};
    use crate::core::reply::Reply;

    /// What several VMs of one Envoy share: shared data and the clock.
    #[derive(Default)]
    pub struct SharedMemory {
        data: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        now_ms: Cell<u64>,
    }

    impl SharedMemory {
        pub fn at(now: u64) -> Rc<Self> {
            let shared = Rc::new(Self::default());
            shared.set_now(now);
            shared
        }

        pub fn set_now(&self, now: u64) {
            self.now_ms.set(now * 1000);
        }

        pub fn advance(&self, seconds: u64) {
            self.now_ms.set(self.now_ms.get() + seconds * 1000);
        }

        /// Overwrites a key as a tampering writer would.
        pub fn poke(&self, key: &str, value: &[u8]) {
            let mut data = self.data.borrow_mut();
            let cas = data.get(key).map_or(0, |(_, cas)| *cas) + 1;
            data.insert(key.to_string(), (value.to_vec(), cas));
        }

        pub fn peek(&self, key: &str) -> Option<Vec<u8>> {
            self.data.borrow().get(key).map(|(bytes, _)| bytes.clone())
        }
    }

    /// A request resumed through the port, with the headers it was given.
    pub type Resumed = (u32, Vec<(String, String)>);

    /// One VM's view: the shared memory, and what this VM did through the port.
    pub struct MemoryPort {
        pub shared: Rc<SharedMemory>,
        next_token: Cell<u32>,
        pub dispatched: RefCell<Vec<(u32, Dispatch)>>,
        /// Refuse dispatches, as Envoy does for a cluster it does not know.
        pub refuse_dispatch: Cell<bool>,
        pub resumed: RefCell<Vec<Resumed>>,
        pub failed: RefCell<Vec<(u32, Reply)>>,
        /// Context ids whose request is gone.
        pub gone: RefCell<Vec<u32>>,
        pub metrics: RefCell<Vec<Metric>>,
        /// Metrics counted for a key or an account: `key:<name>` / `account:<label>`.
        pub owned_metrics: RefCell<Vec<(String, Metric)>>,
    }

    impl MemoryPort {
        pub fn new(shared: &Rc<SharedMemory>) -> Self {
            Self {
                shared: Rc::clone(shared),
                next_token: Cell::new(1),
                dispatched: RefCell::new(Vec::new()),
                refuse_dispatch: Cell::new(false),
                resumed: RefCell::new(Vec::new()),
                failed: RefCell::new(Vec::new()),
                gone: RefCell::new(Vec::new()),
                metrics: RefCell::new(Vec::new()),
                owned_metrics: RefCell::new(Vec::new()),
            }
        }

        /// Removes and returns the calls dispatched so far.
        pub fn take_dispatched(&self) -> Vec<(u32, Dispatch)> {
            std::mem::take(&mut *self.dispatched.borrow_mut())
        }
    }

    impl Port for MemoryPort {
        fn now_ms(&self) -> u64 {
            self.shared.now_ms.get()
        }

        fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.shared.data.borrow().get(key).cloned()
        }

        fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedWriteError> {
            let mut data = self.shared.data.borrow_mut();
            let current = data.get(key).map_or(0, |(_, cas)| *cas);
            if cas.is_some_and(|cas| cas != current) {
                return Err(SharedWriteError::CasMismatch);
            }
            data.insert(key.to_string(), (value.to_vec(), current + 1));
            Ok(())
        }

        fn dispatch(&self, call: &Dispatch) -> Option<u32> {
            if self.refuse_dispatch.get() {
                return None;
            }
            let token = self.next_token.get();
            self.next_token.set(token + 1);
            self.dispatched.borrow_mut().push((token, call.clone()));
            Some(token)
        }

        fn resume(&self, context_id: u32, headers: &[(String, String)]) -> bool {
            if self.gone.borrow().contains(&context_id) {
                return false;
            }
            self.resumed.borrow_mut().push((context_id, headers.to_vec()));
            true
        }

        fn fail(&self, context_id: u32, reply: &Reply) {
            if !self.gone.borrow().contains(&context_id) {
                self.failed.borrow_mut().push((context_id, reply.clone()));
            }
        }

        fn metric(&self, metric: Metric) {
            self.metrics.borrow_mut().push(metric);
        }

        fn metric_for(&self, owner: Owner<'_>, metric: Metric) {
            let owner = match owner {
                Owner::Key(name) => format!("key:{name}"),
                Owner::Account(label) => format!("account:{label}"),
            };
            self.owned_metrics.borrow_mut().push((owner, metric));
        }
    }
}
