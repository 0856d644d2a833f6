//! One request: a small state machine that feeds headers and bytes to the core and writes
//! back what it returns.

use std::rc::Rc;

use log::{info, warn};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};

use crate::core::chat_request::{self, TranslateContext};
use crate::core::error::{ApiError, SERVER};
use crate::core::request::{self, Decision, Endpoint, Forward, Reply, RequestHead, body_too_large};
use crate::core::response::{
    ClientRequest, Handler, HeaderPlan, REMOVED_RESPONSE_HEADERS, ResponseHead,
};
use crate::core::upstream_error::LimitHeaders;
use crate::host::root::Shared;
use crate::host::{abi, unix_now};

enum RequestState {
    /// Not ours to translate (answered locally, or nothing decided yet).
    Idle,
    /// Waiting for the whole body; `held` means the request headers wait too.
    AwaitBody {
        forward: Forward,
        headers: Vec<(String, String)>,
        held: bool,
    },
    Forwarded,
}

pub struct Http {
    shared: Rc<Shared>,
    request: RequestState,
    client: Option<ClientRequest>,
    /// The filter answered this request itself; its reply must pass through untouched.
    replied: bool,
    response: Option<(Handler, HeaderPlan)>,
    verbose: Option<VerboseLine>,
}

struct VerboseLine {
    method: String,
    path: String,
    started_ms: u128,
}

impl Http {
    pub fn new(shared: Rc<Shared>) -> Self {
        Self {
            shared,
            request: RequestState::Idle,
            client: None,
            replied: false,
            response: None,
            verbose: None,
        }
    }

    fn now(&self) -> u64 {
        unix_now(self)
    }

    fn reply(&mut self, reply: Reply) -> Action {
        self.replied = true;
        if let Err(status) = abi::send_response(reply.status, &reply.headers, &reply.body) {
            warn!(
                "codex filter: local reply {} failed: {status:?}",
                reply.status
            );
        }
        Action::Pause
    }

    /// Drops every client header the upstream set does not name, then writes the set.
    fn set_request_headers(&self, client: &[(String, String)], upstream: &[(String, String)]) {
        let map = MapType::HttpRequestHeaders;
        for (name, _) in client {
            if !request::is_envoy_header(name) && !upstream.iter().any(|(n, _)| n == name) {
                let _ = abi::remove_header(map, name);
            }
        }
        for (name, value) in upstream {
            if let Err(status) = abi::set_header(map, name, value) {
                warn!("codex filter: cannot set upstream header {name}: {status:?}");
            }
        }
    }

    fn translate_body(
        &mut self,
        forward: &Forward,
        body: &[u8],
    ) -> Result<(Vec<u8>, String), ApiError> {
        let cfg = &self.shared.config;
        match forward.endpoint {
            Endpoint::ChatCompletions => {
                let ctx = TranslateContext {
                    models: &cfg.models,
                    default_effort: cfg.default_effort,
                    default_summary: cfg.default_summary,
                    session_hint: forward.session_hint.as_deref(),
                };
                let t = chat_request::translate(body, &ctx)?;
                self.client = Some(ClientRequest {
                    stream: t.stream,
                    include_usage: t.include_usage,
                    model: t.model,
                    mode: forward.mode,
                    max_request_body_bytes: cfg.max_request_body_bytes,
                });
                Ok((t.body, t.session_id))
            }
            Endpoint::Completions => {
                Err(
                    ApiError::new(501, SERVER, "/v1/completions is not available yet.")
                        .with_code("not_implemented"),
                )
            }
        }
    }

