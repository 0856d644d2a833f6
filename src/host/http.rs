//! One request: a small state machine that feeds headers and bytes to the core and writes
//! back what it returns.

use std::rc::Rc;

use log::{info, warn};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};

use crate::core::auth::auth_json::ChatgptTokens;
use crate::core::auth::token;
use crate::core::error::{ApiError, ErrorType};
use crate::core::flow::response::{
    ClientRequest, Handler, HeaderPlan, REMOVED_RESPONSE_HEADERS, ResponseHead,
};
use crate::core::metrics::{Metric, RouteKind};
use crate::core::port::Port;
use crate::core::reply::Reply;
use crate::core::routing::decision::{self, Decision, Endpoint, Forward, RequestHead, body_too_large};
use crate::core::translate::request::common::{TranslateContext, Translated};
use crate::core::translate::request::{chat as chat_request, completions as completion_request};
use crate::core::translate::response::upstream_error::LimitHeaders;
use crate::host::shared::Shared;
use crate::host::{abi, unix_now};

/// Client headers that must not reach an Ollama server: they carry this proxy's key.
const PASS_THROUGH_REMOVED: &[&str] = &["authorization", "proxy-authorization", "cookie"];

enum RequestState {
    /// Not ours to translate (answered locally, passed through, or nothing decided yet).
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
    context_id: u32,
    /// The token generation this request was sent with (ChatGPT mode), to tell whether a
    /// backend 401 is about the current token.
    generation: Option<u64>,
    request: RequestState,
    route: RouteKind,
    client: Option<ClientRequest>,
    /// The filter answered this request itself; its reply must pass through untouched.
    replied: bool,
    response: Option<(Handler, HeaderPlan)>,
    /// Milliseconds at the start, when the body went upstream, when the answer began.
    started_ms: u128,
    sent_ms: u128,
    answered_ms: u128,
    log_line: Option<String>,
}

impl Http {
    pub fn new(shared: Rc<Shared>, context_id: u32) -> Self {
        Self {
            shared,
            context_id,
            generation: None,
            request: RequestState::Idle,
            route: RouteKind::Local,
            client: None,
            replied: false,
            response: None,
            started_ms: 0,
            sent_ms: 0,
            answered_ms: 0,
            log_line: None,
        }
    }

    fn now(&self) -> u64 {
        unix_now(self)
    }

    fn reply(&mut self, reply: Reply) -> Action {
        self.replied = true;
        if let Err(status) = abi::send_response(reply.status, &reply.headers, &reply.body) {
            warn!("codex filter: local reply {} failed: {status:?}", reply.status);
        }
        Action::Pause
    }

    /// Drops every client header the upstream set does not name, then writes the set.
    fn set_request_headers(&self, client: &[(String, String)], upstream: Vec<(String, String)>) {
        let headers = decision::final_request_headers(client, upstream);
        if let Err(status) = abi::set_headers(MapType::HttpRequestHeaders, &headers) {
            warn!("codex filter: cannot set the upstream headers: {status:?}");
        }
    }

    /// The ChatGPT credentials for this request now: `Ok(None)` means wait for a refresh
    /// (always `Ok(None)` with an API-key upstream, which needs none).
    fn current_tokens(&mut self, now: u64) -> Result<Option<ChatgptTokens>, ApiError> {
        if !self.shared.vm.config.auth.is_chatgpt() {
            return Ok(None);
        }
        let record = self.shared.vm.tokens.read(&self.shared.port);
        let tokens = token::for_request(record.as_ref(), now)?.cloned();
        if self.shared.vm.config.credentials_upstream {
            // The cluster's upstream instance attaches them (and waits for a refresh).
            return Ok(None);
        }
        if tokens.is_some() {
            self.generation = record.map(|r| r.generation);
        }
        Ok(tokens)
    }

    fn must_wait(&self, tokens: &Option<ChatgptTokens>) -> bool {
        let cfg = &self.shared.vm.config;
        cfg.auth.is_chatgpt() && !cfg.credentials_upstream && tokens.is_none()
    }

    /// Parks this request until the root context has a usable token (or gives up).
    fn wait_for_token(&mut self, now: u64) -> Action {
        let waiting = self.shared.vm.waiters.borrow_mut().wait(self.context_id, now);
        match waiting {
            Ok(()) => Action::Pause,
            Err(error) => self.reply(error.into()),
        }
    }

    fn upstream_headers(
        &self,
        tokens: Option<&ChatgptTokens>,
        client: &[(String, String)],
        session: Option<&str>,
        length: Option<usize>,
    ) -> Vec<(String, String)> {
        decision::upstream_headers(&self.shared.vm.config, tokens, client, session, length)
    }

