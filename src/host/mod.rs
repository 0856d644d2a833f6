//! The proxy-wasm glue: the only code that talks to Envoy. It reads what the host offers,
//! hands it to the core and writes back what the core decided.

mod abi;
mod credentials_http;
mod http;
mod metrics;
mod port;
#[cfg(feature = "phase-probe")]
mod probe;
mod root;
mod shared;
mod steps;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    // A panic is a trap that kills this worker's VM; leave its reason in Envoy's log.
    std::panic::set_hook(Box::new(|info| {
        let _ = proxy_wasm::hostcalls::log(LogLevel::Critical, &format!("codex filter panic: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> { Box::new(root::Root::default()) });
}}
