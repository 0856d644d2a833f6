//! The conversation key: one `prompt_cache_key` / `session-id` per conversation, stable across
//! its turns (so the backend's prompt cache hits) and different between conversations (the
//! original shared one key between every conversation with the same prompt).
//!
//! Without a client-supplied id the key is derived from what every turn of a conversation
//! repeats: the instructions and the first user message.

use crate::core::error::{ApiError, Code};
use crate::core::wire::responses_request::InputItem;

/// The longest client-chosen key (`prompt_cache_key`, or a session header) that is used.
/// The official client sends a UUID (36 characters) and OpenAI's API takes up to 256; the
/// key also becomes the `session-id` header, so a longer one only inflates every request.
pub const MAX_CLIENT_KEY_LEN: usize = 256;

/// Whether a client-chosen key can travel as the `session-id` header unchanged: printable
/// ASCII, no control byte (a CR, LF or NUL would break the header) and no space at either end
/// (HTTP drops it, so the backend would see another key than the body's).
pub fn is_valid_client_key(key: &str) -> bool {
    (1..=MAX_CLIENT_KEY_LEN).contains(&key.len())
        && key.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !key.starts_with(' ')
        && !key.ends_with(' ')
}

/// The 400 for a `prompt_cache_key` that cannot be used as the `session-id` header.
pub fn invalid_client_key() -> ApiError {
    ApiError::of(
        Code::InvalidPromptCacheKey,
        format!(
            "`prompt_cache_key` must be 1 to {MAX_CLIENT_KEY_LEN} printable ASCII characters (letters, digits, punctuation, inner spaces): it is sent upstream as the session-id header. Use an id such as a UUID."
        ),
    )
    .with_param("prompt_cache_key")
}

/// The UUID-shaped key of the conversation these instructions and first user message open;
/// used when the client gave no `prompt_cache_key` or session header.
pub fn conversation_key(instructions: &str, first_user: Option<&InputItem<'_>>) -> String {
    let item = first_user
        .map(|item| serde_json::to_vec(item).unwrap_or_default())
        .unwrap_or_default();
    conversation_key_of(instructions, &item)
}

/// [`conversation_key`] from the first user item's JSON as the client wrote it (the Responses
/// route, which does not decode `input`); empty when there is none.
pub fn conversation_key_of(instructions: &str, first_user: &[u8]) -> String {
    let mut first = Fnv::new(0xcbf2_9ce4_8422_2325);
    let mut second = Fnv::new(0x6c62_272e_07bb_0142);
    for hasher in [&mut first, &mut second] {
        hasher.write(instructions.as_bytes());
        hasher.write(&[0]);
        hasher.write(first_user);
    }
    let (a, b) = (first.finish(), second.finish());
    // UUID-shaped (version 8, "custom") so it looks like the ids the official client sends.
    format!(
        "{:08x}-{:04x}-8{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        (b >> 48 & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

/// A short, stable, non-secret name for some bytes (for example which login a record came from).
pub fn fingerprint(bytes: &[u8]) -> String {
    let mut hasher = Fnv::new(0xcbf2_9ce4_8422_2325);
    hasher.write(bytes);
    format!("{:016x}", hasher.finish())
}

/// FNV-1a, 64-bit: tiny and dependency-free; collisions only cost a cache miss.
struct Fnv(u64);

impl Fnv {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::wire::responses_request::ContentPart;
    use std::borrow::Cow;

    fn user(text: &str) -> InputItem<'_> {
        InputItem::Message {
            role: "user",
            content: vec![ContentPart::InputText {
                text: Cow::Borrowed(text),
            }],
        }
    }

    #[test]
    fn same_conversation_same_key_other_conversation_other_key() {
        let a = conversation_key("sys", Some(&user("hello")));
        assert_eq!(a, conversation_key("sys", Some(&user("hello"))));
        assert_ne!(a, conversation_key("sys", Some(&user("hello!"))));
        assert_ne!(a, conversation_key("sys2", Some(&user("hello"))));
        assert_ne!(conversation_key("", None), conversation_key("x", None));
        assert_eq!(a.len(), 36);
        assert_eq!(a.chars().filter(|c| *c == '-').count(), 4);
        assert!(is_valid_client_key(&a), "a derived key is a valid session header");
    }

    #[test]
    fn client_keys_must_fit_in_a_header() {
        let longest = "k".repeat(MAX_CLIENT_KEY_LEN);
        for good in [
            "conv-1",
            "0b9e1d2c-1f2a-4b3c-8d4e-5f6a7b8c9d0e",
            "a b",
            "~!@#$%^&*()",
            longest.as_str(),
        ] {
            assert!(is_valid_client_key(good), "{good:?}");
        }
        let too_long = "k".repeat(MAX_CLIENT_KEY_LEN + 1);
        for bad in [
            "",
            "a\r\nx-injected: 1",
            "a\nb",
            "a\0b",
            "tab\there",
            "caf\u{e9}",
            " lead",
            "trail ",
            "\u{7f}",
            too_long.as_str(),
        ] {
            assert!(!is_valid_client_key(bad), "{bad:?}");
        }
        let error = invalid_client_key();
        assert_eq!(
            (error.status, error.param.as_deref(), error.code_str()),
            (400, Some("prompt_cache_key"), Some("invalid_prompt_cache_key"))
        );
    }
}
