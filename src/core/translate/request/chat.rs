//! `POST /v1/chat/completions` body → Codex Responses request.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::core::error::ApiError;
use crate::core::translate::request::common::{Common, ToolsFormat, TranslateContext, Translated};
use crate::core::translate::request::json_fields::{Fields, parse_raw};
use crate::core::wire::responses_request::{
    ContentPart, FunctionSpec, FunctionTool, InputItem, NamedFunction, ResponsesRequest, TextConfig,
    TextFormat, ToolChoice,
};

/// Translates a Chat Completions body into the upstream Responses body; `Err` is the 400 to
/// send, naming the offending field.
pub fn translate(body: &[u8], ctx: &TranslateContext<'_>) -> Result<Translated, ApiError> {
    translate_reading(body, ctx, true)
}

/// The typed read of `messages` agrees with the layered one: the same upstream body, or the
/// same error (checked by the unit tests and the `chat_request` fuzz target on every body).
pub fn typed_read_agrees(body: &[u8], ctx: &TranslateContext<'_>) -> bool {
    match (
        translate_reading(body, ctx, true),
        translate_reading(body, ctx, false),
    ) {
        (Ok(typed), Ok(layered)) => {
            typed.body == layered.body
                && typed.model == layered.model
                && typed.session_id == layered.session_id
                && (typed.stream, typed.include_usage, typed.lite)
                    == (layered.stream, layered.include_usage, layered.lite)
        }
        (Err(typed), Err(layered)) => typed == layered,
        _ => false,
    }
}

/// `typed`: try the one-pass read of `messages` first (false only to check it against the
/// layered read).
fn translate_reading(body: &[u8], ctx: &TranslateContext<'_>, typed: bool) -> Result<Translated, ApiError> {
    let fields = Fields::parse(body)?;
    let fast = match fields.raw("messages") {
        Some(raw) if typed => Conversation::read_typed(raw),
        _ => None,
    };
    let conversation = match fast {
        Some(conversation) => conversation,
        None => Conversation::read_layered(&fields)?,
    };
    let common = Common::read(&fields, ctx)?;
    let instructions = common.instructions(ctx, conversation.system);
    let session_id = common.session_id(
        ctx,
        &instructions,
        conversation.input.iter().find(is_user_message),
    );

    let mut request = ResponsesRequest::new(
        &common.rules.slug,
        instructions,
        conversation.input,
        common.reasoning,
        &session_id,
    );
    let tool_defs: Option<Vec<ToolDef>> = fields.get("tools")?;
    request.tools = Some(
        tool_defs
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(index, tool)| convert_tool(index, tool, ctx.tools_format))
            .collect::<Result<_, _>>()?,
    );
    if let Some(choice) = fields.get::<&RawValue>("tool_choice")? {
        request.tool_choice = convert_tool_choice(choice, ctx.tools_format)?;
    }
    if let Some(parallel) = fields.get("parallel_tool_calls")? {
        request.parallel_tool_calls = parallel;
    }
    request.text = TextConfig {
        format: match fields.get::<ResponseFormat>("response_format")? {
            Some(format) => convert_response_format(format)?,
            None => None,
        },
        verbosity: match fields.get::<Cow<str>>("verbosity")? {
            Some(v) => Some(parse_verbosity(&v)?),
            None => None,
        },
    };
    common.finish(request)
}

/// Where a value sits in the body, for an error's `param` and message; written out only when
/// an error names it (building these paths for every message and part cost a tenth of the
/// translation).
#[derive(Clone, Copy)]
enum Path<'p> {
    Root(&'static str),
    Index(&'p Path<'p>, usize),
    Field(&'p Path<'p>, &'static str),
}

const MESSAGES: Path<'static> = Path::Root("messages");
const TOOLS: Path<'static> = Path::Root("tools");

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Root(name) => f.write_str(name),
            Self::Index(parent, index) => write!(f, "{parent}[{index}]"),
            Self::Field(parent, name) => write!(f, "{parent}.{name}"),
        }
    }
}

impl From<&Path<'_>> for String {
    fn from(path: &Path<'_>) -> Self {
        path.to_string()
    }
}

