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

pub mod account;
pub mod choice;
pub mod login;
pub mod pool;
pub mod replicas;
pub mod report;
pub mod state;
pub mod sticky;
