//! What every request of one worker VM shares: the configuration, the token record (a view of
//! shared data), the fetched instruction texts, the model catalogue and the requests waiting
//! for a token.

use std::cell::RefCell;
use std::rc::Rc;

use log::warn;

use crate::core::auth::shared_record::TokenStore;
use crate::core::auth::waiters::WaitList;
use crate::core::catalogue::Catalogue;
use crate::core::catalogue::record::Seen;
use crate::core::config::Config;
use crate::core::port::Port;

/// The state of one worker VM, built at start-up and shared by its requests and its
/// background work (the `RefCell`s: a VM runs one callback at a time).
pub struct VmState {
    pub config: Config,
    pub tokens: TokenStore,
    /// Base instruction texts, filled in by the background work once fetched.
    pub instructions: RefCell<Instructions>,
    /// Requests of this VM paused until a usable token exists.
    pub waiters: RefCell<WaitList>,
    /// The model catalogue requests are checked against: the built-in copy until the
    /// background work brings the account's; a request keeps the `Rc` it started with.
    pub catalogue: RefCell<Rc<Catalogue>>,
    /// Which fetched catalogue `catalogue` is, and the announced ETag last recorded.
    pub catalogue_seen: RefCell<Seen>,
}

/// The fetched instruction texts; `None` until a fetch succeeds, and requests then fall back
/// to the client's own instructions or the short default.
#[derive(Default)]
pub struct Instructions {
    pub base: Option<String>,
    pub codex: Option<String>,
}

impl VmState {
    /// A VM with no instruction texts yet and nobody waiting; the token record lives in shared
    /// data and is read on demand.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            tokens: TokenStore::default(),
            instructions: RefCell::new(Instructions::default()),
            waiters: RefCell::new(WaitList::default()),
            catalogue: RefCell::new(Rc::new(Catalogue::builtin())),
            catalogue_seen: RefCell::new(Seen::default()),
        }
    }

    /// The backend refused the token of `generation`: unless a refresh already replaced it,
    /// mark it stale so the refresher runs now rather than at expiry.
    pub fn token_rejected(&self, port: &dyn Port, generation: u64) {
        if self.tokens.token_rejected(port, generation) {
            warn!(
                "codex filter: the backend rejected the access token (generation {generation}); refreshing it"
            );
        }
    }
}
