//! One request through the main filter instance, from its headers to its log line. The host
//! turns each proxy-wasm callback into one call here and performs the [`Steps`] it gets back;
//! everything the filter decides about a request is decided in this file or below it:
//!
//! - request headers: answer locally, pass an Ollama route through (minus the client's
//!   credentials), or forward a chat/completions request. Portable mode sends the upstream
//!   headers now; with `ENVOY_HOLD_HEADERS` they wait for the body (and its session id).
//! - request body: buffered to its end (bounded by `MAX_REQUEST_BODY_BYTES`; an oversize
//!   body is read and dropped before its 413, see `flow::upload`),
//!   translated, replaced. A request with no usable ChatGPT token yet waits for the refresher.
//! - response headers and body: the [`Handler`]'s plan and bytes; a backend 401 marks the
//!   token it was sent with as stale (and, when this instance attached that token, answers
//!   503 "retry" while a refresh can still fix the login).
//! - log: the metrics and the `VERBOSE` line.

use crate::core::accounts::account::ACCOUNT_HEADER;
use crate::core::accounts::pool::{self, Pick};
use crate::core::auth::auth_json::ChatgptTokens;
use crate::core::auth::token::{self, Availability};
use crate::core::catalogue::{self, Catalogue};
use crate::core::error::{ApiError, Code};
use crate::core::flow::credentials::NO_RETRY_HEADER;
use crate::core::flow::headers::HeaderView;
use crate::core::flow::response::{
    ClientRequest, Handler, HeaderPlan, REMOVED_RESPONSE_HEADERS, ResponseHead,
};
use crate::core::flow::step::{LOCAL_REPLY_DETAILS, Next, Step, Steps};
use crate::core::flow::upload::{BodyStep, MAX_DISCARDED_BYTES};
use crate::core::keys::local::LocalCounts;
use crate::core::keys::{KeyEntry, KeyId};
use crate::core::metrics::{Metric, Owner, RouteKind};
use crate::core::port::Port;
use crate::core::reply::Reply;
use crate::core::routing::decision::{self, Decided, Decision, Endpoint, Forward, RequestHead};
use crate::core::translate::request::common::{TranslateContext, Translated};
use crate::core::translate::request::responses::{self as responses_request, Upstream};
use crate::core::translate::request::{chat as chat_request, completions as completion_request};
use crate::core::translate::response::upstream_error::LimitHeaders;
use crate::core::translate::response::usage::Usage;
use crate::core::usage;
use crate::core::vm::{Instructions, VmState};

/// Client headers that must not reach an Ollama server: they carry this proxy's key.
const PASS_THROUGH_REMOVED: &[&str] = &["authorization", "proxy-authorization", "cookie"];

enum Stage {
    /// Not ours to translate (answered locally, passed through, or nothing decided yet).
    Idle,
    /// Refused at header time while the client still sends its body: the body is read and
    /// dropped, then `reply` goes out (see [`RequestFlow::refuse`]).
    Draining {
        reply: Reply,
        discarded: usize,
    },
    /// Waiting for the whole body; `held` means the request headers wait too.
    AwaitBody {
        forward: Forward,
        headers: Vec<(String, String)>,
        held: bool,
    },
    Forwarded,
}

/// The machine of one request through the main instance; one per HTTP context, fed every
/// callback of that request in order.
pub struct RequestFlow {
    context_id: u32,
    /// The token generation this request was sent with (ChatGPT mode), to tell whether a
    /// backend 401 is about the current token.
    generation: Option<u64>,
    /// The account this instance gave the request (or parked it for).
    account: Option<usize>,
    /// The account that answered it (for its counts).
    served_by: Option<usize>,
    stage: Stage,
    route: RouteKind,
    client: Option<ClientRequest>,
    /// The filter answered this request itself; its reply must pass through untouched.
    replied: bool,
    /// The status the client gets, when this flow decided or saw it (its own replies, the
    /// response headers it let through); otherwise `log` asks the host.
    status: Option<u16>,
    /// The upstream's status, for an answer whose headers wait for its end.
    upstream_status: Option<u16>,
    response: Option<(Handler, HeaderPlan)>,
    /// Milliseconds at the start, when the body went upstream, when the answer began.
    started_ms: u64,
    sent_ms: u64,
    answered_ms: u64,
    /// `VERBOSE`: method and path, for the line written at the end.
    log_line: Option<String>,
    /// The client key the request presented, once the gate let it in.
    key: Option<KeyId>,
}

