//! The pool's actions on shared data: choosing the account for a request (or an upstream
//! attempt), taking an account out when it hits its usage limit, and recording the windows
//! and counts each response brings. With one account, [`pick`] is today's rule: its token,
//! or wait for it, or the login error.

use log::info;

use crate::core::accounts::choice::{self, Candidate, Choice};
use crate::core::accounts::state::{self, AccountState};
use crate::core::accounts::sticky;
use crate::core::auth::auth_json::{ChatgptTokens, missing_credentials};
use crate::core::auth::token::{self, Availability};
use crate::core::error::{ApiError, Code};
use crate::core::metrics::{Metric, Owner, RouteKind};
use crate::core::port::Port;
use crate::core::translate::response::upstream_error::{LimitHeaders, Window};
use crate::core::translate::response::usage::Usage;
use crate::core::vm::VmState;

/// Where one request (or attempt) goes.
#[derive(Debug, PartialEq)]
pub enum Pick {
    /// Send it with this account's tokens, of this generation.
    Use {
        index: usize,
        tokens: ChatgptTokens,
        generation: u64,
    },
    /// Park it until this account's refresh lands.
    Wait(usize),
    /// Answer with this error (no account can serve).
    Refuse(ApiError),
}

/// Chooses the account for a request of conversation `conversation` (the key the wrapper
/// derives; `None` when it is not known yet).
pub fn pick(vm: &VmState, port: &dyn Port, conversation: Option<&str>) -> Pick {
    let now = port.now();
    if !vm.is_pool() {
        let record = vm.tokens.read(port);
        return match token::for_request(record.as_ref(), now) {
            Ok(Some(tokens)) => Pick::Use {
                index: 0,
                tokens: tokens.clone(),
                generation: record.as_ref().map_or(0, |r| r.generation),
            },
            Ok(None) => Pick::Wait(0),
            Err(error) => Pick::Refuse(error),
        };
    }
    let conversation = conversation.filter(|c| !c.is_empty());
    let turn = vm.turn.get();
    vm.turn.set(turn.wrapping_add(1));
    pick_among(vm, port, conversation, turn)
}

fn pick_among(vm: &VmState, port: &dyn Port, conversation: Option<&str>, turn: u64) -> Pick {
    let now = port.now();
    let records: Vec<_> = vm.accounts().map(|a| a.tokens.read(port)).collect();
    let candidates: Vec<Candidate> = records
        .iter()
        .zip(&vm.states)
        .map(|(record, state)| Candidate::of(record.as_ref(), &state.read(port), now))
        .collect();
    let remembered = conversation
        .and_then(|c| sticky::lookup(port, c))
        .and_then(|label| vm.index_of(&label));
    match choice::decide(&candidates, remembered, turn) {
        Choice::Use(index) => {
            let Some(record) = records.get(index).and_then(Option::as_ref) else {
                return Pick::Refuse(missing_credentials());
            };
            let Availability::Usable(tokens) = record.availability(now) else {
                return Pick::Wait(index);
            };
            if let (Some(conversation), Some(account)) = (conversation, vm.account(index)) {
                sticky::remember(port, conversation, account.label, now);
            }
            Pick::Use {
                index,
                tokens: tokens.clone(),
                generation: record.generation,
            }
        }
        Choice::Wait(index) => Pick::Wait(index),
        Choice::AllExhausted { retry_at } => Pick::Refuse(all_exhausted(retry_at, now)),
        Choice::AllFailed => Pick::Refuse(
            records
                .iter()
                .flatten()
                .find_map(|r| match r.availability(now) {
                    Availability::Dead(error) => Some(error),
                    _ => None,
                })
                .unwrap_or_else(missing_credentials),
        ),
    }
}

/// Whether some account can serve (now, or after a refresh), without choosing one: what the
/// main instance checks when the credentials instance upstream picks the account per attempt.
pub fn check(vm: &VmState, port: &dyn Port) -> Result<(), ApiError> {
    if !vm.is_pool() {
        let record = vm.tokens.read(port);
        return token::for_request(record.as_ref(), port.now()).map(|_| ());
    }
    match pick_among(vm, port, None, vm.turn.get()) {
        Pick::Refuse(error) => Err(error),
        _ => Ok(()),
    }
}

/// The 429 when every account is spent: `Retry-After` is the earliest reset.
pub fn all_exhausted(retry_at: u64, now: u64) -> ApiError {
    let mut error = ApiError::of(
        Code::UsageLimitReached,
        "Every ChatGPT account of this wrapper has reached its usage limit. Retry after Retry-After seconds, when the first of them resets, or add another account.",
    )
    .with_retry_after(Some(retry_at.saturating_sub(now).max(1)));
    error.resets_at = Some(retry_at);
    error
}

