//! The response side of a forwarded request: which headers the client gets and how each body
//! chunk is turned into client bytes — a translated stream, an aggregated JSON answer, or an
//! OpenAI-shaped error for an upstream or Envoy failure.

use crate::core::error::{ApiError, Code, ErrorType};
use crate::core::flow::upload::body_too_large;
use crate::core::reasoning::OutputMode;
use crate::core::routing::decision::Endpoint;
use crate::core::translate::response::chat_aggregate::ChatAggregator;
use crate::core::translate::response::chat_stream::ChatStreamWriter;
use crate::core::translate::response::completions::{CompletionAggregator, CompletionStreamWriter};
use crate::core::translate::response::events::FinishReason;
use crate::core::translate::response::presenter::{ChatSink, Piece};
use crate::core::translate::response::responses::{ResponsesAggregator, ResponsesStream};
use crate::core::translate::response::translator::{End, Output, Pipeline, Translator};
use crate::core::translate::response::upstream_error::{self, LimitHeaders};
use crate::core::translate::response::usage::Usage;

/// Error bodies are small; more than this is not worth keeping.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// What the request side learned that the response side needs.
#[derive(Debug, Clone)]
pub struct ClientRequest {
    pub endpoint: Endpoint,
    pub stream: bool,
    pub include_usage: bool,
    pub model: String,
    pub mode: OutputMode,
    /// `MAX_REQUEST_BODY_BYTES`: named in a 413, and the cap of a non-streaming answer.
    pub max_request_body_bytes: usize,
}

/// The response headers as the filter sees them.
pub struct ResponseHead<'a> {
    pub status: u16,
    pub content_type: Option<&'a str>,
    /// Envoy's `response.code_details` is `via_upstream` for a real upstream response;
    /// anything else is a reply Envoy generated itself (413, 503, 504, …).
    pub via_upstream: bool,
    pub limits: LimitHeaders,
}

/// Header changes to make before the first byte reaches the client.
#[derive(Debug, PartialEq)]
pub struct HeaderPlan {
    /// Hold the headers until the body has been seen (needs `ENVOY_HOLD_HEADERS`).
    pub hold: bool,
    pub status: Option<u16>,
    pub set: Vec<(&'static str, String)>,
}

/// Headers that stop being true once the body is rewritten, or must not reach a client.
pub const REMOVED_RESPONSE_HEADERS: &[&str] =
    &["content-length", "content-encoding", "set-cookie", "alt-svc"];

/// The final status, headers and body.
#[derive(Debug, PartialEq)]
pub struct Final<'a> {
    pub body: &'a [u8],
    pub status: Option<u16>,
    pub set: Vec<(&'static str, String)>,
    /// The answer is a ChatGPT usage-limit error (for the stats).
    pub usage_limited: bool,
}

/// How a forwarded request's response body is turned into client bytes, chosen once from the
/// response headers by [`Handler::new`].
pub enum Handler {
    /// A 2xx event stream, translated; `out` holds an error body if the turn failed.
    Translate {
        pipeline: Box<dyn Pipeline>,
        out: Vec<u8>,
    },
    /// The upstream answered an error status; its body is collected and mapped.
    UpstreamError {
        status: u16,
        body: Vec<u8>,
        limits: LimitHeaders,
        out: Vec<u8>,
    },
    /// Envoy answered by itself (no upstream response).
    ProxyError { error: ApiError, out: Vec<u8> },
    /// Envoy answered by itself and its reply is already OpenAI-shaped JSON (the shipped
    /// configuration's `local_reply_config` words it, status included): passed on unchanged.
    ProxyReply { out: Vec<u8> },
    /// A Responses-route answer that is already what the client asked for (compaction's JSON,
    /// an API-key upstream's non-streamed response): left in place, not even copied.
    Relay,
}

const SSE_HEADERS: [(&str, &str); 2] = [
    ("content-type", "text/event-stream; charset=utf-8"),
    ("cache-control", "no-cache"),
];

fn pipeline(client: &ClientRequest, now: u64) -> Box<dyn Pipeline> {
    let (model, usage) = (client.model.as_str(), client.include_usage);
    let limit = client.max_request_body_bytes;
    match (client.endpoint, client.stream) {
        (Endpoint::ChatCompletions, true) => Box::new(Translator::new(
            client.mode,
            ChatStreamWriter::new(model, now, usage),
        )),
        (Endpoint::ChatCompletions, false) => Box::new(Translator::new(
            client.mode,
            Capped::new(ChatAggregator::new(model, now), limit),
        )),
        (Endpoint::Completions, true) => Box::new(Translator::new(
            OutputMode::Hidden,
            CompletionStreamWriter::new(model, now, usage),
        )),
        (Endpoint::Completions, false) => Box::new(Translator::new(
            OutputMode::Hidden,
            Capped::new(CompletionAggregator::new(model, now), limit),
        )),
        (Endpoint::Responses, false) => Box::new(ResponsesAggregator::new(limit)),
        (Endpoint::Responses | Endpoint::ResponsesCompact, _) => Box::new(ResponsesStream::new(limit)),
    }
}

/// A non-streaming answer is held whole until the upstream ends and then written in one
/// piece into Envoy's response buffer, whose limit is the listener's buffer
/// (`MAX_REQUEST_BODY_BYTES` + 1 MiB in the shipped configuration). Past that limit Envoy
/// aborts the stream while the filter is inside its callback, which the SDK does not
/// survive. So the aggregate stops growing at `MAX_REQUEST_BODY_BYTES` (which also bounds the
/// VM's memory) and the answer becomes a 502 `upstream_response_too_large`.
struct Capped<S> {
    sink: S,
    held: usize,
    limit: usize,
    over: Option<ApiError>,
}

impl<S> Capped<S> {
    fn new(sink: S, limit: usize) -> Self {
        Self {
            sink,
            held: 0,
            limit,
            over: None,
        }
    }
}

pub use crate::core::translate::response::translator::answer_too_large;

fn piece_len(piece: &Piece<'_>) -> usize {
    match piece {
        Piece::Role => 0,
        Piece::Content(text) | Piece::ReasoningContent(text) | Piece::Reasoning(text) => text.len(),
        Piece::ToolStart { id, name, .. } => id.len().saturating_add(name.len()),
        Piece::ToolArgs { delta, .. } => delta.len(),
    }
}

impl<S: Output> ChatSink for Capped<S> {
    fn meta(&mut self, id: &str, created: Option<u64>) {
        self.sink.meta(id, created);
    }

