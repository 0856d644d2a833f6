//! What every VM knows about one account besides its tokens: the usage windows from the
//! last response headers, the exhaustion mark of a usage-limit answer, and the counts
//! `/v1/usage` shows. One shared-data key per account, updated with compare-and-swap; with
//! `TOKEN_STORE=etcd` the exhaustion mark and windows also go to `<key>/accounts/<label>`.

use std::cell::{Cell, RefCell};

use serde::{Deserialize, Serialize};

use crate::core::port::Port;
use crate::core::translate::response::upstream_error::Window;

const STATE_KEY: &str = "codex_openai_wrapper.account_state.v1";
const CAS_ATTEMPTS: usize = 8;
/// A usage-limit answer that names no reset time keeps the account out this long.
pub const DEFAULT_EXHAUSTION_SECONDS: u64 = 60;

/// One usage window as last reported.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowState {
    #[serde(default)]
    pub used_percent: Option<u64>,
    #[serde(default)]
    pub resets_at: Option<u64>,
}

impl From<Window> for WindowState {
    fn from(w: Window) -> Self {
        Self {
            used_percent: w.used_percent,
            resets_at: w.resets_at,
        }
    }
}

impl WindowState {
    /// The used percent at `now`: a window past its reset time is empty again.
    pub fn used_at(&self, now: u64) -> u64 {
        match self.resets_at {
            Some(at) if at <= now => 0,
            _ => self.used_percent.unwrap_or(0),
        }
    }
}

/// The shared state of one account.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountState {
    /// Unix seconds until which the account is out (a usage-limit answer); 0: not marked.
    #[serde(default)]
    pub exhausted_until: u64,
    #[serde(default)]
    pub primary: WindowState,
    #[serde(default)]
    pub secondary: WindowState,
    /// When the mark or the windows last changed (newest wins between replicas).
    #[serde(default)]
    pub updated_at: u64,
    #[serde(default)]
    pub requests: u64,
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
}

impl AccountState {
    /// Out for its usage limit at `now`.
    pub fn exhausted(&self, now: u64) -> bool {
        self.exhausted_until > now
    }

    /// The account's used percent: the fuller of its two windows (unknown counts as empty).
    pub fn used_percent(&self, now: u64) -> u64 {
        self.primary.used_at(now).max(self.secondary.used_at(now))
    }

    /// The mark and windows of `other` when they are newer (another replica's news).
    pub fn merge_shared(&mut self, other: &Self) {
        if other.updated_at > self.updated_at {
            self.exhausted_until = other.exhausted_until;
            self.primary = other.primary;
            self.secondary = other.secondary;
            self.updated_at = other.updated_at;
        }
    }
}

/// When an account that got a usage-limit answer may serve again: the reset the body named,
/// else the reset of a full window (the latest of them), else `Retry-After`, else a minute.
pub fn exhausted_until(
    body_resets_at: Option<u64>,
    windows: &[Window; 2],
    retry_after: Option<u64>,
    now: u64,
) -> u64 {
    if let Some(at) = body_resets_at.filter(|at| *at > now) {
        return at;
    }
    let full = windows
        .iter()
        .filter(|w| w.used_percent.is_some_and(|p| p >= 100))
        .filter_map(|w| w.resets_at)
        .filter(|at| *at > now)
        .max();
    full.or_else(|| retry_after.filter(|s| *s > 0).map(|s| now.saturating_add(s)))
        .unwrap_or_else(|| now.saturating_add(DEFAULT_EXHAUSTION_SECONDS))
}

/// The counts of requests one VM's account served since its last tick: they decide nothing
/// (the choice reads the mark and the windows), so they wait for the tick instead of costing a
/// compare-and-swap write each.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Served {
    fn add_to(&self, s: &mut AccountState) {
        s.requests = s.requests.saturating_add(self.requests);
        s.input_tokens = s.input_tokens.saturating_add(self.input_tokens);
        s.output_tokens = s.output_tokens.saturating_add(self.output_tokens);
    }

    fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    fn plus(self, other: Served) -> Served {
        Served {
            requests: self.requests.saturating_add(other.requests),
            input_tokens: self.input_tokens.saturating_add(other.input_tokens),
            output_tokens: self.output_tokens.saturating_add(other.output_tokens),
        }
    }
}

/// One account's state in shared data, with a per-VM parse cache, and the counts this VM has
/// not added to it yet.
pub struct StateStore {
    key: String,
    cached: RefCell<Option<(u32, AccountState)>>,
    served: Cell<Served>,
}

impl StateStore {
    /// The state of the account labelled `label`.
    pub fn new(label: &str) -> Self {
        Self {
            key: format!("{STATE_KEY}/{label}"),
            cached: RefCell::new(None),
            served: Cell::new(Served::default()),
        }
    }

    /// A request the account served ended, with these token counts: counted in this VM until
    /// its tick ([`StateStore::flush`]).
    pub fn count(&self, input_tokens: u64, output_tokens: u64) {
        let request = Served {
            requests: 1,
            input_tokens,
            output_tokens,
        };
        self.served.set(self.served.get().plus(request));
    }

    /// The VM's tick: the counts go to shared data; kept for the next tick if they cannot.
    pub fn flush(&self, port: &dyn Port) {
        let served = self.served.take();
        if served.is_empty() {
            return;
        }
        if self
            .update(port, |s| {
                served.add_to(s);
                true
            })
            .is_none()
        {
            self.served.set(self.served.get().plus(served));
        }
    }

