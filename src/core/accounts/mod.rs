//! Several ChatGPT logins behind one wrapper: the accounts (one token record, refresher,
//! generation and etcd record each), their shared state (usage windows, exhaustion marks,
//! counts), which account a request goes to, and what a usage limit does.
//!
//! ```text
//! OPENAI_CODEX_AUTH = one auth.json document           → one account (today's behaviour)
//!                   = [doc, doc, …]  (CODEX_AUTH_DIR)  → a pool, labelled
//! request ─► choice::decide(accounts' state, conversation key, clock)
//!            ├─ sticky account still usable ─► it
//!            ├─ else the usable account with the most headroom (ties round-robin)
//!            ├─ none usable, one refreshing ─► wait for it
//!            └─ all exhausted ─► 429, Retry-After = earliest reset
//! usage-limit 429 ─► mark the account exhausted until its reset ─► the next attempt
//!                    (Envoy's retry in full mode, the client's retry in portable mode)
//!                    goes to another account
//! ```

pub mod choice;
pub mod login;
pub mod pool;
pub mod replicas;
pub mod report;
pub mod state;
pub mod sticky;

use std::cell::RefCell;

use crate::core::auth::shared_record::TokenStore;
use crate::core::auth::waiters::WaitList;

/// The request header the credentials instance puts on an attempt's response so that the
/// main instance knows which account served it (removed before the client sees it).
pub const ACCOUNT_HEADER: &str = "x-codex-wrapper-account";

/// At most this many accounts are used; a longer list is cut (with a log line at start-up).
pub const MAX_ACCOUNTS: usize = 64;

/// One more account of a pool (the first account's store and wait list are the VM's own
/// `tokens` and `waiters`, as with a single login).
pub struct Account {
    pub label: String,
    pub tokens: TokenStore,
    pub waiters: RefCell<WaitList>,
}

impl Account {
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

/// A label as logs and stat names carry it: `[A-Za-z0-9_-]`, anything else becomes `_`, at
/// most 64 characters; empty becomes `_`.
pub fn sanitize_label(raw: &str) -> String {
    let cleaned: String = raw
        .trim()
        .chars()
        .take(64)
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-' => c,
            _ => '_',
        })
        .collect();
    if cleaned.is_empty() {
        "_".to_string()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_keep_only_safe_characters() {
        assert_eq!(sanitize_label("work"), "work");
        assert_eq!(sanitize_label(" me@example.com "), "me_example_com");
        assert_eq!(sanitize_label("a.b/c d"), "a_b_c_d");
        assert_eq!(sanitize_label(""), "_");
        assert_eq!(sanitize_label(&"x".repeat(100)).len(), 64);
    }
}
