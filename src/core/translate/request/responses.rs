//! `POST /v1/responses` and `/v1/responses/compact`: the client already speaks the backend's
//! API, so its body is normalised rather than translated. Only top-level members are
//! rewritten; the rest (`input` above all, which holds the whole conversation) is copied as
//! the client wrote it, never decoded into a tree nor re-encoded.
//!
//! For the ChatGPT backend: `store: false` and `stream: true` forced, `include` gets
//! `reasoning.encrypted_content`, the parameters it rejects dropped, instructions, model and
//! reasoning as for chat, a string `input` made one user message, and state the backend cannot
//! hold (`previous_response_id`, `conversation`) refused. An API-key upstream (an
//! OpenAI-compatible server) gets the body as it is.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::core::error::{ApiError, Code};
use crate::core::reasoning::{Effort, Summary};
use crate::core::translate::request::common::{
    TranslateContext, Translated, client_cache_key, instructions_for,
};
use crate::core::translate::request::conversation_key::conversation_key_of;
use crate::core::translate::request::json_fields::{Ordered, parse_raw, write_key};

/// What the backend rejects or cannot honour without storage, dropped before it goes up (the
/// README lists them). `store`, `stream` and `include` are rewritten, not dropped.
pub const DROPPED: &[&str] = &[
    "max_output_tokens",
    "max_tokens",
    "max_completion_tokens",
    "max_tool_calls",
    "temperature",
    "top_p",
    "top_logprobs",
    "logprobs",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "stop",
    "truncation",
    "user",
    "safety_identifier",
    "metadata",
    "background",
    "prompt_cache_retention",
    "stream_options",
    "context_window",
    "truncation_policy",
];

/// Always in `include`: reasoning items come back encrypted, so a client can send them again
/// in the next turn's `input` without server-side storage.
const ENCRYPTED_REASONING: &str = "reasoning.encrypted_content";

/// Where the body goes, which decides how much of it the wrapper changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    /// The ChatGPT Codex backend: the full normalisation.
    Chatgpt {
        /// The client sent the lite-shape header: instructions travel in `input`, so none are
        /// added.
        lite_shape: bool,
    },
    /// An OpenAI-compatible Responses server with an API key: the body as the client wrote it.
    ApiKey,
}

/// The model and effort a Responses body goes up with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelChoice {
    pub model: String,
    pub effort: Effort,
}

/// The model and effort rules for a Responses body, in one place: today the wrapper's model
/// resolution (retired ids, effort suffixes, `DEBUG_MODEL`) and `REASONING_EFFORT`; the model
/// catalogue's rules (effort clamp, `ultra` → `max`, tiers) belong here too.
pub fn model_rules(
    ctx: &TranslateContext<'_>,
    requested_model: Option<&str>,
    requested_effort: Option<Effort>,
) -> ModelChoice {
    let resolved = ctx.models.resolve(requested_model);
    ModelChoice {
        effort: requested_effort
            .or(resolved.suffix_effort)
            .unwrap_or(ctx.default_effort),
        model: resolved.id,
    }
}

