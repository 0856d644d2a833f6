//! The outbound call to etcd's v3 JSON gateway, shared by every machine that talks to etcd
//! (the token store, the accounts' exchange, the keys' counters). Apart from `etcd.rs`, whose
//! request and answer formats the settings also name, so that it stays free of the port.

use crate::core::config::upstream_url::UpstreamUrl;
use crate::core::port::Dispatch;

/// One call to etcd's v3 JSON gateway (`path` one of `etcd`'s `*_PATH`s) through `cluster`.
pub fn call(cluster: &str, endpoint: &UpstreamUrl, path: &str, body: Vec<u8>, timeout_ms: u64) -> Dispatch {
    Dispatch {
        cluster: cluster.to_string(),
        headers: vec![
            (":method", "POST".into()),
            (":path", path.to_string()),
            (":authority", endpoint.host.clone()),
            ("content-type", "application/json".into()),
        ],
        credentials: Vec::new(),
        body: Some(body),
        timeout_ms,
    }
}
