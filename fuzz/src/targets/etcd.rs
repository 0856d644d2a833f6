//! The etcd token store's answers (v3 JSON gateway: range and transaction responses) and what
//! the token lifecycle does with the record they hold. Anyone who can write the key controls
//! these bytes.
//!
//! Inputs are gateway answers in which a `value` may be written as the JSON it encodes; the
//! target base64-encodes it, so mutations reach the record and not only its encoding.
//!
//! * never a panic, whatever the body, the status, the record's numbers or the clock;
//! * only HTTP 200 is read;
//! * a stored record read back from the request the filter would write is the same record;
//! * `is_newer` is irreflexive and never true both ways;
//! * a refresh never lowers the generation, a failure's retry time is not in the past, and a
//!   record no refresh can save gives an OpenAI 401.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use codex_openai_wrapper::core::auth::auth_json::ChatgptTokens;
use codex_openai_wrapper::core::auth::etcd::{self, Snapshot, Stored, TxnOutcome};
use codex_openai_wrapper::core::auth::token::{Availability, Grant, RefreshError, TokenRecord, for_request};
use serde_json::Value;

use crate::engine::{Target, fnv, mix};

pub const TARGET: Target = Target {
    name: "etcd",
    seeds: Vec::new,
    dictionary: DICTIONARY,
    check,
    mutate: None,
    max_len: 32 * 1024,
};

const DICTIONARY: &[&str] = &[
    r#""kvs":"#,
    r#""value":"#,
    r#""mod_revision":"#,
    r#""header":{"revision":"9"}"#,
    r#""succeeded":true"#,
    r#""responses":"#,
    r#""response_range":"#,
    r#""record":"#,
    r#""lock":{"holder":1,"until":18446744073709551615}"#,
    r#""tokens":"#,
    r#""generation":18446744073709551615"#,
    r#""failure":{"permanent":false,"code":"x","message":"m","attempts":4294967295,"retry_at":18446744073709551615}"#,
    r#""expires_at":"#,
    r#""last_refresh":"#,
    r#""stale":true"#,
    r#""store_synced":true"#,
    r#""source":"#,
    "\"18446744073709551616\"",
    "\"-1\"",
    "\"AAAA\"",
];

/// Clock values the lifecycle must cope with, the edges included.
const CLOCKS: [u64; 4] = [0, 1_766_361_600, u64::MAX - 1, u64::MAX];