impl RequestFlow {
    /// `context_id` is the host's id for this request, used to park and resume it.
    pub fn new(context_id: u32) -> Self {
        Self {
            context_id,
            generation: None,
            account: None,
            served_by: None,
            stage: Stage::Idle,
            route: RouteKind::Local,
            client: None,
            replied: false,
            status: None,
            upstream_status: None,
            response: None,
            started_ms: 0,
            sent_ms: 0,
            answered_ms: 0,
            log_line: None,
            key: None,
        }
    }

    fn reply(&mut self, reply: impl Into<Reply>) -> Steps {
        let reply = reply.into();
        self.replied = true;
        self.status = Some(reply.status);
        Steps::reply(reply)
    }

    /// A refusal decided from the headers. With held headers and a body still to come it waits
    /// for the body's end, dropping each chunk: Envoy closes an HTTP/1.1 connection whose request
    /// it answered early, and a client still writing its body (urllib, httpx, the OpenAI SDKs)
    /// would get a reset instead of the answer. Nothing goes upstream meanwhile. Portable mode
    /// answers at once: without `allow_on_headers_stop_iteration` Envoy does not hold the
    /// headers while the filter reads the body.
    fn refuse(&mut self, hold: bool, reply: impl Into<Reply>, end_of_stream: bool) -> Steps {
        if end_of_stream || !hold {
            return self.reply(reply);
        }
        self.stage = Stage::Draining {
            reply: reply.into(),
            discarded: 0,
        };
        Steps::pause()
    }

    /// The request headers arrived, as the host's serialized map.
    pub fn request_headers(
        &mut self,
        vm: &VmState,
        port: &dyn Port,
        map: &[u8],
        end_of_stream: bool,
    ) -> Steps {
        let cfg = &vm.config;
        // One clock read per callback: each is a host call.
        self.started_ms = port.now_ms();
        let now = self.started_ms / 1000;
        // A map the host cannot have produced reads as no headers at all (a 404 below).
        let view = HeaderView::parse(map).unwrap_or_default();
        let method = view.get(":method").unwrap_or("").to_string();
        let path = view.get(":path").unwrap_or("").to_string();
        if cfg.verbose {
            self.log_line = Some(format!("{method} {}", path.split('?').next().unwrap_or("")));
        }
        // A WebSocket handshake has no request body to wait for: its refusal goes out at once.
        let websocket = view
            .get("upgrade")
            .is_some_and(|v| v.to_ascii_lowercase().contains("websocket"));
        let hold = cfg.hold_headers && !websocket;
        if let Err(error) = view.check_request() {
            return self.refuse(hold, error, end_of_stream);
        }
        let head = RequestHead {
            method: &method,
            path: &path,
            headers: &view.text,
        };
        let catalogue = vm.catalogue.borrow().clone();
        let Decided { decision, key } = decision::decide_keyed(cfg, &catalogue, &head, now);
        self.key = key;
        let upstream_route = match &decision {
            Decision::Forward(forward) => Some(forward.endpoint.into()),
            Decision::PassThrough => Some(RouteKind::Ollama),
            _ => None,
        };
        if let Some(route) = upstream_route {
            // A refusal is counted under the route it asked for.
            self.route = route;
            if let Err(error) = self.admit(vm, port, now) {
                return self.refuse(hold, error, end_of_stream);
            }
        }
        let forward = match decision {
            Decision::Reply(reply) => return self.refuse(hold, reply, end_of_stream),
            Decision::Usage => {
                let body = usage::answer(vm, port, self.key, now);
                return self.refuse(cfg.hold_headers, Reply::json(200, body), end_of_stream);
            }
            Decision::PassThrough => {
                self.route = RouteKind::Ollama;
                let writes = PASS_THROUGH_REMOVED
                    .iter()
                    .copied()
                    .filter(|removed| view.names().any(|name| name == *removed))
                    .map(Step::RemoveRequestHeader)
                    .collect();
                return Steps::then(writes, Next::Continue);
            }
            Decision::CodexCatalogue => {
                let body = catalogue::listing::codex_answer(
                    catalogue::record::raw_catalogue(port),
                    &catalogue,
                    &cfg.models,
                );
                return self.refuse(cfg.hold_headers, Reply::json(200, body), end_of_stream);
            }
            Decision::Forward(forward) => forward,
        };
        self.route = forward.endpoint.into();
        if end_of_stream {
            return self.reply(ApiError::invalid_request(
                "The request body is empty; send a JSON object.",
            ));
        }
        // Until the body is translated the response side only knows the endpoint and the limit.
        self.client = Some(ClientRequest {
            endpoint: forward.endpoint,
            stream: false,
            include_usage: false,
            model: String::new(),
            mode: forward.mode,
            max_request_body_bytes: cfg.max_request_body_bytes,
        });
        let tokens = match self.current_tokens(vm, port, forward.session_hint.as_deref()) {
            Ok(tokens) => tokens,
            Err(error) => return self.refuse(cfg.hold_headers, error, end_of_stream),
        };
        let headers = view.text;
        let held = cfg.hold_headers;
        let steps = if held {
            Steps::pause()
        } else {
            // Portable mode: headers leave now, so the session id is the client's, if any.
            let session = forward.session_hint.as_deref();
            let mut upstream = decision::upstream_headers_for(
                cfg,
                forward.endpoint,
                tokens.as_ref(),
                &headers,
                session,
                None,
            );
            // The body is not read yet, so a chat body goes in the classic shape (see
            // TranslateContext); a Responses body is the client's, in the shape its header says.
            decision::mark_lite(&mut upstream, forward.lite_shape);
            let writes = vec![Step::ReplaceRequestHeaders(decision::final_request_headers(
                &headers, upstream,
            ))];
            self.send_or_wait(vm, now, &tokens, writes)
        };
        self.stage = Stage::AwaitBody {
            forward,
            headers,
            held,
        };
        steps
    }