    fn piece(&mut self, piece: Piece<'_>) {
        if self.over.is_some() {
            return;
        }
        self.held = self.held.saturating_add(piece_len(&piece));
        if self.held > self.limit {
            self.over = Some(answer_too_large(self.limit));
        } else {
            self.sink.piece(piece);
        }
    }

    fn finish(&mut self, reason: FinishReason, usage: Option<Usage>) {
        if self.over.is_some() {
            return;
        }
        self.sink.finish(reason, usage);
        // JSON escaping and the envelope can still push a body that held less over the limit.
        if matches!(self.sink.end(), End::Body(body) if body.len() > self.limit) {
            self.over = Some(answer_too_large(self.limit));
        }
    }

    fn fail(&mut self, error: ApiError) {
        if self.over.is_none() {
            self.sink.fail(error);
        }
    }
}

impl<S: Output> Output for Capped<S> {
    fn clear(&mut self) {
        self.sink.clear();
    }

    fn pending(&self) -> &[u8] {
        self.sink.pending()
    }

    fn end(&self) -> End<'_> {
        match &self.over {
            Some(error) => End::Error(error),
            None => self.sink.end(),
        }
    }
}

impl Handler {
    /// Picks the handler for these response headers and the header changes to make now:
    /// translate a 2xx event stream, map an upstream error status, or reword Envoy's own reply.
    pub fn new(
        client: &ClientRequest,
        head: &ResponseHead<'_>,
        hold_headers: bool,
        now: u64,
    ) -> (Self, HeaderPlan) {
        if !head.via_upstream && is_json(head.content_type) {
            let plan = HeaderPlan {
                hold: false,
                status: None,
                set: Vec::new(),
            };
            return (Self::ProxyReply { out: Vec::new() }, plan);
        }
        if !head.via_upstream {
            let error = proxy_error(head.status, client.max_request_body_bytes);
            let plan = HeaderPlan {
                hold: false,
                status: Some(error.status),
                set: error.headers(),
            };
            return (
                Self::ProxyError {
                    error,
                    out: Vec::new(),
                },
                plan,
            );
        }
        let is_sse = head.content_type.is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        });
        let success = (200..300).contains(&head.status);
        if success
            && client.endpoint.is_responses()
            && (client.endpoint == Endpoint::ResponsesCompact || !is_sse)
        {
            let plan = HeaderPlan {
                hold: false,
                status: None,
                set: Vec::new(),
            };
            return (Self::Relay, plan);
        }
        if success && is_sse {
            let plan = if client.stream {
                let set = SSE_HEADERS.iter().map(|(k, v)| (*k, v.to_string())).collect();
                HeaderPlan {
                    hold: false,
                    status: None,
                    set,
                }
            } else {
                let set = vec![("content-type", "application/json".to_string())];
                HeaderPlan {
                    hold: hold_headers,
                    status: None,
                    set,
                }
            };
            return (
                Self::Translate {
                    pipeline: pipeline(client, now),
                    out: Vec::new(),
                },
                plan,
            );
        }
        // An error status, or a 2xx that is not a stream (not something the backend sends).
        let status = if (200..300).contains(&head.status) {
            502
        } else {
            head.status
        };
        let early = upstream_error::from_http(status, b"", &head.limits, now);
        let plan = HeaderPlan {
            hold: hold_headers,
            status: Some(early.status),
            set: early.headers(),
        };
        let handler = Self::UpstreamError {
            status,
            body: Vec::new(),
            limits: head.limits.clone(),
            out: Vec::new(),
        };
        (handler, plan)
    }

    /// One body chunk; returns the bytes to forward in its place.
    pub fn push(&mut self, chunk: &[u8], now: u64) -> &[u8] {
        match self {
            Self::Translate { pipeline, .. } => pipeline.push(chunk, now),
            Self::UpstreamError { body, .. } => {
                let room = MAX_ERROR_BODY.saturating_sub(body.len());
                body.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
                &[]
            }
            Self::ProxyError { .. } => &[],
            Self::ProxyReply { out } => {
                out.clear();
                out.extend_from_slice(chunk);
                out
            }
            Self::Relay => &[],
        }
    }

    /// The upstream's body goes on as it came, plus what [`Handler::finish`] adds at its end.
    pub fn relays(&self) -> bool {
        match self {
            Self::Translate { pipeline, .. } => pipeline.relays(),
            Self::Relay => true,
            _ => false,
        }
    }

    /// The upstream body ended.
    pub fn finish(&mut self, now: u64) -> Final<'_> {
        match self {
            Self::Translate { pipeline, out } => match pipeline.finish(now) {
                End::Tail(tail) => Final {
                    body: tail,
                    status: None,
                    set: Vec::new(),
                    usage_limited: false,
                },
                End::Body(body) => Final {
                    body,
                    status: Some(200),
                    set: Vec::new(),
                    usage_limited: false,
                },
                End::Error(error) => render_error(error.clone(), out),
            },
            Self::UpstreamError {
                status,
                body,
                limits,
                out,
            } => render_error(upstream_error::from_http(*status, body, limits, now), out),
            Self::ProxyError { error, out } => render_error(error.clone(), out),
            Self::ProxyReply { .. } | Self::Relay => Final {
                body: &[],
                status: None,
                set: Vec::new(),
                usage_limited: false,
            },
        }
    }

    /// The token usage the upstream reported, for the metrics and the `VERBOSE` line; `None`
    /// until the stream carried it, and for error answers.
    pub fn usage(&self) -> Option<Usage> {
        match self {
            Self::Translate { pipeline, .. } => pipeline.usage(),
            _ => None,
        }
    }
}

fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        ct.trim_start()
            .to_ascii_lowercase()
            .starts_with("application/json")
    })
}

/// Errors before any byte went out are plain JSON with their own status, as the OpenAI API does.
fn render_error(error: ApiError, out: &mut Vec<u8>) -> Final<'_> {
    *out = error.body();
    Final {
        body: out,
        status: Some(error.status),
        set: error.headers(),
        usage_limited: error.kind == ErrorType::UsageLimit,
    }
}

/// Envoy's own replies, reworded for an OpenAI client.
fn proxy_error(status: u16, max_body: usize) -> ApiError {
    match status {
        413 => body_too_large(max_body),
        503 => ApiError::of(
            Code::UpstreamUnavailable,
            "Cannot reach the upstream (connection failed or no healthy upstream); retry shortly.",
        ),
        504 => ApiError::of(Code::UpstreamTimeout, "The upstream did not answer in time."),
        s => ApiError::new(
            if s >= 400 { s } else { 502 },
            ErrorType::Server,
            format!("The proxy answered HTTP {s} without reaching the upstream."),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(endpoint: Endpoint, stream: bool) -> ClientRequest {
        ClientRequest {
            endpoint,
            stream,
            include_usage: false,
            model: "gpt-5.5".into(),
            mode: OutputMode::OpenAi,
            max_request_body_bytes: 100,
        }
    }

    fn head(status: u16, content_type: &str, via_upstream: bool) -> ResponseHead<'_> {
        ResponseHead {
            status,
            content_type: Some(content_type),
            via_upstream,
            limits: LimitHeaders::default(),
        }
    }

    #[test]
    fn header_plans() {
        let sse = "text/event-stream";
        let cases: Vec<(ClientRequest, ResponseHead, bool, HeaderPlan)> = vec![
            (
                client(Endpoint::ChatCompletions, true),
                head(200, sse, true),
                true,
                HeaderPlan {
                    hold: false,
                    status: None,
                    set: vec![
                        ("content-type", "text/event-stream; charset=utf-8".into()),
                        ("cache-control", "no-cache".into()),
                    ],
                },
            ),
            (
                client(Endpoint::Completions, false),
                head(200, sse, true),
                true,
                HeaderPlan {
                    hold: true,
                    status: None,
                    set: vec![("content-type", "application/json".into())],
                },
            ),
            (
                client(Endpoint::ChatCompletions, false),
                head(200, sse, true),
                false,
                HeaderPlan {
                    hold: false,
                    status: None,
                    set: vec![("content-type", "application/json".into())],
                },
            ),
            (
                client(Endpoint::ChatCompletions, true),
                head(500, "text/plain", true),
                true,
                HeaderPlan {
                    hold: true,
                    status: Some(502),
                    set: vec![("content-type", "application/json".into())],
                },
            ),
            (
                client(Endpoint::ChatCompletions, true),
                head(413, "text/plain", false),
                true,
                HeaderPlan {
                    hold: false,
                    status: Some(413),
                    set: vec![("content-type", "application/json".into())],
                },
            ),
            (
                client(Endpoint::ChatCompletions, true),
                head(503, "text/plain", false),
                true,
                HeaderPlan {
                    hold: false,
                    status: Some(502),
                    set: vec![("content-type", "application/json".into())],
                },
            ),
        ];
        for (client, head, hold, expected) in cases {
            let (_, plan) = Handler::new(&client, &head, hold, 0);
            assert_eq!(plan, expected, "{} {:?}", head.status, head.content_type);
        }
    }

    #[test]
    fn envoy_replies_already_in_the_openai_shape_pass_unchanged() {
        let body =
            br#"{"error":{"message":"m","type":"upstream_error","param":null,"code":"upstream_reset"}}"#;
        for stream in [false, true] {
            let (mut handler, plan) = Handler::new(
                &client(Endpoint::ChatCompletions, stream),
                &head(502, "application/json", false),
                true,
                0,
            );
            assert_eq!(
                plan,
                HeaderPlan {
                    hold: false,
                    status: None,
                    set: Vec::new()
                }
            );
            assert_eq!(handler.push(body, 0), body);
            let done = handler.finish(0);
            assert_eq!((done.body, done.status), (&[][..], None));
            assert!(done.set.is_empty());
        }
        // Envoy's own plain-text wording is still translated (no local_reply_config).
        let (mut handler, _) = Handler::new(
            &client(Endpoint::ChatCompletions, false),
            &head(504, "text/plain", false),
            true,
            0,
        );
        assert!(handler.push(b"stream timeout", 0).is_empty());
        let done = handler.finish(0);
        assert_eq!(done.status, Some(504));
        assert!(String::from_utf8_lossy(done.body).contains("upstream_timeout"));
    }

    #[test]
    fn upstream_error_bodies_are_collected_mapped_and_capped() {
        let (mut handler, _) = Handler::new(
            &client(Endpoint::ChatCompletions, false),
            &head(429, "application/json", true),
            true,
            0,
        );
        assert!(
            handler
                .push(br#"{"error":{"type":"usage_limit_reached","message":"m","#, 0)
                .is_empty()
        );
        assert!(handler.push(br#""resets_in_seconds":5}}"#, 0).is_empty());
        let done = handler.finish(0);
        assert_eq!(done.status, Some(429));
        assert!(done.set.contains(&("retry-after", "5".to_string())));
        assert!(done.usage_limited);
        assert!(String::from_utf8_lossy(done.body).contains("usage_limit_reached"));

        let (mut handler, _) = Handler::new(
            &client(Endpoint::ChatCompletions, false),
            &head(500, "text/plain", true),
            true,
            0,
        );
        for _ in 0..100 {
            handler.push(&[b'x'; 1024], 0);
        }
        let Handler::UpstreamError { body, .. } = &handler else {
            panic!("not an upstream error")
        };
        assert_eq!(body.len(), MAX_ERROR_BODY);
    }
}
