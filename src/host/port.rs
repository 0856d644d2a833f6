//! The core's [`Port`] on proxy-wasm host calls.

use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;

use crate::core::metrics::{Metric, Owner};
use crate::core::port::{Dispatch, Port, SharedWriteError};
use crate::core::reply::Reply;
use crate::host::abi;
use crate::host::metrics::{Metrics, OwnedMetrics};

/// Every VM's contexts share Envoy's state through the host; the port only keeps this VM's
/// metric ids.
pub struct HostPort {
    pub metrics: Metrics,
    pub owned: OwnedMetrics,
}

impl Port for HostPort {
    fn now_ms(&self) -> u64 {
        abi::now_ms()
    }

    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        abi::shared_data(key)
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedWriteError> {
        abi::set_shared_data(key, value, cas.unwrap_or(0))
    }

    fn dispatch(&self, call: &Dispatch) -> Option<u32> {
        let headers: Vec<(&str, &str)> = call
            .headers
            .iter()
            .map(|(n, v)| (*n, v.as_str()))
            .chain(call.credentials.iter().map(|(n, v)| (n.as_str(), v.as_str())))
            .collect();
        let timeout = Duration::from_millis(call.timeout_ms);
        match hostcalls::dispatch_http_call(&call.cluster, headers, call.body.as_deref(), vec![], timeout) {
            Ok(token) => Some(token),
            Err(status) => {
                log::warn!(
                    "codex filter: cannot call cluster {} ({status:?}); is it in the Envoy configuration?",
                    call.cluster
                );
                None
            }
        }
    }

    fn resume(&self, context_id: u32, headers: &[(String, String)]) -> bool {
        if hostcalls::set_effective_context(context_id).is_err() {
            return false; // the client has gone
        }
        for (name, value) in headers {
            let _ = abi::set_header(MapType::HttpRequestHeaders, name, value);
        }
        abi::resume_request().is_ok()
    }

    fn fail(&self, context_id: u32, reply: &Reply) {
        if hostcalls::set_effective_context(context_id).is_ok() {
            let _ = abi::send_response(reply.status, &reply.headers, &reply.body);
        }
    }

    fn metric(&self, metric: Metric) {
        self.metrics.record(metric);
    }

    fn metric_for(&self, owner: Owner<'_>, metric: Metric) {
        self.owned.record(owner, metric);
    }
}
