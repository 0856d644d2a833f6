//! The accounts' members of `GET /v1/usage`: per account its state, windows, reset times and
//! counts (shared by every VM, plus what this VM has not shared yet), and the pool's totals. Labels only: no token, no e-mail.

use serde_json::{Value, json};

use crate::core::accounts::choice::{Candidate, Status};
use crate::core::accounts::state::WindowState;
use crate::core::port::Port;
use crate::core::vm::VmState;

fn window(w: &WindowState, now: u64) -> Value {
    let current = w.resets_at.is_none_or(|at| at > now);
    json!({
        "used_percent": if current { w.used_percent } else { w.used_percent.map(|_| 0) },
        "resets_at": w.resets_at.filter(|_| current),
    })
}

/// `accounts` and `pool`.
pub fn members(vm: &VmState, port: &dyn Port, now: u64) -> (Value, Value) {
    let mut accounts = Vec::new();
    let (mut usable, mut exhausted, mut failed) = (0u64, 0u64, 0u64);
    let mut next_reset: Option<u64> = None;
    for (account, store) in vm.accounts().zip(&vm.states) {
        let state = store.read_counted(port);
        let record = account.tokens.read(port);
        let status = Candidate::of(record.as_ref(), &state, now).status;
        match status {
            Status::Ready => usable = usable.saturating_add(1),
            Status::Exhausted { until } => {
                exhausted = exhausted.saturating_add(1);
                next_reset = Some(next_reset.map_or(until, |n| n.min(until)));
            }
            Status::Failed => failed = failed.saturating_add(1),
            Status::Refreshing => {}
        }
        accounts.push(json!({
            "label": account.label,
            "state": status.name(),
            "primary": window(&state.primary, now),
            "secondary": window(&state.secondary, now),
            "requests": state.requests,
            "input_tokens": state.input_tokens,
            "output_tokens": state.output_tokens,
        }));
    }
    let pool = json!({
        "accounts": accounts.len(),
        "usable": usable,
        "exhausted": exhausted,
        "failed": failed,
        "next_reset_at": next_reset,
    });
    (Value::Array(accounts), pool)
}