    fn apply_plan(&self, status: Option<u16>, set: &[(&'static str, String)]) {
        if let Some(status) = status {
            let _ = abi::set_header(MapType::HttpResponseHeaders, ":status", &status.to_string());
        }
        for (name, value) in set {
            let _ = abi::set_header(MapType::HttpResponseHeaders, name, value);
        }
    }
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let headers = self.get_http_request_headers();
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        let (method, path) = (find(":method").to_string(), find(":path").to_string());
        let now = self.now();
        if self.shared.config.verbose {
            self.verbose = Some(VerboseLine {
                method: method.clone(),
                path: path.clone(),
                started_ms: now_ms(self),
            });
        }
        let head = RequestHead {
            method: &method,
            path: &path,
            headers: &headers,
        };
        let decision = request::decide(
            &self.shared.config,
            self.shared.tokens.as_ref(),
            &head,
            now,
            now,
        );
        let forward = match decision {
            Decision::Reply(reply) => return self.reply(reply),
            Decision::Forward(forward) => forward,
        };
        if end_of_stream {
            return self.reply(
                ApiError::invalid_request("The request body is empty; send a JSON object.").into(),
            );
        }
        // Until the body is translated the response side only knows the body limit.
        self.client = Some(ClientRequest {
            stream: false,
            include_usage: false,
            model: String::new(),
            mode: forward.mode,
            max_request_body_bytes: self.shared.config.max_request_body_bytes,
        });
        let held = self.shared.config.hold_headers;
        if !held {
            // Portable mode: headers leave now, so the session id is the client's, if any.
            if let Some(tokens) = &self.shared.tokens {
                let upstream = request::upstream_headers(
                    &self.shared.config,
                    tokens,
                    forward.session_hint.as_deref(),
                    None,
                );
                self.set_request_headers(&headers, &upstream);
            }
        }
        self.request = RequestState::AwaitBody {
            forward,
            headers,
            held,
        };
        if held {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !matches!(self.request, RequestState::AwaitBody { .. }) {
            return Action::Continue;
        }
        let limit = self.shared.config.max_request_body_bytes;
        if body_size > limit {
            self.request = RequestState::Idle;
            return self.reply(body_too_large(limit).into());
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let RequestState::AwaitBody {
            forward,
            headers,
            held,
        } = std::mem::replace(&mut self.request, RequestState::Forwarded)
        else {
            return Action::Continue;
        };
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        let (upstream_body, session_id) = match self.translate_body(&forward, &body) {
            Ok(translated) => translated,
            Err(error) => return self.reply(error.into()),
        };
        if let Err(status) =
            abi::set_buffer(BufferType::HttpRequestBody, 0, body_size, &upstream_body)
        {
            warn!("codex filter: cannot replace the request body: {status:?}");
            return self.reply(
                ApiError::new(
                    500,
                    SERVER,
                    "The filter could not rewrite the request body.",
                )
                .into(),
            );
        }
        if held {
            if let Some(tokens) = &self.shared.tokens {
                let upstream = request::upstream_headers(
                    &self.shared.config,
                    tokens,
                    Some(&session_id),
                    Some(upstream_body.len()),
                );
                self.set_request_headers(&headers, &upstream);
            }
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.replied {
            return Action::Continue;
        }
        let Some(client) = self.client.clone() else {
            return Action::Continue;
        };
        let headers = self.get_http_response_headers();
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let status = find(":status").and_then(|s| s.parse().ok()).unwrap_or(502);
        let via_upstream = self
            .get_property(vec!["response", "code_details"])
            .is_some_and(|details| details == b"via_upstream");
        let head = ResponseHead {
            status,
            content_type: find("content-type"),
            via_upstream,
            limits: LimitHeaders::from_pairs(headers.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        };
        let now = self.now();
        let (mut handler, plan) =
            Handler::new(&client, &head, self.shared.config.hold_headers, now);
        if end_of_stream {
            // No body will follow, so the answer is complete now.
            let done = handler.finish(now);
            let reply = Reply {
                status: done.status.or(plan.status).unwrap_or(status),
                headers: merged(&plan.set, &done.set),
                body: done.body.to_vec(),
            };
            return self.reply(reply);
        }
        for name in REMOVED_RESPONSE_HEADERS {
            let _ = abi::remove_header(MapType::HttpResponseHeaders, name);
        }
        let hold = plan.hold;
        if !hold {
            self.apply_plan(plan.status, &plan.set);
        }
        self.response = Some((handler, plan));
        if hold {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let now = self.now();
        let chunk = if body_size > 0 {
            self.get_http_response_body(0, body_size)
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let Some((handler, plan)) = self.response.as_mut() else {
            return Action::Continue;
        };
        let hold = plan.hold;
        let mut out = handler.push(&chunk, now).to_vec();
        let mut final_headers = None;
        if end_of_stream {
            let done = handler.finish(now);
            out.extend_from_slice(done.body);
            final_headers = Some((done.status.or(plan.status), merged(&plan.set, &done.set)));
        }
        if let Err(status) = abi::set_buffer(BufferType::HttpResponseBody, 0, body_size, &out) {
            warn!("codex filter: cannot replace the response body: {status:?}");
        }
        match final_headers {
            Some((status, set)) if hold => self.apply_plan(status, &set),
            _ => {}
        }
        if hold && !end_of_stream {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_log(&mut self) {
        if let Some(line) = &self.verbose {
            let status = self
                .get_property(vec!["response", "code"])
                .map(|b| decode_u64(&b))
                .unwrap_or(0);
            let model = self.client.as_ref().map_or("-", |c| {
                if c.model.is_empty() {
                    "-"
                } else {
                    c.model.as_str()
                }
            });
            info!(
                "codex filter: {} {} -> {} model={} {}ms",
                line.method,
                line.path.split('?').next().unwrap_or(""),
                status,
                model,
                now_ms(self).saturating_sub(line.started_ms)
            );
        }
    }
}

/// Header-time settings overridden by what the end of the body decided.
fn merged(
    early: &[(&'static str, String)],
    late: &[(&'static str, String)],
) -> Vec<(&'static str, String)> {
    let mut all: Vec<(&'static str, String)> = early
        .iter()
        .filter(|(n, _)| !late.iter().any(|(l, _)| l == n))
        .cloned()
        .collect();
    all.extend(late.iter().cloned());
    all
}

fn now_ms(ctx: &dyn Context) -> u128 {
    ctx.get_current_time()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Envoy encodes integer properties as 8 little-endian bytes.
fn decode_u64(bytes: &[u8]) -> u64 {
    bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}
