//! `GET /v1/usage`: what the wrapper knows about its own use, answered locally (never
//! forwarded) behind the key gate; `USAGE_ENDPOINT=false` hides the route. The calling key's
//! own counts and what its limits have left, every key's for an admin key, and the ChatGPT
//! accounts' windows and states ([`crate::core::accounts::report`]). No secret is in it.

use serde::Serialize;
use serde_json::Value;

use crate::core::accounts::report;
use crate::core::config::Config;
use crate::core::keys::counters::WindowUsage;
use crate::core::keys::local::LocalCounts;
use crate::core::keys::{KeyEntry, KeyId};
use crate::core::port::Port;
use crate::core::vm::VmState;

/// The answer's body.
#[derive(Debug, Serialize)]
pub struct UsageBody {
    pub object: &'static str,
    /// The calling key; `null` while the key gate is open.
    pub key: Option<KeyUsage>,
    /// Every key, for an admin key only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<KeyUsage>>,
    /// The ChatGPT accounts and the pool's totals, for whoever [`sees_everything`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accounts: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<Value>,
}

/// One key's counters. Totals count since the counters began (Envoy's start, or the etcd
/// record with `TOKEN_STORE=etcd`).
#[derive(Debug, Serialize)]
pub struct KeyUsage {
    pub name: String,
    pub admin: bool,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Requests refused for a limit.
    pub rejected: u64,
    pub limits: Limits,
    pub models: Option<Vec<String>>,
    pub routes: Option<Vec<String>>,
}

/// A key's three limit windows.
#[derive(Debug, Serialize)]
pub struct Limits {
    pub requests_per_minute: LimitUsage,
    pub tokens_per_hour: LimitUsage,
    pub tokens_per_day: LimitUsage,
}

/// One rolling window: `limit` and `remaining` are `null` for a window without a limit.
#[derive(Debug, Serialize)]
pub struct LimitUsage {
    pub limit: Option<u64>,
    pub used: u64,
    pub remaining: Option<u64>,
    /// Unix seconds: when the window is free again (at its limit), else when its oldest
    /// counted part leaves it; `null` when it holds nothing.
    pub resets_at: Option<u64>,
}

impl From<&WindowUsage> for LimitUsage {
    fn from(w: &WindowUsage) -> Self {
        Self {
            limit: w.limit,
            used: w.used,
            remaining: w.remaining,
            resets_at: w.resets_at,
        }
    }
}

/// The usage of key `id` (`entry`) now, as this VM sees it: shared data and this VM's counts
/// that wait for its tick, so a client sees its own last request on the same connection.
pub fn key_usage(port: &dyn Port, local: &LocalCounts, id: KeyId, entry: &KeyEntry, now: u64) -> KeyUsage {
    let tally = local.view(port, id, &entry.name);
    let windows = tally.windows(&entry.limits, now);
    let window = |name: &str| {
        windows.iter().find(|w| w.name == name).map_or(
            LimitUsage {
                limit: None,
                used: 0,
                remaining: None,
                resets_at: None,
            },
            LimitUsage::from,
        )
    };
    KeyUsage {
        name: entry.name.clone(),
        admin: entry.admin,
        requests: tally.requests,
        input_tokens: tally.input_tokens,
        output_tokens: tally.output_tokens,
        rejected: tally.rejected,
        limits: Limits {
            requests_per_minute: window("requests_per_minute"),
            tokens_per_hour: window("tokens_per_hour"),
            tokens_per_day: window("tokens_per_day"),
        },
        models: entry.models.clone(),
        routes: entry.routes.clone(),
    }
}

/// The keys' part of the body for the request that presented `key`; `local` is this VM's
/// counts of `cfg`'s keys.
pub fn body(cfg: &Config, port: &dyn Port, local: &LocalCounts, key: Option<KeyId>, now: u64) -> UsageBody {
    let entry = key.and_then(|id| Some((id, cfg.keys.get(id)?)));
    UsageBody {
        object: "usage",
        key: entry.map(|(id, e)| key_usage(port, local, id, e, now)),
        keys: entry.filter(|(_, e)| e.admin).map(|_| {
            cfg.keys
                .entries
                .iter()
                .enumerate()
                .map(|(id, e)| key_usage(port, local, id, e, now))
                .collect()
        }),
        accounts: None,
        pool: None,
    }
}

