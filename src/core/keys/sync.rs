//! With `TOKEN_STORE=etcd`, the keys' counters are shared by Envoy replicas: every few seconds
//! one VM per replica (under a lease in shared data) reads each key's record in etcd
//! (`<ETCD_KEY>/keys/<name>`), adds what this replica counted since its last flush, writes it
//! back with a compare-and-swap on the key's revision, and makes etcd's counts (plus whatever
//! arrived meanwhile) the view every VM checks limits against. So the counts a limit reads are
//! exact within a replica (the others reach its shared data within a VM's tick, see
//! [`crate::core::keys::local`]) and reach the other replicas within one flush interval.

use log::warn;
use serde::{Deserialize, Serialize};

use crate::core::auth::{etcd, etcd_call};
use crate::core::config::upstream_url::UpstreamUrl;
use crate::core::config::{Config, FilterRole};
use crate::core::keys::counters::{self, Tally};
use crate::core::port::Port;

/// Seconds between two flushes of every key.
pub const FLUSH_SECONDS: u64 = 5;
const LEASE_KEY: &str = "codex_openai_wrapper.keys_sync_lease.v1";
const CALL_TIMEOUT_MS: u64 = 5_000;
/// Conflicting writes in a row (other replicas flushing the same key) before it waits for the
/// next round.
const MAX_CONFLICTS: u8 = 3;

#[derive(Debug, Serialize, Deserialize)]
struct Lease {
    holder: u64,
    until: u64,
}

enum Call {
    Read {
        token: u32,
        name: String,
    },
    Write {
        token: u32,
        name: String,
        flushed: Box<Tally>,
        merged: Box<Tally>,
        conflicts: u8,
    },
}

/// The flush machine of one VM.
pub struct KeysSync {
    me: u64,
    endpoint: UpstreamUrl,
    /// `ETCD_KEY`: the keys' records live under `<key>/keys/`.
    prefix: String,
    cluster: String,
    names: Vec<String>,
    next_at: u64,
    queue: Vec<String>,
    call: Option<Call>,
}

impl KeysSync {
    /// A machine for the main instance with etcd and at least one client key.
    pub fn for_config(config: &Config, me: u64) -> Option<Self> {
        let (endpoint, key) = config.etcd.as_ref()?;
        if config.keys.entries.is_empty() || config.role != FilterRole::Main {
            return None;
        }
        Some(Self {
            me,
            endpoint: endpoint.clone(),
            prefix: key.trim_end_matches('/').to_string(),
            cluster: config.clusters.etcd.clone(),
            names: config.keys.entries.iter().map(|e| e.name.clone()).collect(),
            next_at: 0,
            queue: Vec::new(),
            call: None,
        })
    }

    fn etcd_key(&self, name: &str) -> String {
        format!("{}/keys/{name}", self.prefix)
    }

    /// Starts a round when one is due and this VM holds the lease.
    pub fn tick(&mut self, port: &dyn Port) {
        let now = port.now();
        if self.call.is_some() || now < self.next_at || !self.take_lease(port, now) {
            return;
        }
        self.next_at = now.saturating_add(FLUSH_SECONDS);
        self.queue = self.names.iter().rev().cloned().collect();
        self.next(port);
    }

    fn take_lease(&self, port: &dyn Port, now: u64) -> bool {
        let current = port.shared_get(LEASE_KEY);
        let (lease, cas) = match &current {
            Some((bytes, cas)) => (serde_json::from_slice::<Lease>(bytes).ok(), Some(*cas)),
            None => (None, None),
        };
        if lease.is_some_and(|l| l.holder != self.me && l.until > now) {
            return false;
        }
        let mine = Lease {
            holder: self.me,
            until: now.saturating_add(FLUSH_SECONDS.saturating_mul(3)),
        };
        let Ok(bytes) = serde_json::to_vec(&mine) else {
            return false;
        };
        port.shared_set(LEASE_KEY, &bytes, cas).is_ok()
    }

    fn next(&mut self, port: &dyn Port) {
        while let Some(name) = self.queue.pop() {
            let body = etcd::range_body(&self.etcd_key(&name));
            if let Some(token) = self.send(port, etcd::RANGE_PATH, body) {
                self.call = Some(Call::Read { token, name });
                return;
            }
        }
    }