fn is_user_message(item: &&InputItem<'_>) -> bool {
    matches!(item, InputItem::Message { role: "user", .. })
}

/// The conversation split into the client's instructions and the `input` items.
pub struct Conversation<'a> {
    /// The leading system/developer messages, joined by a blank line.
    pub system: Option<Cow<'a, str>>,
    pub input: Vec<InputItem<'a>>,
}

impl<'a> Conversation<'a> {
    /// The conversation in one typed pass over `messages`; `None` when that pass or the
    /// conversion fails in any way, and then [`Self::read_layered`] finds and names the error
    /// (the layered read accepts every body this one does, with the same result).
    fn read_typed(raw: &'a RawValue) -> Option<Self> {
        let messages: Vec<Message<'a, Content<'a>>> = serde_json::from_str(raw.get()).ok()?;
        if messages.is_empty() {
            return None;
        }
        Self::from_parsed(messages.into_iter().map(Ok)).ok()
    }

    /// `messages` read message by message, each content only when its role needs it, so the
    /// first problem in the body is the one reported, with its path.
    fn read_layered(fields: &Fields<'a>) -> Result<Self, ApiError> {
        let messages: Vec<&RawValue> = fields.get("messages")?.ok_or_else(|| {
            ApiError::invalid_param(
                "messages",
                "`messages` is required: send an array of chat messages.",
            )
        })?;
        if messages.is_empty() {
            return Err(ApiError::invalid_param(
                "messages",
                "`messages` must contain at least one message.",
            ));
        }
        Self::from_messages(&messages)
    }

    /// Leading system/developer messages become `instructions`; later ones stay in place as
    /// developer messages so no instruction is lost or moved.
    pub fn from_messages(messages: &[&'a RawValue]) -> Result<Self, ApiError> {
        Self::from_parsed(messages.iter().enumerate().map(|(index, raw)| {
            let param = Path::Index(&MESSAGES, index);
            let message: Message<'a, Option<&'a RawValue>> = parse_raw(raw, &param)?.ok_or_else(|| {
                ApiError::invalid_param(&param, format!("`{param}` must be a message object."))
            })?;
            Ok(Message {
                role: message.role,
                content: message.content.map_or(Content::Absent, Content::Raw),
                tool_calls: message.tool_calls,
                tool_call_id: message.tool_call_id,
            })
        }))
    }

    /// The one conversion from messages to `input` items, whichever way they were read.
    fn from_parsed(
        messages: impl Iterator<Item = Result<Message<'a, Content<'a>>, ApiError>>,
    ) -> Result<Self, ApiError> {
        let mut leading: Vec<Cow<'a, str>> = Vec::new();
        let mut input = Vec::with_capacity(messages.size_hint().0);
        for (index, message) in messages.enumerate() {
            let param = Path::Index(&MESSAGES, index);
            let message = message?;
            match message.role.as_ref() {
                "system" | "developer" => {
                    let text = joined_text(message.content, &param)?;
                    if input.is_empty() {
                        leading.push(text);
                    } else {
                        input.push(InputItem::Message {
                            role: "developer",
                            content: vec![ContentPart::InputText { text }],
                        });
                    }
                }
                "user" => input.push(InputItem::Message {
                    role: "user",
                    content: user_parts(message.content, &param)?,
                }),
                "assistant" => push_assistant(message, &param, &mut input)?,
                "tool" => {
                    let call_id = message.tool_call_id.filter(|id| !id.is_empty()).ok_or_else(|| {
                        ApiError::invalid_param(
                            format!("{param}.tool_call_id"),
                            format!("`{param}` is a tool message without `tool_call_id`."),
                        )
                    })?;
                    input.push(InputItem::FunctionCallOutput {
                        call_id,
                        output: joined_text(message.content, &param)?,
                    });
                }
                "function" => {
                    return Err(ApiError::invalid_param(
                        format!("{param}.role"),
                        "The deprecated `function` role is not supported; send tool results as `tool` messages.",
                    ));
                }
                other => {
                    return Err(ApiError::invalid_param(
                        format!("{param}.role"),
                        format!(
                            "Unknown role {other:?} in `{param}`; use system, developer, user, assistant or tool."
                        ),
                    ));
                }
            }
        }
        let system = match leading.len() {
            0 => None,
            1 => Some(leading.swap_remove(0)),
            _ => Some(Cow::Owned(leading.join("\n\n"))),
        };
        Ok(Self { system, input })
    }
}

/// A chat message; `C` is its content, raw JSON (read when its role needs it) or typed.
#[derive(Deserialize)]
struct Message<'a, C> {
    #[serde(borrow)]
    role: Cow<'a, str>,
    #[serde(default)]
    content: C,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<ToolCall<'a>>>,
    #[serde(borrow, default)]
    tool_call_id: Option<Cow<'a, str>>,
}

