//! The request translators (chat and text completions → Codex Responses): whatever the
//! client sends, the answer is a request the backend accepts or an OpenAI-shaped 4xx.
//!
//! * never a panic;
//! * `Ok`: a JSON object with the backend's fixed fields (`stream: true`, `store: false`,
//!   the `include` list), the resolved model, a message `input`, the session id as
//!   `prompt_cache_key`, and no field outside the Responses request; the lite shape (no
//!   `instructions` or `tools`, the tools as the first input item, no parallel tool calls)
//!   exactly when the translation says so; the same body always translates to the same bytes;
//! * `Err`: status 400–499 and an OpenAI error body;
//! * chat: the one-pass read of `messages` gives the same body, or the same error, as the
//!   layered read.

use std::collections::BTreeMap;

use codex_openai_wrapper::core::error::ApiError;
use codex_openai_wrapper::core::reasoning::{Effort, Summary};
use codex_openai_wrapper::core::translate::request::common::{ToolsFormat, TranslateContext, Translated};
use codex_openai_wrapper::core::translate::request::{chat, completions};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::engine::{Target, fnv, mix};
use crate::targets::{catalogue, models};

pub const CHAT: Target = Target {
    name: "chat_request",
    seeds: Vec::new,
    dictionary: DICTIONARY,
    check: check_chat,
    mutate: None,
    max_len: 64 * 1024,
};

pub const COMPLETIONS: Target = Target {
    name: "completions_request",
    seeds: Vec::new,
    dictionary: DICTIONARY,
    check: check_completions,
    mutate: None,
    max_len: 64 * 1024,
};

const DICTIONARY: &[&str] = &[
    r#""model":"#,
    r#""messages":"#,
    r#""role":"#,
    r#""content":"#,
    r#""prompt":"#,
    r#""tools":"#,
    r#""tool_calls":"#,
    r#""tool_call_id":"#,
    r#""tool_choice":"#,
    r#""function":"#,
    r#""arguments":"#,
    r#""parameters":"#,
    r#""image_url":"#,
    r#""url":"#,
    r#""detail":"#,
    r#""stream":true"#,
    r#""stream_options":{"include_usage":true}"#,
    r#""reasoning":{"effort":"high","summary":"detailed"}"#,
    r#""reasoning_effort":"#,
    r#""response_format":"#,
    r#""json_schema":"#,
    r#""prompt_cache_key":"#,
    r#""service_tier":"#,
    r#""verbosity":"#,
    r#""n":"#,
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
    "text",
    "image_url",
    "input_image",
    "input_audio",
    "json_object",
    "required",
    "none",
    "auto",
    "gpt-5.5",
    "gpt-5.5-high",
    "gpt-5-codex",
    "gpt-5.6-sol-minimal",
    "gpt-6.1-sol",
    "gpt-6-sol-fast",
    "gpt-5.4-mini",
    "ultra",
    "fast",
    "data:image/png;base64,AAA-_w",
    "data:;base64,",
    "https://example.com/a.png",
];

/// The fields a Responses request may carry.
const RESPONSES_FIELDS: &[&str] = &[
    "model",
    "instructions",
    "input",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning",
    "store",
    "stream",
    "include",
    "prompt_cache_key",
    "text",
    "service_tier",
];

/// The default settings, and a variant picked by the input (tool format, session header,
/// configured instructions, defaults, the lite shape allowed).
fn contexts(hash: u64) -> [TranslateContext<'static>; 2] {
    let base = TranslateContext::defaults(catalogue(), models());
    let bit = |n: u32| hash >> n & 1 == 1;
    let variant = TranslateContext {
        catalogue: catalogue(),
        models: models(),
        lite_shape: bit(6),
        default_effort: if bit(0) {
            Some(Effort::High)
        } else {
            Some(Effort::Minimal)
        },
        default_summary: if bit(1) { Summary::None } else { Summary::Detailed },
        tools_format: if bit(2) {
            ToolsFormat::Nested
        } else {
            ToolsFormat::Flat
        },
        session_hint: bit(3).then_some("session-from-header"),
        base_instructions: bit(4).then_some("Base instructions."),
        codex_instructions: bit(5).then_some("Codex instructions."),
    };
    [base, variant]
}

fn check_chat(data: &[u8]) -> u64 {
    for ctx in contexts(fnv(data)) {
        assert!(
            chat::typed_read_agrees(data, &ctx),
            "the typed and the layered read of `messages` disagree"
        );
    }
    check(data, chat::translate)
}

fn check_completions(data: &[u8]) -> u64 {
    check(data, completions::translate)
}