    fn send(&self, port: &dyn Port, path: &str, body: Vec<u8>) -> Option<u32> {
        let call = etcd_call::call(&self.cluster, &self.endpoint, path, body, CALL_TIMEOUT_MS);
        port.dispatch(&call)
    }

    /// The answer to call `token`; false when it is not this machine's.
    pub fn answered(&mut self, port: &dyn Port, token: u32, status: Option<u16>, body: &[u8]) -> bool {
        let ours = match &self.call {
            Some(Call::Read { token: t, .. } | Call::Write { token: t, .. }) => *t == token,
            None => false,
        };
        if !ours {
            return false;
        }
        match self.call.take() {
            Some(Call::Read { name, .. }) => match etcd::parse_range_raw(status, body) {
                Ok(snapshot) => self.merge(port, name, snapshot, 0),
                Err(problem) => self.give_up(port, &name, &problem),
            },
            Some(Call::Write {
                name,
                flushed,
                merged,
                conflicts,
                ..
            }) => match etcd::parse_txn_raw(status, body) {
                Ok(Ok(_)) => {
                    counters::settle(port, &name, &flushed, &merged, port.now());
                    self.next(port);
                }
                Ok(Err(current)) if conflicts < MAX_CONFLICTS => {
                    self.merge(port, name, current, conflicts.saturating_add(1));
                }
                Ok(Err(_)) => self.next(port),
                Err(problem) => self.give_up(port, &name, &problem),
            },
            None => {}
        }
        true
    }

    /// etcd's record of `name` is `snapshot`: write it back with this replica's unflushed
    /// counts added, or, with nothing to add, adopt it as the view.
    fn merge(&mut self, port: &dyn Port, name: String, snapshot: etcd::RawSnapshot, conflicts: u8) {
        let now = port.now();
        let remote = match snapshot.value.as_deref().map(serde_json::from_slice::<Tally>) {
            None => Tally::default(),
            Some(Ok(tally)) => tally,
            Some(Err(_)) => {
                return self.give_up(port, &name, "the stored value is not a key's counters");
            }
        };
        let flushed = counters::read(port, &name)
            .pending
            .map(|p| *p)
            .unwrap_or_default();
        let mut merged = remote;
        merged.pending = None;
        merged.absorb(&flushed);
        merged.prune(now);
        if flushed.is_empty() {
            counters::settle(port, &name, &flushed, &merged, now);
            return self.next(port);
        }
        let Ok(value) = serde_json::to_vec(&merged) else {
            return self.next(port);
        };
        let body = etcd::txn_put_body(&self.etcd_key(&name), snapshot.mod_revision, &value);
        match self.send(port, etcd::TXN_PATH, body) {
            Some(token) => {
                self.call = Some(Call::Write {
                    token,
                    name,
                    flushed: Box::new(flushed),
                    merged: Box::new(merged),
                    conflicts,
                })
            }
            None => self.next(port),
        }
    }