/// Replaces every non-string `value` with the base64 of its JSON, as the gateway sends it.
fn encode_values(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "value" && !v.is_string() {
                    *v = Value::String(STANDARD.encode(v.to_string()));
                } else {
                    encode_values(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(encode_values),
        _ => {}
    }
}

pub fn check(data: &[u8]) -> u64 {
    let body = match serde_json::from_slice::<Value>(data) {
        Ok(mut value) => {
            encode_values(&mut value);
            value.to_string().into_bytes()
        }
        Err(_) => data.to_vec(),
    };
    let mut signature = Vec::new();
    for status in [Some(500), Some(404), None] {
        assert!(
            etcd::parse_range(status, &body).is_err(),
            "HTTP {status:?} read as a value"
        );
        assert!(
            etcd::parse_txn(status, &body).is_err(),
            "HTTP {status:?} read as a transaction"
        );
    }
    let _ = etcd::parse_range(Some(200), data);
    let _ = etcd::parse_txn(Some(200), data);
    match etcd::parse_range(Some(200), &body) {
        Ok(snapshot) => {
            signature.push(1 + u64::from(snapshot.stored.is_some()));
            signature.push(snapshot_checks(&snapshot));
        }
        Err(message) => signature.push(fnv(message.as_bytes())),
    }
    match etcd::parse_txn(Some(200), &body) {
        Ok(TxnOutcome::Committed(_)) => signature.push(3),
        Ok(TxnOutcome::Conflict(snapshot)) => signature.push(4 ^ snapshot_checks(&snapshot)),
        Err(message) => signature.push(fnv(message.as_bytes()) ^ 5),
    }
    mix(&signature)
}

fn reference() -> TokenRecord {
    let mut tokens =
        ChatgptTokens::from_parts("at-ref".into(), Some("rt-ref".into()), None, Some("acct".into()));
    tokens.last_refresh = Some(1_000);
    TokenRecord::new(tokens, "src".into())
}

fn snapshot_checks(snapshot: &Snapshot) -> u64 {
    for me in [0, 1, u64::MAX] {
        for now in CLOCKS {
            let _ = snapshot.locked_by_other(me, now);
        }
    }
    let Some(stored) = &snapshot.stored else {
        return 0;
    };
    // What the filter would write reads back as the same record.
    for revision in [0, snapshot.mod_revision] {
        let request: Value = serde_json::from_slice(&etcd::txn_body(etcd::DEFAULT_KEY, revision, stored))
            .unwrap_or_else(|e| panic!("the transaction body is not JSON: {e}"));
        let value = request["success"][0]["request_put"]["value"]
            .as_str()
            .unwrap_or_else(|| panic!("no value in {request}"));
        let written = STANDARD
            .decode(value)
            .unwrap_or_else(|e| panic!("the value is not base64: {e}"));
        let back: Stored =
            serde_json::from_slice(&written).unwrap_or_else(|e| panic!("the record does not read back: {e}"));
        assert_eq!(&back, stored, "the record changed on its way to etcd");
    }
    let answer = serde_json::json!({"kvs": [{"value": STANDARD.encode(serde_json::to_vec(stored).unwrap_or_default()),
                                              "mod_revision": snapshot.mod_revision.to_string()}]});
    let again = etcd::parse_range(Some(200), answer.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("a record the filter wrote does not read back: {e}"));
    assert_eq!(&again, snapshot);

    let record = &stored.record;
    let other = reference();
    assert!(!etcd::is_newer(record, record), "a record is newer than itself");
    assert!(
        !(etcd::is_newer(record, &other) && etcd::is_newer(&other, record)),
        "two records each newer than the other"
    );
    lifecycle(record)
}

fn lifecycle(record: &TokenRecord) -> u64 {
    let mut signature = Vec::new();
    for now in CLOCKS {
        match record.availability(now) {
            Availability::Usable(_) => signature.push(1),
            Availability::Wait => signature.push(2),
            Availability::Dead(error) => {
                assert_eq!(error.status, 401);
                let body: Value = serde_json::from_slice(&error.body()).unwrap_or_else(|e| panic!("{e}"));
                assert!(body["error"]["message"].is_string(), "{body}");
                signature.push(3);
            }
        }
        if let Err(error) = for_request(Some(record), now) {
            assert_eq!(error.status, 401);
        }
        signature.push(u64::from(record.refresh_due(now)));
        let grant = Grant {
            access_token: "at-next".into(),
            refresh_token: None,
            id_token: None,
        };
        let next = record.refreshed(grant, now);
        assert!(
            next.generation >= record.generation,
            "a refresh lowered the generation"
        );
        assert_eq!(next.tokens.last_refresh, Some(now));
        let kept = record
            .tokens
            .refresh_token
            .clone()
            .filter(|t| !t.trim().is_empty());
        assert_eq!(
            next.tokens.refresh_token, kept,
            "a grant without one keeps the refresh token"
        );
        let error = RefreshError {
            permanent: now % 2 == 0,
            code: "x".into(),
            message: "m".into(),
        };
        let failed = record.failed(error, now);
        let failure = failed
            .failure
            .as_ref()
            .unwrap_or_else(|| panic!("no failure recorded"));
        assert!(failure.attempts >= 1 && failure.retry_at >= now);
    }
    let mut copy = record.clone();
    let _ = copy.mark_stale(record.generation);
    let _ = copy.mark_stale(record.generation.wrapping_add(1));
    mix(&signature)
}
