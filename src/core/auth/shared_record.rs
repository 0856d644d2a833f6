//! The token record and the refresh lease in Envoy shared data (one copy for every worker
//! VM of this plugin), updated with compare-and-swap.

use std::cell::RefCell;

use crate::core::auth::token::{LEASE_SECONDS, Lease, TokenRecord};
use crate::core::port::Port;

const RECORD_KEY: &str = "codex_openai_wrapper.tokens.v1";
const LEASE_KEY: &str = "codex_openai_wrapper.refresh_lease.v1";
/// Writers retry this often when another VM wrote in between; more would mean a bug.
const CAS_ATTEMPTS: usize = 8;

/// One account's token record and refresh lease; a per-VM cache so a request parses the
/// record only when another VM changed it.
pub struct TokenStore {
    record_key: String,
    lease_key: String,
    cached: RefCell<Option<(u32, TokenRecord)>>,
}

impl Default for TokenStore {
    /// The single login's store (the keys it has always had).
    fn default() -> Self {
        Self {
            record_key: RECORD_KEY.to_string(),
            lease_key: LEASE_KEY.to_string(),
            cached: RefCell::new(None),
        }
    }
}

impl TokenStore {
    /// The store of one more account of a pool: its own record and lease.
    pub fn labelled(label: &str) -> Self {
        Self {
            record_key: format!("{RECORD_KEY}/{label}"),
            lease_key: format!("{LEASE_KEY}/{label}"),
            cached: RefCell::new(None),
        }
    }

    /// The current record, if any.
    pub fn read(&self, port: &dyn Port) -> Option<TokenRecord> {
        self.read_with_cas(port).map(|(record, _)| record)
    }