/// A `POST /v1/responses` body → the body for the upstream's `/responses`; `Err` is the 4xx to
/// answer, and nothing goes upstream.
pub fn translate(
    body: &[u8],
    ctx: &TranslateContext<'_>,
    upstream: Upstream,
) -> Result<Translated, ApiError> {
    let fields = Ordered::parse(body)?;
    let stream = fields.get::<bool>("stream")?.unwrap_or(false);
    let model_name: Option<Cow<str>> = fields.get("model")?;
    let lite_shape = match upstream {
        Upstream::ApiKey => {
            return Ok(Translated {
                body: body.to_vec(),
                stream,
                include_usage: false,
                model: model_name.map(Cow::into_owned).unwrap_or_default(),
                session_id: String::new(),
            });
        }
        Upstream::Chatgpt { lite_shape } => lite_shape,
    };
    refuse_stored_state(&fields)?;
    let input = Input::read(fields.raw("input"))?;
    let reasoning: Option<Ordered> = fields.get("reasoning")?;
    let requested_effort = match reasoning
        .as_ref()
        .map(|r| r.get::<Cow<str>>("effort"))
        .transpose()?
    {
        Some(Some(raw)) => Some(parse_effort(&raw)?),
        _ => None,
    };
    if let Some(Some(raw)) = reasoning
        .as_ref()
        .map(|r| r.get::<Cow<str>>("summary"))
        .transpose()?
    {
        Summary::parse(&raw).ok_or_else(|| {
            ApiError::invalid_param(
                "reasoning.summary",
                format!(
                    "Invalid reasoning.summary {raw:?}; use one of {}.",
                    Summary::VALUES.join(", ")
                ),
            )
        })?;
    }
    let include: Vec<Cow<str>> = fields.get("include")?.unwrap_or_default();
    let client_instructions: Option<Cow<str>> = fields.get("instructions")?;
    let cache_key = client_cache_key(fields.get("prompt_cache_key")?)?;
    let choice = model_rules(ctx, model_name.as_deref(), requested_effort);

    let given = client_instructions.filter(|c| !c.trim().is_empty());
    // The lite shape carries its instructions as developer items in `input`; a body that sent
    // some anyway keeps them, with the base text as for chat.
    let instructions = match (&given, lite_shape) {
        (None, true) => None,
        _ => Some(instructions_for(&choice.model, ctx, given)),
    };
    let session_id = match cache_key.as_deref().or(ctx.session_hint) {
        Some(key) => key.to_string(),
        None => conversation_key_of(instructions.as_deref().unwrap_or(""), &input.first_user_item()?),
    };

    let mut out = Vec::with_capacity(body.len().saturating_add(256));
    out.push(b'{');
    let mut written: Vec<&str> = Vec::with_capacity(8);
    for (key, raw) in &fields.members {
        let key = key.as_ref();
        if DROPPED.contains(&key) || written.contains(&key) {
            continue;
        }
        match key {
            "model" | "stream" | "store" | "include" | "input" | "instructions" | "reasoning"
            | "prompt_cache_key" => {}
            _ => {
                write_key(&mut out, key);
                out.extend_from_slice(raw.get().as_bytes());
                continue;
            }
        }
        written.push(key);
        match key {
            "model" => write_string(&mut out, key, &choice.model),
            "stream" => write_raw(&mut out, key, "true"),
            "store" => write_raw(&mut out, key, "false"),
            "include" => write_include(&mut out, &include),
            "input" => input.write(&mut out),
            "instructions" => {
                if let Some(text) = &instructions {
                    write_string(&mut out, key, text);
                }
            }
            "reasoning" => write_reasoning(&mut out, reasoning.as_ref(), &choice, ctx.default_summary),
            _ => write_string(&mut out, key, &session_id),
        }
    }
    for key in [
        "model",
        "instructions",
        "input",
        "reasoning",
        "store",
        "stream",
        "include",
        "prompt_cache_key",
    ] {
        if written.contains(&key) {
            continue;
        }
        match key {
            "model" => write_string(&mut out, key, &choice.model),
            "instructions" => {
                if let Some(text) = &instructions {
                    write_string(&mut out, key, text);
                }
            }
            "input" => input.write(&mut out),
            "reasoning" => write_reasoning(&mut out, None, &choice, ctx.default_summary),
            "store" => write_raw(&mut out, key, "false"),
            "stream" => write_raw(&mut out, key, "true"),
            "include" => write_include(&mut out, &include),
            _ => write_string(&mut out, key, &session_id),
        }
    }
    out.push(b'}');
    Ok(Translated {
        body: out,
        stream,
        include_usage: false,
        model: choice.model,
        session_id,
    })
}

/// A `POST /v1/responses/compact` body: passed on as it is (Codex CLI writes it for the
/// backend), once it is known to be a JSON object.
pub fn compact(body: &[u8], ctx: &TranslateContext<'_>) -> Result<Translated, ApiError> {
    let fields = Ordered::parse(body)?;
    let model: Option<Cow<str>> = fields.get("model")?;
    Ok(Translated {
        body: body.to_vec(),
        stream: false,
        include_usage: false,
        model: model.map(Cow::into_owned).unwrap_or_default(),
        session_id: ctx.session_hint.unwrap_or("").to_string(),
    })
}

/// `previous_response_id` and `conversation` name state kept by the server; with `store:
/// false` the backend has none, and `background` needs it to poll the result.
fn refuse_stored_state(fields: &Ordered<'_>) -> Result<(), ApiError> {
    for name in ["previous_response_id", "conversation"] {
        if fields.raw(name).is_some_and(|raw| raw.get() != "null") {
            return Err(ApiError::of(
                Code::PreviousResponseUnsupported,
                format!(
                    "`{name}` is not supported: the ChatGPT backend stores no responses (store: false). Send the whole conversation in `input` (earlier output items included) instead."
                ),
            )
            .with_param(name));
        }
    }
    if fields.get::<bool>("background")? == Some(true) {
        return Err(ApiError::invalid_param(
            "background",
            "`background: true` is not supported: the ChatGPT backend stores no responses to poll. Send the request without it (stream it for long answers).",
        ));
    }
    Ok(())
}