    fn translate_body(&mut self, forward: &Forward, body: &[u8]) -> Result<Translated, ApiError> {
        let cfg = &self.shared.vm.config;
        let texts = self.shared.vm.instructions.borrow();
        let ctx = TranslateContext {
            models: &cfg.models,
            default_effort: cfg.default_effort,
            default_summary: cfg.default_summary,
            tools_format: cfg.tools_format,
            session_hint: forward.session_hint.as_deref(),
            base_instructions: texts.base.as_deref(),
            codex_instructions: texts.codex.as_deref(),
        };
        let translated = match forward.endpoint {
            Endpoint::ChatCompletions => chat_request::translate(body, &ctx)?,
            Endpoint::Completions => completion_request::translate(body, &ctx)?,
        };
        self.client = Some(ClientRequest {
            endpoint: forward.endpoint,
            stream: translated.stream,
            include_usage: translated.include_usage,
            model: translated.model.clone(),
            mode: forward.mode,
            max_request_body_bytes: cfg.max_request_body_bytes,
        });
        Ok(translated)
    }

    fn apply_plan(&self, status: Option<u16>, set: &[(&'static str, String)]) {
        if let Some(status) = status {
            let _ = abi::set_header(MapType::HttpResponseHeaders, ":status", &status.to_string());
        }
        for (name, value) in set {
            let _ = abi::set_header(MapType::HttpResponseHeaders, name, value);
        }
    }

    fn pass_through(&mut self, headers: &[(String, String)]) -> Action {
        self.route = RouteKind::Ollama;
        for (name, _) in headers {
            if PASS_THROUGH_REMOVED.contains(&name.as_str()) {
                let _ = abi::remove_header(MapType::HttpRequestHeaders, name);
            }
        }
        Action::Continue
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
        self.started_ms = now_ms(self);
        if self.shared.vm.config.verbose {
            self.log_line = Some(format!("{method} {}", path.split('?').next().unwrap_or("")));
        }
        let head = RequestHead {
            method: &method,
            path: &path,
            headers: &headers,
        };
        let decision = decision::decide(&self.shared.vm.config, &head, now);
        let forward = match decision {
            Decision::Reply(reply) => return self.reply(reply),
            Decision::PassThrough => return self.pass_through(&headers),
            Decision::Forward(forward) => forward,
        };
        self.route = forward.endpoint.into();
        if end_of_stream {
            return self
                .reply(ApiError::invalid_request("The request body is empty; send a JSON object.").into());
        }
        // Until the body is translated the response side only knows the endpoint and the limit.
        self.client = Some(ClientRequest {
            endpoint: forward.endpoint,
            stream: false,
            include_usage: false,
            model: String::new(),
            mode: forward.mode,
            max_request_body_bytes: self.shared.vm.config.max_request_body_bytes,
        });
        let tokens = match self.current_tokens(now) {
            Ok(tokens) => tokens,
            Err(error) => return self.reply(error.into()),
        };
        let held = self.shared.vm.config.hold_headers;
        let mut action = if held { Action::Pause } else { Action::Continue };
        if !held {
            // Portable mode: headers leave now, so the session id is the client's, if any.
            let upstream =
                self.upstream_headers(tokens.as_ref(), &headers, forward.session_hint.as_deref(), None);
            self.set_request_headers(&headers, upstream);
            if self.must_wait(&tokens) {
                action = self.wait_for_token(now);
            }
        }
        self.request = RequestState::AwaitBody {
            forward,
            headers,
            held,
        };
        action
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !matches!(self.request, RequestState::AwaitBody { .. }) {
            return Action::Continue;
        }
        let limit = self.shared.vm.config.max_request_body_bytes;
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
        let translated = match self.translate_body(&forward, &body) {
            Ok(translated) => translated,
            Err(error) => return self.reply(error.into()),
        };
        if let Err(status) = abi::set_buffer(BufferType::HttpRequestBody, 0, body_size, &translated.body) {
            warn!("codex filter: cannot replace the request body: {status:?}");
            return self.reply(
                ApiError::new(
                    500,
                    ErrorType::Server,
                    "The filter could not rewrite the request body.",
                )
                .into(),
            );
        }
        self.sent_ms = now_ms(self);
        if !held {
            return Action::Continue;
        }
        let now = self.now();
        // With the credentials instance upstream, the header-time check was all this needs.
        let tokens = match self.shared.vm.config.credentials_upstream {
            true => None,
            false => match self.current_tokens(now) {
                Ok(tokens) => tokens,
                Err(error) => return self.reply(error.into()),
            },
        };
        let (session, length) = (Some(translated.session_id.as_str()), Some(translated.body.len()));
        let upstream = self.upstream_headers(tokens.as_ref(), &headers, session, length);
        self.set_request_headers(&headers, upstream);
        if self.must_wait(&tokens) {
            self.wait_for_token(now)
        } else {
            Action::Continue
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.answered_ms = now_ms(self);
        let details = self
            .get_property(vec!["response", "code_details"])
            .unwrap_or_default();
        if self.replied || details == abi::LOCAL_REPLY_DETAILS.as_bytes() {
            return Action::Continue;
        }
        let Some(client) = self.client.clone() else {
            return Action::Continue;
        };
        let headers = self.get_http_response_headers();
        let find = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        let status = find(":status").and_then(|s| s.parse().ok()).unwrap_or(502);
        let via_upstream = details == b"via_upstream";
        let credentials_here =
            self.shared.vm.config.auth.is_chatgpt() && !self.shared.vm.config.credentials_upstream;
        if via_upstream && status == 401 && credentials_here {
            if let Some(generation) = self
                .generation
                .or_else(|| self.shared.vm.waiters.borrow_mut().take_resumed(self.context_id))
            {
                self.shared.vm.token_rejected(&self.shared.port, generation);
            }
        }
        let head = ResponseHead {
            status,
            content_type: find("content-type"),
            via_upstream,
            limits: LimitHeaders::from_pairs(headers.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        };
        let now = self.now();
        if via_upstream {
            self.shared
                .port
                .metric(Metric::RateLimits(head.limits.windows(now)));
        }
        let (mut handler, plan) = Handler::new(&client, &head, self.shared.vm.config.hold_headers, now);
        if !matches!(handler, Handler::Translate { .. }) {
            self.shared.port.metric(Metric::UpstreamError);
        }
        if end_of_stream {
            // No body will follow, so the answer is complete now.
            let done = handler.finish(now);
            if done.usage_limited {
                self.shared.port.metric(Metric::UsageLimitHit);
            }
            let reply = Reply {
                status: done.status.or(plan.status).unwrap_or(status),
                headers: merged(&plan.set, &done.set),
                body: done.body.to_vec(),
            };
            return self.reply(reply);
        }
        for (name, _) in headers
            .iter()
            .filter(|(n, _)| REMOVED_RESPONSE_HEADERS.contains(&n.as_str()))
        {
            let _ = abi::remove_header(MapType::HttpResponseHeaders, name);
        }
        let hold = plan.hold;
        if !hold {
            self.apply_plan(plan.status, &plan.set);
        }
        self.response = Some((handler, plan));
        if hold { Action::Pause } else { Action::Continue }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let now = self.now();
        let chunk = if body_size > 0 {
            self.get_http_response_body(0, body_size).unwrap_or_default()
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
            let translating = matches!(handler, Handler::Translate { .. });
            let done = handler.finish(now);
            out.extend_from_slice(done.body);
            if done.usage_limited {
                self.shared.port.metric(Metric::UsageLimitHit);
            }
            if translating && done.status.is_some_and(|s| s >= 400) {
                self.shared.port.metric(Metric::UpstreamError);
            }
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
        self.shared.vm.waiters.borrow_mut().forget(self.context_id);
        let status = self
            .get_property(vec!["response", "code"])
            .map(|b| decode_u64(&b))
            .unwrap_or(0);
        let status = u16::try_from(status).unwrap_or(0);
        self.shared.port.metric(Metric::Request {
            route: self.route,
            status,
        });
        let usage = self.response.as_ref().and_then(|(handler, _)| handler.usage());
        if let Some(usage) = &usage {
            self.shared.port.metric(Metric::Tokens(*usage));
        }
        if let Some(line) = &self.log_line {
            let model = self
                .client
                .as_ref()
                .map_or("-", |c| if c.model.is_empty() { "-" } else { c.model.as_str() });
            let upstream_ms = match (self.sent_ms, self.answered_ms) {
                (sent, answered) if sent > 0 && answered >= sent => format!("{}ms", answered - sent),
                _ => "-".to_string(),
            };
            let tokens = usage.map_or_else(
                || "-".to_string(),
                |u| {
                    format!(
                        "{}+{} (cached {}, reasoning {})",
                        u.prompt_tokens,
                        u.completion_tokens,
                        u.prompt_tokens_details.cached_tokens,
                        u.completion_tokens_details.reasoning_tokens
                    )
                },
            );
            info!(
                "codex filter: {line} -> {status} model={model} upstream={upstream_ms} total={}ms tokens={tokens}",
                now_ms(self).saturating_sub(self.started_ms)
            );
        }
    }
}

/// Header-time settings overridden by what the end of the body decided.
fn merged(early: &[(&'static str, String)], late: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
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
