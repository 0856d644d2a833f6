//! What one VM counts on its own for the keys whose counts decide nothing at admission, added
//! to the shared record on the VM's tick: a key without limits is never refused, so its
//! requests and tokens need no exact shared counter, and a key limited only in requests per
//! minute is never refused for its tokens. Every other count (a request of a limited key, the
//! tokens of a key with a token limit) is counted exactly in shared data, as the limits must
//! hold across worker VMs. Saves a shared-data read, a parse, a serialisation and a
//! compare-and-swap write per count on the hot path; another VM (and `/v1/usage` there) sees
//! this VM's counts up to one tick late, while `/v1/usage` on this VM sees them at once.

use std::cell::{Cell, RefCell};

use crate::core::error::ApiError;
use crate::core::keys::counters::{self, Delta, Tally};
use crate::core::keys::{KeyEntry, KeyId, KeySet, Limits};
use crate::core::port::Port;

/// Which of a key's counts wait for the tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Batched {
    /// A token limit: every count is exact.
    Nothing,
    /// Only a request limit: the requests are exact, the tokens wait.
    Tokens,
    /// No limit: everything waits.
    Everything,
}

impl Batched {
    fn of(limits: &Limits) -> Self {
        let tokens_limited = limits.tokens_per_hour.is_some() || limits.tokens_per_day.is_some();
        match (limits.requests_per_minute.is_some(), tokens_limited) {
            (_, true) => Self::Nothing,
            (true, false) => Self::Tokens,
            (false, false) => Self::Everything,
        }
    }
}

/// One VM's counts not yet in shared data: one tally per configured key (by [`KeyId`]), so it
/// is bounded by the keys file; each tally's windows drop old buckets as they go.
pub struct LocalCounts {
    batched: Vec<Batched>,
    tallies: RefCell<Vec<Tally>>,
    /// Something waits for the tick: an idle tick costs no shared-data call.
    dirty: Cell<bool>,
}

impl LocalCounts {
    /// Nothing counted yet, for the keys of one configuration.
    pub fn for_keys(keys: &KeySet) -> Self {
        Self {
            batched: keys.entries.iter().map(|e| Batched::of(&e.limits)).collect(),
            tallies: RefCell::new(vec![Tally::default(); keys.entries.len()]),
            dirty: Cell::new(false),
        }
    }

    fn batched(&self, id: KeyId) -> Batched {
        self.batched.get(id).copied().unwrap_or(Batched::Nothing)
    }

    fn count(&self, id: KeyId, delta: Delta, now: u64) -> bool {
        let mut tallies = self.tallies.borrow_mut();
        let Some(tally) = tallies.get_mut(id) else {
            return false;
        };
        tally.apply(delta, now);
        self.dirty.set(true);
        true
    }

    /// [`counters::admit`] for key `id` (`entry`): a key without limits is counted here and
    /// let through.
    pub fn admit(
        &self,
        port: &dyn Port,
        id: KeyId,
        entry: &KeyEntry,
        now: u64,
        replicas: bool,
    ) -> Result<(), ApiError> {
        let request = Delta {
            requests: 1,
            ..Delta::default()
        };
        if self.batched(id) == Batched::Everything && self.count(id, request, now) {
            return Ok(());
        }
        counters::admit(port, entry, now, replicas)
    }

    /// [`counters::add_tokens`] for key `id` (`entry`): counted here unless the key has a
    /// token limit.
    pub fn add_tokens(
        &self,
        port: &dyn Port,
        id: KeyId,
        entry: &KeyEntry,
        (input, output): (u64, u64),
        now: u64,
        replicas: bool,
    ) {
        if input.saturating_add(output) == 0 {
            return;
        }
        let tokens = Delta {
            input,
            output,
            ..Delta::default()
        };
        if self.batched(id) != Batched::Nothing && self.count(id, tokens, now) {
            return;
        }
        counters::add_tokens(port, &entry.name, input, output, now, replicas);
    }

