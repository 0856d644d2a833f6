//! Bench-only (`--features phase-probe`): the extra host calls `core::probe` asks for, made
//! in the callback it names.

use std::cell::Cell;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType};

use crate::core::probe::{Call, Phase, Probe, counts_line};
use crate::host::abi;

thread_local! {
    static METRIC: Cell<Option<u32>> = const { Cell::new(None) };
}

/// `n` calls of one kind; `map` is the request header map, `body_size` the request body's.
pub fn repeat(call: Call, n: u32, map: &[u8], body_size: usize) {
    let body = match call {
        Call::BodySet => abi::buffer(BufferType::HttpRequestBody, 0, body_size),
        _ => Vec::new(),
    };
    let pairs = match call {
        Call::MapSet => crate::core::wire::header_map::parse(map).unwrap_or_default(),
        _ => Vec::new(),
    };
    for _ in 0..n {
        match call {
            Call::MapGet => drop(abi::header_map(MapType::HttpRequestHeaders)),
            Call::MapSet => {
                let _ = abi::set_headers(MapType::HttpRequestHeaders, &pairs);
            }
            Call::ValueGet => drop(abi::header_value(MapType::HttpRequestHeaders, ":path")),
            Call::ValueSet => {
                let _ = abi::set_header(MapType::HttpRequestHeaders, "x-codex-probe-set", "1");
            }
            Call::ValueRemove => {
                let _ = abi::remove_header(MapType::HttpRequestHeaders, "x-codex-probe-absent");
            }
            Call::BodyGet => drop(abi::buffer(BufferType::HttpRequestBody, 0, body_size)),
            Call::BodySet => {
                let _ = abi::set_buffer(BufferType::HttpRequestBody, 0, body.len(), &body);
            }
            Call::Property => drop(abi::property(&["response", "code"])),
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
            Call::LocalReply | Call::Other => {}
        }
    }
}

/// The calls asked for in `phase`.
pub fn at(probe: &Probe, phase: Phase, map: &[u8], body_size: usize) {
    if let Some((call, n)) = probe.ask.calls_at(phase) {
        repeat(call, n, map, body_size);
    }
}

/// The request's host call counts, when it asked for them.
pub fn report(probe: &Probe) {
    if probe.ask == crate::core::probe::Ask::Count {
        let (line, keys) = counts_line();
        let _ = hostcalls::log(LogLevel::Critical, &format!("codex probe counts: {line}"));
        let _ = hostcalls::log(LogLevel::Critical, &format!("codex probe shared keys: {keys}"));
    }
}
