//! The upstream instance of the filter (`FILTER_ROLE=credentials`, in the Codex cluster's
//! filter chain): it runs once per upstream attempt, so when the backend answers 401 and
//! Envoy retries, the retry carries the token the refresher fetched in between.

use std::rc::Rc;

use log::warn;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};

use crate::core::auth::token;
use crate::core::error::ApiError;
use crate::core::reply::Reply;
use crate::host::shared::Shared;
use crate::host::{abi, unix_now};

pub struct CredentialsHttp {
    shared: Rc<Shared>,
    context_id: u32,
    generation: Option<u64>,
}

impl CredentialsHttp {
    pub fn new(shared: Rc<Shared>, context_id: u32) -> Self {
        Self {
            shared,
            context_id,
            generation: None,
        }
    }
}

impl CredentialsHttp {
    fn reply(&self, error: ApiError) -> Action {
        let reply = Reply::from(error);
        if let Err(status) = abi::send_response(reply.status, &reply.headers, &reply.body) {
            warn!("codex filter: local reply {} failed: {status:?}", reply.status);
        }
        Action::Pause
    }
}

impl Context for CredentialsHttp {}

impl HttpContext for CredentialsHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let now = unix_now(self);
        let record = self.shared.vm.tokens.read(&self.shared.port);
        match token::for_request(record.as_ref(), now) {
            Ok(Some(tokens)) => {
                self.generation = record.as_ref().map(|r| r.generation);
                for (name, value) in self.shared.vm.config.auth.credential_headers(Some(tokens)) {
                    let _ = abi::set_header(MapType::HttpRequestHeaders, &name, &value);
                }
                Action::Continue
            }
            Ok(None) => match self.shared.vm.waiters.borrow_mut().wait(self.context_id, now) {
                Ok(()) => Action::Pause,
                Err(error) => self.reply(error),
            },
            Err(error) => self.reply(error),
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let unauthorized = self.get_http_response_header(":status").as_deref() == Some("401");
        if unauthorized {
            let generation = self
                .generation
                .or_else(|| self.shared.vm.waiters.borrow_mut().take_resumed(self.context_id));
            if let Some(generation) = generation {
                self.shared.vm.token_rejected(&self.shared.port, generation);
            }
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        self.shared.vm.waiters.borrow_mut().forget(self.context_id);
    }
}