    /// The VM's tick: every key's counts go to its shared record (`keys` is the configuration
    /// these counts were made under). A record that cannot be written keeps its counts here
    /// for the next tick.
    pub fn flush(&self, port: &dyn Port, keys: &KeySet, now: u64, replicas: bool) {
        if !self.dirty.replace(false) {
            return;
        }
        let taken = std::mem::replace(
            &mut *self.tallies.borrow_mut(),
            vec![Tally::default(); keys.entries.len()],
        );
        for (id, (entry, batch)) in keys.entries.iter().zip(taken).enumerate() {
            if batch.is_empty() || counters::add_batch(port, &entry.name, &batch, now, replicas) {
                continue;
            }
            if let Some(kept) = self.tallies.borrow_mut().get_mut(id) {
                kept.absorb(&batch);
                kept.prune(now);
                self.dirty.set(true);
            }
        }
    }

    /// The key's counters as this VM sees them: the shared record and what this VM has not
    /// added to it yet.
    pub fn view(&self, port: &dyn Port, id: KeyId, name: &str) -> Tally {
        let mut tally = counters::read(port, name);
        if let Some(mine) = self.tallies.borrow().get(id) {
            tally.absorb(mine);
        }
        tally
    }

    /// Nothing waits for the tick.
    pub fn is_idle(&self) -> bool {
        !self.dirty.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::keys::counters::{read, shared_key};
    use crate::core::port::{MemoryPort, SharedMemory};

    fn keys() -> KeySet {
        KeySet::from_settings(
            Some(
                r#"[{"name": "free", "key": "sk-free"},
                    {"name": "rpm", "key": "sk-rpm", "requests_per_minute": 3},
                    {"name": "tph", "key": "sk-tph", "tokens_per_hour": 100}]"#,
            ),
            None,
        )
        .unwrap()
    }

    #[test]
    fn a_key_without_limits_reaches_shared_data_on_the_tick_and_two_vms_add_up() {
        let keys = keys();
        let shared = SharedMemory::at(1_000);
        let (a, b) = (MemoryPort::new(&shared), MemoryPort::new(&shared));
        let (mine, theirs) = (LocalCounts::for_keys(&keys), LocalCounts::for_keys(&keys));
        let free = &keys.entries[0];
        for _ in 0..3 {
            mine.admit(&a, 0, free, 1_000, false).unwrap();
        }
        mine.add_tokens(&a, 0, free, (10, 4), 1_000, false);
        theirs.admit(&b, 0, free, 1_000, false).unwrap();
        theirs.add_tokens(&b, 0, free, (5, 1), 1_000, false);
        assert_eq!(
            shared.peek(&shared_key("free")),
            None,
            "nothing shared before the tick"
        );
        // Each VM sees its own counts at once, the other's not yet.
        assert_eq!(mine.view(&a, 0, "free").requests, 3);
        assert_eq!(theirs.view(&b, 0, "free").requests, 1);
        mine.flush(&a, &keys, 1_000, false);
        shared.advance(1);
        theirs.flush(&b, &keys, 1_001, false);
        let tally = read(&a, "free");
        assert_eq!(
            (
                tally.requests,
                tally.input_tokens,
                tally.output_tokens,
                tally.rejected
            ),
            (4, 15, 5, 0)
        );
        assert_eq!(
            tally.minute,
            vec![(1_000, 4)],
            "in the second they were counted in"
        );
        assert_eq!(tally.hour.iter().map(|(_, n)| n).sum::<u64>(), 20);
        assert!(
            tally.pending.is_none(),
            "no etcd: nothing to carry to other replicas"
        );
        // Flushed once: the views are the shared record, not counted twice.
        assert_eq!(mine.view(&a, 0, "free").requests, 4);
        assert_eq!(theirs.view(&b, 0, "free").requests, 4);
        assert!(mine.is_idle() && theirs.is_idle());
        mine.flush(&a, &keys, 1_002, false);
        assert_eq!(read(&a, "free").requests, 4, "an idle tick adds nothing");
    }

