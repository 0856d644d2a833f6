//! The optional token store on etcd (`TOKEN_STORE=etcd`), spoken through etcd's v3 HTTP/JSON
//! gateway: so that rotated refresh tokens survive an Envoy restart and several Envoy
//! replicas sharing one ChatGPT login never spend the same refresh token twice.
//!
//! One key holds the record and, while a replica refreshes, its lock; every write is a
//! transaction that compares the key's `mod_revision`, so two replicas cannot both take the
//! lock or both store a refresh.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::core::auth::token::{Lease, REFRESH_CALL_TIMEOUT_SECONDS, TokenRecord};

/// The key used when `ETCD_KEY` is not set.
pub const DEFAULT_KEY: &str = "/codex-openai-wrapper/chatgpt-tokens";
/// The gateway's read endpoint (POST, body from [`range_body`]).
pub const RANGE_PATH: &str = "/v3/kv/range";
/// The gateway's transaction endpoint (POST, body from [`txn_body`]).
pub const TXN_PATH: &str = "/v3/kv/txn";
/// The gateway's plain write endpoint (POST, body from [`put_body`]).
pub const PUT_PATH: &str = "/v3/kv/put";
/// A replica's refresh lock outlives its OAuth call (so no other replica sends the same refresh
/// token while the answer may still come) but not a crash for long.
pub const LOCK_SECONDS: u64 = REFRESH_CALL_TIMEOUT_SECONDS + 30;

/// What the key holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    pub record: TokenRecord,
    #[serde(default)]
    pub lock: Option<Lease>,
}

/// The key as read: its value (if any) and `mod_revision` (0 when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub stored: Option<Stored>,
    pub mod_revision: u64,
}

impl Snapshot {
    /// Someone else's unexpired lock: they are refreshing right now.
    pub fn locked_by_other(&self, me: u64, now: u64) -> bool {
        self.stored
            .as_ref()
            .and_then(|s| s.lock.as_ref())
            .is_some_and(|l| l.holder != me && l.until > now)
    }
}

#[derive(Serialize)]
struct RangeRequest {
    key: String,
}

/// The JSON body that reads `key` (the gateway wants keys base64-encoded).
pub fn range_body(key: &str) -> Vec<u8> {
    serde_json::to_vec(&RangeRequest {
        key: STANDARD.encode(key),
    })
    .unwrap_or_default()
}

#[derive(Serialize)]
struct PutRequest {
    key: String,
    value: String,
}

/// The JSON body that writes `value` at `key` unconditionally (for state where the newest
/// writer wins, such as a pool's exhaustion marks).
pub fn put_body(key: &str, value: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&PutRequest {
        key: STANDARD.encode(key),
        value: STANDARD.encode(value),
    })
    .unwrap_or_default()
}

/// A [`range_body`] answer read as JSON; `Err` says why not (a loggable reason).
fn range_response(status: Option<u16>, body: &[u8]) -> Result<RangeResponse, String> {
    answered(status)?;
    serde_json::from_slice(body).map_err(|_| "etcd sent an unreadable answer".to_string())
}

/// The raw value of a [`range_body`] answer (`None`: no such key).
pub fn parse_value(status: Option<u16>, body: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let response = range_response(status, body)?;
    match response.kvs.first() {
        None => Ok(None),
        Some(kv) => STANDARD
            .decode(&kv.value)
            .map(Some)
            .map_err(|_| "the stored value is not base64".to_string()),
    }
}

#[derive(Deserialize)]
struct RangeResponse {
    #[serde(default)]
    kvs: Vec<Kv>,
}

#[derive(Deserialize)]
struct Kv {
    #[serde(default)]
    value: String,
    /// int64 values arrive as JSON strings from the gateway.
    #[serde(default)]
    mod_revision: Option<String>,
}

fn snapshot(kvs: &[Kv]) -> Result<Snapshot, String> {
    let raw = raw_snapshot(kvs)?;
    let stored = raw
        .value
        .map(|bytes| {
            serde_json::from_slice(&bytes).map_err(|_| "the stored value is not a token record".to_string())
        })
        .transpose()?;
    Ok(Snapshot {
        stored,
        mod_revision: raw.mod_revision,
    })
}

/// A key as read, for values other than the token record: its bytes (if any) and
/// `mod_revision` (0 when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSnapshot {
    pub value: Option<Vec<u8>>,
    pub mod_revision: u64,
}

fn raw_snapshot(kvs: &[Kv]) -> Result<RawSnapshot, String> {
    let Some(kv) = kvs.first() else {
        return Ok(RawSnapshot {
            value: None,
            mod_revision: 0,
        });
    };
    let bytes = STANDARD
        .decode(&kv.value)
        .map_err(|_| "the stored value is not base64".to_string())?;
    let mod_revision = kv
        .mod_revision
        .as_deref()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    Ok(RawSnapshot {
        value: Some(bytes),
        mod_revision,
    })
}