fn check(data: &[u8], translate: fn(&[u8], &TranslateContext<'_>) -> Result<Translated, ApiError>) -> u64 {
    let mut signature = Vec::new();
    for ctx in contexts(fnv(data)) {
        let result = translate(data, &ctx);
        let again = translate(data, &ctx);
        match (&result, &again) {
            (Ok(a), Ok(b)) => assert_eq!(a.body, b.body, "the same body translated twice differs"),
            (Err(a), Err(b)) => assert_eq!(a, b, "the same body failed twice differently"),
            _ => panic!("the same body translated once and failed once"),
        }
        signature.push(match result {
            Ok(translated) => accepted(&translated),
            Err(error) => rejected(&error),
        });
    }
    mix(&signature)
}

fn accepted(t: &Translated) -> u64 {
    // Read as raw JSON first: a schema or tool parameters the client sent pass through
    // untouched, and JSON allows numbers (`1e400`) that serde_json's values cannot hold.
    let fields: BTreeMap<String, Box<RawValue>> = serde_json::from_slice(&t.body)
        .unwrap_or_else(|e| panic!("the upstream body is not a JSON object: {e}"));
    for name in fields.keys() {
        assert!(
            RESPONSES_FIELDS.contains(&name.as_str()),
            "{name:?} reached the upstream body"
        );
    }
    let field = |name: &str| -> Value {
        let raw = fields
            .get(name)
            .unwrap_or_else(|| panic!("no {name:?} in the upstream body"));
        serde_json::from_str(raw.get()).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    assert_eq!(field("stream"), true);
    assert_eq!(field("store"), false);
    assert_eq!(
        field("include"),
        serde_json::json!(["reasoning.encrypted_content"])
    );
    assert!(!t.model.is_empty());
    assert_eq!(field("model"), t.model.as_str());
    // The model as the catalogue writes it: no space around it (the backend would not know
    // "gpt-5.5 "), lower case.
    assert_eq!(
        t.model.trim(),
        t.model,
        "the model {:?} has spaces around it",
        t.model
    );
    assert_eq!(
        t.model.to_ascii_lowercase(),
        t.model,
        "the model {:?} is not lower case",
        t.model
    );
    assert_eq!(field("prompt_cache_key"), t.session_id.as_str());
    assert!(field("parallel_tool_calls").is_boolean());
    let mut input: Vec<BTreeMap<String, Box<RawValue>>> =
        serde_json::from_str(fields["input"].get()).unwrap_or_else(|e| panic!("input: {e}"));
    let tools_raw = if t.lite {
        assert!(!fields.contains_key("instructions") && !fields.contains_key("tools"));
        assert_eq!(field("parallel_tool_calls"), false);
        assert!(!input.is_empty(), "a lite body without its tools item");
        let first = input.remove(0);
        assert_eq!(first.get("type").map(|t| t.get()), Some(r#""additional_tools""#));
        first
            .get("tools")
            .map(|t| t.get().to_string())
            .unwrap_or_else(|| panic!("an additional_tools item without tools"))
    } else {
        assert!(field("instructions").is_string());
        fields["tools"].get().to_string()
    };
    let tools: Vec<Box<RawValue>> = serde_json::from_str(&tools_raw).unwrap_or_else(|e| panic!("tools: {e}"));
    let mut keys: Vec<u64> = fields.keys().map(|k| fnv(k.as_bytes())).collect();
    keys.push(u64::from(t.lite) << 2);
    for item in &input {
        let kind = item
            .get("type")
            .map(|t| t.get())
            .unwrap_or_else(|| panic!("an input item without a type"));
        assert!(
            [r#""message""#, r#""function_call""#, r#""function_call_output""#].contains(&kind),
            "input item type {kind}"
        );
        keys.push(fnv(kind.as_bytes()));
    }
    keys.push(u64::from(t.stream) << 1 | u64::from(t.include_usage));
    keys.push(tools.len().min(3) as u64);
    keys.sort_unstable();
    keys.dedup();
    mix(&keys)
}

/// Checks a refusal of a client's body: a 4xx OpenAI error with every field and a message.
pub(crate) fn rejected(error: &ApiError) -> u64 {
    assert!(
        (400..500).contains(&error.status),
        "a client's body got status {}: {}",
        error.status,
        error.message
    );
    let body: Value = serde_json::from_slice(&error.body()).unwrap_or_else(|e| panic!("error body: {e}"));
    let object = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("not an OpenAI error: {body}"));
    for field in ["message", "type", "param", "code"] {
        assert!(object.contains_key(field), "no {field:?} in {body}");
    }
    assert!(
        object["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    mix(&[
        u64::from(error.status),
        fnv(object["param"].to_string().as_bytes()),
        fnv(object["code"].to_string().as_bytes()),
    ])
}
