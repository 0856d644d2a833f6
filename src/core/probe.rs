//! Bench-only instrumentation (`--features phase-probe`, used by `bench/phases.py`; never in a
//! shipped module): what a request's `x-codex-probe` header asks for, and the host call
//! counts the probe reports. A request header `x-codex-probe: <kind>:<n>` makes the filter do
//! `n` extra host calls of one kind, or translate the request or the response `n` more times
//! on the side (results dropped), so the instruction counts of Envoy with and without the
//! extra work price one call or one translation. `x-codex-probe: count` logs how many host
//! calls of each kind the request made. `host::probe` makes the calls.

use std::cell::RefCell;

#[cfg(feature = "phase-probe")]
use crate::core::flow::request::RequestFlow;
#[cfg(feature = "phase-probe")]
use crate::core::flow::response::Handler;
#[cfg(feature = "phase-probe")]
use crate::core::vm::VmState;

/// The request header that asks for a probe.
pub const PROBE_HEADER: &[u8] = b"x-codex-probe";

/// The kinds of host call the filter makes, as the probe counts and repeats them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Call {
    MapGet,
    MapSet,
    ValueGet,
    ValueSet,
    ValueRemove,
    BodyGet,
    BodySet,
    Property,
    Clock,
    SharedGet,
    SharedSet,
    Metric,
    Log,
    LocalReply,
    Other,
}

/// Every kind with its name in the probe header and the counts line, in `Call` order.
pub const CALLS: [(Call, &str); 15] = [
    (Call::MapGet, "map_get"),
    (Call::MapSet, "map_set"),
    (Call::ValueGet, "value_get"),
    (Call::ValueSet, "value_set"),
    (Call::ValueRemove, "value_remove"),
    (Call::BodyGet, "body_get"),
    (Call::BodySet, "body_set"),
    (Call::Property, "property"),
    (Call::Clock, "clock"),
    (Call::SharedGet, "shared_get"),
    (Call::SharedSet, "shared_set"),
    (Call::Metric, "metric"),
    (Call::Log, "log"),
    (Call::LocalReply, "local_reply"),
    (Call::Other, "other"),
];

/// The callback that makes a kind's extra calls: where the call has something to act on
/// (the request body at its end, the response code once there is one).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Phase {
    RequestHeaders,
    RequestBody,
    Log,
}

impl Call {
    /// `None`: the probe does not repeat this kind.
    pub fn phase(self) -> Option<Phase> {
        match self {
            Call::BodyGet | Call::BodySet => Some(Phase::RequestBody),
            Call::Property => Some(Phase::Log),
            Call::LocalReply | Call::Other => None,
            _ => Some(Phase::RequestHeaders),
        }
    }
}

/// What one request asked for.
#[derive(Default, Debug, PartialEq, Eq)]
pub enum Ask {
    #[default]
    None,
    Count,
    Calls(Call, u32),
    RequestTranslate(u32),
    ResponseTranslate(u32),
}

impl Ask {
    /// The request's ask, from its serialized header map.
    pub fn from_map(map: &[u8]) -> Self {
        crate::core::wire::header_map::parse(map)
            .unwrap_or_default()
            .into_iter()
            .find(|(name, _)| *name == PROBE_HEADER)
            .map_or(Self::None, |(_, value)| Self::parse(value))
    }

    /// `count`, `<kind>` (once) or `<kind>:<n>`; anything else asks nothing.
    pub fn parse(value: &[u8]) -> Self {
        let Ok(value) = std::str::from_utf8(value) else {
            return Self::None;
        };
        if value == "count" {
            return Self::Count;
        }
        let (kind, n) = value.split_once(':').unwrap_or((value, "1"));
        let n = n.parse().unwrap_or(1);
        match kind {
            "request_translate" => Self::RequestTranslate(n),
            "response_translate" => Self::ResponseTranslate(n),
            _ => CALLS
                .iter()
                .find(|(call, name)| *name == kind && call.phase().is_some())
                .map_or(Self::None, |(call, _)| Self::Calls(*call, n)),
        }
    }

    /// The extra calls to make in `phase`: which kind, how many.
    pub fn calls_at(&self, phase: Phase) -> Option<(Call, u32)> {
        match *self {
            Self::Calls(call, n) if call.phase() == Some(phase) => Some((call, n)),
            _ => None,
        }
    }
}

/// One request's probe: its ask, and the side translators of its response.
#[cfg(feature = "phase-probe")]
#[derive(Default)]
pub struct Probe {
    pub ask: Ask,
    handlers: Vec<Handler>,
}

#[cfg(feature = "phase-probe")]
impl Probe {
    /// A request's probe, before any of its translations ran.
    pub fn new(ask: Ask) -> Self {
        Self {
            ask,
            handlers: Vec::new(),
        }
    }