    /// A request body callback: `body_size` bytes are buffered so far. `body` reads them; it
    /// is called only once the whole body is there.
    pub fn request_body(
        &mut self,
        vm: &VmState,
        port: &dyn Port,
        body_size: usize,
        end_of_stream: bool,
        body: impl FnOnce() -> Vec<u8>,
    ) -> Steps {
        if let Stage::Draining { discarded, .. } = &mut self.stage {
            *discarded = discarded.saturating_add(body_size);
            if !end_of_stream && *discarded <= MAX_DISCARDED_BYTES {
                return Steps::then(vec![Step::ReplaceRequestBody(Vec::new())], Next::Pause);
            }
            let Stage::Draining { reply, .. } = std::mem::replace(&mut self.stage, Stage::Idle) else {
                return Steps::go_on();
            };
            return self.reply(reply);
        }
        let Stage::AwaitBody { forward, .. } = &mut self.stage else {
            return Steps::go_on();
        };
        match forward.body.step(body_size, end_of_stream) {
            BodyStep::Complete => {}
            BodyStep::Buffer => return Steps::pause(),
            // Emptied, so that what Envoy holds stays within its own buffer limit.
            BodyStep::Discard => return Steps::then(vec![Step::ReplaceRequestBody(Vec::new())], Next::Pause),
            BodyStep::Reject(error) => {
                self.stage = Stage::Idle;
                return self.reply(error);
            }
        }
        let cfg = &vm.config;
        let Stage::AwaitBody {
            forward,
            headers,
            held,
        } = std::mem::replace(&mut self.stage, Stage::Forwarded)
        else {
            return Steps::go_on();
        };
        let translated = match self.translate_body(vm, &forward, &body()) {
            Ok(translated) => translated,
            Err(error) => return self.reply(error),
        };
        if let Some(entry) = self.entry(vm).filter(|e| !e.allows_model(&translated.model)) {
            return self.reply(model_not_allowed(entry, &translated.model));
        }
        self.sent_ms = port.now_ms();
        let now = self.sent_ms / 1000;
        let Translated {
            body,
            session_id,
            lite,
            ..
        } = translated;
        let length = body.len();
        let mut writes = vec![Step::ReplaceRequestBody(body)];
        if !held {
            return Steps::then(writes, Next::Continue);
        }
        // With the credentials instance upstream, the header-time check was all this needs.
        let session = Some(session_id.as_str()).filter(|s| !s.is_empty());
        let tokens = match cfg.credentials_upstream {
            true => None,
            false => match self.current_tokens(vm, port, session) {
                Ok(tokens) => tokens,
                Err(error) => return self.reply(error),
            },
        };
        let mut upstream = decision::upstream_headers_for(
            cfg,
            forward.endpoint,
            tokens.as_ref(),
            &headers,
            session,
            Some(length),
        );
        decision::mark_lite(&mut upstream, lite);
        writes.push(Step::ReplaceRequestHeaders(decision::final_request_headers(
            &headers, upstream,
        )));
        self.send_or_wait(vm, now, &tokens, writes)
    }

