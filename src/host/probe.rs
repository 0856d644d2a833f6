//! Bench-only instrumentation (`--features phase-probe`, used by `bench/phases.py`; never in a
//! shipped module). A request header `x-codex-probe: <kind>:<n>` makes the filter do `n`
//! extra host calls of one kind, or translate the request or the response `n` more times
//! on the side (results dropped), so the instruction counts of Envoy with and without the
//! extra work price one call or one translation. `x-codex-probe: count` logs how many host
//! calls of each kind the request made.

use std::cell::Cell;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType};

use crate::core::flow::request::RequestFlow;
use crate::core::flow::response::Handler;
use crate::core::vm::VmState;
use crate::host::abi;
use crate::host::probe_counts::{CALLS, Call, counts_line};

thread_local! {
    static METRIC: Cell<Option<u32>> = const { Cell::new(None) };
}

/// What one request asked for.
#[derive(Default)]
pub enum Probe {
    #[default]
    None,
    Count,
    Calls(Call, u32),
    RequestTranslate(u32),
    ResponseTranslate(u32, Vec<Handler>),
}

impl Probe {
    /// Reads `x-codex-probe` from the serialized request header map.
    pub fn from_map(map: &[u8]) -> Self {
        let value = crate::core::wire::header_map::parse(map)
            .unwrap_or_default()
            .into_iter()
            .find(|(name, _)| *name == b"x-codex-probe")
            .and_then(|(_, value)| std::str::from_utf8(value).ok().map(str::to_string));
        let Some(value) = value else {
            return Self::None;
        };
        if value == "count" {
            return Self::Count;
        }
        let (kind, n) = value.split_once(':').unwrap_or((value.as_str(), "1"));
        let n = n.parse().unwrap_or(1);
        match kind {
            "request_translate" => Self::RequestTranslate(n),
            "response_translate" => Self::ResponseTranslate(n, Vec::new()),
            _ => CALLS
                .iter()
                .find(|(_, name)| *name == kind)
                .map_or(Self::None, |(call, _)| Self::Calls(*call, n)),
        }
    }

    /// Extra calls made in the request header callback (all but the body and property kinds).
    pub fn request_headers(&self, map: &[u8]) {
        let Self::Calls(call, n) = *self else {
            return;
        };
        for _ in 0..n {
            match call {
                Call::MapGet => drop(abi::header_map(MapType::HttpRequestHeaders)),
                Call::MapSet => {
                    let pairs = crate::core::wire::header_map::parse(map).unwrap_or_default();
                    let _ = abi::set_headers(MapType::HttpRequestHeaders, &pairs);
                }
                Call::ValueGet => drop(abi::header_value(MapType::HttpRequestHeaders, ":path")),
                Call::ValueSet => {
                    let _ = abi::set_header(MapType::HttpRequestHeaders, "x-codex-probe-set", "1");
                }
                Call::ValueRemove => {
                    let _ = abi::remove_header(MapType::HttpRequestHeaders, "x-codex-probe-absent");
                }
                Call::Clock => drop(abi::now_ms()),
                Call::SharedGet => drop(abi::shared_data("codex_openai_wrapper.tokens.v1")),
                // A key of its own, about the size of a counter record.
                Call::SharedSet => {
                    let _ = abi::set_shared_data("codex_openai_wrapper.probe", &[b'x'; 160], 0);
                }
                Call::Metric => {
                    let id = METRIC.with(|m| {
                        m.get().or_else(|| {
                            let id = hostcalls::define_metric(MetricType::Counter, "codex.probe").ok();
                            m.set(id);
                            id
                        })
                    });
                    if let Some(id) = id {
                        let _ = hostcalls::increment_metric(id, 1);
                    }
                }
                Call::Log => {
                    let _ = hostcalls::log(LogLevel::Info, "codex probe");
                }
                _ => {}
            }
        }
    }

    /// At the end of the request body, before the flow sees it.
    pub fn request_body(&self, vm: &VmState, flow: &RequestFlow, body_size: usize) {
        match *self {
            Self::Calls(Call::BodyGet, n) => {
                for _ in 0..n {
                    drop(abi::buffer(BufferType::HttpRequestBody, 0, body_size));
                }
            }
            Self::Calls(Call::BodySet, n) => {
                let body = abi::buffer(BufferType::HttpRequestBody, 0, body_size);
                for _ in 0..n {
                    let _ = abi::set_buffer(BufferType::HttpRequestBody, 0, body.len(), &body);
                }
            }
            Self::RequestTranslate(n) => {
                let body = abi::buffer(BufferType::HttpRequestBody, 0, body_size);
                let endpoint = flow.probe_endpoint();
                for _ in 0..n {
                    if let Some(endpoint) = endpoint {
                        let _ = RequestFlow::probe_translate(vm, endpoint, &body);
                    }
                }
            }
            _ => {}
        }
    }

    pub fn translates_response(&self) -> bool {
        matches!(self, Self::ResponseTranslate(..))
    }

    /// A response body chunk, fed to the side translators too.
    pub fn response_body(&mut self, flow: &RequestFlow, chunk: &[u8], end_of_stream: bool, now: u64) {
        let Self::ResponseTranslate(n, handlers) = self else {
            return;
        };
        if handlers.is_empty() {
            handlers.extend((0..*n).filter_map(|_| flow.probe_handler(now)));
        }
        for handler in handlers.iter_mut() {
            let _ = handler.push(chunk, now);
            if end_of_stream {
                let _ = handler.finish(now);
            }
        }
    }

    pub fn log(&self) {
        match *self {
            Self::Calls(Call::Property, n) => {
                for _ in 0..n {
                    drop(abi::property(&["response", "code"]));
                }
            }
            Self::Count => {
                let (line, keys) = counts_line();
                let _ = hostcalls::log(LogLevel::Critical, &format!("codex probe counts: {line}"));
                let _ = hostcalls::log(LogLevel::Critical, &format!("codex probe shared keys: {keys}"));
            }
            _ => {}
        }
    }
}