/// A message's content: absent or `null`, still raw, or read as a string or a list of parts.
#[derive(Default)]
enum Content<'a> {
    #[default]
    Absent,
    Raw(&'a RawValue),
    Text(Cow<'a, str>),
    Parts(Vec<Part<'a>>),
}

/// Reads only what [`content_parts`] accepts from raw content (`null`, a string, an array of
/// parts), so the typed and the layered reads agree.
impl<'de: 'a, 'a> Deserialize<'de> for Content<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = Content<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("null, a string or an array of content parts")
            }

            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(Content::Absent)
            }

            fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(Content::Absent)
            }

            fn visit_borrowed_str<E: serde::de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(Content::Text(Cow::Borrowed(text)))
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(Content::Text(Cow::Owned(text.to_owned())))
            }

            fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Self::Value, E> {
                Ok(Content::Text(Cow::Owned(text)))
            }

            fn visit_seq<S: serde::de::SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
                let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
                while let Some(part) = seq.next_element()? {
                    parts.push(part);
                }
                Ok(Content::Parts(parts))
            }
        }
        deserializer.deserialize_any(Visit(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct ToolCall<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow, rename = "type", default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    function: ToolCallFunction<'a>,
}

#[derive(Deserialize)]
struct ToolCallFunction<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    arguments: &'a RawValue,
}

/// One content part in any of the shapes clients send (Chat Completions or Responses style).
#[derive(Deserialize)]
struct Part<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    image_url: Option<&'a RawValue>,
    #[serde(borrow, default)]
    detail: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ImageUrl<'a> {
    Url(#[serde(borrow)] Cow<'a, str>),
    Object {
        #[serde(borrow)]
        url: Cow<'a, str>,
        #[serde(borrow, default)]
        detail: Option<Cow<'a, str>>,
    },
}

/// Content as a list of parts: a string is one text part, `null` is none.
fn content_parts<'a>(content: Content<'a>, param: &Path<'_>) -> Result<Vec<Part<'a>>, ApiError> {
    match content {
        Content::Absent => Ok(Vec::new()),
        Content::Text(text) => Ok(vec![text_part(text)]),
        Content::Parts(parts) => Ok(parts),
        Content::Raw(raw) => {
            let param = Path::Field(param, "content");
            if raw.get().starts_with('"') {
                let text: Option<Cow<str>> = parse_raw(raw, &param)?;
                return Ok(text.map(text_part).into_iter().collect());
            }
            Ok(parse_raw(raw, &param)?.unwrap_or_default())
        }
    }
}