fn parse_effort(raw: &str) -> Result<Effort, ApiError> {
    Effort::parse(raw).ok_or_else(|| {
        ApiError::invalid_param(
            "reasoning.effort",
            format!(
                "Invalid reasoning.effort {raw:?}; use one of {}.",
                Effort::VALUES.join(", ")
            ),
        )
    })
}

/// The client's `input`: a list of items passed on raw, or a string that becomes one user
/// message (the backend takes only the list).
enum Input<'a> {
    Items(&'a RawValue),
    Text(Cow<'a, str>),
}

#[derive(Deserialize)]
struct ItemHead<'a> {
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
}

impl<'a> Input<'a> {
    fn read(raw: Option<&'a RawValue>) -> Result<Self, ApiError> {
        let missing = || {
            ApiError::invalid_param(
                "input",
                "`input` is required: send a string or a list of input items.",
            )
        };
        let raw = raw.ok_or_else(missing)?;
        match raw.get().as_bytes().first() {
            Some(b'[') => Ok(Self::Items(raw)),
            Some(b'"') => Ok(Self::Text(parse_raw(raw, "input")?.ok_or_else(missing)?)),
            Some(b'n') => Err(missing()),
            _ => Err(ApiError::invalid_param(
                "input",
                "`input` must be a string or a list of input items.",
            )),
        }
    }

    /// The first user message as the client wrote it (the string input as the message it
    /// becomes), for the conversation key; empty when there is none.
    fn first_user_item(&self) -> Result<Vec<u8>, ApiError> {
        match self {
            Self::Text(text) => Ok(user_message(text)),
            Self::Items(raw) => {
                let items: Vec<&RawValue> = parse_raw(raw, "input")?.unwrap_or_default();
                for item in items {
                    let head = serde_json::from_str::<ItemHead>(item.get()).map_err(|_| {
                        ApiError::invalid_param("input", "Each `input` item must be a JSON object.")
                    })?;
                    let message = head.kind.as_deref().is_none_or(|k| k == "message");
                    if message && head.role.as_deref() == Some("user") {
                        return Ok(item.get().as_bytes().to_vec());
                    }
                }
                Ok(Vec::new())
            }
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        write_key(out, "input");
        match self {
            Self::Items(raw) => out.extend_from_slice(raw.get().as_bytes()),
            Self::Text(text) => {
                out.push(b'[');
                out.extend_from_slice(&user_message(text));
                out.push(b']');
            }
        }
    }
}

fn user_message(text: &str) -> Vec<u8> {
    let message = serde_json::json!({
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": text}],
    });
    serde_json::to_vec(&message).unwrap_or_default()
}

fn write_raw(out: &mut Vec<u8>, key: &str, value: &str) {
    write_key(out, key);
    out.extend_from_slice(value.as_bytes());
}

fn write_string(out: &mut Vec<u8>, key: &str, value: &str) {
    write_key(out, key);
    let _ = serde_json::to_writer(&mut *out, value);
}

fn write_include(out: &mut Vec<u8>, include: &[Cow<'_, str>]) {
    let mut merged: Vec<&str> = Vec::with_capacity(include.len().saturating_add(1));
    for item in include.iter().map(Cow::as_ref).chain([ENCRYPTED_REASONING]) {
        if !merged.contains(&item) {
            merged.push(item);
        }
    }
    write_key(out, "include");
    let _ = serde_json::to_writer(&mut *out, &merged);
}

/// The client's `reasoning` object with the chosen effort, its other members (`summary`,
/// `context`, …) as given; without one, the configured effort and summary as for chat.
fn write_reasoning(out: &mut Vec<u8>, given: Option<&Ordered<'_>>, choice: &ModelChoice, summary: Summary) {
    write_key(out, "reasoning");
    out.push(b'{');
    let effort = serde_json::to_string(&choice.effort).unwrap_or_default();
    let mut effort_written = false;
    for (key, raw) in given.map(|g| g.members.as_slice()).unwrap_or_default() {
        if key == "effort" {
            if !effort_written {
                write_raw(out, key, &effort);
                effort_written = true;
            }
            continue;
        }
        write_key(out, key);
        out.extend_from_slice(raw.get().as_bytes());
    }
    if !effort_written {
        write_raw(out, "effort", &effort);
    }
    if given.is_none() && summary != Summary::None {
        write_raw(
            out,
            "summary",
            &serde_json::to_string(&summary).unwrap_or_default(),
        );
    }
    out.push(b'}');
}

#[cfg(test)]
#[path = "responses_tests.rs"]
mod tests;