    #[test]
    fn limited_keys_are_still_refused_exactly_at_their_limit_across_vms() {
        let keys = keys();
        let shared = SharedMemory::at(1_000);
        let (a, b) = (MemoryPort::new(&shared), MemoryPort::new(&shared));
        let (mine, theirs) = (LocalCounts::for_keys(&keys), LocalCounts::for_keys(&keys));
        let rpm = &keys.entries[1];
        assert!(mine.admit(&a, 1, rpm, 1_000, false).is_ok());
        assert!(theirs.admit(&b, 1, rpm, 1_000, false).is_ok());
        assert!(mine.admit(&a, 1, rpm, 1_001, false).is_ok());
        // No tick in between: the third request is in shared data already.
        let refused = theirs.admit(&b, 1, rpm, 1_002, false).unwrap_err();
        assert_eq!(refused.code_str(), Some("key_limit_reached"));
        assert_eq!((read(&a, "rpm").requests, read(&a, "rpm").rejected), (3, 1));
        // Its tokens decide nothing: they wait for the tick.
        mine.add_tokens(&a, 1, rpm, (7, 3), 1_002, false);
        assert_eq!(read(&a, "rpm").input_tokens, 0);
        assert_eq!(mine.view(&a, 1, "rpm").input_tokens, 7);
        mine.flush(&a, &keys, 1_002, false);
        assert_eq!(read(&b, "rpm").input_tokens, 7);

        // A token limit: tokens from two VMs count at once against it.
        let tph = &keys.entries[2];
        assert!(mine.admit(&a, 2, tph, 1_000, false).is_ok());
        mine.add_tokens(&a, 2, tph, (60, 0), 1_000, false);
        assert!(theirs.admit(&b, 2, tph, 1_001, false).is_ok());
        theirs.add_tokens(&b, 2, tph, (40, 0), 1_001, false);
        assert!(mine.admit(&a, 2, tph, 1_002, false).is_err());
        assert!(theirs.admit(&b, 2, tph, 1_002, false).is_err());
        assert!(
            mine.is_idle() && theirs.is_idle(),
            "nothing of it waits for a tick"
        );
    }

    #[test]
    fn with_replicas_the_flush_carries_the_counts_to_the_next_etcd_flush() {
        let keys = keys();
        let shared = SharedMemory::at(1_000);
        let port = MemoryPort::new(&shared);
        let local = LocalCounts::for_keys(&keys);
        local.admit(&port, 0, &keys.entries[0], 1_000, true).unwrap();
        local.flush(&port, &keys, 1_000, true);
        let tally = read(&port, "free");
        assert_eq!(tally.requests, 1);
        assert_eq!(tally.pending.map(|p| p.requests), Some(1));
    }

    #[test]
    fn a_record_that_cannot_be_written_keeps_its_counts_for_the_next_tick() {
        let keys = keys();
        let shared = SharedMemory::at(1_000);
        let port = MemoryPort::new(&shared);
        let local = LocalCounts::for_keys(&keys);
        local.admit(&port, 0, &keys.entries[0], 1_000, false).unwrap();
        // The flush's compare-and-swap loses every time: another writer keeps changing it.
        let stubborn = FightingPort(MemoryPort::new(&shared));
        local.flush(&stubborn, &keys, 1_000, false);
        assert!(!local.is_idle());
        assert_eq!(local.view(&port, 0, "free").requests, 1);
        local.flush(&port, &keys, 1_001, false);
        assert_eq!(read(&port, "free").requests, 1);
        assert!(local.is_idle());
    }

    /// A port whose every compare-and-swap write finds the record changed.
    struct FightingPort(MemoryPort);

    impl Port for FightingPort {
        fn now_ms(&self) -> u64 {
            self.0.now_ms()
        }
        fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            Some(self.0.shared_get(key).unwrap_or((b"{}".to_vec(), 1)))
        }
        fn shared_set(
            &self,
            _key: &str,
            _value: &[u8],
            _cas: Option<u32>,
        ) -> Result<(), crate::core::port::SharedWriteError> {
            Err(crate::core::port::SharedWriteError::CasMismatch)
        }
        fn dispatch(&self, call: &crate::core::port::Dispatch) -> Option<u32> {
            self.0.dispatch(call)
        }
        fn resume(&self, context_id: u32, headers: &[(String, String)]) -> bool {
            self.0.resume(context_id, headers)
        }
        fn fail(&self, context_id: u32, reply: &crate::core::reply::Reply) {
            self.0.fail(context_id, reply)
        }
        fn metric(&self, metric: crate::core::metrics::Metric) {
            self.0.metric(metric)
        }
        fn metric_for(&self, owner: crate::core::metrics::Owner<'_>, metric: crate::core::metrics::Metric) {
            self.0.metric_for(owner, metric)
        }
    }
}
