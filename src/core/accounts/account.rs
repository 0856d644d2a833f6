//! One account of the VM: its token record, wait list and label.

use std::cell::RefCell;

use crate::core::auth::shared_record::TokenStore;
use crate::core::auth::waiters::WaitList;

/// The response header the credentials instance puts on an attempt's response so that the
/// main instance knows which account served it (removed before the client sees it).
pub const ACCOUNT_HEADER: &str = "x-codex-wrapper-account";

/// One more account of a pool (the first account's store and wait list are the VM's own
/// `tokens` and `waiters`, as with a single login).
pub struct Account {
    pub label: String,
    pub tokens: TokenStore,
    pub waiters: RefCell<WaitList>,
}

impl Account {
    /// The account labelled `label`, with its own record and lease keys.
    pub fn new(label: &str) -> Self {
        Self {
            label: label.to_string(),
            tokens: TokenStore::labelled(label),
            waiters: RefCell::new(WaitList::default()),
        }
    }
}

/// A view of one account of the VM, whichever storage it has.
#[derive(Clone, Copy)]
pub struct AccountRef<'a> {
    pub index: usize,
    pub label: &'a str,
    pub tokens: &'a TokenStore,
    pub waiters: &'a RefCell<WaitList>,
}
