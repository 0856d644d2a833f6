//! The token record and the refresh lease in Envoy shared data (one copy for every worker
//! VM of this plugin), updated with compare-and-swap.

use std::cell::RefCell;

use proxy_wasm::hostcalls::{get_shared_data, set_shared_data};

use crate::core::auth::token::{LEASE_SECONDS, Lease, TokenRecord};

const RECORD_KEY: &str = "codex_openai_wrapper.tokens.v1";
const LEASE_KEY: &str = "codex_openai_wrapper.refresh_lease.v1";
const CAS_ATTEMPTS: usize = 8;

/// A per-VM cache so a request parses the record only when another VM changed it.
#[derive(Default)]
pub struct TokenStore {
    cached: RefCell<Option<(u32, TokenRecord)>>,
}

impl TokenStore {
    /// The current record, if any.
    pub fn read(&self) -> Option<TokenRecord> {
        self.read_with_cas().map(|(record, _)| record)
    }

    fn read_with_cas(&self) -> Option<(TokenRecord, u32)> {
        let (bytes, cas) = get_shared_data(RECORD_KEY).ok()?;
        let (bytes, cas) = (bytes?, cas.unwrap_or(0));
        let mut cached = self.cached.borrow_mut();
        if let Some((seen, record)) = cached.as_ref() {
            if *seen == cas && cas != 0 {
                return Some((record.clone(), cas));
            }
        }
        let record: TokenRecord = serde_json::from_slice(&bytes).ok()?;
        *cached = Some((cas, record.clone()));
        Some((record, cas))
    }

    /// Puts the configured login in place unless the same login (possibly refreshed since)
    /// is already there.
    pub fn seed(&self, initial: TokenRecord) {
        self.update(|current| match current {
            Some(existing) if existing.source == initial.source => None,
            _ => Some(initial.clone()),
        });
    }

    /// Applies `change` with compare-and-swap, retrying when another VM wrote in between.
    /// `change` returns `None` to leave the record as it is. Returns the record written.
    pub fn update(
        &self,
        mut change: impl FnMut(Option<&TokenRecord>) -> Option<TokenRecord>,
    ) -> Option<TokenRecord> {
        for _ in 0..CAS_ATTEMPTS {
            let current = self.read_with_cas();
            let next = change(current.as_ref().map(|(record, _)| record))?;
            let bytes = serde_json::to_vec(&next).ok()?;
            // No CAS when the key does not exist yet: there is nothing to race against.
            let cas = current.as_ref().map(|(_, cas)| *cas).filter(|cas| *cas != 0);
            if set_shared_data(RECORD_KEY, Some(&bytes), cas).is_ok() {
                return Some(next);
            }
        }
        None
    }

    /// Creates the lease key once, so every later take is a real compare-and-swap.
    pub fn init_lease(&self) {
        if let Ok((None, _)) = get_shared_data(LEASE_KEY) {
            let free = serde_json::to_vec(&Lease { holder: 0, until: 0 }).unwrap_or_default();
            let _ = set_shared_data(LEASE_KEY, Some(&free), None);
        }
    }

    /// Takes (or renews) the refresh lease for `me`; false when another VM holds it.
    pub fn take_lease(&self, me: u64, now: u64) -> bool {
        let Ok((bytes, cas)) = get_shared_data(LEASE_KEY) else {
            return false;
        };
        let current: Option<Lease> = bytes.and_then(|b| serde_json::from_slice(&b).ok());
        if !Lease::may_take(current.as_ref(), me, now) {
            return false;
        }
        let lease = Lease {
            holder: me,
            until: now.saturating_add(LEASE_SECONDS),
        };
        let bytes = serde_json::to_vec(&lease).unwrap_or_default();
        set_shared_data(LEASE_KEY, Some(&bytes), cas.filter(|c| *c != 0)).is_ok()
    }

    pub fn release_lease(&self, me: u64) {
        if let Ok((Some(bytes), cas)) = get_shared_data(LEASE_KEY) {
            if serde_json::from_slice::<Lease>(&bytes).is_ok_and(|l| l.holder == me) {
                let released = serde_json::to_vec(&Lease { holder: me, until: 0 }).unwrap_or_default();
                let _ = set_shared_data(LEASE_KEY, Some(&released), cas);
            }
        }
    }
}
