//! With `TOKEN_STORE=etcd`, Envoy replicas share each pool account's exhaustion mark and usage
//! windows through `<key>/accounts/<label>/state` (next to the account's token record at
//! `<key>/accounts/<label>`): every [`SYNC_SECONDS`] each VM reads every account's entry,
//! takes a newer one into shared data, and writes its own when it is the newer (newest
//! `updated_at` wins; counts stay per replica).

use log::warn;

use crate::core::accounts::state::AccountState;
use crate::core::auth::{etcd, etcd_call};
use crate::core::port::Port;
use crate::core::vm::VmState;

/// How often each VM exchanges the accounts' state with etcd.
pub const SYNC_SECONDS: u64 = 2;
const CALL_TIMEOUT_MS: u64 = 5_000;
/// An answer this much past its call's timeout will not come.
const GIVE_UP_SECONDS: u64 = 10;

enum Purpose {
    Read(usize),
    Write,
}

/// One VM's share of the replicas' exchange.
#[derive(Default)]
pub struct StateSync {
    next_at: u64,
    calls: Vec<(u32, Purpose, u64)>,
}

/// The etcd key of an account's shared state.
pub fn state_key(base: &str, label: &str) -> String {
    format!("{base}/accounts/{label}/state")
}

impl StateSync {
    /// Only a pool with etcd needs one.
    pub fn for_vm(vm: &VmState) -> Option<Self> {
        (vm.is_pool() && vm.config.etcd.is_some()).then(Self::default)
    }

    /// Reads every account's entry once per period (one exchange at a time).
    pub fn tick(&mut self, vm: &VmState, port: &dyn Port) {
        let now = port.now();
        self.calls.retain(|(_, _, give_up)| *give_up > now);
        if now < self.next_at || !self.calls.is_empty() {
            return;
        }
        self.next_at = now.saturating_add(SYNC_SECONDS);
        let Some((_, base)) = &vm.config.etcd else {
            return;
        };
        for account in vm.accounts() {
            let body = etcd::range_body(&state_key(base, account.label));
            self.send(vm, port, etcd::RANGE_PATH, body, Purpose::Read(account.index));
        }
    }

    fn send(&mut self, vm: &VmState, port: &dyn Port, path: &str, body: Vec<u8>, purpose: Purpose) {
        let Some((endpoint, _)) = &vm.config.etcd else {
            return;
        };
        let call = etcd_call::call(&vm.config.clusters.etcd, endpoint, path, body, CALL_TIMEOUT_MS);
        if let Some(token) = port.dispatch(&call) {
            let give_up = port.now().saturating_add(GIVE_UP_SECONDS);
            self.calls.push((token, purpose, give_up));
        }
    }

    /// The answer to call `token`; false when it is not one of this machine's.
    pub fn answered(
        &mut self,
        vm: &VmState,
        port: &dyn Port,
        token: u32,
        status: Option<u16>,
        body: &[u8],
    ) -> bool {
        let Some(at) = self.calls.iter().position(|(t, _, _)| *t == token) else {
            return false;
        };
        let (_, purpose, _) = self.calls.swap_remove(at);
        let Purpose::Read(index) = purpose else {
            return true;
        };
        let remote = match etcd::parse_value(status, body) {
            Ok(value) => value.and_then(|bytes| serde_json::from_slice::<AccountState>(&bytes).ok()),
            Err(problem) => {
                warn!("codex filter: sharing the accounts' state through etcd: {problem}");
                return true;
            }
        };
        let (Some(store), Some(account), Some((_, base))) =
            (vm.states.get(index), vm.account(index), &vm.config.etcd)
        else {
            return true;
        };
        if let Some(remote) = &remote {
            store.update(port, |local| {
                let before = local.updated_at;
                local.merge_shared(remote);
                local.updated_at != before
            });
        }
        let local = store.read(port);
        let remote_at = remote.as_ref().map_or(0, |r| r.updated_at);
        if local.updated_at > remote_at {
            let shared = AccountState {
                requests: 0,
                input_tokens: 0,
                output_tokens: 0,
                ..local
            };
            if let Ok(bytes) = serde_json::to_vec(&shared) {
                let body = etcd::put_body(&state_key(base, account.label), &bytes);
                self.send(vm, port, etcd::PUT_PATH, body, Purpose::Write);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::flow::request::tests::vm_with;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    fn pool_auth() -> String {
        let doc = crate::core::auth::auth_json::tests::auth_json(2_000_000_000, true);
        let mut a: serde_json::Value = serde_json::from_str(&doc).unwrap();
        let mut b = a.clone();
        a["label"] = "a".into();
        b["label"] = "b".into();
        serde_json::json!([a, b]).to_string()
    }

    fn range_answer(state: Option<&AccountState>) -> Vec<u8> {
        let kvs: Vec<serde_json::Value> = state
            .map(|s| serde_json::json!({"value": STANDARD.encode(serde_json::to_vec(s).unwrap()), "mod_revision": "3"}))
            .into_iter()
            .collect();
        serde_json::json!({"kvs": kvs}).to_string().into_bytes()
    }

    #[test]
    fn a_newer_remote_mark_is_taken_and_a_newer_local_one_is_written() {
        let auth = pool_auth();
        let v = vm_with(&[
            ("OPENAI_CODEX_AUTH", auth.as_str()),
            ("TOKEN_STORE", "etcd"),
            ("ETCD_ENDPOINT", "http://127.0.0.1:2379"),
        ]);
        let (vm, port) = (&v.vm, &v.port);
        let now = port.now();
        let mut sync = StateSync::for_vm(vm).unwrap();
        sync.tick(vm, port);
        let calls = port.take_dispatched();
        assert_eq!(calls.len(), 2, "one read per account");
        // Account a: another replica marked it. Account b: this one did, later than etcd.
        let theirs = AccountState {
            exhausted_until: now + 300,
            updated_at: now,
            ..AccountState::default()
        };
        vm.states[1].update(port, |s| {
            s.exhausted_until = now + 100;
            s.updated_at = now + 1;
            true
        });
        assert!(sync.answered(vm, port, calls[0].0, Some(200), &range_answer(Some(&theirs))));
        assert!(vm.states[0].read(port).exhausted(now + 299));
        assert!(port.take_dispatched().is_empty(), "nothing newer to write for a");
        assert!(sync.answered(vm, port, calls[1].0, Some(200), &range_answer(None)));
        let written = port.take_dispatched();
        assert_eq!(written.len(), 1);
        assert_eq!(written[0].1.headers[1].1, etcd::PUT_PATH);
        let body: serde_json::Value = serde_json::from_slice(written[0].1.body.as_ref().unwrap()).unwrap();
        let key = String::from_utf8(STANDARD.decode(body["key"].as_str().unwrap()).unwrap()).unwrap();
        assert!(key.ends_with("/accounts/b/state"), "{key}");
        // Not again before the period is over.
        sync.tick(vm, port);
        assert!(port.take_dispatched().is_empty());
    }

    #[test]
    fn one_login_or_no_store_needs_no_exchange() {
        let v = vm_with(&[
            ("TOKEN_STORE", "etcd"),
            ("ETCD_ENDPOINT", "http://127.0.0.1:2379"),
        ]);
        assert!(StateSync::for_vm(&v.vm).is_none());
        let auth = pool_auth();
        let v = vm_with(&[("OPENAI_CODEX_AUTH", auth.as_str())]);
        assert!(StateSync::for_vm(&v.vm).is_none());
    }
}