    fn read_with_cas(&self, port: &dyn Port) -> Option<(TokenRecord, u32)> {
        let (bytes, cas) = port.shared_get(&self.record_key)?;
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
    pub fn seed(&self, port: &dyn Port, initial: TokenRecord) {
        self.update(port, |current| match current {
            Some(existing) if existing.source == initial.source => None,
            _ => Some(initial.clone()),
        });
    }

    /// [`TokenStore::seed`], but when this store does not hold the login yet and `earlier`
    /// does (the login was the single one, or a pool's, before a reload changed the accounts),
    /// its record is carried over: it may hold a rotated refresh token the configured
    /// document no longer has.
    pub fn seed_from(&self, port: &dyn Port, initial: TokenRecord, earlier: &TokenStore) {
        let carried = earlier
            .read(port)
            .filter(|r| r.source == initial.source)
            .map(|r| TokenRecord {
                // Its place in an external store changes too: reconcile again.
                store_synced: false,
                ..r
            });
        self.update(port, |current| match current {
            Some(existing) if existing.source == initial.source => None,
            _ => Some(carried.clone().unwrap_or_else(|| initial.clone())),
        });
    }

    /// Applies `change` with compare-and-swap, retrying when another VM wrote in between.
    /// `change` returns `None` to leave the record as it is. Returns the record written.
    pub fn update(
        &self,
        port: &dyn Port,
        mut change: impl FnMut(Option<&TokenRecord>) -> Option<TokenRecord>,
    ) -> Option<TokenRecord> {
        for _ in 0..CAS_ATTEMPTS {
            let current = self.read_with_cas(port);
            let next = change(current.as_ref().map(|(record, _)| record))?;
            let bytes = serde_json::to_vec(&next).ok()?;
            // No CAS when the key does not exist yet: there is nothing to race against.
            let cas = current.as_ref().map(|(_, cas)| *cas).filter(|cas| *cas != 0);
            if port.shared_set(&self.record_key, &bytes, cas).is_ok() {
                return Some(next);
            }
        }
        None
    }

    /// Creates the lease key once, so every later take is a real compare-and-swap.
    pub fn init_lease(&self, port: &dyn Port) {
        if port.shared_get(&self.lease_key).is_none() {
            let free = serde_json::to_vec(&Lease { holder: 0, until: 0 }).unwrap_or_default();
            let _ = port.shared_set(&self.lease_key, &free, None);
        }
    }

    /// Takes (or renews) the refresh lease for `me`; false when another VM holds it.
    pub fn take_lease(&self, port: &dyn Port, me: u64, now: u64) -> bool {
        let current = port.shared_get(&self.lease_key);
        let lease: Option<Lease> = current
            .as_ref()
            .and_then(|(bytes, _)| serde_json::from_slice(bytes).ok());
        if !Lease::may_take(lease.as_ref(), me, now) {
            return false;
        }
        let taken = Lease {
            holder: me,
            until: now.saturating_add(LEASE_SECONDS),
        };
        let bytes = serde_json::to_vec(&taken).unwrap_or_default();
        let cas = current.map(|(_, cas)| cas).filter(|cas| *cas != 0);
        port.shared_set(&self.lease_key, &bytes, cas).is_ok()
    }

    /// Gives the lease back early, so another VM need not wait for it to run out; does nothing
    /// when `me` no longer holds it.
    pub fn release_lease(&self, port: &dyn Port, me: u64) {
        if let Some((bytes, cas)) = port.shared_get(&self.lease_key) {
            if serde_json::from_slice::<Lease>(&bytes).is_ok_and(|l| l.holder == me) {
                let released = serde_json::to_vec(&Lease { holder: me, until: 0 }).unwrap_or_default();
                let _ = port.shared_set(&self.lease_key, &released, Some(cas).filter(|cas| *cas != 0));
            }
        }
    }

    /// The backend refused the token of `generation`: unless a refresh already replaced it,
    /// mark it stale so the refresher runs now rather than at expiry. True when marked.
    pub fn token_rejected(&self, port: &dyn Port, generation: u64) -> bool {
        self.update(port, |current| {
            let mut record = current?.clone();
            record.mark_stale(generation).then_some(record)
        })
        .is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::auth::auth_json::ChatgptTokens;
    use crate::core::port::{MemoryPort, SharedMemory};

    fn record(source: &str) -> TokenRecord {
        TokenRecord::new(
            ChatgptTokens::from_parts("at".into(), Some("rt".into()), None, None),
            source.into(),
        )
    }

    #[test]
    fn two_vms_see_one_record_and_one_lease_holder() {
        let shared = SharedMemory::at(1_000);
        let (a, b) = (MemoryPort::new(&shared), MemoryPort::new(&shared));
        let (store_a, store_b) = (TokenStore::default(), TokenStore::default());
        store_a.seed(&a, record("login"));
        store_a.init_lease(&a);
        store_b.seed(&b, record("login"));
        store_b.init_lease(&b);
        assert_eq!(store_b.read(&b).map(|r| r.source), Some("login".into()));

        assert!(store_a.take_lease(&a, 1, 1_000));
        assert!(!store_b.take_lease(&b, 2, 1_000), "the lease is held by VM 1");
        assert!(store_a.take_lease(&a, 1, 1_001), "the holder may renew");
        // A holder that died: its lease runs out and another VM takes over.
        shared.advance(LEASE_SECONDS + 1);
        assert!(store_b.take_lease(&b, 2, shared_now(&b)));
        store_a.release_lease(&a, 1);
        assert!(
            !store_a.take_lease(&a, 1, shared_now(&a)),
            "only the holder releases"
        );
        store_b.release_lease(&b, 2);
        assert!(store_a.take_lease(&a, 1, shared_now(&a)));
    }

    fn shared_now(port: &MemoryPort) -> u64 {
        port.now()
    }

    #[test]
    fn a_new_login_replaces_the_record_and_the_same_login_keeps_its_refresh() {
        let shared = SharedMemory::at(1_000);
        let port = MemoryPort::new(&shared);
        let store = TokenStore::default();
        store.seed(&port, record("login"));
        store.update(&port, |r| {
            r.map(|r| TokenRecord {
                generation: 3,
                ..r.clone()
            })
        });
        store.seed(&port, record("login"));
        assert_eq!(store.read(&port).map(|r| r.generation), Some(3));
        store.seed(&port, record("other login"));
        assert_eq!(
            store.read(&port).map(|r| (r.generation, r.source)),
            Some((0, "other login".into()))
        );
    }

    #[test]
    fn a_rejection_marks_only_the_generation_it_was_sent_with() {
        let shared = SharedMemory::at(1_000);
        let port = MemoryPort::new(&shared);
        let store = TokenStore::default();
        store.seed(
            &port,
            TokenRecord {
                generation: 2,
                ..record("login")
            },
        );
        assert!(
            !store.token_rejected(&port, 1),
            "a refresh already replaced generation 1"
        );
        assert!(store.token_rejected(&port, 2));
        assert!(!store.token_rejected(&port, 2), "already stale");
        assert_eq!(store.read(&port).map(|r| r.stale), Some(true));
    }

    #[test]
    fn a_login_moving_between_single_and_pool_keeps_its_refreshed_record() {
        let shared = SharedMemory::at(1_000);
        let port = MemoryPort::new(&shared);
        let (single, labelled) = (TokenStore::default(), TokenStore::labelled("work"));
        single.seed(&port, record("login"));
        single.update(&port, |r| {
            r.map(|r| TokenRecord {
                generation: 4,
                ..r.clone()
            })
        });
        labelled.seed_from(&port, record("login"), &single);
        assert_eq!(labelled.read(&port).map(|r| r.generation), Some(4));
        let other = TokenStore::labelled("home");
        other.seed_from(&port, record("another login"), &single);
        assert_eq!(
            other.read(&port).map(|r| r.generation),
            Some(0),
            "another login starts afresh"
        );
    }

    #[test]
    fn an_unreadable_record_counts_as_none() {
        let shared = SharedMemory::at(1_000);
        let port = MemoryPort::new(&shared);
        shared.poke(RECORD_KEY, b"{not json");
        assert_eq!(TokenStore::default().read(&port), None);
    }
}