    /// The state with this VM's counts not yet in shared data (what `/v1/usage` shows).
    pub fn read_counted(&self, port: &dyn Port) -> AccountState {
        let mut state = self.read(port);
        self.served.get().add_to(&mut state);
        state
    }

    /// The current state (the default when none was written yet).
    pub fn read(&self, port: &dyn Port) -> AccountState {
        self.read_with_cas(port).map(|(s, _)| s).unwrap_or_default()
    }

    fn read_with_cas(&self, port: &dyn Port) -> Option<(AccountState, u32)> {
        let (bytes, cas) = port.shared_get(&self.key)?;
        let mut cached = self.cached.borrow_mut();
        if let Some((seen, state)) = cached.as_ref() {
            if *seen == cas && cas != 0 {
                return Some((state.clone(), cas));
            }
        }
        let state: AccountState = serde_json::from_slice(&bytes).ok()?;
        *cached = Some((cas, state.clone()));
        Some((state, cas))
    }

    /// Applies `change` with compare-and-swap; `change` returns false to leave it alone.
    /// Returns the state written.
    pub fn update(
        &self,
        port: &dyn Port,
        mut change: impl FnMut(&mut AccountState) -> bool,
    ) -> Option<AccountState> {
        for _ in 0..CAS_ATTEMPTS {
            let current = self.read_with_cas(port);
            let mut next = current.as_ref().map(|(s, _)| s.clone()).unwrap_or_default();
            if !change(&mut next) {
                return None;
            }
            let bytes = serde_json::to_vec(&next).ok()?;
            let cas = current.as_ref().map(|(_, cas)| *cas).filter(|cas| *cas != 0);
            if port.shared_set(&self.key, &bytes, cas).is_ok() {
                return Some(next);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::port::{MemoryPort, SharedMemory};

    const NOW: u64 = 1_000;

    fn window(used: u64, at: u64) -> Window {
        Window {
            used_percent: Some(used),
            resets_at: Some(at),
        }
    }

    #[test]
    fn the_reset_comes_from_the_body_then_a_full_window_then_retry_after() {
        let windows = [window(100, 1_300), window(40, 9_000)];
        assert_eq!(exhausted_until(Some(1_200), &windows, Some(5), NOW), 1_200);
        assert_eq!(
            exhausted_until(Some(10), &windows, Some(5), NOW),
            1_300,
            "a past body reset"
        );
        let both_full = [window(100, 1_300), window(100, 9_000)];
        assert_eq!(exhausted_until(None, &both_full, None, NOW), 9_000);
        let none_full = [window(80, 1_300), Window::default()];
        assert_eq!(exhausted_until(None, &none_full, Some(30), NOW), 1_030);
        assert_eq!(
            exhausted_until(None, &none_full, None, NOW),
            NOW + DEFAULT_EXHAUSTION_SECONDS
        );
    }

    #[test]
    fn used_percent_is_the_fuller_window_and_a_reset_window_is_empty() {
        let state = AccountState {
            primary: window(30, 2_000).into(),
            secondary: window(70, 1_500).into(),
            ..AccountState::default()
        };
        assert_eq!(state.used_percent(NOW), 70);
        assert_eq!(state.used_percent(1_600), 30);
        assert_eq!(AccountState::default().used_percent(NOW), 0);
    }

    #[test]
    fn served_counts_wait_for_the_tick_and_two_vms_add_up() {
        let shared = SharedMemory::at(NOW);
        let (a, b) = (MemoryPort::new(&shared), MemoryPort::new(&shared));
        let (store_a, store_b) = (StateStore::new("x"), StateStore::new("x"));
        store_a.count(10, 3);
        store_a.count(5, 1);
        store_b.count(7, 2);
        assert_eq!(
            shared.peek(&format!("{STATE_KEY}/x")),
            None,
            "no write per request"
        );
        let seen = store_a.read_counted(&a);
        assert_eq!((seen.requests, seen.input_tokens, seen.output_tokens), (2, 15, 4));
        // The mark a response sets goes out at once, and a flush keeps it.
        store_b.update(&b, |s| {
            s.exhausted_until = 1_500;
            true
        });
        store_a.flush(&a);
        store_b.flush(&b);
        let state = store_a.read(&a);
        assert_eq!(
            (
                state.requests,
                state.input_tokens,
                state.output_tokens,
                state.exhausted_until
            ),
            (3, 22, 6, 1_500)
        );
        assert_eq!(store_b.read_counted(&b), state, "flushed once, counted once");
        store_a.flush(&a);
        assert_eq!(store_a.read(&a).requests, 3);
    }

    #[test]
    fn two_vms_share_one_state_and_newer_marks_win() {
        let shared = SharedMemory::at(NOW);
        let (a, b) = (MemoryPort::new(&shared), MemoryPort::new(&shared));
        let (store_a, store_b) = (StateStore::new("x"), StateStore::new("x"));
        store_a.update(&a, |s| {
            s.exhausted_until = 1_500;
            s.updated_at = NOW;
            true
        });
        assert!(store_b.read(&b).exhausted(NOW));
        assert!(!StateStore::new("y").read(&b).exhausted(NOW));
        let mut mine = store_b.read(&b);
        mine.merge_shared(&AccountState {
            updated_at: NOW - 1,
            ..AccountState::default()
        });
        assert_eq!(mine.exhausted_until, 1_500, "an older mark loses");
        mine.merge_shared(&AccountState {
            updated_at: NOW + 1,
            ..AccountState::default()
        });
        assert_eq!(mine.exhausted_until, 0);
    }
}
