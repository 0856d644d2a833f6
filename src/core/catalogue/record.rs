//! The fetched catalogue in Envoy shared data, one copy for every worker VM:
//!
//! | key | holds | written |
//! |---|---|---|
//! | [`STATE_KEY`] | [`State`]: content version, ETag, fetch time, failure streak, the fetch lease | with compare-and-swap |
//! | [`MODELS_KEY`] | the compact catalogue (`{"models":[…]}` with only the fields the filter reads) | by the lease holder after a 200 |
//! | [`RAW_KEY`] | the backend's answer as it came, for a client's own `/models` call ([`raw_catalogue`]) | by the lease holder after a 200 |
//! | [`WANTED_KEY`] | the `x-models-etag` of a turn that differed from the cached ETag | by a request, once per new value and VM |
//!
//! A VM's tick reads the two small keys (state, wanted); the catalogue itself is read and
//! parsed only when the state's version moved.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::core::auth::token::Lease;
use crate::core::catalogue::{Catalogue, CatalogueError, MAX_CATALOGUE_BYTES, MAX_ENTRIES, ModelEntry};
use crate::core::port::Port;

/// The fetch's schedule, outcome and lease ([`State`]).
pub const STATE_KEY: &str = "codex_openai_wrapper.catalogue_state.v1";
/// The compact catalogue every VM parses.
pub const MODELS_KEY: &str = "codex_openai_wrapper.catalogue_models.v1";
/// The backend's answer, byte for byte ([`raw_catalogue`]).
pub const RAW_KEY: &str = "codex_openai_wrapper.catalogue_raw.v1";
/// The ETag a turn announced.
pub const WANTED_KEY: &str = "codex_openai_wrapper.catalogue_wanted.v1";
/// An ETag longer than this is not one; it is ignored rather than stored.
pub const MAX_ETAG_BYTES: usize = 512;
/// Writers retry this often when another VM wrote in between; more would mean a bug.
const CAS_ATTEMPTS: usize = 8;

/// The fields of a catalogue entry the stored copy keeps: what the filter reads and what a
/// Codex CLI needs from `/v1/models?client_version=`.
pub use crate::core::catalogue::entry::CODEX_FIELDS as KEPT_FIELDS;

/// The schedule and outcome of the catalogue fetch, shared by every VM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Bumped with every new catalogue in [`MODELS_KEY`]; 0 while none was fetched.
    #[serde(default)]
    pub version: u64,
    /// The backend's ETag of that catalogue, sent back as `If-None-Match`.
    #[serde(default)]
    pub etag: Option<String>,
    /// When the backend last answered 200 or 304 (Unix seconds); `None` before the first time.
    #[serde(default)]
    pub fetched_at: Option<u64>,
    /// When the last call went out.
    #[serde(default)]
    pub attempted_at: u64,
    /// Failed calls in a row; the next one waits until `retry_at`.
    #[serde(default)]
    pub failures: u32,
    #[serde(default)]
    pub retry_at: u64,
    /// The wanted ETag the last successful fetch answered, so a wanted value the backend
    /// spells differently from its `ETag` does not trigger a fetch on every tick.
    #[serde(default)]
    pub served_wanted: Option<String>,
    /// Who is fetching now; runs out if its holder dies.
    #[serde(default)]
    pub lease: Option<Lease>,
}

/// What one VM has taken from shared data (kept in `VmState`).
#[derive(Debug, Default)]
pub struct Seen {
    /// The state version last looked at; its catalogue is the one in use.
    pub version: u64,
    /// The ETag of the catalogue in use.
    pub etag: Option<String>,
    /// The announced ETag this VM last recorded, so each new value is written once.
    pub wanted: Option<String>,
}

/// The catalogue in [`MODELS_KEY`] and the state version it was written with.
#[derive(Serialize, Deserialize)]
struct Stored<'a> {
    version: u64,
    #[serde(borrow)]
    models: &'a RawValue,
}

/// The current state and its compare-and-swap token (0: the key does not exist).
pub fn read_state(port: &dyn Port) -> (State, u32) {
    match port.shared_get(STATE_KEY) {
        Some((bytes, cas)) => (serde_json::from_slice(&bytes).unwrap_or_default(), cas),
        None => (State::default(), 0),
    }
}