/// [`parse_range`] for a value of any shape.
pub fn parse_range_raw(status: Option<u16>, body: &[u8]) -> Result<RawSnapshot, String> {
    let response = range_response(status, body)?;
    raw_snapshot(&response.kvs)
}

/// [`parse_txn`] for a value of any shape: `Ok(Ok(revision))` written, `Ok(Err(current))` a
/// conflict and what the key holds now.
pub fn parse_txn_raw(status: Option<u16>, body: &[u8]) -> Result<Result<u64, RawSnapshot>, String> {
    answered(status)?;
    let response: TxnResponse =
        serde_json::from_slice(body).map_err(|_| "etcd sent an unreadable answer".to_string())?;
    if response.succeeded {
        return Ok(Ok(response
            .header
            .and_then(|h| h.revision)
            .and_then(|r| r.parse().ok())
            .unwrap_or(0)));
    }
    let kvs = response
        .responses
        .into_iter()
        .find_map(|r| r.response_range)
        .map(|r| r.kvs)
        .unwrap_or_default();
    raw_snapshot(&kvs).map(Err)
}

fn answered(status: Option<u16>) -> Result<(), String> {
    match status {
        Some(200) => Ok(()),
        Some(other) => Err(format!("etcd answered HTTP {other}")),
        None => Err("etcd could not be reached".to_string()),
    }
}

/// Reads the answer to a [`range_body`] call; `status` is `None` when etcd was not reached.
/// `Err` is a loggable reason: not 200, unreadable JSON, or a value that is not a record.
pub fn parse_range(status: Option<u16>, body: &[u8]) -> Result<Snapshot, String> {
    let response = range_response(status, body)?;
    snapshot(&response.kvs)
}

#[derive(Serialize)]
struct Txn {
    compare: [Compare; 1],
    success: [Op; 1],
    failure: [Op; 1],
}

#[derive(Serialize)]
struct Compare {
    key: String,
    result: &'static str,
    target: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    mod_revision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    create_revision: Option<String>,
}

#[derive(Serialize)]
enum Op {
    #[serde(rename = "request_put")]
    Put { key: String, value: String },
    #[serde(rename = "request_range")]
    Range { key: String },
}

/// Writes `value` only if the key is still at `expected_revision` (0: only if absent); on a
/// conflict the answer carries the key's current value.
pub fn txn_body(key: &str, expected_revision: u64, value: &Stored) -> Vec<u8> {
    txn_put_body(
        key,
        expected_revision,
        &serde_json::to_vec(value).unwrap_or_default(),
    )
}

/// [`txn_body`] for a value of any shape.
pub fn txn_put_body(key: &str, expected_revision: u64, value: &[u8]) -> Vec<u8> {
    let key64 = STANDARD.encode(key);
    let compare = if expected_revision == 0 {
        Compare {
            key: key64.clone(),
            result: "EQUAL",
            target: "CREATE",
            mod_revision: None,
            create_revision: Some("0".into()),
        }
    } else {
        Compare {
            key: key64.clone(),
            result: "EQUAL",
            target: "MOD",
            mod_revision: Some(expected_revision.to_string()),
            create_revision: None,
        }
    };
    let value = STANDARD.encode(value);
    serde_json::to_vec(&Txn {
        compare: [compare],
        success: [Op::Put {
            key: key64.clone(),
            value,
        }],
        failure: [Op::Range { key: key64 }],
    })
    .unwrap_or_default()
}

/// What a [`txn_body`] write came to.
#[derive(Debug, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Written; the key is now at this revision.
    Committed(u64),
    /// Someone wrote first; this is what the key holds now.
    Conflict(Box<Snapshot>),
}

#[derive(Deserialize)]
struct TxnResponse {
    #[serde(default)]
    header: Option<Header>,
    /// Absent when false (proto3 JSON leaves defaults out).
    #[serde(default)]
    succeeded: bool,
    #[serde(default)]
    responses: Vec<TxnOpResponse>,
}

#[derive(Deserialize)]
struct Header {
    #[serde(default)]
    revision: Option<String>,
}

#[derive(Deserialize)]
struct TxnOpResponse {
    #[serde(default)]
    response_range: Option<RangeResponse>,
}

/// Reads the answer to a [`txn_body`] call; `Err` (a loggable reason) as for [`parse_range`].
pub fn parse_txn(status: Option<u16>, body: &[u8]) -> Result<TxnOutcome, String> {
    match status {
        Some(200) => {}
        Some(other) => return Err(format!("etcd answered HTTP {other}")),
        None => return Err("etcd could not be reached".to_string()),
    }
    let response: TxnResponse =
        serde_json::from_slice(body).map_err(|_| "etcd sent an unreadable answer".to_string())?;
    if response.succeeded {
        let revision = response
            .header
            .and_then(|h| h.revision)
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        return Ok(TxnOutcome::Committed(revision));
    }
    let kvs = response
        .responses
        .into_iter()
        .find_map(|r| r.response_range)
        .map(|r| r.kvs)
        .unwrap_or_default();
    snapshot(&kvs).map(|s| TxnOutcome::Conflict(Box::new(s)))
}

