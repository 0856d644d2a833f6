//! One upstream attempt through the credentials instance (`FILTER_ROLE=credentials`): the
//! callbacks feed [`CredentialsFlow`] and perform its steps.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};

use crate::core::flow::credentials::{CredentialsFlow, SESSION_HEADER};
use crate::host::abi;
use crate::host::shared::Shared;
use crate::host::steps::perform;

pub struct CredentialsHttp {
    shared: Rc<Shared>,
    flow: CredentialsFlow,
}

impl CredentialsHttp {
    pub fn new(shared: Rc<Shared>, context_id: u32) -> Self {
        Self {
            shared,
            flow: CredentialsFlow::new(context_id),
        }
    }
}

impl Context for CredentialsHttp {}

impl HttpContext for CredentialsHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Shared { vm, port } = &*self.shared;
        let session = || abi::header_value(MapType::HttpRequestHeaders, SESSION_HEADER);
        perform(self.flow.request_headers(vm, port, session), 0)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Shared { vm, port } = &*self.shared;
        let status = abi::header_value(MapType::HttpResponseHeaders, ":status");
        let map = || abi::header_map(MapType::HttpResponseHeaders);
        perform(self.flow.response_headers(vm, port, status.as_deref(), map), 0)
    }

    fn on_log(&mut self) {
        self.flow.log(&self.shared.vm);
    }
}