fn text_part(text: Cow<'_, str>) -> Part<'_> {
    Part {
        kind: Cow::Borrowed("text"),
        text: Some(text),
        image_url: None,
        detail: None,
    }
}

fn joined_text<'a>(content: Content<'a>, param: &Path<'_>) -> Result<Cow<'a, str>, ApiError> {
    let mut texts = Vec::new();
    for (i, part) in content_parts(content, param)?.into_iter().enumerate() {
        match (part.kind.as_ref(), part.text) {
            ("text" | "input_text" | "output_text", Some(text)) => texts.push(text),
            (kind, _) => {
                return Err(ApiError::invalid_param(
                    format!("{param}.content[{i}]"),
                    format!("Content part type {kind:?} is not allowed in `{param}`; only text parts are."),
                ));
            }
        }
    }
    Ok(match texts.len() {
        0 => Cow::Borrowed(""),
        1 => texts.swap_remove(0),
        _ => Cow::Owned(texts.join("\n")),
    })
}

fn user_parts<'a>(content: Content<'a>, param: &Path<'_>) -> Result<Vec<ContentPart<'a>>, ApiError> {
    let mut parts = Vec::new();
    let content_param = Path::Field(param, "content");
    for (i, part) in content_parts(content, param)?.into_iter().enumerate() {
        let part_param = Path::Index(&content_param, i);
        match part.kind.as_ref() {
            "text" | "input_text" => parts.push(ContentPart::InputText {
                text: part.text.ok_or_else(|| {
                    ApiError::invalid_param(&part_param, format!("`{part_param}` has no `text`."))
                })?,
            }),
            "image_url" | "input_image" => {
                let raw = part.image_url.ok_or_else(|| {
                    ApiError::invalid_param(&part_param, format!("`{part_param}` has no `image_url`."))
                })?;
                let image: ImageUrl = parse_raw(raw, &part_param)?.ok_or_else(|| {
                    ApiError::invalid_param(&part_param, format!("`{part_param}` has no `image_url`."))
                })?;
                let (url, detail) = match image {
                    ImageUrl::Url(url) => (url, part.detail),
                    ImageUrl::Object { url, detail } => (url, detail.or(part.detail)),
                };
                parts.push(ContentPart::InputImage {
                    image_url: crate::core::translate::request::data_url::normalize(url),
                    detail,
                });
            }
            other => {
                return Err(ApiError::invalid_param(
                    &part_param,
                    format!("Content part type {other:?} is not supported; send text or image_url parts."),
                ));
            }
        }
    }
    Ok(parts)
}

/// The assistant's text first, then its tool calls: the order the model produced them.
fn push_assistant<'a>(
    message: Message<'a, Content<'a>>,
    param: &Path<'_>,
    input: &mut Vec<InputItem<'a>>,
) -> Result<(), ApiError> {
    let text = joined_text(message.content, param)?;
    if !text.is_empty() {
        input.push(InputItem::Message {
            role: "assistant",
            content: vec![ContentPart::OutputText { text }],
        });
    }
    for (i, call) in message.tool_calls.unwrap_or_default().into_iter().enumerate() {
        if call.kind.as_deref().is_some_and(|k| k != "function") {
            return Err(ApiError::invalid_param(
                format!("{param}.tool_calls[{i}].type"),
                "Only function tool calls are supported.",
            ));
        }
        let raw_args = call.function.arguments;
        let arguments = match parse_raw::<Cow<str>>(raw_args, "arguments") {
            Ok(Some(text)) if raw_args.get().starts_with('"') => text,
            _ => Cow::Borrowed(raw_args.get()),
        };
        input.push(InputItem::FunctionCall {
            call_id: call.id,
            name: call.function.name,
            arguments,
        });
    }
    Ok(())
}

#[derive(Deserialize)]
struct ToolDef<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    function: Option<FunctionDef<'a>>,
}

#[derive(Deserialize)]
struct FunctionDef<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    description: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    parameters: Option<&'a RawValue>,
    #[serde(default)]
    strict: Option<bool>,
}

fn empty_parameters() -> &'static RawValue {
    const EMPTY: &str = r#"{"type":"object","properties":{}}"#;
    serde_json::from_str::<&'static RawValue>(EMPTY).unwrap_or(RawValue::NULL)
}