/// Applies `change` with compare-and-swap, retrying when another VM wrote in between;
/// `change` returns `None` to leave the state alone. Returns the state written.
pub fn update_state(port: &dyn Port, mut change: impl FnMut(&State) -> Option<State>) -> Option<State> {
    for _ in 0..CAS_ATTEMPTS {
        let (current, cas) = read_state(port);
        let next = change(&current)?;
        let bytes = serde_json::to_vec(&next).ok()?;
        // No CAS when the key does not exist yet: there is nothing to race against.
        if port
            .shared_set(STATE_KEY, &bytes, Some(cas).filter(|c| *c != 0))
            .is_ok()
        {
            return Some(next);
        }
    }
    None
}

/// Stores a fetched catalogue (compact, with `version`) and the answer it came from.
pub fn write_catalogue(port: &dyn Port, version: u64, compact: &[u8], raw: &[u8]) -> bool {
    let Ok(models) = serde_json::from_slice::<&RawValue>(compact) else {
        return false;
    };
    let Ok(bytes) = serde_json::to_vec(&Stored { version, models }) else {
        return false;
    };
    port.shared_set(RAW_KEY, raw, None).is_ok() && port.shared_set(MODELS_KEY, &bytes, None).is_ok()
}

/// The stored catalogue, parsed, with the version it was written with.
pub fn read_catalogue(port: &dyn Port) -> Option<(u64, Result<Catalogue, CatalogueError>)> {
    let (bytes, _) = port.shared_get(MODELS_KEY)?;
    let stored: Stored = serde_json::from_slice(&bytes).ok()?;
    Some((stored.version, Catalogue::parse(stored.models.get().as_bytes())))
}

/// The backend's last catalogue answer as it came (`{"models":[…]}`, at most
/// [`MAX_CATALOGUE_BYTES`]), for a client that asks for the catalogue itself (Codex CLI's own
/// `GET …/models`); `None` before the first successful fetch, and in API-key modes.
pub fn raw_catalogue(port: &dyn Port) -> Option<Vec<u8>> {
    port.shared_get(RAW_KEY)
        .map(|(bytes, _)| bytes)
        .filter(|bytes| !bytes.is_empty() && bytes.len() <= MAX_CATALOGUE_BYTES)
}

/// The ETag of the stored catalogue, for a client's conditional request.
pub fn cached_etag(port: &dyn Port) -> Option<String> {
    read_state(port).0.etag
}

/// Records the ETag a turn announced (plain set: the last one seen wins).
pub fn want(port: &dyn Port, etag: &str) {
    let _ = port.shared_set(WANTED_KEY, etag.as_bytes(), None);
}

/// The ETag a turn announced last, if any.
pub fn wanted(port: &dyn Port) -> Option<String> {
    let (bytes, _) = port.shared_get(WANTED_KEY)?;
    String::from_utf8(bytes).ok().filter(|e| !e.is_empty())
}

/// An ETag as sent, with the weak prefix and the quotes dropped, so `W/"abc"`, `"abc"` and
/// `abc` compare equal; `None` when blank, too long or not printable ASCII.
pub fn etag_key(raw: &str) -> Option<&str> {
    let t = raw.trim();
    if t.len() > MAX_ETAG_BYTES || !t.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return None;
    }
    let t = t.strip_prefix("W/").unwrap_or(t);
    let t = t.strip_prefix('"').unwrap_or(t);
    let t = t.strip_suffix('"').unwrap_or(t).trim();
    (!t.is_empty()).then_some(t)
}

