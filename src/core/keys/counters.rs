//! Each key's counters in shared data (one record per key name, compare-and-swap), so every
//! worker VM counts against the same windows: the request admitted or refused at header time,
//! the tokens the backend reported once the answer is over.

use serde::{Deserialize, Serialize};

use crate::core::error::{ApiError, Code};
use crate::core::keys::window::{Buckets, DAY, HOUR, MINUTE, Window};
use crate::core::keys::{KeyEntry, Limits};
use crate::core::port::{Port, SharedWriteError};

const PREFIX: &str = "codex_openai_wrapper.keys.v1.";
/// Compare-and-swap attempts before giving up on one update; VMs only collide on the same
/// key in the same instant, so this is never reached in practice.
const ATTEMPTS: usize = 16;

/// What one key has done: totals since the counters began, and the limit windows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    #[serde(default)]
    pub requests: u64,
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    /// Requests refused for a limit.
    #[serde(default)]
    pub rejected: u64,
    /// Requests per one-second bucket.
    #[serde(default)]
    pub minute: Buckets,
    /// Tokens per one-minute bucket.
    #[serde(default)]
    pub hour: Buckets,
    /// Tokens per one-hour bucket.
    #[serde(default)]
    pub day: Buckets,
    /// With `TOKEN_STORE=etcd`: what this replica counted since its last flush to etcd (already
    /// included above). Never part of the value in etcd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Box<Tally>>,
}

/// One change to a key's counters.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Delta {
    pub(crate) requests: u64,
    pub(crate) rejected: u64,
    pub(crate) input: u64,
    pub(crate) output: u64,
}

impl Tally {
    pub(crate) fn apply(&mut self, delta: Delta, now: u64) {
        self.requests = self.requests.saturating_add(delta.requests);
        self.rejected = self.rejected.saturating_add(delta.rejected);
        self.input_tokens = self.input_tokens.saturating_add(delta.input);
        self.output_tokens = self.output_tokens.saturating_add(delta.output);
        MINUTE.add(&mut self.minute, now, delta.requests);
        let tokens = delta.input.saturating_add(delta.output);
        HOUR.add(&mut self.hour, now, tokens);
        DAY.add(&mut self.day, now, tokens);
    }

    /// Nothing counted (totals zero, no live bucket).
    pub fn is_empty(&self) -> bool {
        self.requests == 0
            && self.rejected == 0
            && self.input_tokens == 0
            && self.output_tokens == 0
            && self.minute.is_empty()
            && self.hour.is_empty()
            && self.day.is_empty()
    }

