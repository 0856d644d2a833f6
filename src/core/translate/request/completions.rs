//! `POST /v1/completions` body → Codex Responses request: the prompt becomes one user turn.

use std::borrow::Cow;

use serde::Deserialize;

use crate::core::error::ApiError;
use crate::core::translate::request::common::{Common, TranslateContext, Translated};
use crate::core::translate::request::json_fields::Fields;
use crate::core::wire::responses_request::{ContentPart, InputItem, ResponsesRequest};

/// `prompt` as a string or an array of strings (joined, as the original did).
#[derive(Deserialize)]
#[serde(untagged)]
enum Prompt<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Texts(#[serde(borrow)] Vec<Cow<'a, str>>),
}

/// Translates a legacy Completions body into the upstream Responses body; `Err` is the 400
/// to send (missing or empty `prompt`, token arrays, bad options).
pub fn translate(body: &[u8], ctx: &TranslateContext<'_>) -> Result<Translated, ApiError> {
    let fields = Fields::parse(body)?;
    let prompt = match fields.get::<Prompt>("prompt").map_err(|_| {
        ApiError::invalid_param(
            "prompt",
            "`prompt` must be a string or an array of strings; token arrays are not supported.",
        )
    })? {
        Some(Prompt::Text(text)) => text,
        Some(Prompt::Texts(texts)) => Cow::Owned(texts.concat()),
        None => return Err(ApiError::invalid_param("prompt", "`prompt` is required.")),
    };
    if prompt.trim().is_empty() {
        return Err(ApiError::invalid_param("prompt", "`prompt` must not be empty."));
    }
    let common = Common::read(&fields, ctx)?;
    let instructions = common.instructions(ctx, None);
    let input = vec![InputItem::Message {
        role: "user",
        content: vec![ContentPart::InputText { text: prompt }],
    }];
    let session_id = common.session_id(ctx, &instructions, input.first());
    let request = ResponsesRequest::new(
        &common.rules.slug,
        instructions,
        input,
        common.reasoning,
        &session_id,
    );
    common.finish(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::test_support::{catalogue, settings};
    use crate::core::translate::request::common::DEFAULT_INSTRUCTIONS;
    use serde_json::{Value, json};

    fn run(body: Value) -> Result<(Value, Translated), ApiError> {
        let ctx = TranslateContext::defaults(catalogue(), settings());
        let out = translate(body.to_string().as_bytes(), &ctx)?;
        Ok((serde_json::from_slice(&out.body).unwrap(), out))
    }

    #[test]
    fn prompt_becomes_one_user_turn() {
        let (up, out) = run(
            json!({"model": "gpt-5.5-high", "prompt": "Write a haiku.", "stream": true, "max_tokens": 5}),
        )
        .unwrap();
        assert_eq!(
            up,
            json!({
                "model": "gpt-5.5", "instructions": DEFAULT_INSTRUCTIONS,
                "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Write a haiku."}]}],
                "tools": [], "tool_choice": "auto", "parallel_tool_calls": true,
                "reasoning": {"effort": "high", "summary": "auto"}, "store": false, "stream": true,
                "include": ["reasoning.encrypted_content"], "prompt_cache_key": out.session_id,
                "text": {"verbosity": "low"},
            })
        );
        assert!(out.stream && !out.lite);
        let (up, _) = run(json!({"model": "gpt-5.5", "prompt": ["a", "b"]})).unwrap();
        assert_eq!(up["input"][0]["content"][0]["text"], "ab");
    }

    #[test]
    fn a_lite_model_gets_the_lite_shape() {
        let (up, out) =
            run(json!({"model": "gpt-6-sol-fast", "prompt": "Hi", "reasoning_effort": "ultra"})).unwrap();
        assert_eq!(
            up,
            json!({
                "model": "gpt-6-sol",
                "input": [
                    {"type": "additional_tools", "role": "developer", "tools": []},
                    {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": DEFAULT_INSTRUCTIONS}]},
                    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
                ],
                "tool_choice": "auto", "parallel_tool_calls": false,
                "reasoning": {"effort": "max", "summary": "auto", "context": "all_turns"},
                "store": false, "stream": true, "include": ["reasoning.encrypted_content"],
                "prompt_cache_key": out.session_id, "text": {"verbosity": "low"}, "service_tier": "priority",
            })
        );
        assert!(out.lite);
        assert_eq!(out.model, "gpt-6-sol");
    }

    #[test]
    fn bad_prompts_are_400() {
        for body in [
            json!({}),
            json!({"prompt": ""}),
            json!({"prompt": 5}),
            json!({"prompt": [1, 2]}),
            json!({"prompt": "x", "reasoning_effort": "loud"}),
        ] {
            let err = run(body.clone())
                .err()
                .unwrap_or_else(|| panic!("accepted {body}"));
            assert_eq!(err.status, 400, "{body}");
            assert!(err.param.is_some(), "{body}");
        }
    }
}
