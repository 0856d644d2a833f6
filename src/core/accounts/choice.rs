//! The choice rule, a pure function of the accounts' state, the conversation's remembered
//! account and the clock:
//!
//! 1. the conversation's account, while it can serve (so the backend's prompt cache hits);
//! 2. else the usable account with the most headroom (lowest used percent over both
//!    windows, unknown counting as empty), ties taken in turn (round-robin);
//! 3. none usable but one refreshing its token: wait for that one (the conversation's own
//!    first);
//! 4. none usable and some exhausted: a 429 whose `Retry-After` is the earliest reset;
//! 5. every account failed for good: the login error.

use crate::core::accounts::state::AccountState;
use crate::core::auth::token::{Availability, TokenRecord};

/// Whether one account can serve now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ready,
    /// A usage limit until then (Unix seconds).
    Exhausted {
        until: u64,
    },
    /// No valid token, a refresh is due or running.
    Refreshing,
    /// No token will come without a new login.
    Failed,
}

impl Status {
    /// The account's state as `/v1/usage` names it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Exhausted { .. } => "exhausted",
            Self::Refreshing => "refreshing",
            Self::Failed => "failed",
        }
    }
}

/// An account as the rule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub status: Status,
    pub used_percent: u64,
}

impl Candidate {
    /// From the account's token record and shared state at `now`.
    pub fn of(record: Option<&TokenRecord>, state: &AccountState, now: u64) -> Self {
        let status = match record.map(|r| r.availability(now)) {
            None | Some(Availability::Dead(_)) => Status::Failed,
            Some(_) if state.exhausted(now) => Status::Exhausted {
                until: state.exhausted_until,
            },
            Some(Availability::Usable(_)) => Status::Ready,
            Some(Availability::Wait) => Status::Refreshing,
        };
        Self {
            status,
            used_percent: state.used_percent(now),
        }
    }
}

/// Where a request goes (indices into the candidates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Use(usize),
    Wait(usize),
    /// Every account that could serve is exhausted; the earliest comes back then.
    AllExhausted {
        retry_at: u64,
    },
    AllFailed,
}

