//! The upstream Responses request body, as the Codex backend accepts it: always streamed,
//! never stored, reasoning replayable, tools in the flat shape.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::core::reasoning::ReasoningParam;

/// Keeps reasoning items replayable without server-side storage.
const INCLUDE: &[&str] = &["reasoning.encrypted_content"];

/// The body the filter sends upstream; borrows from the client's body where it can, so a
/// large conversation is not copied. Classic shape as built; [`ResponsesRequest::into_lite`]
/// turns it into the lite shape.
#[derive(Debug, Serialize)]
pub struct ResponsesRequest<'a> {
    pub model: &'a str,
    /// `None` in the lite shape (the text goes first in `input`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instructions: Option<Cow<'a, str>>,
    pub input: Vec<InputItem<'a>>,
    /// `None` in the lite shape (the tools are an `additional_tools` input item).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<FunctionTool<'a>>>,
    pub tool_choice: ToolChoice<'a>,
    pub parallel_tool_calls: bool,
    pub reasoning: ReasoningParam,
    pub store: bool,
    pub stream: bool,
    pub include: &'static [&'static str],
    pub prompt_cache_key: &'a str,
    #[serde(skip_serializing_if = "TextConfig::is_empty")]
    pub text: TextConfig<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<Cow<'a, str>>,
}

impl<'a> ResponsesRequest<'a> {
    /// A request with the fields the backend requires fixed (`store:false`, `stream:true`).
    pub fn new(
        model: &'a str,
        instructions: Cow<'a, str>,
        input: Vec<InputItem<'a>>,
        reasoning: ReasoningParam,
        prompt_cache_key: &'a str,
    ) -> Self {
        Self {
            model,
            instructions: Some(instructions),
            input,
            tools: Some(Vec::new()),
            tool_choice: ToolChoice::Mode("auto"),
            parallel_tool_calls: true,
            reasoning,
            store: false,
            stream: true,
            include: INCLUDE,
            prompt_cache_key,
            text: TextConfig::default(),
            service_tier: None,
        }
    }

    /// The lite shape the backend expects for `use_responses_lite` models: the instructions
    /// as a leading developer message, the tools as one leading `additional_tools` item (sent
    /// even when empty, as the official client does), no parallel tool calls, and the
    /// reasoning of every turn kept.
    pub fn into_lite(mut self) -> Self {
        let mut leading = Vec::with_capacity(2);
        leading.push(InputItem::AdditionalTools {
            role: "developer",
            tools: self.tools.take().unwrap_or_default(),
        });
        if let Some(text) = self.instructions.take().filter(|t| !t.is_empty()) {
            leading.push(InputItem::Message {
                role: "developer",
                content: vec![ContentPart::InputText { text }],
            });
        }
        leading.append(&mut self.input);
        self.input = leading;
        self.parallel_tool_calls = false;
        self.reasoning.context = Some(LITE_REASONING_CONTEXT);
        self
    }
}

/// `reasoning.context` of the lite shape.
pub const LITE_REASONING_CONTEXT: &str = "all_turns";

/// One item of `input`: a message, an assistant's earlier tool call, that call's result, or
/// (lite shape) the tool definitions.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InputItem<'a> {
    AdditionalTools {
        role: &'static str,
        tools: Vec<FunctionTool<'a>>,
    },
    Message {
        role: &'static str,
        content: Vec<ContentPart<'a>>,
    },
    FunctionCall {
        call_id: Cow<'a, str>,
        name: Cow<'a, str>,
        arguments: Cow<'a, str>,
    },
    FunctionCallOutput {
        call_id: Cow<'a, str>,
        output: Cow<'a, str>,
    },
}

/// One part of a message's `content`: user text, assistant text, or an image (URL or data URL).
#[derive(Debug, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart<'a> {
    InputText {
        text: Cow<'a, str>,
    },
    OutputText {
        text: Cow<'a, str>,
    },
    InputImage {
        image_url: Cow<'a, str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<Cow<'a, str>>,
    },
}

/// A function tool, in the flat Responses shape or nested like Chat Completions.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum FunctionTool<'a> {
    Flat {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(flatten)]
        spec: FunctionSpec<'a>,
    },
    Nested {
        #[serde(rename = "type")]
        kind: &'static str,
        function: FunctionSpec<'a>,
    },
}

/// A function tool's definition; `parameters` is the client's JSON schema, passed on verbatim.
#[derive(Debug, Serialize)]
pub struct FunctionSpec<'a> {
    pub name: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<Cow<'a, str>>,
    pub parameters: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `tool_choice`: a mode, or one function to call (flat or nested, following the tools format).
#[derive(Debug, Serialize, PartialEq)]
#[serde(untagged)]
pub enum ToolChoice<'a> {
    /// `auto`, `none` or `required`.
    Mode(&'static str),
    Function {
        #[serde(rename = "type")]
        kind: &'static str,
        name: Cow<'a, str>,
    },
    NestedFunction {
        #[serde(rename = "type")]
        kind: &'static str,
        function: NamedFunction<'a>,
    },
}

/// The `function: {name}` of a nested [`ToolChoice::NestedFunction`].
#[derive(Debug, Serialize, PartialEq)]
pub struct NamedFunction<'a> {
    pub name: Cow<'a, str>,
}

/// `text`: the client's `response_format` and `verbosity`; left out of the body when both are unset.
#[derive(Debug, Default, Serialize)]
pub struct TextConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<TextFormat<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verbosity: Option<&'static str>,
}

impl TextConfig<'_> {
    fn is_empty(&self) -> bool {
        self.format.is_none() && self.verbosity.is_none()
    }
}

/// `text.format`, from the client's `response_format` (`json_object` or `json_schema`).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TextFormat<'a> {
    JsonObject,
    JsonSchema {
        name: Cow<'a, str>,
        schema: &'a RawValue,
        #[serde(skip_serializing_if = "Option::is_none")]
        strict: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        description: Option<Cow<'a, str>>,
    },
}
