//! What chat and text completions share on the way up: the model, reasoning, streaming
//! options, the conversation key and the instructions, read the same way for both.

use std::borrow::Cow;

use serde::Deserialize;

use crate::core::error::ApiError;
use crate::core::models::{ModelCatalog, ResolvedModel};
use crate::core::reasoning::{self, Effort, ReasoningParam, ReasoningRequest, Summary};
use crate::core::translate::request::conversation_key;
use crate::core::translate::request::json_fields::Fields;
use crate::core::wire::responses_request::{InputItem, ResponsesRequest};

/// Sent when neither a base text nor a client system message gives any instructions.
pub const DEFAULT_INSTRUCTIONS: &str = "You are a helpful assistant.";

/// The wire shape of function tools (`UPSTREAM_TOOLS_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolsFormat {
    /// `{type, name, description, parameters}` — the Responses API shape.
    Flat,
    /// `{type, function: {name, description, parameters}}` — for upstreams that want it.
    Nested,
}

/// What a translation needs besides the body.
pub struct TranslateContext<'c> {
    pub models: &'c ModelCatalog,
    pub default_effort: Effort,
    pub default_summary: Summary,
    pub tools_format: ToolsFormat,
    /// A conversation id the client sent as a header (`session_id`, `x-session-id`).
    pub session_hint: Option<&'c str>,
    /// Base instructions for general models (`INSTRUCTIONS_BASE_URL`), once fetched.
    pub base_instructions: Option<&'c str>,
    /// Base instructions for `*codex*` models (`INSTRUCTIONS_CODEX_URL`), once fetched.
    pub codex_instructions: Option<&'c str>,
}

impl<'c> TranslateContext<'c> {
    /// The defaults of an unconfigured filter, before any instruction text arrived (tests and
    /// the fuzz targets start from it).
    pub fn defaults(models: &'c ModelCatalog) -> Self {
        Self {
            models,
            default_effort: Effort::Low,
            default_summary: Summary::Auto,
            tools_format: ToolsFormat::Flat,
            session_hint: None,
            base_instructions: None,
            codex_instructions: None,
        }
    }
}

/// The translated request plus what the response side needs to know about it.
#[derive(Debug)]
pub struct Translated {
    pub body: Vec<u8>,
    pub stream: bool,
    pub include_usage: bool,
    pub model: String,
    pub session_id: String,
}

/// The options both endpoints read from the body.
pub struct Common<'a> {
    pub model: ResolvedModel,
    pub reasoning: ReasoningParam,
    pub stream: bool,
    pub include_usage: bool,
    client_cache_key: Option<Cow<'a, str>>,
    service_tier: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ReasoningObject<'a> {
    #[serde(borrow, default)]
    effort: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    summary: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

impl<'a> Common<'a> {
    /// Reads and checks the shared options (model, reasoning, `n`, streaming, cache key); a
    /// bad one is a 400 naming its parameter.
    pub fn read(fields: &Fields<'a>, ctx: &TranslateContext<'_>) -> Result<Self, ApiError> {
        if let Some(n) = fields.get::<u64>("n")? {
            if n != 1 {
                return Err(ApiError::invalid_param(
                    "n",
                    "Only n=1 is supported: the backend returns one choice.",
                ));
            }
        }
        let model_name: Option<Cow<str>> = fields.get("model")?;
        let model = ctx.models.resolve(model_name.as_deref());
        let object: Option<ReasoningObject> = fields.get("reasoning")?;
        let reasoning_effort: Option<Cow<str>> = fields.get("reasoning_effort")?;
        let reasoning = reasoning::resolve(
            &ReasoningRequest {
                object_effort: object.as_ref().and_then(|r| r.effort.as_deref()),
                object_summary: object.as_ref().and_then(|r| r.summary.as_deref()),
                reasoning_effort: reasoning_effort.as_deref(),
                model_suffix: model.suffix_effort,
            },
            ctx.default_effort,
            ctx.default_summary,
        )?;
        Ok(Self {
            model,
            reasoning,
            stream: fields.get("stream")?.unwrap_or(false),
            include_usage: fields
                .get::<StreamOptions>("stream_options")?
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
            client_cache_key: client_cache_key(fields.get("prompt_cache_key")?)?,
            service_tier: fields.get("service_tier")?,
        })
    }