/// The rule. `sticky` is the conversation's remembered account; `turn` picks among equals.
pub fn decide(candidates: &[Candidate], sticky: Option<usize>, turn: u64) -> Choice {
    let ready = |i: &usize| candidates.get(*i).is_some_and(|c| c.status == Status::Ready);
    if let Some(index) = sticky.filter(ready) {
        return Choice::Use(index);
    }
    let best = candidates
        .iter()
        .filter(|c| c.status == Status::Ready)
        .map(|c| c.used_percent)
        .min();
    if let Some(best) = best {
        let tied: Vec<usize> = (0..candidates.len())
            .filter(|i| ready(i) && candidates.get(*i).is_some_and(|c| c.used_percent == best))
            .collect();
        let count = u64::try_from(tied.len()).unwrap_or(1).max(1);
        let at = usize::try_from(turn % count).unwrap_or(0);
        if let Some(index) = tied.get(at) {
            return Choice::Use(*index);
        }
    }
    let refreshing = |i: &usize| candidates.get(*i).is_some_and(|c| c.status == Status::Refreshing);
    if let Some(index) = sticky
        .filter(refreshing)
        .or_else(|| (0..candidates.len()).find(refreshing))
    {
        return Choice::Wait(index);
    }
    let earliest = candidates
        .iter()
        .filter_map(|c| match c.status {
            Status::Exhausted { until } => Some(until),
            _ => None,
        })
        .min();
    match earliest {
        Some(retry_at) => Choice::AllExhausted { retry_at },
        None => Choice::AllFailed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::accounts::state::WindowState;
    use crate::core::auth::auth_json::ChatgptTokens;

    use Status::*;

    fn c(status: Status, used: u64) -> Candidate {
        Candidate {
            status,
            used_percent: used,
        }
    }

    #[test]
    fn the_rule_table() {
        let ex = |until| Exhausted { until };
        type Case<'a> = (&'a str, &'a [Candidate], Option<usize>, u64, Choice);
        let cases: &[Case] = &[
            (
                "sticky and ready",
                &[c(Ready, 10), c(Ready, 90)],
                Some(1),
                0,
                Choice::Use(1),
            ),
            (
                "sticky exhausted: most headroom",
                &[c(Ready, 50), c(ex(900), 0), c(Ready, 20)],
                Some(1),
                0,
                Choice::Use(2),
            ),
            (
                "new conversation: most headroom",
                &[c(Ready, 50), c(Ready, 20), c(Ready, 70)],
                None,
                0,
                Choice::Use(1),
            ),
            (
                "unknown counts as empty",
                &[c(Ready, 5), c(Ready, 0)],
                None,
                0,
                Choice::Use(1),
            ),
            (
                "ties round-robin, turn 0",
                &[c(Ready, 0), c(Ready, 0), c(Ready, 0)],
                None,
                0,
                Choice::Use(0),
            ),
            (
                "ties round-robin, turn 1",
                &[c(Ready, 0), c(Ready, 0), c(Ready, 0)],
                None,
                1,
                Choice::Use(1),
            ),
            (
                "ties round-robin, turn 5",
                &[c(Ready, 0), c(Ready, 0), c(Ready, 0)],
                None,
                5,
                Choice::Use(2),
            ),
            (
                "ties skip the fuller",
                &[c(Ready, 0), c(Ready, 30), c(Ready, 0)],
                None,
                1,
                Choice::Use(2),
            ),
            (
                "sticky failed",
                &[c(Failed, 0), c(Ready, 60)],
                Some(0),
                0,
                Choice::Use(1),
            ),
            ("sticky out of range", &[c(Ready, 0)], Some(7), 0, Choice::Use(0)),
            (
                "refreshing is not usable",
                &[c(Refreshing, 0), c(Ready, 99)],
                None,
                0,
                Choice::Use(1),
            ),
            (
                "only refreshing: wait",
                &[c(ex(900), 0), c(Refreshing, 0)],
                None,
                0,
                Choice::Wait(1),
            ),
            (
                "wait for the sticky one first",
                &[c(Refreshing, 0), c(Refreshing, 0)],
                Some(1),
                0,
                Choice::Wait(1),
            ),
            (
                "all exhausted: earliest reset",
                &[c(ex(900), 0), c(ex(600), 0), c(ex(700), 0)],
                None,
                0,
                Choice::AllExhausted { retry_at: 600 },
            ),
            (
                "exhausted and failed",
                &[c(Failed, 0), c(ex(800), 0)],
                Some(0),
                0,
                Choice::AllExhausted { retry_at: 800 },
            ),
            (
                "all failed",
                &[c(Failed, 0), c(Failed, 0)],
                None,
                0,
                Choice::AllFailed,
            ),
            ("no accounts", &[], None, 0, Choice::AllFailed),
        ];
        for (name, candidates, sticky, turn, expected) in cases {
            assert_eq!(decide(candidates, *sticky, *turn), *expected, "{name}");
        }
    }

    fn record(expires_at: u64, permanent_failure: bool) -> TokenRecord {
        let mut tokens = ChatgptTokens::from_parts("at".into(), Some("rt".into()), None, None);
        tokens.expires_at = Some(expires_at);
        let mut record = TokenRecord::new(tokens, "login".into());
        if permanent_failure {
            record = record.failed(
                crate::core::auth::token::RefreshError {
                    permanent: true,
                    code: "refresh_token_reused".into(),
                    message: "m".into(),
                },
                0,
            );
        }
        record
    }

    #[test]
    fn the_status_follows_the_token_the_mark_and_the_clock() {
        let now = 1_000;
        let marked = AccountState {
            exhausted_until: 1_300,
            ..AccountState::default()
        };
        let fresh = AccountState {
            primary: WindowState {
                used_percent: Some(42),
                resets_at: Some(5_000),
            },
            ..AccountState::default()
        };
        type Case<'a> = (&'a str, Option<TokenRecord>, &'a AccountState, u64, Status, u64);
        let cases: &[Case] = &[
            ("valid token", Some(record(9_000, false)), &fresh, now, Ready, 42),
            (
                "expired token: refreshing",
                Some(record(500, false)),
                &fresh,
                now,
                Refreshing,
                42,
            ),
            (
                "marked exhausted",
                Some(record(9_000, false)),
                &marked,
                now,
                Exhausted { until: 1_300 },
                0,
            ),
            (
                "after the reset",
                Some(record(9_000, false)),
                &marked,
                1_300,
                Ready,
                0,
            ),
            (
                "window past its reset is empty",
                Some(record(9_000, false)),
                &fresh,
                5_000,
                Ready,
                0,
            ),
            ("login needed", Some(record(9_000, true)), &marked, now, Failed, 0),
            ("no record", None, &fresh, now, Failed, 42),
        ];
        for (name, rec, state, at, status, used) in cases {
            let got = Candidate::of(rec.as_ref(), state, *at);
            assert_eq!((got.status, got.used_percent), (*status, *used), "{name}");
        }
    }
}