    /// Takes `other` out again (what a flush to etcd carried), never below zero.
    pub fn subtract(&mut self, other: &Tally) {
        self.requests = self.requests.saturating_sub(other.requests);
        self.input_tokens = self.input_tokens.saturating_sub(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_sub(other.output_tokens);
        self.rejected = self.rejected.saturating_sub(other.rejected);
        for (mine, theirs) in [
            (&mut self.minute, &other.minute),
            (&mut self.hour, &other.hour),
            (&mut self.day, &other.day),
        ] {
            for (bucket, count) in theirs {
                if let Some((_, mine)) = mine.iter_mut().find(|(b, _)| b == bucket) {
                    *mine = mine.saturating_sub(*count);
                }
            }
            mine.retain(|(_, count)| *count > 0);
        }
    }

    /// Adds `other` in: totals and every bucket (the etcd merge of another replica's counts).
    pub fn absorb(&mut self, other: &Tally) {
        self.requests = self.requests.saturating_add(other.requests);
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.rejected = self.rejected.saturating_add(other.rejected);
        for (mine, theirs) in [
            (&mut self.minute, &other.minute),
            (&mut self.hour, &other.hour),
            (&mut self.day, &other.day),
        ] {
            merge_buckets(mine, theirs);
        }
    }

    /// Drops the buckets that left their windows.
    pub fn prune(&mut self, now: u64) {
        MINUTE.prune(&mut self.minute, now);
        HOUR.prune(&mut self.hour, now);
        DAY.prune(&mut self.day, now);
    }

    /// The reached limit that frees up last (what, the limit, seconds until then): a request
    /// is refused while any limit is reached.
    pub fn over(&self, limits: &Limits, now: u64) -> Option<(&'static str, u64, u64)> {
        let checks: [(Option<u64>, Window, &Buckets, &'static str); 3] = [
            (
                limits.requests_per_minute,
                MINUTE,
                &self.minute,
                "requests per minute",
            ),
            (limits.tokens_per_hour, HOUR, &self.hour, "tokens per hour"),
            (limits.tokens_per_day, DAY, &self.day, "tokens per day"),
        ];
        checks
            .iter()
            .filter_map(|(limit, window, buckets, what)| {
                let limit = (*limit)?;
                let wait = window.wait(buckets, now, limit);
                (wait > 0).then_some((*what, limit, wait))
            })
            .max_by_key(|(_, _, wait)| *wait)
    }

    /// This key's usage now, for `/v1/usage`: what each limited window holds and frees.
    pub fn windows(&self, limits: &Limits, now: u64) -> Vec<WindowUsage> {
        [
            (
                "requests_per_minute",
                limits.requests_per_minute,
                MINUTE,
                &self.minute,
            ),
            ("tokens_per_hour", limits.tokens_per_hour, HOUR, &self.hour),
            ("tokens_per_day", limits.tokens_per_day, DAY, &self.day),
        ]
        .into_iter()
        .map(|(name, limit, window, buckets)| {
            let used = window.used(buckets, now);
            WindowUsage {
                name,
                limit,
                used,
                remaining: limit.map(|l| l.saturating_sub(used)),
                resets_at: match limit {
                    Some(limit) if used >= limit => {
                        Some(now.saturating_add(window.wait(buckets, now, limit)))
                    }
                    _ => window.next_release(buckets, now),
                },
            }
        })
        .collect()
    }
}

/// One window of one key, as `/v1/usage` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowUsage {
    pub name: &'static str,
    pub limit: Option<u64>,
    pub used: u64,
    pub remaining: Option<u64>,
    /// When the window frees up (at the limit), else when its oldest bucket leaves it.
    pub resets_at: Option<u64>,
}

fn merge_buckets(mine: &mut Buckets, theirs: &Buckets) {
    for (bucket, count) in theirs {
        match mine.iter_mut().find(|(b, _)| b == bucket) {
            Some((_, mine)) => *mine = mine.saturating_add(*count),
            None => mine.push((*bucket, *count)),
        }
    }
    mine.sort_unstable_by_key(|(bucket, _)| *bucket);
}

/// The shared-data key of a key's record; `name` is a validated key name.
pub fn shared_key(name: &str) -> String {
    format!("{PREFIX}{name}")
}

/// The key's counters as every VM sees them (empty when nothing was counted yet, or the
/// record cannot be read).
pub fn read(port: &dyn Port, name: &str) -> Tally {
    read_with_cas(port, name).0
}

/// Applies `delta` to the view and, with `replicas` (etcd), to what the next flush carries.
fn record(tally: &mut Tally, delta: Delta, now: u64, replicas: bool) {
    tally.apply(delta, now);
    if replicas {
        let pending = tally.pending.get_or_insert_with(Box::default);
        pending.prune(now);
        pending.apply(delta, now);
    }
}

/// After a flush to etcd, or a read of it: `merged` is what etcd holds now, `flushed` what this
/// replica's flush carried. The view becomes etcd's counts plus what is still unflushed.
pub fn settle(port: &dyn Port, name: &str, flushed: &Tally, merged: &Tally, now: u64) {
    update(port, name, |tally| {
        let mut pending = tally.pending.take().map(|p| *p).unwrap_or_default();
        pending.subtract(flushed);
        pending.prune(now);
        let mut view = merged.clone();
        view.pending = None;
        view.absorb(&pending);
        view.prune(now);
        view.pending = (!pending.is_empty()).then(|| Box::new(pending));
        *tally = view;
        (true, ())
    });
}

fn read_with_cas(port: &dyn Port, name: &str) -> (Tally, Option<u32>) {
    match port.shared_get(&shared_key(name)) {
        Some((bytes, cas)) => (serde_json::from_slice(&bytes).unwrap_or_default(), Some(cas)),
        None => (Tally::default(), None),
    }
}

/// Applies `change` to the key's record under compare-and-swap, retrying when another VM
/// wrote it meanwhile; returns what `change` decided last.
pub fn update<T>(port: &dyn Port, name: &str, change: impl FnMut(&mut Tally) -> (bool, T)) -> Option<T> {
    write(port, name, change).map(|(result, _)| result)
}

/// [`update`], telling whether the change is in shared data now.
fn write<T>(
    port: &dyn Port,
    name: &str,
    mut change: impl FnMut(&mut Tally) -> (bool, T),
) -> Option<(T, bool)> {
    let key = shared_key(name);
    let mut outcome = None;
    for _ in 0..ATTEMPTS {
        let (mut tally, cas) = read_with_cas(port, name);
        let (write, result) = change(&mut tally);
        if !write {
            return Some((result, false));
        }
        let Ok(bytes) = serde_json::to_vec(&tally) else {
            return Some((result, false));
        };
        match port.shared_set(&key, &bytes, cas) {
            Ok(()) => return Some((result, true)),
            Err(SharedWriteError::CasMismatch) => outcome = Some((result, false)),
            Err(SharedWriteError::Failed) => return Some((result, false)),
        }
    }
    outcome
}

/// Adds what one VM counted on its own since its last tick (`keys::local`, which calls this)
/// to the key's record, and with `replicas` to what the next flush to etcd carries. False
/// when the record could not be written (the VM keeps the counts for its next tick).
pub fn add_batch(port: &dyn Port, name: &str, batch: &Tally, now: u64, replicas: bool) -> bool {
    write(port, name, |tally| {
        tally.prune(now);
        tally.absorb(batch);
        tally.prune(now);
        if replicas {
            let pending = tally.pending.get_or_insert_with(Box::default);
            pending.absorb(batch);
            pending.prune(now);
        }
        (true, ())
    })
    .is_some_and(|(_, written)| written)
}

/// A request of `entry` at header time: refused with 429 `key_limit_reached` while a limit is
/// reached (counted as a rejection), else counted in its requests-per-minute window.
/// `replicas`: the counters are shared with other replicas through etcd.
pub fn admit(port: &dyn Port, entry: &KeyEntry, now: u64, replicas: bool) -> Result<(), ApiError> {
    let refusal = update(port, &entry.name, |tally| {
        tally.prune(now);
        let reached = tally.over(&entry.limits, now);
        let delta = match reached {
            Some(_) => Delta {
                rejected: 1,
                ..Delta::default()
            },
            None => Delta {
                requests: 1,
                ..Delta::default()
            },
        };
        record(tally, delta, now, replicas);
        (true, reached)
    })
    .flatten();
    match refusal {
        None => Ok(()),
        Some((what, limit, wait)) => Err(ApiError::of(
            Code::KeyLimitReached,
            format!(
                "The key {:?} has reached its limit of {limit} {what}: retry after {wait} s, or ask the operator for a higher limit.",
                entry.name
            ),
        )
        .with_retry_after(Some(wait))),
    }
}

/// The tokens a finished request of key `name` used, counted against its token windows.
pub fn add_tokens(port: &dyn Port, name: &str, input: u64, output: u64, now: u64, replicas: bool) {
    if input.saturating_add(output) == 0 {
        return;
    }
    update(port, name, |tally| {
        tally.prune(now);
        let delta = Delta {
            input,
            output,
            ..Delta::default()
        };
        record(tally, delta, now, replicas);
        (true, ())
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::keys::KeySet;
    use crate::core::port::{MemoryPort, SharedMemory};

    fn entry(limits: &str) -> KeyEntry {
        let text = format!(r#"[{{"name": "ci", "key": "sk-ci"{limits}}}]"#);
        KeySet::from_settings(Some(&text), None)
            .unwrap()
            .entries
            .remove(0)
    }

    #[test]
    fn requests_per_minute_across_vms() {
        let shared = SharedMemory::at(10_000);
        let (a, b) = (MemoryPort::new(&shared), MemoryPort::new(&shared));
        let key = entry(r#", "requests_per_minute": 3"#);
        assert!(admit(&a, &key, 10_000, false).is_ok());
        assert!(admit(&b, &key, 10_001, false).is_ok());
        assert!(admit(&a, &key, 10_002, false).is_ok());
        let refused = admit(&b, &key, 10_010, false).unwrap_err();
        assert_eq!(
            (refused.status, refused.code_str()),
            (429, Some("key_limit_reached"))
        );
        // The first request's bucket leaves the window at 10_060.
        assert_eq!(refused.retry_after, Some(50));
        assert!(refused.message.contains("\"ci\"") && refused.message.contains("3 requests per minute"));
        assert!(!refused.message.contains("sk-ci"));
        let tally = read(&a, "ci");
        assert_eq!((tally.requests, tally.rejected), (3, 1));
        assert!(admit(&b, &key, 10_059, false).is_err());
        assert!(admit(&b, &key, 10_060, false).is_ok());
    }

    #[test]
    fn token_budgets_from_reported_usage() {
        let shared = SharedMemory::at(0);
        let port = MemoryPort::new(&shared);
        let key = entry(r#", "tokens_per_hour": 100, "tokens_per_day": 150"#);
        assert!(admit(&port, &key, 0, false).is_ok());
        add_tokens(&port, "ci", 60, 30, 0, false);
        // 90 of 100: still admitted; the request may go over, and the next is refused.
        assert!(admit(&port, &key, 10, false).is_ok());
        add_tokens(&port, "ci", 10, 5, 10, false);
        let refused = admit(&port, &key, 20, false).unwrap_err();
        assert_eq!(refused.retry_after, Some(3580), "{}", refused.message);
        assert!(refused.message.contains("100 tokens per hour"));
        // An hour on, the hour window is empty but the day holds 105; 45 more reach 150.
        assert!(admit(&port, &key, 3600, false).is_ok());
        add_tokens(&port, "ci", 45, 0, 3600, false);
        let refused = admit(&port, &key, 3601, false).unwrap_err();
        assert!(
            refused.message.contains("150 tokens per day"),
            "{}",
            refused.message
        );
        assert_eq!(refused.retry_after, Some(86_400 - 3601));
        let tally = read(&port, "ci");
        assert_eq!((tally.input_tokens, tally.output_tokens), (115, 35));
        let windows = tally.windows(&key.limits, 3601);
        let day = windows.iter().find(|w| w.name == "tokens_per_day").unwrap();
        assert_eq!(
            (day.used, day.remaining, day.resets_at),
            (150, Some(0), Some(86_400))
        );
        let minute = windows.iter().find(|w| w.name == "requests_per_minute").unwrap();
        assert_eq!((minute.limit, minute.used), (None, 1));
    }

    #[test]
    fn a_key_without_limits_is_counted_and_never_refused() {
        let shared = SharedMemory::at(0);
        let port = MemoryPort::new(&shared);
        let key = entry("");
        for second in 0..200 {
            assert!(admit(&port, &key, second, false).is_ok());
        }
        assert_eq!(read(&port, "ci").requests, 200);
        assert!(read(&port, "ci").minute.len() <= 60, "old buckets are dropped");
    }

    #[test]
    fn a_damaged_record_starts_over() {
        let shared = SharedMemory::at(0);
        let port = MemoryPort::new(&shared);
        shared.poke(&shared_key("ci"), b"not json");
        assert!(admit(&port, &entry(r#", "requests_per_minute": 1"#), 0, false).is_ok());
        assert_eq!(read(&port, "ci").requests, 1);
    }

    #[test]
    fn merging_adds_buckets() {
        let mut a = Tally {
            requests: 1,
            minute: vec![(1, 1), (3, 1)],
            ..Tally::default()
        };
        let b = Tally {
            requests: u64::MAX,
            minute: vec![(2, 1), (3, 2)],
            ..Tally::default()
        };
        a.absorb(&b);
        assert_eq!(a.requests, u64::MAX);
        assert_eq!(a.minute, vec![(1, 1), (2, 1), (3, 3)]);
    }
}