    /// The base text for this model's family, then the client's own instructions.
    pub fn instructions(&self, ctx: &TranslateContext<'_>, client: Option<Cow<'a, str>>) -> Cow<'a, str> {
        instructions_for(&self.model.id, ctx, client)
    }

    /// The client's key, else its session header, else one derived from the conversation.
    pub fn session_id(
        &self,
        ctx: &TranslateContext<'_>,
        instructions: &str,
        first_user: Option<&InputItem<'_>>,
    ) -> String {
        match self.client_cache_key.as_deref().or(ctx.session_hint) {
            Some(key) => key.to_string(),
            None => conversation_key::conversation_key(instructions, first_user),
        }
    }

    /// Fills the request fields both endpoints share and encodes the body.
    pub fn finish<'r>(&'r self, mut request: ResponsesRequest<'r>) -> Result<Translated, ApiError> {
        request.service_tier = self.service_tier.clone();
        let body = serde_json::to_vec(&request)
            .map_err(|e| ApiError::invalid_request(format!("Cannot encode the request: {e}")))?;
        let session_id = request.prompt_cache_key.to_string();
        Ok(Translated {
            body,
            stream: self.stream,
            include_usage: self.include_usage,
            model: self.model.id.clone(),
            session_id,
        })
    }
}

/// The base text for `model`'s family (`INSTRUCTIONS_CODEX_URL` for `*codex*` models, else
/// `INSTRUCTIONS_BASE_URL`), then the client's own instructions; the short default without
/// either.
pub fn instructions_for<'a>(
    model: &str,
    ctx: &TranslateContext<'_>,
    client: Option<Cow<'a, str>>,
) -> Cow<'a, str> {
    let base = if model.contains("codex") {
        ctx.codex_instructions
    } else {
        ctx.base_instructions
    };
    let client = client.filter(|c| !c.trim().is_empty());
    match (base.map(str::trim).filter(|b| !b.is_empty()), client) {
        (None, None) => Cow::Borrowed(DEFAULT_INSTRUCTIONS),
        (None, Some(client)) => client,
        (Some(base), None) => Cow::Owned(base.to_string()),
        (Some(base), Some(client)) => Cow::Owned(format!("{base}\n\n{client}")),
    }
}

/// The client's `prompt_cache_key`, checked before it can become the `session-id` header; an
/// empty one counts as absent (the key is derived instead).
pub fn client_cache_key(key: Option<Cow<'_, str>>) -> Result<Option<Cow<'_, str>>, ApiError> {
    match key {
        Some(key) if key.is_empty() => Ok(None),
        Some(key) if !conversation_key::is_valid_client_key(&key) => {
            Err(conversation_key::invalid_client_key())
        }
        key => Ok(key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'c>(
        models: &'c ModelCatalog,
        base: Option<&'c str>,
        codex: Option<&'c str>,
    ) -> TranslateContext<'c> {
        TranslateContext {
            models,
            default_effort: Effort::Low,
            default_summary: Summary::Auto,
            tools_format: ToolsFormat::Flat,
            session_hint: None,
            base_instructions: base,
            codex_instructions: codex,
        }
    }

    #[test]
    #[allow(clippy::type_complexity)] // a table of cases reads best as tuples
    fn instructions_combine_the_family_base_and_the_client_text() {
        let models = ModelCatalog::new(None, None).unwrap();
        let cases: &[(&str, Option<&str>, Option<&str>, Option<&str>, &str)] = &[
            (r#"{"model":"gpt-5.5"}"#, None, None, None, DEFAULT_INSTRUCTIONS),
            (
                r#"{"model":"gpt-5.5"}"#,
                None,
                None,
                Some("Be terse."),
                "Be terse.",
            ),
            (
                r#"{"model":"gpt-5.5"}"#,
                Some("BASE"),
                Some("CODEX"),
                None,
                "BASE",
            ),
            (
                r#"{"model":"gpt-5.5"}"#,
                Some("BASE"),
                None,
                Some("Be terse."),
                "BASE\n\nBe terse.",
            ),
            (
                r#"{"model":"gpt-5.4-codex"}"#,
                Some("BASE"),
                Some("CODEX"),
                Some("x"),
                "CODEX\n\nx",
            ),
            (
                r#"{"model":"gpt-5.5"}"#,
                Some("  "),
                None,
                Some("  "),
                DEFAULT_INSTRUCTIONS,
            ),
        ];
        for (body, base, codex, client, expected) in cases {
            let fields = Fields::parse(body.as_bytes()).unwrap();
            let context = ctx(&models, *base, *codex);
            let common = Common::read(&fields, &context).unwrap();
            assert_eq!(
                common.instructions(&context, client.map(Cow::Borrowed)),
                *expected,
                "{body} {base:?} {client:?}"
            );
        }
    }
}