/// Portable mode's answer once the account a request used hit its limit and another can
/// serve: nothing can send the request again inside the proxy, so the client is told to
/// retry at once (a 503 with `Retry-After`, which the OpenAI SDKs retry on their own; a 429
/// would read as "this whole service is limited" and make clients back off).
pub fn switched() -> ApiError {
    ApiError::of(
        Code::AccountSwitched,
        "The ChatGPT account this request used has reached its usage limit; the wrapper moved to another account. Retry the request now.",
    )
    .with_retry_after(Some(1))
}

/// A usage-limit answer (or a 429 in a pool) on the account at `index`: out until its reset.
/// Returns true when another account can serve right now.
pub fn limited(
    vm: &VmState,
    port: &dyn Port,
    index: usize,
    limits: &LimitHeaders,
    body_resets_at: Option<u64>,
) -> bool {
    let now = port.now();
    let windows = limits.windows(now);
    let until = state::exhausted_until(body_resets_at, &windows, limits.retry_after(now), now);
    let Some(account) = vm.account(index) else {
        return false;
    };
    let Some(store) = vm.states.get(index) else {
        return false;
    };
    let mut changed = false;
    store.update(port, |s| {
        take_windows(s, &windows);
        changed = s.exhausted_until < until;
        s.exhausted_until = s.exhausted_until.max(until);
        s.updated_at = now;
        true
    });
    if changed {
        info!(
            "codex filter: account {} reached its usage limit; out until {until} ({}s)",
            account.label,
            until.saturating_sub(now)
        );
        port.metric_for(Owner::Account(account.label), Metric::UsageLimitHit);
        port.metric_for(Owner::Account(account.label), Metric::Exhausted(true));
    }
    any_ready(vm, port, now)
}

fn any_ready(vm: &VmState, port: &dyn Port, now: u64) -> bool {
    vm.accounts().zip(&vm.states).any(|(account, store)| {
        let record = account.tokens.read(port);
        Candidate::of(record.as_ref(), &store.read(port), now).status == choice::Status::Ready
    })
}

fn take_windows(s: &mut AccountState, windows: &[Window; 2]) -> bool {
    let [primary, secondary] = windows;
    let mut changed = false;
    for (slot, window) in [(&mut s.primary, primary), (&mut s.secondary, secondary)] {
        if window.used_percent.is_some() || window.resets_at.is_some() {
            let next = (*window).into();
            changed |= *slot != next;
            *slot = next;
        }
    }
    changed
}

/// The windows an answer of the account at `index` reported (pools only: one login keeps
/// its global gauges alone).
pub fn observed(vm: &VmState, port: &dyn Port, index: usize, windows: &[Window; 2]) {
    let Some(account) = vm.account(index) else {
        return;
    };
    port.metric_for(Owner::Account(account.label), Metric::RateLimits(*windows));
    if !vm.is_pool() {
        return;
    }
    let now = port.now();
    if let Some(store) = vm.states.get(index) {
        store.update(port, |s| {
            let changed = take_windows(s, windows);
            if changed {
                s.updated_at = now;
            }
            changed
        });
    }
}

/// A request the account at `index` served ended: its counts (in shared data on the VM's
/// next tick, see [`crate::core::accounts::state::Served`]).
pub fn served(
    vm: &VmState,
    port: &dyn Port,
    index: usize,
    route: RouteKind,
    status: u16,
    usage: Option<&Usage>,
) {
    let Some(account) = vm.account(index) else {
        return;
    };
    let owner = Owner::Account(account.label);
    port.metric_for(owner, Metric::Request { route, status });
    if let Some(usage) = usage {
        port.metric_for(owner, Metric::Tokens(*usage));
    }
    if let Some(store) = vm.states.get(index) {
        store.count(
            usage.map_or(0, |u| u.prompt_tokens),
            usage.map_or(0, |u| u.completion_tokens),
        );
    }
}

/// The account a response header names (the credentials instance's label), if any.
pub fn index_named(vm: &VmState, label: Option<&str>) -> Option<usize> {
    label.and_then(|l| vm.index_of(l.trim()))
}

/// Logs the pool at start-up (labels only).
pub fn log_pool(vm: &VmState) {
    if vm.is_pool() {
        let labels: Vec<&str> = vm.accounts().map(|a| a.label).collect();
        info!(
            "codex filter: {} ChatGPT accounts in the pool: {}",
            labels.len(),
            labels.join(", ")
        );
    }
}