/// Whether the request that presented `key` may see the whole deployment's parts of the
/// answer (the accounts): an admin key when the keys file has one, else any key the gate let in.
pub fn sees_everything(cfg: &Config, key: Option<KeyId>) -> bool {
    !cfg.keys.has_admin() || key.and_then(|id| cfg.keys.get(id)).is_some_and(|e| e.admin)
}

/// The whole answer as JSON bytes: [`body`], and the accounts with a ChatGPT upstream.
pub fn answer(vm: &VmState, port: &dyn Port, key: Option<KeyId>, now: u64) -> Vec<u8> {
    let cfg = &vm.config;
    let mut usage = body(cfg, port, &vm.key_counts, key, now);
    if cfg.auth.is_chatgpt() && sees_everything(cfg, key) {
        let (accounts, pool) = report::members(vm, port, now);
        usage.accounts = Some(accounts);
        usage.pool = Some(pool);
    }
    serde_json::to_vec(&usage).unwrap_or_else(|_| br#"{"object":"usage","key":null}"#.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::keys::counters::{add_tokens, admit};
    use crate::core::port::{MemoryPort, SharedMemory};
    use serde_json::{Value, json};

    fn config(keys: &str) -> Config {
        let keys = keys.to_string();
        Config::load(&move |name: &str| (name == "CLIENT_KEYS").then(|| keys.clone())).unwrap()
    }

    fn body_json(cfg: &Config, port: &MemoryPort, key: Option<KeyId>, now: u64) -> Vec<u8> {
        let local = LocalCounts::for_keys(&cfg.keys);
        serde_json::to_vec(&body(cfg, port, &local, key, now)).unwrap()
    }

    #[test]
    fn own_counts_and_every_key_for_an_admin() {
        let cfg = config(
            r#"[{"name": "ops", "key": "sk-ops", "admin": true},
                {"name": "ci", "key": "sk-ci", "requests_per_minute": 5, "tokens_per_day": 100, "routes": ["/v1/responses"]}]"#,
        );
        let shared = SharedMemory::at(7200);
        let port = MemoryPort::new(&shared);
        let ci = &cfg.keys.entries[1];
        admit(&port, ci, 7200, false).unwrap();
        admit(&port, ci, 7201, false).unwrap();
        add_tokens(&port, "ci", 30, 12, 7201, false);
        let mine: Value = serde_json::from_slice(&body_json(&cfg, &port, Some(1), 7210)).unwrap();
        assert_eq!(
            mine,
            json!({"object": "usage", "key": {
            "name": "ci", "admin": false, "requests": 2, "input_tokens": 30, "output_tokens": 12,
            "rejected": 0, "models": null, "routes": ["/v1/responses"],
            "limits": {
                "requests_per_minute": {"limit": 5, "used": 2, "remaining": 3, "resets_at": 7260},
                "tokens_per_hour": {"limit": null, "used": 42, "remaining": null, "resets_at": 10800},
                "tokens_per_day": {"limit": 100, "used": 42, "remaining": 58, "resets_at": 93600}
            }}})
        );
        let admin: Value = serde_json::from_slice(&body_json(&cfg, &port, Some(0), 7210)).unwrap();
        assert_eq!(admin["key"]["name"], "ops");
        let names: Vec<&str> = admin["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["ops", "ci"]);
        assert_eq!(admin["keys"][1]["requests"], 2);
        assert!(sees_everything(&cfg, Some(0)) && !sees_everything(&cfg, Some(1)));
        let no_admin = config(r#"[{"name": "ci", "key": "sk-ci"}]"#);
        assert!(sees_everything(&no_admin, Some(0)));
        let open: Value = serde_json::from_slice(&body_json(&config("[]"), &port, None, 0)).unwrap();
        assert_eq!(open, json!({"object": "usage", "key": null}));
    }
}
