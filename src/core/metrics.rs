//! What the filter counts. The core says what happened; the host turns each [`Metric`] into
//! Envoy counters and gauges (`envoy_codex_*`), shared by every worker VM.

use crate::core::accounts::login::sanitize_label;
use crate::core::routing::decision::Endpoint;
use crate::core::translate::response::upstream_error::Window;
use crate::core::translate::response::usage::Usage;

/// Which family a request belongs to, for the per-route counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    Chat,
    Completions,
    Local,
    Ollama,
    Responses,
}

impl From<Endpoint> for RouteKind {
    fn from(endpoint: Endpoint) -> Self {
        match endpoint {
            Endpoint::ChatCompletions => Self::Chat,
            Endpoint::Completions => Self::Completions,
            Endpoint::Responses | Endpoint::ResponsesCompact => Self::Responses,
        }
    }
}

/// One thing worth counting, reported through `Port::metric`; the host
/// decides which counter or gauge it moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// A request ended with `status` (0 when it never got one).
    Request {
        route: RouteKind,
        status: u16,
    },
    UpstreamError,
    Tokens(Usage),
    Refresh {
        ok: bool,
        permanent: bool,
    },
    LeaseTaken,
    UsageLimitHit,
    /// A client key's request was refused for one of its limits.
    KeyLimitReached,
    /// The usage windows the backend reported with its last response.
    RateLimits([Window; 2]),
    /// The model catalogue call's outcome.
    Catalogue(CatalogueOutcome),
    /// An account is out for its usage limit (true) or serving again (false).
    Exhausted(bool),
    /// How long the current access token has left, and how long since it was issued.
    TokenAge {
        expires_in: Option<u64>,
        age: Option<u64>,
    },
}

/// How a model catalogue call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogueOutcome {
    /// 200: a catalogue, stored.
    Fetched,
    /// 304: the cached one is current.
    NotModified,
    /// Anything else: the current catalogue keeps serving.
    Failed,
}

/// Whose labelled stats `Port::metric_for` moves: a client key's (by its name) or a ChatGPT
/// account's (by its label), named `codex_openai_wrapper.<key|account>.<label>.<stat>` by the
/// host. Never a key, digest or token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    Key(&'a str),
    Account(&'a str),
}

impl Owner<'_> {
    /// The label as a stat name segment (`[A-Za-z0-9_-]`, anything else becomes `_`).
    pub fn label(&self) -> String {
        let (Self::Key(label) | Self::Account(label)) = self;
        sanitize_label(label)
    }
}
