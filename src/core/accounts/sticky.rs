//! Which account each recent conversation used, shared by every VM, so a conversation
//! keeps its account (and the backend's prompt cache keeps hitting). Bounded: the table is
//! split over [`BUCKETS`] shared-data keys of at most [`PER_BUCKET`] conversations each, the
//! least recently used one leaving first. Conversations are stored by a hash of their key.

use serde::{Deserialize, Serialize};

use crate::core::port::Port;
use crate::core::translate::request::conversation_key::fingerprint;

const STICKY_KEY: &str = "codex_openai_wrapper.sticky.v1";
/// Shared-data keys the table is spread over.
pub const BUCKETS: u64 = 32;
/// Conversations per key (4096 in all).
pub const PER_BUCKET: usize = 128;
/// A conversation's entry is refreshed at most this often (its time orders evictions).
const TOUCH_SECONDS: u64 = 60;
const CAS_ATTEMPTS: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    /// The conversation's hash.
    c: String,
    /// The account's label.
    a: String,
    /// Last used, Unix seconds.
    t: u64,
}

fn place(conversation: &str) -> (String, String) {
    let hash = fingerprint(conversation.as_bytes());
    let bucket = u64::from_str_radix(hash.get(..8).unwrap_or("0"), 16).unwrap_or(0) % BUCKETS;
    (format!("{STICKY_KEY}/{bucket}"), hash)
}

fn entries(port: &dyn Port, key: &str) -> (Vec<Entry>, Option<u32>) {
    match port.shared_get(key) {
        Some((bytes, cas)) => (
            serde_json::from_slice(&bytes).unwrap_or_default(),
            Some(cas).filter(|c| *c != 0),
        ),
        None => (Vec::new(), None),
    }
}

/// The label the conversation last used, if it is remembered.
pub fn lookup(port: &dyn Port, conversation: &str) -> Option<String> {
    let (key, hash) = place(conversation);
    entries(port, &key)
        .0
        .into_iter()
        .find(|e| e.c == hash)
        .map(|e| e.a)
}

/// Remembers that the conversation uses `label` (a write only when that is news or the
/// entry is old).
pub fn remember(port: &dyn Port, conversation: &str, label: &str, now: u64) {
    let (key, hash) = place(conversation);
    for _ in 0..CAS_ATTEMPTS {
        let (mut list, cas) = entries(port, &key);
        match list.iter_mut().find(|e| e.c == hash) {
            Some(e) if e.a == label && now.saturating_sub(e.t) < TOUCH_SECONDS => return,
            Some(e) => {
                e.a = label.to_string();
                e.t = now;
            }
            None => {
                if list.len() >= PER_BUCKET {
                    if let Some(oldest) = list.iter().enumerate().min_by_key(|(_, e)| e.t).map(|(i, _)| i) {
                        list.swap_remove(oldest);
                    }
                }
                list.push(Entry {
                    c: hash.clone(),
                    a: label.to_string(),
                    t: now,
                });
            }
        }
        let Ok(bytes) = serde_json::to_vec(&list) else {
            return;
        };
        if port.shared_set(&key, &bytes, cas).is_ok() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::port::{MemoryPort, SharedMemory};

    #[test]
    fn a_conversation_is_remembered_by_every_vm_and_can_move() {
        let shared = SharedMemory::at(1_000);
        let (a, b) = (MemoryPort::new(&shared), MemoryPort::new(&shared));
        assert_eq!(lookup(&a, "conv-1"), None);
        remember(&a, "conv-1", "work", 1_000);
        assert_eq!(lookup(&b, "conv-1").as_deref(), Some("work"));
        remember(&b, "conv-1", "home", 1_001);
        assert_eq!(lookup(&a, "conv-1").as_deref(), Some("home"));
        assert_eq!(lookup(&a, "conv-2"), None);
    }

    #[test]
    fn a_bucket_is_bounded_and_forgets_the_oldest() {
        let shared = SharedMemory::at(1_000);
        let port = MemoryPort::new(&shared);
        // Conversations that land in one bucket.
        let target = place("seed").0;
        let same: Vec<String> = (0..)
            .map(|n| format!("conv-{n}"))
            .filter(|c| place(c).0 == target)
            .take(PER_BUCKET + 1)
            .collect();
        for (t, conversation) in same.iter().enumerate() {
            remember(&port, conversation, "a", 1_000 + t as u64);
        }
        assert_eq!(lookup(&port, &same[0]), None, "the oldest left");
        assert_eq!(lookup(&port, &same[PER_BUCKET]).as_deref(), Some("a"));
        assert_eq!(entries(&port, &target).0.len(), PER_BUCKET);
    }
}
