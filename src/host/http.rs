//! One request through the main filter instance: each callback reads what the flow machine
//! needs from the host, hands it over, and performs the steps it returns.

use std::rc::Rc;

use log::info;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};

use crate::core::flow::request::RequestFlow;
use crate::host::abi;
use crate::host::shared::Shared;
use crate::host::steps::perform;

pub struct Http {
    shared: Rc<Shared>,
    flow: RequestFlow,
    #[cfg(feature = "phase-probe")]
    probe: crate::core::probe::Probe,
}

impl Http {
    pub fn new(shared: Rc<Shared>, context_id: u32) -> Self {
        Self {
            shared,
            flow: RequestFlow::new(context_id),
            #[cfg(feature = "phase-probe")]
            probe: Default::default(),
        }
    }
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Shared { vm, port } = &*self.shared;
        #[cfg(feature = "phase-probe")]
        crate::core::probe::reset();
        let map = abi::header_map(MapType::HttpRequestHeaders);
        #[cfg(feature = "phase-probe")]
        {
            use crate::core::probe::{Ask, Phase, Probe};
            self.probe = Probe::new(Ask::from_map(&map));
            crate::host::probe::at(&self.probe, Phase::RequestHeaders, &map, 0);
        }
        perform(self.flow.request_headers(vm, port, &map, end_of_stream), 0)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Shared { vm, port } = &*self.shared;
        #[cfg(feature = "phase-probe")]
        if end_of_stream {
            crate::host::probe::at(
                &self.probe,
                crate::core::probe::Phase::RequestBody,
                &[],
                body_size,
            );
            if self.probe.translates_request() {
                let body = abi::buffer(BufferType::HttpRequestBody, 0, body_size);
                self.probe.request_body(vm, &self.flow, &body);
            }
        }
        let body = || abi::buffer(BufferType::HttpRequestBody, 0, body_size);
        perform(
            self.flow.request_body(vm, port, body_size, end_of_stream, body),
            body_size,
        )
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Shared { vm, port } = &*self.shared;
        let details = || abi::property(&["response", "code_details"]).unwrap_or_default();
        let map = || abi::header_map(MapType::HttpResponseHeaders);
        perform(
            self.flow.response_headers(vm, port, details, map, end_of_stream),
            0,
        )
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        #[cfg(feature = "phase-probe")]
        let chunk = {
            let probed = self.probe.translates_response().then(|| {
                let bytes = abi::buffer(BufferType::HttpResponseBody, 0, body_size);
                let now = abi::now_ms() / 1000;
                self.probe.response_body(&self.flow, &bytes, end_of_stream, now);
                bytes
            });
            move || probed.unwrap_or_else(|| abi::buffer(BufferType::HttpResponseBody, 0, body_size))
        };
        #[cfg(not(feature = "phase-probe"))]
        let chunk = || abi::buffer(BufferType::HttpResponseBody, 0, body_size);
        let steps = self
            .flow
            .response_body(&self.shared.port, body_size, end_of_stream, chunk);
        perform(steps, body_size)
    }

    fn on_log(&mut self) {
        let Shared { vm, port } = &*self.shared;
        let code = || abi::property(&["response", "code"]);
        if let Some(line) = self.flow.log(vm, port, code) {
            #[cfg(feature = "phase-probe")]
            crate::core::probe::count(crate::core::probe::Call::Log);
            info!("{line}");
        }
        #[cfg(feature = "phase-probe")]
        {
            crate::host::probe::at(&self.probe, crate::core::probe::Phase::Log, &[], 0);
            crate::host::probe::report(&self.probe);
        }
    }
}