    fn give_up(&mut self, port: &dyn Port, name: &str, problem: &str) {
        warn!(
            "codex filter: key {name}'s counters were not shared through etcd ({problem}); retrying in {FLUSH_SECONDS} s"
        );
        self.next(port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::keys::counters::{add_tokens, admit, read};
    use crate::core::port::{MemoryPort, SharedMemory};
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde_json::{Value, json};

    fn config() -> Config {
        Config::load(&|name: &str| match name {
            "TOKEN_STORE" => Some("etcd".into()),
            "ETCD_ENDPOINT" => Some("http://127.0.0.1:2379".into()),
            "CLIENT_KEYS" => Some(r#"[{"name": "ci", "key": "sk-ci", "requests_per_minute": 3}]"#.into()),
            _ => None,
        })
        .unwrap()
    }

    fn range_answer(value: Option<&Tally>, revision: u64) -> Vec<u8> {
        let kvs: Vec<Value> = value
            .map(|v| json!({"value": STANDARD.encode(serde_json::to_vec(v).unwrap()), "mod_revision": revision.to_string()}))
            .into_iter()
            .collect();
        serde_json::to_vec(&json!({"kvs": kvs})).unwrap()
    }

    fn sent_value(port: &MemoryPort) -> (u32, Value) {
        let (token, call) = port.take_dispatched().pop().unwrap();
        let body: Value = serde_json::from_slice(call.body.as_deref().unwrap()).unwrap();
        (token, body)
    }

    #[test]
    fn a_flush_adds_this_replicas_counts_to_etcd_and_adopts_the_sum() {
        let cfg = config();
        let shared = SharedMemory::at(1_000);
        let port = MemoryPort::new(&shared);
        let mut sync = KeysSync::for_config(&cfg, 1).unwrap();
        let key = &cfg.keys.entries[0];
        admit(&port, key, 1_000, true).unwrap();
        add_tokens(&port, "ci", 10, 5, 1_000, true);
        sync.tick(&port);
        let (token, read_call) = sent_value(&port);
        assert_eq!(
            read_call["key"],
            STANDARD.encode("/codex-openai-wrapper/chatgpt-tokens/keys/ci")
        );
        // Another replica has counted two requests already.
        let theirs = Tally {
            requests: 2,
            minute: vec![(999, 2)],
            ..Tally::default()
        };
        assert!(sync.answered(&port, token, Some(200), &range_answer(Some(&theirs), 7)));
        let (token, txn) = sent_value(&port);
        assert_eq!(txn["compare"][0]["mod_revision"], "7");
        let written: Tally = serde_json::from_slice(
            &STANDARD
                .decode(txn["success"][0]["request_put"]["value"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            (written.requests, written.input_tokens, written.pending.is_none()),
            (3, 10, true)
        );
        // A request counted while the write was out stays pending for the next flush.
        admit(&port, key, 1_001, true).unwrap();
        assert!(sync.answered(
            &port,
            token,
            Some(200),
            br#"{"succeeded": true, "header": {"revision": "8"}}"#
        ));
        let view = read(&port, "ci");
        assert_eq!(view.requests, 4, "etcd's three and the one since");
        assert_eq!(view.pending.as_ref().map(|p| p.requests), Some(1));
        // The view limits this replica: 4 of 3 requests per minute.
        assert!(admit(&port, key, 1_002, true).is_err());
    }

    #[test]
    fn a_conflict_merges_again_and_an_unreachable_etcd_keeps_the_counts() {
        let cfg = config();
        let shared = SharedMemory::at(1_000);
        let port = MemoryPort::new(&shared);
        let mut sync = KeysSync::for_config(&cfg, 1).unwrap();
        admit(&port, &cfg.keys.entries[0], 1_000, true).unwrap();
        sync.tick(&port);
        let (token, _) = sent_value(&port);
        assert!(sync.answered(&port, token, None, b""));
        assert_eq!(
            read(&port, "ci").pending.map(|p| p.requests),
            Some(1),
            "kept for later"
        );
        shared.advance(FLUSH_SECONDS);
        sync.tick(&port);
        let (token, _) = sent_value(&port);
        assert!(sync.answered(&port, token, Some(200), &range_answer(None, 0)));
        let (token, txn) = sent_value(&port);
        assert_eq!(txn["compare"][0]["target"], "CREATE");
        let now_there = Tally {
            requests: 5,
            ..Tally::default()
        };
        let conflict = json!({"succeeded": false, "responses": [{"response_range": {"kvs": [
            {"value": STANDARD.encode(serde_json::to_vec(&now_there).unwrap()), "mod_revision": "3"}]}}]});
        assert!(sync.answered(&port, token, Some(200), &serde_json::to_vec(&conflict).unwrap()));
        let (token, txn) = sent_value(&port);
        assert_eq!(txn["compare"][0]["mod_revision"], "3");
        assert!(sync.answered(&port, token, Some(200), br#"{"succeeded": true}"#));
        let view = read(&port, "ci");
        assert_eq!((view.requests, view.pending.is_none()), (6, true));
        assert!(!sync.answered(&port, 999, Some(200), b""), "not its call");
    }

    #[test]
    fn one_vm_flushes_at_a_time() {
        let cfg = config();
        let shared = SharedMemory::at(1_000);
        let (a, b) = (MemoryPort::new(&shared), MemoryPort::new(&shared));
        let mut first = KeysSync::for_config(&cfg, 1).unwrap();
        let mut second = KeysSync::for_config(&cfg, 2).unwrap();
        first.tick(&a);
        second.tick(&b);
        assert_eq!((a.take_dispatched().len(), b.take_dispatched().len()), (1, 0));
        let memory = Config::load(&|name: &str| (name == "OPENAI_API_KEY").then(|| "k".to_string())).unwrap();
        assert!(
            KeysSync::for_config(&memory, 1).is_none(),
            "no etcd, nothing to share"
        );
    }
}