fn convert_tool(index: usize, tool: ToolDef<'_>, format: ToolsFormat) -> Result<FunctionTool<'_>, ApiError> {
    let param = Path::Index(&TOOLS, index);
    let function = match (tool.kind.as_ref(), tool.function) {
        ("function", Some(function)) => function,
        ("function", None) => {
            return Err(ApiError::invalid_param(
                &param,
                format!("`{param}` has no `function` object."),
            ));
        }
        (other, _) => {
            return Err(ApiError::invalid_param(
                format!("{param}.type"),
                format!("Tool type {other:?} is not supported; only function tools are."),
            ));
        }
    };
    if function.name.trim().is_empty() {
        return Err(ApiError::invalid_param(
            format!("{param}.function.name"),
            "A function tool needs a name.",
        ));
    }
    let spec = FunctionSpec {
        name: function.name,
        description: function.description.filter(|d| !d.is_empty()),
        parameters: function
            .parameters
            .filter(|p| p.get() != "null")
            .unwrap_or_else(|| empty_parameters()),
        strict: function.strict,
    };
    Ok(match format {
        ToolsFormat::Flat => FunctionTool::Flat {
            kind: "function",
            spec,
        },
        ToolsFormat::Nested => FunctionTool::Nested {
            kind: "function",
            function: spec,
        },
    })
}

#[derive(Deserialize)]
struct NamedChoice<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    function: Option<ChoiceFunction<'a>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ChoiceFunction<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
}

fn convert_tool_choice(raw: &RawValue, format: ToolsFormat) -> Result<ToolChoice<'_>, ApiError> {
    let invalid = || {
        ApiError::invalid_param(
            "tool_choice",
            "`tool_choice` must be \"auto\", \"none\", \"required\" or {\"type\":\"function\",\"function\":{\"name\":...}}.",
        )
    };
    if raw.get().starts_with('"') {
        let mode: Cow<str> = parse_raw(raw, "tool_choice")?.ok_or_else(invalid)?;
        return match mode.as_ref() {
            "auto" => Ok(ToolChoice::Mode("auto")),
            "none" => Ok(ToolChoice::Mode("none")),
            "required" => Ok(ToolChoice::Mode("required")),
            _ => Err(invalid()),
        };
    }
    let choice: NamedChoice = parse_raw(raw, "tool_choice")?.ok_or_else(invalid)?;
    let name = choice
        .function
        .map(|f| f.name)
        .or(choice.name)
        .filter(|n| !n.is_empty());
    match (choice.kind.as_ref(), name, format) {
        ("function", Some(name), ToolsFormat::Flat) => Ok(ToolChoice::Function {
            kind: "function",
            name,
        }),
        ("function", Some(name), ToolsFormat::Nested) => Ok(ToolChoice::NestedFunction {
            kind: "function",
            function: NamedFunction { name },
        }),
        _ => Err(invalid()),
    }
}

#[derive(Deserialize)]
struct ResponseFormat<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    json_schema: Option<JsonSchema<'a>>,
}

#[derive(Deserialize)]
struct JsonSchema<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    schema: Option<&'a RawValue>,
    #[serde(default)]
    strict: Option<bool>,
    #[serde(borrow, default)]
    description: Option<Cow<'a, str>>,
}

fn convert_response_format(format: ResponseFormat<'_>) -> Result<Option<TextFormat<'_>>, ApiError> {
    match (format.kind.as_ref(), format.json_schema) {
        ("text", _) => Ok(None),
        ("json_object", _) => Ok(Some(TextFormat::JsonObject)),
        ("json_schema", Some(spec)) => {
            let schema = spec.schema.ok_or_else(|| {
                ApiError::invalid_param(
                    "response_format.json_schema.schema",
                    "`response_format.json_schema` needs a `schema`.",
                )
            })?;
            Ok(Some(TextFormat::JsonSchema {
                name: spec.name.unwrap_or(Cow::Borrowed("response")),
                schema,
                strict: spec.strict,
                description: spec.description,
            }))
        }
        ("json_schema", None) => Err(ApiError::invalid_param(
            "response_format.json_schema",
            "`response_format` of type json_schema needs a `json_schema` object.",
        )),
        (other, _) => Err(ApiError::invalid_param(
            "response_format.type",
            format!("Unknown response_format type {other:?}; use text, json_object or json_schema."),
        )),
    }
}

fn parse_verbosity(raw: &str) -> Result<&'static str, ApiError> {
    match raw {
        "low" => Ok("low"),
        "medium" => Ok("medium"),
        "high" => Ok("high"),
        other => Err(ApiError::invalid_param(
            "verbosity",
            format!("Invalid verbosity {other:?}; use low, medium or high."),
        )),
    }
}

#[cfg(test)]
#[path = "chat_tests.rs"]
mod tests;