/// Whether `candidate` holds a later login or refresh than `current` (and should replace it).
pub fn is_newer(candidate: &TokenRecord, current: &TokenRecord) -> bool {
    if candidate.tokens.refresh_token == current.tokens.refresh_token
        && candidate.tokens.access_token == current.tokens.access_token
    {
        return false;
    }
    let at = |r: &TokenRecord| r.tokens.last_refresh.unwrap_or(0);
    (at(candidate), candidate.generation) > (at(current), current.generation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::auth::auth_json::ChatgptTokens;
    use serde_json::{Value, json};

    fn record(refresh: &str, last_refresh: u64, generation: u64) -> TokenRecord {
        let mut tokens = ChatgptTokens::from_parts(
            format!("at-{refresh}"),
            Some(refresh.into()),
            None,
            Some("acct".into()),
        );
        tokens.last_refresh = Some(last_refresh);
        TokenRecord {
            generation,
            ..TokenRecord::new(tokens, "src".into())
        }
    }

    fn kv(stored: &Stored, revision: u64) -> Value {
        json!({"key": STANDARD.encode(DEFAULT_KEY), "value": STANDARD.encode(serde_json::to_vec(stored).unwrap()), "mod_revision": revision.to_string(), "create_revision": "1", "version": "1"})
    }

    #[test]
    fn range_requests_and_answers() {
        let body: Value = serde_json::from_slice(&range_body("/k")).unwrap();
        assert_eq!(body, json!({"key": "L2s="}));
        let absent = parse_range(Some(200), br#"{"header":{"revision":"3"}}"#).unwrap();
        assert_eq!(
            absent,
            Snapshot {
                stored: None,
                mod_revision: 0
            }
        );
        let stored = Stored {
            record: record("rt_2", 100, 1),
            lock: None,
        };
        let found = parse_range(
            Some(200),
            json!({"header": {}, "kvs": [kv(&stored, 7)], "count": "1"})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            found,
            Snapshot {
                stored: Some(stored),
                mod_revision: 7
            }
        );
        assert!(parse_range(Some(503), b"").is_err());
        assert!(parse_range(None, b"").is_err());
        assert!(parse_range(Some(200), br#"{"kvs":[{"value":"!!"}]}"#).is_err());
    }

    #[test]
    fn transactions_compare_the_revision() {
        let stored = Stored {
            record: record("rt_1", 1, 0),
            lock: Some(Lease { holder: 9, until: 60 }),
        };
        let create: Value = serde_json::from_slice(&txn_body("/k", 0, &stored)).unwrap();
        assert_eq!(
            create["compare"],
            json!([{"key": "L2s=", "result": "EQUAL", "target": "CREATE", "create_revision": "0"}])
        );
        assert_eq!(create["failure"], json!([{"request_range": {"key": "L2s="}}]));
        let put = &create["success"][0]["request_put"];
        let value = STANDARD.decode(put["value"].as_str().unwrap()).unwrap();
        assert_eq!(serde_json::from_slice::<Stored>(&value).unwrap(), stored);
        let update: Value = serde_json::from_slice(&txn_body("/k", 12, &stored)).unwrap();
        assert_eq!(
            update["compare"],
            json!([{"key": "L2s=", "result": "EQUAL", "target": "MOD", "mod_revision": "12"}])
        );

        assert_eq!(
            parse_txn(
                Some(200),
                br#"{"header":{"revision":"13"},"succeeded":true,"responses":[{"response_put":{}}]}"#
            )
            .unwrap(),
            TxnOutcome::Committed(13)
        );
        let theirs = Stored {
            record: record("rt_9", 5, 3),
            lock: None,
        };
        let conflict = json!({"header": {"revision": "14"}, "responses": [{"response_range": {"kvs": [kv(&theirs, 14)]}}]});
        assert_eq!(
            parse_txn(Some(200), conflict.to_string().as_bytes()).unwrap(),
            TxnOutcome::Conflict(Box::new(Snapshot {
                stored: Some(theirs),
                mod_revision: 14
            }))
        );
        assert!(parse_txn(Some(500), b"").is_err());
    }

    #[test]
    fn locks_and_newer_records() {
        let locked = Snapshot {
            stored: Some(Stored {
                record: record("a", 1, 0),
                lock: Some(Lease {
                    holder: 1,
                    until: 100,
                }),
            }),
            mod_revision: 2,
        };
        assert!(locked.locked_by_other(2, 99));
        assert!(!locked.locked_by_other(1, 99), "our own lock");
        assert!(!locked.locked_by_other(2, 100), "expired");
        assert!(is_newer(&record("rt_2", 200, 1), &record("rt_1", 100, 0)));
        assert!(!is_newer(&record("rt_1", 100, 0), &record("rt_2", 200, 1)));
        assert!(
            !is_newer(&record("rt_1", 300, 5), &record("rt_1", 100, 0)),
            "same tokens are not newer"
        );
        assert!(
            is_newer(&record("rt_3", 100, 2), &record("rt_2", 100, 1)),
            "same time, later generation"
        );
    }
}