    /// The response headers arrived. `map` reads the header map, only when the response is
    /// the filter's to handle; `details` reads Envoy's `response.code_details`, only when the
    /// status does not tell already: Envoy's own replies and the filter's are never 2xx here
    /// (the routes have no direct responses, and a CORS preflight is answered before this
    /// filter sees the request), so a 2xx is the upstream's.
    pub fn response_headers(
        &mut self,
        vm: &VmState,
        port: &dyn Port,
        details: impl FnOnce() -> Vec<u8>,
        map: impl FnOnce() -> Vec<u8>,
        end_of_stream: bool,
    ) -> Steps {
        let cfg = &vm.config;
        self.answered_ms = port.now_ms();
        // What the credentials instance tells this one about an attempt, not for clients (a
        // single account's 429 is marked too).
        let internal: Vec<Step> = match cfg.credentials_upstream {
            true => vec![
                Step::RemoveResponseHeader(NO_RETRY_HEADER),
                Step::RemoveResponseHeader(ACCOUNT_HEADER),
            ],
            false => Vec::new(),
        };
        if self.replied {
            return Steps::then(internal, Next::Continue);
        }
        let Some(client) = self.client.clone() else {
            return Steps::then(internal, Next::Continue);
        };
        let view = HeaderView::parse(&map()).unwrap_or_default();
        let parsed: Option<u16> = view.get(":status").and_then(|s| s.parse().ok());
        let status = parsed.unwrap_or(502);
        let via_upstream = match (200..300).contains(&status) {
            true => true,
            false => {
                let details = details();
                if details == LOCAL_REPLY_DETAILS.as_bytes() {
                    return Steps::then(internal, Next::Continue);
                }
                details == b"via_upstream"
            }
        };
        let credentials_here = cfg.auth.is_chatgpt() && !cfg.credentials_upstream;
        // The credentials instance names the account each attempt went out on.
        let account = match cfg.credentials_upstream {
            true => pool::index_named(vm, view.get(ACCOUNT_HEADER)).or(Some(0).filter(|_| !vm.is_pool())),
            false => self.account,
        };
        if via_upstream && cfg.auth.is_chatgpt() {
            self.served_by = account;
        }
        // This instance attached the refused token, so no Envoy retry can help (it would send
        // the same headers): while a refresh can still fix the login, the client is told to
        // retry; otherwise the backend's 401 goes out as "log in again".
        let mut retry = None;
        if via_upstream && status == 401 && credentials_here {
            let index = account.unwrap_or(0);
            let store = vm.account(index).map_or(&vm.tokens, |a| a.tokens);
            let generation = self.generation.or_else(|| {
                vm.account(index)
                    .and_then(|a| a.waiters.borrow_mut().take_resumed(self.context_id))
            });
            if let Some(generation) = generation {
                vm.account_token_rejected(port, index, generation);
                let record = store.read(port);
                let refreshable = record
                    .as_ref()
                    .is_some_and(|r| !matches!(r.availability(port.now()), Availability::Dead(_)));
                if refreshable {
                    retry = Some(token::rejected_retry());
                }
            }
        }
        if via_upstream && cfg.auth.is_chatgpt() {
            if let Some(announced) = view.get("x-models-etag") {
                catalogue::refresh::etag_announced(vm, port, announced);
            }
        }
        let head = ResponseHead {
            status,
            content_type: view.get("content-type"),
            via_upstream,
            limits: LimitHeaders::from_pairs(view.text.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        };
        let now = self.answered_ms / 1000;
        if via_upstream {
            let windows = head.limits.windows(now);
            port.metric(Metric::RateLimits(windows));
            if let Some(index) = account.filter(|_| cfg.auth.is_chatgpt()) {
                pool::observed(vm, port, index, &windows);
            }
        }
        // A pool's 429: the account is out until its reset (the credentials instance marked
        // it already). Another account can serve: portable mode tells the client to retry at
        // once; otherwise every account is spent and the client gets the earliest reset.
        if via_upstream && status == 429 && vm.is_pool() && retry.is_none() {
            if let Some(index) = account.filter(|_| credentials_here) {
                pool::limited(vm, port, index, &head.limits, None);
            }
            retry = Some(match pool::pick(vm, port, None) {
                Pick::Refuse(error) => error,
                _ => pool::switched(),
            });
        }
        let (mut handler, plan) = match retry {
            Some(error) => Handler::fixed(error),
            None => Handler::new(&client, &head, cfg.hold_headers, now),
        };
        if !matches!(handler, Handler::Translate { .. } | Handler::Relay) {
            port.metric(Metric::UpstreamError);
        }
        if end_of_stream {
            // No body will follow, so the answer is complete now.
            let done = handler.finish(now);
            if done.usage_limited {
                port.metric(Metric::UsageLimitHit);
            }
            let reply = Reply {
                status: done.status.or(plan.status).unwrap_or(status),
                headers: merged(&plan.set, &done.set),
                body: done.body.to_vec(),
            };
            return self.reply(reply);
        }
        let mut writes: Vec<Step> = REMOVED_RESPONSE_HEADERS
            .iter()
            .chain(&[ACCOUNT_HEADER, NO_RETRY_HEADER])
            .copied()
            .filter(|removed| view.names().any(|name| name == *removed))
            .map(Step::RemoveResponseHeader)
            .collect();
        if !plan.hold {
            header_writes(plan.status, &plan.set, &mut writes);
            self.status = plan.status.or(parsed);
        }
        self.upstream_status = parsed;
        let next = if plan.hold { Next::Pause } else { Next::Continue };
        self.response = Some((handler, plan));
        Steps::then(writes, next)
    }

    /// A response body callback; `chunk` reads its `body_size` bytes.
    pub fn response_body(
        &mut self,
        port: &dyn Port,
        body_size: usize,
        end_of_stream: bool,
        chunk: impl FnOnce() -> Vec<u8>,
    ) -> Steps {
        let now = port.now();
        let Some((handler, plan)) = self.response.as_mut() else {
            return Steps::go_on();
        };
        let chunk = if body_size > 0 { chunk() } else { Vec::new() };
        let relays = handler.relays();
        let mut out = handler.push(&chunk, now).to_vec();
        let mut writes = Vec::with_capacity(1);
        let mut final_headers = Vec::new();
        if end_of_stream {
            let translating = matches!(handler, Handler::Translate { .. });
            let done = handler.finish(now);
            out.extend_from_slice(done.body);
            if done.usage_limited {
                port.metric(Metric::UsageLimitHit);
            }
            if translating && done.status.is_some_and(|s| s >= 400) {
                port.metric(Metric::UpstreamError);
            }
            if plan.hold {
                let set = merged(&plan.set, &done.set);
                let status = done.status.or(plan.status);
                header_writes(status, &set, &mut final_headers);
                self.status = status.or(self.upstream_status);
            }
        }
        if !relays {
            writes.push(Step::ReplaceResponseBody(out));
        } else if !out.is_empty() {
            // The chunk stays as it came; what the end adds goes after it.
            let mut whole = chunk;
            whole.extend_from_slice(&out);
            writes.push(Step::ReplaceResponseBody(whole));
        }
        writes.append(&mut final_headers);
        let next = if plan.hold && !end_of_stream {
            Next::Pause
        } else {
            Next::Continue
        };
        Steps::then(writes, next)
    }

    /// The request is over: the metrics, and the `VERBOSE` line to log (never a credential:
    /// method, path without its query, status, model, timings, token counts). `code` reads
    /// Envoy's `response.code` property, only when the flow does not know the status (Envoy's
    /// own replies, a reset before the answer).
    pub fn log(
        &mut self,
        vm: &VmState,
        port: &dyn Port,
        code: impl FnOnce() -> Option<Vec<u8>>,
    ) -> Option<String> {
        for account in vm.accounts() {
            account.waiters.borrow_mut().forget(self.context_id);
        }
        let status = self.status.unwrap_or_else(|| {
            let status = code().as_deref().map_or(0, decode_u64);
            u16::try_from(status).unwrap_or(0)
        });
        port.metric(Metric::Request {
            route: self.route,
            status,
        });
        let usage = self.response.as_ref().and_then(|(handler, _)| handler.usage());
        if let Some(usage) = &usage {
            port.metric(Metric::Tokens(*usage));
        }
        if let Some(index) = self.served_by {
            pool::served(vm, port, index, self.route, status, usage.as_ref());
        }
        if let (Some(id), Some(entry)) = (self.key, self.entry(vm)) {
            let owner = Owner::Key(&entry.name);
            port.metric_for(
                owner,
                Metric::Request {
                    route: self.route,
                    status,
                },
            );
            if let Some(usage) = &usage {
                port.metric_for(owner, Metric::Tokens(*usage));
                vm.key_counts.add_tokens(
                    port,
                    id,
                    entry,
                    (usage.prompt_tokens, usage.completion_tokens),
                    port.now(),
                    vm.config.etcd.is_some(),
                );
            }
        }
        let line = self.log_line.as_ref()?;
        let total_ms = port.now_ms().saturating_sub(self.started_ms);
        let mut line = self.verbose_line(line, status, usage, total_ms);
        if let Some(entry) = self.entry(vm) {
            line.push_str(" key=");
            line.push_str(&entry.name);
        }
        Some(line)
    }

    /// The keys-file entry of the key this request presented.
    fn entry<'v>(&self, vm: &'v VmState) -> Option<&'v KeyEntry> {
        self.key.and_then(|id| vm.config.keys.get(id))
    }

    /// Counts a request that goes upstream against its key's limits; `Err` is the 429.
    fn admit(&self, vm: &VmState, port: &dyn Port, now: u64) -> Result<(), ApiError> {
        let (Some(id), Some(entry)) = (self.key, self.entry(vm)) else {
            return Ok(());
        };
        let replicas = vm.config.etcd.is_some();
        LocalCounts::admit(&vm.key_counts, port, id, entry, now, replicas).inspect_err(|_| {
            port.metric(Metric::KeyLimitReached);
            port.metric_for(Owner::Key(&entry.name), Metric::KeyLimitReached);
            if vm.config.verbose {
                log::info!(
                    "codex filter: key {} is over a limit; refused with 429",
                    entry.name
                );
            }
        })
    }

    fn verbose_line(&self, line: &str, status: u16, usage: Option<Usage>, total_ms: u64) -> String {
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
        format!(
            "codex filter: {line} -> {status} model={model} upstream={upstream_ms} total={total_ms}ms tokens={tokens}"
        )
    }

    /// The ChatGPT credentials for this request now, of the account the pool picks for
    /// `conversation`: `Ok(None)` means wait for a refresh (always `Ok(None)` with an API-key
    /// upstream, which needs none, and with the credentials instance upstream, which picks
    /// the account and attaches them itself).
    fn current_tokens(
        &mut self,
        vm: &VmState,
        port: &dyn Port,
        conversation: Option<&str>,
    ) -> Result<Option<ChatgptTokens>, ApiError> {
        if !vm.config.auth.is_chatgpt() {
            return Ok(None);
        }
        if vm.config.credentials_upstream {
            return pool::check(vm, port).map(|()| None);
        }
        match pool::pick(vm, port, conversation) {
            Pick::Use {
                index,
                tokens,
                generation,
            } => {
                self.account = Some(index);
                self.generation = Some(generation);
                Ok(Some(tokens))
            }
            Pick::Wait(index) => {
                self.account = Some(index);
                Ok(None)
            }
            Pick::Refuse(error) => Err(error),
        }
    }

    /// `writes`, then on: or, when this instance owes the request a ChatGPT token it does not
    /// have yet, parked until the refresher has one (the root context resumes it).
    fn send_or_wait(
        &mut self,
        vm: &VmState,
        now: u64,
        tokens: &Option<ChatgptTokens>,
        mut writes: Vec<Step>,
    ) -> Steps {
        let cfg = &vm.config;
        if !cfg.auth.is_chatgpt() || cfg.credentials_upstream || tokens.is_some() {
            return Steps::then(writes, Next::Continue);
        }
        let waiters = self
            .account
            .and_then(|i| vm.account(i))
            .map_or(&vm.waiters, |a| a.waiters);
        let waiting = waiters.borrow_mut().wait(self.context_id, now);
        match waiting {
            Ok(()) => Steps::then(writes, Next::Pause),
            Err(error) => {
                let reply = Reply::from(error);
                self.replied = true;
                self.status = Some(reply.status);
                writes.push(Step::Reply(reply));
                Steps::then(writes, Next::Pause)
            }
        }
    }

    fn translate_body(
        &mut self,
        vm: &VmState,
        forward: &Forward,
        body: &[u8],
    ) -> Result<Translated, ApiError> {
        let cfg = &vm.config;
        let texts = vm.instructions.borrow();
        let catalogue = vm.catalogue.borrow().clone();
        let ctx = translate_context(vm, &texts, &catalogue, forward.session_hint.as_deref());
        let translated = match forward.endpoint {
            Endpoint::ChatCompletions => chat_request::translate(body, &ctx)?,
            Endpoint::Completions => completion_request::translate(body, &ctx)?,
            Endpoint::Responses => {
                let upstream = match cfg.auth.is_chatgpt() {
                    true => Upstream::Chatgpt {
                        lite_shape: forward.lite_shape,
                    },
                    false => Upstream::ApiKey,
                };
                responses_request::translate(body, &ctx, upstream)?
            }
            Endpoint::ResponsesCompact => responses_request::compact(body, &ctx, forward.lite_shape)?,
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
}

/// Bench-only (`phase-probe`): the request and response translations run again on the side,
/// their results dropped, so `bench/phases.py` can price them inside Envoy.
#[cfg(feature = "phase-probe")]
impl RequestFlow {
    /// Translates `body` as this request's endpoint would; `false` if it did not translate.
    pub fn probe_translate(vm: &VmState, endpoint: Endpoint, body: &[u8]) -> bool {
        let texts = vm.instructions.borrow();
        let catalogue = vm.catalogue.borrow().clone();
        let ctx = translate_context(vm, &texts, &catalogue, None);
        match endpoint {
            Endpoint::ChatCompletions => chat_request::translate(body, &ctx).is_ok(),
            Endpoint::Completions => completion_request::translate(body, &ctx).is_ok(),
            _ => responses_request::translate(body, &ctx, Upstream::ApiKey).is_ok(),
        }
    }

    /// The endpoint of a forwarded request, once its body is translated.
    pub fn probe_endpoint(&self) -> Option<Endpoint> {
        self.client.as_ref().map(|c| c.endpoint)
    }

    /// A second handler for a 2xx event stream, as this request's would be.
    pub fn probe_handler(&self, now: u64) -> Option<Handler> {
        let client = self.client.as_ref()?;
        let head = ResponseHead {
            status: 200,
            content_type: Some("text/event-stream"),
            via_upstream: true,
            limits: LimitHeaders::default(),
        };
        Some(Handler::new(client, &head, true, now).0)
    }
}

/// What a request translation reads from the VM: its settings, catalogue and instruction texts.
fn translate_context<'c>(
    vm: &'c VmState,
    texts: &'c Instructions,
    catalogue: &'c Catalogue,
    session_hint: Option<&'c str>,
) -> TranslateContext<'c> {
    let cfg = &vm.config;
    TranslateContext {
        catalogue,
        models: &cfg.models,
        // The lite header must go with a lite body, so only held headers allow the shape.
        lite_shape: cfg.hold_headers && cfg.auth.is_chatgpt(),
        default_effort: cfg.default_effort,
        default_summary: cfg.default_summary,
        tools_format: cfg.tools_format,
        session_hint,
        base_instructions: texts.base.as_deref(),
        codex_instructions: texts.codex.as_deref(),
    }
}

fn model_not_allowed(entry: &KeyEntry, model: &str) -> ApiError {
    ApiError::of(
        Code::ModelNotAllowed,
        format!(
            "The key {:?} may not use the model {model:?}; it may use {}. Ask the operator to add the model to the key's models.",
            entry.name,
            entry.models.as_deref().unwrap_or_default().join(", ")
        ),
    )
    .with_param("model")
}

fn header_writes(status: Option<u16>, set: &[(&'static str, String)], writes: &mut Vec<Step>) {
    if let Some(status) = status {
        writes.push(Step::SetResponseHeader(":status", status.to_string()));
    }
    writes.extend(
        set.iter()
            .map(|(name, value)| Step::SetResponseHeader(name, value.clone())),
    );
}

/// Header-time settings overridden by what the end of the body decided.
pub fn merged(
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

/// Envoy encodes integer properties as 8 little-endian bytes.
fn decode_u64(bytes: &[u8]) -> u64 {
    bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

#[cfg(test)]
#[path = "request_tests.rs"]
pub(crate) mod tests;
