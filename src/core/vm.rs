//! What every request of one worker VM shares: the configuration, the token record (a view of
//! shared data), the fetched instruction texts, the model catalogue and the requests waiting
//! for a token.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use log::warn;

use crate::core::accounts::account::{Account, AccountRef};
use crate::core::accounts::login;
use crate::core::accounts::state::StateStore;
use crate::core::auth::shared_record::TokenStore;
use crate::core::auth::waiters::WaitList;
use crate::core::catalogue::Catalogue;
use crate::core::catalogue::record::Seen;
use crate::core::config::Config;
use crate::core::keys::local::LocalCounts;
use crate::core::port::Port;

/// The state of one worker VM, built at start-up and shared by its requests and its
/// background work (the `RefCell`s: a VM runs one callback at a time).
pub struct VmState {
    pub config: Config,
    /// The first (with a single login, the only) account's token record.
    pub tokens: TokenStore,
    /// Base instruction texts, filled in by the background work once fetched.
    pub instructions: RefCell<Instructions>,
    /// Requests of this VM paused until the first account has a usable token.
    pub waiters: RefCell<WaitList>,
    /// The first account's label.
    pub first_label: String,
    /// The other accounts of a pool (none with a single login).
    pub more: Vec<Account>,
    /// Every account's shared state (windows, exhaustion mark, counts), by account index.
    pub states: Vec<StateStore>,
    /// Picks among equally good accounts in turn.
    pub turn: Cell<u64>,
    /// The model catalogue requests are checked against: the built-in copy until the
    /// background work brings the account's; a request keeps the `Rc` it started with.
    pub catalogue: RefCell<Rc<Catalogue>>,
    /// Which fetched catalogue `catalogue` is, and the announced ETag last recorded.
    pub catalogue_seen: RefCell<Seen>,
    /// The client keys' counts that wait for the tick (see [`crate::core::keys::local`]).
    pub key_counts: LocalCounts,
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
        let labels: Vec<String> = match (config.auth.is_chatgpt(), config.codex_auth.as_deref()) {
            (true, Some(document)) => login::parse(document)
                .map(|logins| logins.into_iter().map(|l| l.label).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let first_label = labels.first().cloned().unwrap_or_else(|| "default".to_string());
        let more: Vec<Account> = labels.iter().skip(1).map(|l| Account::new(l)).collect();
        let states = std::iter::once(first_label.as_str())
            .chain(more.iter().map(|a| a.label.as_str()))
            .map(StateStore::new)
            .collect();
        // In a pool every account's record is keyed by its label, so a reload that adds or
        // reorders accounts never puts another login under the same key.
        let tokens = match more.is_empty() {
            true => TokenStore::default(),
            false => TokenStore::labelled(&first_label),
        };
        Self {
            tokens,
            instructions: RefCell::new(Instructions::default()),
            waiters: RefCell::new(WaitList::default()),
            first_label,
            more,
            states,
            turn: Cell::new(0),
            catalogue: RefCell::new(Rc::new(Catalogue::builtin())),
            catalogue_seen: RefCell::new(Seen::default()),
            key_counts: LocalCounts::for_keys(&config.keys),
            config,
        }
    }

    /// Adds the counts this VM kept since its last tick (the keys' and the accounts') to
    /// shared data: on every tick, and once more when the VM's configuration goes away.
    pub fn flush_counts(&self, port: &dyn Port) {
        self.key_counts
            .flush(port, &self.config.keys, port.now(), self.config.etcd.is_some());
        for store in &self.states {
            store.flush(port);
        }
    }

    /// The backend refused the token of `generation`: unless a refresh already replaced it,
    /// mark it stale so the refresher runs now rather than at expiry.
    pub fn token_rejected(&self, port: &dyn Port, generation: u64) {
        self.account_token_rejected(port, 0, generation);
    }

    /// [`VmState::token_rejected`] for the account at `index`.
    pub fn account_token_rejected(&self, port: &dyn Port, index: usize, generation: u64) {
        let Some(account) = self.account(index) else {
            return;
        };
        if account.tokens.token_rejected(port, generation) {
            warn!(
                "codex filter: the backend rejected the access token of account {} (generation {generation}); refreshing it",
                account.label
            );
        }
    }

    /// Several accounts: the pool's rules apply (with one, everything is as it always was).
    pub fn is_pool(&self) -> bool {
        !self.more.is_empty()
    }

    /// The account at `index` (0 is the first).
    pub fn account(&self, index: usize) -> Option<AccountRef<'_>> {
        if index == 0 {
            return Some(AccountRef {
                index,
                label: &self.first_label,
                tokens: &self.tokens,
                waiters: &self.waiters,
            });
        }
        let account = self.more.get(index.checked_sub(1)?)?;
        Some(AccountRef {
            index,
            label: &account.label,
            tokens: &account.tokens,
            waiters: &account.waiters,
        })
    }

    /// Every account, the first first.
    pub fn accounts(&self) -> impl Iterator<Item = AccountRef<'_>> {
        (0..=self.more.len()).filter_map(|i| self.account(i))
    }

    /// The index of the account labelled `label`.
    pub fn index_of(&self, label: &str) -> Option<usize> {
        self.accounts().find(|a| a.label == label).map(|a| a.index)
    }
}
