//! An upstream's error answer (status, rate-limit headers, body) → the client's error.
//!
//! Input: the status on the first line, `name: value` header lines, a blank line, the body.
//!
//! * never a panic, whatever the body, the headers' numbers or the clock;
//! * the client gets a 4xx or 5xx with an OpenAI error body;
//! * a usage limit is a 429 `usage_limit_reached`; its reset time is not in the past.

use codex_openai_wrapper::core::translate::response::upstream_error::{LimitHeaders, from_http};
use serde_json::Value;

use crate::engine::{Target, fnv, mix};

pub const TARGET: Target = Target {
    name: "upstream_error",
    seeds: Vec::new,
    dictionary: DICTIONARY,
    check,
    mutate: None,
    max_len: 32 * 1024,
};

const DICTIONARY: &[&str] = &[
    "\nretry-after: ",
    "\nx-codex-primary-used-percent: 100",
    "\nx-codex-primary-reset-at: ",
    "\nx-codex-primary-reset-after-seconds: ",
    "\nx-codex-secondary-used-percent: ",
    "\nx-codex-secondary-reset-at: ",
    "\nx-codex-secondary-reset-after-seconds: ",
    r#""error":"#,
    r#""type":"usage_limit_reached""#,
    r#""code":"#,
    r#""message":"#,
    r#""detail":"#,
    r#""param":"#,
    r#""resets_at":"#,
    r#""resets_in_seconds":"#,
    "token_expired",
    "server_is_overloaded",
    "context_length_exceeded",
    "Please try again in 11.054s",
    "<!DOCTYPE html><html><title>Just a moment...</title>",
    "1e308",
    "-1e308",
    "NaN",
];

/// Clock values the mapping must cope with, the edges included.
const CLOCKS: [u64; 3] = [0, 1_766_361_600, u64::MAX];

pub fn check(data: &[u8]) -> u64 {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &b""[..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.lines();
    let status: u16 = lines.next().and_then(|l| l.trim().parse().ok()).unwrap_or(500);
    let pairs: Vec<(String, String)> = lines
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_ascii_lowercase(), value.trim().to_string()))
        })
        .collect();
    let headers = LimitHeaders::from_pairs(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let mut signature = Vec::new();
    for now in CLOCKS {
        let _ = headers.windows(now);
        let _ = headers.retry_after(now);
        let error = from_http(status, body, &headers, now);
        assert!(
            (400..=599).contains(&error.status),
            "HTTP {status} became {}",
            error.status
        );
        let value: Value =
            serde_json::from_slice(&error.body()).unwrap_or_else(|e| panic!("error body: {e}"));
        let object = value["error"]
            .as_object()
            .unwrap_or_else(|| panic!("not an OpenAI error: {value}"));
        for field in ["message", "type", "param", "code"] {
            assert!(object.contains_key(field), "no {field:?} in {value}");
        }
        assert!(
            object["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{value}"
        );
        if error.code_str() == Some("usage_limit_reached") {
            assert_eq!(error.status, 429, "a usage limit that is not a 429");
        }
        if let Some(at) = error.resets_at {
            assert!(at >= now, "resets at {at}, before now ({now})");
        }
        signature.push(mix(&[
            u64::from(error.status),
            fnv(object["type"].to_string().as_bytes()),
        ]));
    }
    mix(&signature)
}