    /// At the end of the request body: the side translations of it.
    pub fn request_body(&self, vm: &VmState, flow: &RequestFlow, body: &[u8]) {
        let Ask::RequestTranslate(n) = self.ask else {
            return;
        };
        if let Some(endpoint) = flow.probe_endpoint() {
            for _ in 0..n {
                let _ = RequestFlow::probe_translate(vm, endpoint, body);
            }
        }
    }

    /// Whether the request body is read for the side translations (once, at its end).
    pub fn translates_request(&self) -> bool {
        matches!(self.ask, Ask::RequestTranslate(_))
    }

    /// Whether the response body is read for the side translators (then once, before the flow).
    pub fn translates_response(&self) -> bool {
        matches!(self.ask, Ask::ResponseTranslate(_))
    }

    /// A response body chunk, fed to the side translators too.
    pub fn response_body(&mut self, flow: &RequestFlow, chunk: &[u8], end_of_stream: bool, now: u64) {
        let Ask::ResponseTranslate(n) = self.ask else {
            return;
        };
        if self.handlers.is_empty() {
            self.handlers
                .extend((0..n).filter_map(|_| flow.probe_handler(now)));
        }
        for handler in &mut self.handlers {
            let _ = handler.push(chunk, now);
            if end_of_stream {
                let _ = handler.finish(now);
            }
        }
    }
}

thread_local! {
    static COUNTS: RefCell<[u32; 15]> = const { RefCell::new([0; 15]) };
    static KEYS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Counts one host call of the filter's own.
pub fn count(call: Call) {
    COUNTS.with(|counts| {
        if let Some(slot) = counts.borrow_mut().get_mut(call as usize) {
            *slot = slot.saturating_add(1);
        }
    });
}

/// Which shared-data key a read was for (listed with the counts).
pub fn shared_key(key: &str) {
    KEYS.with(|keys| keys.borrow_mut().push(key.to_string()));
}

/// A request begins: its counts start from zero.
pub fn reset() {
    COUNTS.with(|counts| *counts.borrow_mut() = [0; 15]);
    KEYS.with(|keys| keys.borrow_mut().clear());
}

/// The counts as `kind=n …`, and the shared-data keys read, since the last [`reset`].
pub fn counts_line() -> (String, String) {
    let line = COUNTS.with(|counts| {
        let counts = counts.borrow();
        CALLS
            .iter()
            .zip(counts.iter())
            .map(|((_, name), n)| format!("{name}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    });
    (line, KEYS.with(|keys| keys.borrow().join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_asks_for_counts_calls_or_translations() {
        assert_eq!(Ask::parse(b"count"), Ask::Count);
        assert_eq!(Ask::parse(b"map_get:20"), Ask::Calls(Call::MapGet, 20));
        assert_eq!(Ask::parse(b"clock"), Ask::Calls(Call::Clock, 1));
        assert_eq!(Ask::parse(b"metric:x"), Ask::Calls(Call::Metric, 1));
        assert_eq!(Ask::parse(b"request_translate:4"), Ask::RequestTranslate(4));
        assert_eq!(Ask::parse(b"response_translate:2"), Ask::ResponseTranslate(2));
        for nothing in [&b"none"[..], b"local_reply:3", b"other", b"\xff"] {
            assert_eq!(Ask::parse(nothing), Ask::None, "{nothing:?}");
        }
        let map =
            crate::core::wire::header_map::serialize(&[(":path", "/v1/x"), ("x-codex-probe", "body_set:3")]);
        assert_eq!(Ask::from_map(&map), Ask::Calls(Call::BodySet, 3));
        let map = crate::core::wire::header_map::serialize(&[(":path", "/v1/x")]);
        assert_eq!(Ask::from_map(&map), Ask::None);
    }

    #[test]
    fn each_kind_is_repeated_where_it_has_something_to_act_on() {
        let at = |value: &[u8]| {
            let ask = Ask::parse(value);
            [Phase::RequestHeaders, Phase::RequestBody, Phase::Log].map(|phase| ask.calls_at(phase))
        };
        assert_eq!(at(b"value_get:5"), [Some((Call::ValueGet, 5)), None, None]);
        assert_eq!(at(b"body_get:2"), [None, Some((Call::BodyGet, 2)), None]);
        assert_eq!(at(b"property:7"), [None, None, Some((Call::Property, 7))]);
        assert_eq!(at(b"count"), [None, None, None]);
        assert_eq!(at(b"request_translate:1"), [None, None, None]);
    }

    #[test]
    fn counts_start_from_zero_with_each_request() {
        reset();
        count(Call::MapGet);
        count(Call::Metric);
        count(Call::Metric);
        shared_key("codex_openai_wrapper.tokens.v1");
        let (line, keys) = counts_line();
        assert!(line.starts_with("map_get=1 map_set=0 "), "{line}");
        assert!(line.contains(" metric=2 "), "{line}");
        assert_eq!(keys, "codex_openai_wrapper.tokens.v1");
        reset();
        let (line, keys) = counts_line();
        assert!(!line.contains('1') && !line.contains('2'), "{line}");
        assert!(keys.is_empty());
    }
}