/// Two ETags name the same catalogue.
pub fn same_etag(a: Option<&str>, b: Option<&str>) -> bool {
    match (a.and_then(etag_key), b.and_then(etag_key)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

#[derive(Deserialize)]
struct Document<'a> {
    #[serde(borrow)]
    models: Vec<&'a RawValue>,
}

/// The compact form of a catalogue answer: each entry the filter can read, with only
/// [`KEPT_FIELDS`], in the answer's order. The answer's prompt texts and tool settings make
/// it a hundred times larger, and every VM parses this copy.
pub fn slim(body: &[u8]) -> Result<Vec<u8>, CatalogueError> {
    if body.len() > MAX_CATALOGUE_BYTES {
        return Err(CatalogueError::TooLarge);
    }
    let document: Document =
        serde_json::from_slice(body).map_err(|e| CatalogueError::NotACatalogue(e.to_string()))?;
    let mut out = String::from("{\"models\":[");
    let mut kept = 0usize;
    for raw in document.models.iter().take(MAX_ENTRIES) {
        if ModelEntry::parse(raw.get()).is_none() {
            continue;
        }
        if kept > 0 {
            out.push(',');
        }
        kept = kept.saturating_add(1);
        let Ok(fields) = serde_json::from_str::<HashMap<String, &RawValue>>(raw.get()) else {
            // Readable but not an object (serde also reads a struct from an array): kept as
            // it is, so the compact copy still reads back the same.
            out.push_str(raw.get());
            continue;
        };
        out.push('{');
        let mut first = true;
        for name in KEPT_FIELDS {
            if let Some(value) = fields.get(*name) {
                if !first {
                    out.push(',');
                }
                first = false;
                out.push('"');
                out.push_str(name);
                out.push_str("\":");
                out.push_str(value.get());
            }
        }
        out.push('}');
    }
    out.push_str("]}");
    if kept == 0 {
        return Err(CatalogueError::Empty);
    }
    Ok(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::port::{MemoryPort, SharedMemory};

    #[test]
    fn slimming_keeps_what_the_filter_reads() {
        let body = br#"{"models":[
            {"slug":"a","priority":2,"visibility":"list","base_instructions":"long prompt","model_messages":{"x":1},
             "supported_reasoning_levels":[{"effort":"low","description":"d"}]},
            {"priority":"bad"},
            {"slug":"b","priority":1,"future":[1,2]}
        ],"etag_hint":"x"}"#;
        let compact = slim(body).unwrap_or_else(|e| panic!("{e}"));
        let text = String::from_utf8(compact.clone()).unwrap_or_default();
        assert!(!text.contains("long prompt") && !text.contains("future") && !text.contains("bad"));
        let full = Catalogue::parse(body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Catalogue::parse(&compact), Ok(full));
        let builtin = include_bytes!("builtin.json");
        let again = slim(builtin).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Catalogue::parse(&again), Ok(Catalogue::builtin()));
        // serde reads an entry from an array too; the compact copy keeps such an entry whole.
        let positional = br#"{"models":[["gpt-x","X"]]}"#;
        match (slim(positional), Catalogue::parse(positional)) {
            (Ok(compact), Ok(full)) => assert_eq!(Catalogue::parse(&compact), Ok(full)),
            (Err(_), Err(_)) => {}
            (compact, full) => panic!("compact {compact:?}, catalogue {full:?}"),
        }
        assert!(matches!(slim(b"{}"), Err(CatalogueError::NotACatalogue(_))));
        assert_eq!(slim(br#"{"models":[{"x":1}]}"#), Err(CatalogueError::Empty));
        assert_eq!(
            slim(&vec![b' '; MAX_CATALOGUE_BYTES + 1]),
            Err(CatalogueError::TooLarge)
        );
    }

    #[test]
    fn etags_compare_without_quotes_and_weakness() {
        assert!(same_etag(Some("W/\"abc\""), Some("abc")));
        assert!(same_etag(Some("\"abc\""), Some(" abc ")));
        assert!(!same_etag(Some("abc"), Some("abd")));
        assert!(!same_etag(None, Some("abc")));
        assert!(!same_etag(Some("\"\""), Some("")));
        assert_eq!(etag_key(&"x".repeat(MAX_ETAG_BYTES + 1)), None);
        assert_eq!(etag_key("a\u{1}b"), None);
    }

    #[test]
    fn the_catalogue_round_trips_through_shared_data() {
        let shared = SharedMemory::at(1_000);
        let port = MemoryPort::new(&shared);
        assert_eq!(raw_catalogue(&port), None);
        assert!(read_catalogue(&port).is_none());
        let raw = include_bytes!("builtin.json");
        let compact = slim(raw).unwrap_or_else(|e| panic!("{e}"));
        assert!(write_catalogue(&port, 3, &compact, raw));
        assert_eq!(raw_catalogue(&port).as_deref(), Some(&raw[..]));
        let (version, catalogue) = read_catalogue(&port).unwrap_or_else(|| panic!("nothing stored"));
        assert_eq!((version, catalogue), (3, Ok(Catalogue::builtin())));
        shared.poke(STATE_KEY, b"{not json");
        assert_eq!(read_state(&port).0, State::default());
        want(&port, "e1");
        assert_eq!(wanted(&port).as_deref(), Some("e1"));
    }
}
