use super::*;
use crate::core::test_support::{catalogue, settings};
use serde_json::{Value, json};

const CHATGPT: Upstream = Upstream::Chatgpt { lite_shape: false };

fn run(body: &str, upstream: Upstream) -> Result<(Value, Translated), ApiError> {
    let ctx = TranslateContext::defaults(catalogue(), settings());
    let translated = translate(body.as_bytes(), &ctx, upstream)?;
    let value = serde_json::from_slice(&translated.body).unwrap();
    Ok((value, translated))
}

fn normalised(body: &str) -> Value {
    run(body, CHATGPT).unwrap_or_else(|e| panic!("{body}: {e:?}")).0
}

#[test]
fn the_chatgpt_normalisation_forces_drops_and_fills_in() {
    let user =
        json!([{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]);
    let cases: &[(&str, Value)] = &[
        // Everything the backend needs, from a minimal SDK body.
        (
            r#"{"model":"gpt-5.5","input":"hi"}"#,
            json!({"model": "gpt-5.5", "input": user, "instructions": DEFAULT_INSTRUCTIONS,
                   "reasoning": {"effort": "medium", "summary": "auto"}, "store": false, "stream": true,
                   "include": ["reasoning.encrypted_content"], "prompt_cache_key": "<derived>",
                   "text": {"verbosity": "low"}}),
        ),
        // Forced values win over the client's, each dropped parameter goes, the rest stays.
        (
            r#"{"model":"gpt-5.5","input":"hi","store":true,"stream":false,"max_output_tokens":5,
                "temperature":0.2,"top_p":1,"truncation":"auto","user":"u","metadata":{"a":"b"},
                "background":false,"max_tool_calls":3,"top_logprobs":2,"safety_identifier":"s",
                "prompt_cache_retention":"24h","stream_options":{"include_obfuscation":false},
                "tools":[{"type":"function","name":"f","parameters":{}}],"tool_choice":"auto",
                "parallel_tool_calls":false,"text":{"verbosity":"low"},"service_tier":"priority",
                "client_metadata":{"x":"y"},"instructions":"Be terse.","prompt_cache_key":"conv-1",
                "include":["message.output_text.logprobs","reasoning.encrypted_content"]}"#,
            json!({"model": "gpt-5.5", "input": user, "store": false, "stream": true,
                   "tools": [{"type": "function", "name": "f", "parameters": {}}], "tool_choice": "auto",
                   "parallel_tool_calls": false, "text": {"verbosity": "low"}, "service_tier": "priority",
                   "client_metadata": {"x": "y"}, "instructions": "Be terse.", "prompt_cache_key": "conv-1",
                   "include": ["message.output_text.logprobs", "reasoning.encrypted_content"],
                   "reasoning": {"effort": "medium", "summary": "auto"}}),
        ),
        // Model resolution and the effort: the client's reasoning object wins over the suffix,
        // its other members stay, and no summary is added to it.
        (
            r#"{"model":"GPT-5.5_high","input":[],"reasoning":{"context":"all_turns"}}"#,
            json!({"model": "gpt-5.5", "input": [], "instructions": DEFAULT_INSTRUCTIONS,
                   "reasoning": {"context": "all_turns", "effort": "high"}, "store": false, "stream": true,
                   "include": ["reasoning.encrypted_content"], "prompt_cache_key": "<derived>",
                   "text": {"verbosity": "low"}}),
        ),
        (
            r#"{"model":"gpt-5.5-high","input":[],"reasoning":{"effort":"XHIGH","summary":"detailed"}}"#,
            json!({"model": "gpt-5.5", "input": [], "instructions": DEFAULT_INSTRUCTIONS,
                   "reasoning": {"effort": "xhigh", "summary": "detailed"}, "store": false, "stream": true,
                   "include": ["reasoning.encrypted_content"], "prompt_cache_key": "<derived>",
                   "text": {"verbosity": "low"}}),
        ),
        // null counts as absent everywhere it is read.
        (
            r#"{"model":null,"input":[],"instructions":null,"reasoning":null,"previous_response_id":null,"include":null}"#,
            // No model: the catalogue's default, a lite model (no parallel tool calls).
            json!({"model": "gpt-6.1-sol", "input": [], "instructions": DEFAULT_INSTRUCTIONS,
                   "reasoning": {"effort": "low", "summary": "auto"}, "store": false, "stream": true,
                   "include": ["reasoning.encrypted_content"], "prompt_cache_key": "<derived>",
                   "previous_response_id": null, "parallel_tool_calls": false, "text": {"verbosity": "low"}}),
        ),
    ];
    for (body, expected) in cases {
        let mut got = normalised(body);
        if expected["prompt_cache_key"] == "<derived>" {
            let key = got["prompt_cache_key"].as_str().unwrap_or_default().to_string();
            assert!(
                conversation_key::is_valid_client_key(&key) && key.len() == 36,
                "{key}"
            );
            got["prompt_cache_key"] = json!("<derived>");
        }
        assert_eq!(&got, expected, "{body}");
    }
}

use crate::core::translate::request::common::DEFAULT_INSTRUCTIONS;
use crate::core::translate::request::conversation_key;

#[test]
fn input_and_unknown_members_are_copied_byte_for_byte_in_order() {
    let input = r#"[ {"type" : "message","role":"user","content":"caf\u00e9 \ud83c\udf0d"},
        {"type":"function_call_output","call_id":"c1","output":"{\"x\": 1.50}"} ]"#;
    let body = format!(
        r#"{{"zeta":{{"k" : [1,2]}},"input":{input},"model":"gpt-5.5","alpha":1.0e3,"temperature":1}}"#
    );
    let (_, translated) = run(&body, CHATGPT).unwrap();
    let text = String::from_utf8(translated.body).unwrap();
    assert!(text.contains(input), "{text}");
    assert!(text.starts_with(r#"{"zeta":{"k" : [1,2]},"input":"#), "{text}");
    assert!(text.contains(r#""alpha":1.0e3"#), "{text}");
    assert!(!text.contains("temperature"), "{text}");
    // A member written twice counts once, as JSON parsers read it (the last one).
    let (value, _) = run(
        r#"{"input":[],"model":"a","model":"gpt-5.5","stream":true}"#,
        CHATGPT,
    )
    .unwrap();
    assert_eq!(value["model"], "gpt-5.5");
    assert!(!translated.stream);
}

#[test]
fn the_conversation_key_is_the_clients_or_stable_across_turns() {
    let turn = |input: &str| {
        let body = format!(r#"{{"model":"gpt-5.5","instructions":"sys","input":{input}}}"#);
        run(&body, CHATGPT).unwrap().1.session_id
    };
    let first = r#"{"role":"user","content":"hello"}"#;
    let one = turn(&format!("[{first}]"));
    let two = turn(&format!(
        r#"[{{"type":"reasoning","id":"rs_1","summary":[]}},{first},{{"type":"message","role":"assistant","content":"hi"}},{{"role":"user","content":"more"}}]"#
    ));
    assert_eq!(one, two);
    assert_ne!(one, turn(r#"[{"role":"user","content":"other"}]"#));
    assert_eq!(turn("\"hello\""), turn("\"hello\""));
    assert_ne!(turn("\"hello\""), turn("\"other\""));
    let (value, translated) = run(r#"{"input":"x","prompt_cache_key":"conv-9"}"#, CHATGPT).unwrap();
    assert_eq!(
        (value["prompt_cache_key"].as_str(), translated.session_id.as_str()),
        (Some("conv-9"), "conv-9")
    );
    let ctx = TranslateContext {
        session_hint: Some("sess-h"),
        ..TranslateContext::defaults(catalogue(), settings())
    };
    let hinted = translate(br#"{"input":"x"}"#, &ctx, CHATGPT).unwrap();
    assert_eq!(hinted.session_id, "sess-h");
}

#[test]
fn the_lite_shape_gets_no_instructions_added() {
    let lite = Upstream::Chatgpt { lite_shape: true };
    let (value, _) = run(r#"{"model":"gpt-6.1-sol","input":[]}"#, lite).unwrap();
    assert!(value.get("instructions").is_none(), "{value}");
    let (value, _) = run(
        r#"{"model":"gpt-6.1-sol","input":[],"instructions":"mine"}"#,
        lite,
    )
    .unwrap();
    assert_eq!(value["instructions"], "mine");
}

#[test]
fn an_api_key_upstream_gets_the_body_as_written() {
    let body =
        r#"{"model":"gpt-4.1","input":"hi","previous_response_id":"resp_1","temperature":0.1,"stream":true}"#;
    let (_, translated) = run(body, Upstream::ApiKey).unwrap();
    assert_eq!(translated.body, body.as_bytes());
    assert!(translated.stream);
    assert_eq!(translated.model, "gpt-4.1");
    assert!(run("[1]", Upstream::ApiKey).is_err());
}

#[test]
#[allow(clippy::type_complexity)] // a table of cases reads best as tuples
fn bad_bodies_are_4xx_naming_the_member() {
    let cases: &[(&str, u16, Option<&str>, Option<&str>)] = &[
        (
            r#"{"input":"x","previous_response_id":"resp_1"}"#,
            400,
            Some("previous_response_id"),
            Some("previous_response_unsupported"),
        ),
        (
            r#"{"input":"x","conversation":{"id":"conv_1"}}"#,
            400,
            Some("conversation"),
            Some("previous_response_unsupported"),
        ),
        (
            r#"{"input":"x","background":true}"#,
            400,
            Some("background"),
            None,
        ),
        (r#"{"model":"gpt-5.5"}"#, 400, Some("input"), None),
        (r#"{"input":null}"#, 400, Some("input"), None),
        (r#"{"input":7}"#, 400, Some("input"), None),
        (r#"{"input":{"role":"user"}}"#, 400, Some("input"), None),
        (r#"{"input":[1]}"#, 400, Some("input"), None),
        (r#"{"input":"x","stream":"yes"}"#, 400, Some("stream"), None),
        (r#"{"input":"x","model":5}"#, 400, Some("model"), None),
        (
            r#"{"input":"x","reasoning":{"effort":"extreme"}}"#,
            400,
            Some("reasoning.effort"),
            None,
        ),
        (
            r#"{"input":"x","reasoning":{"summary":"loud"}}"#,
            400,
            Some("reasoning.summary"),
            None,
        ),
        (
            r#"{"input":"x","reasoning":"high"}"#,
            400,
            Some("reasoning"),
            None,
        ),
        (
            r#"{"input":"x","include":"reasoning.encrypted_content"}"#,
            400,
            Some("include"),
            None,
        ),
        (
            r#"{"input":"x","prompt_cache_key":"a\nb"}"#,
            400,
            Some("prompt_cache_key"),
            Some("invalid_prompt_cache_key"),
        ),
        ("[]", 400, None, None),
        ("", 400, None, None),
        ("{", 400, None, None),
    ];
    for (body, status, param, code) in cases {
        let error = run(body, CHATGPT)
            .err()
            .unwrap_or_else(|| panic!("accepted {body}"));
        assert_eq!(
            (error.status, error.param.as_deref(), error.code_str()),
            (*status, *param, *code),
            "{body}: {}",
            error.message
        );
    }
}

#[test]
fn compaction_bodies_pass_unchanged() {
    let ctx = TranslateContext::defaults(catalogue(), settings());
    let body =
        br#"{"model":"gpt-5.5","input":[{"type":"message","role":"user","content":"x"}],"instructions":"i"}"#;
    let translated = compact(body, &ctx, true).unwrap();
    assert_eq!(
        (
            translated.body.as_slice(),
            translated.model.as_str(),
            translated.lite
        ),
        (&body[..], "gpt-5.5", true)
    );
    assert!(compact(b"null", &ctx, false).is_err());
}

#[test]
#[allow(clippy::type_complexity)] // a table of cases reads best as tuples
fn the_catalogue_rules_apply_as_for_chat() {
    // (body, model, effort, service tier, parallel tool calls, verbosity: both models default
    // to `low`)
    let cases: &[(&str, &str, &str, Option<&str>, Option<bool>, Option<&str>)] = &[
        // No model: the catalogue's default, its default effort.
        (
            r#"{"input":[]}"#,
            "gpt-6.1-sol",
            "low",
            None,
            Some(false),
            Some("low"),
        ),
        // A retired id through the alias table; an effort suffix; an effort clamped to the model's.
        (
            r#"{"input":[],"model":"gpt-5-codex"}"#,
            "gpt-6.1-sol",
            "low",
            None,
            Some(false),
            Some("low"),
        ),
        (
            r#"{"input":[],"model":"gpt-5.5-high"}"#,
            "gpt-5.5",
            "high",
            None,
            None,
            Some("low"),
        ),
        (
            r#"{"input":[],"model":"gpt-5.5","reasoning":{"effort":"max"}}"#,
            "gpt-5.5",
            "xhigh",
            None,
            None,
            Some("low"),
        ),
        // The client's verbosity stays; other `text` members too.
        (
            r#"{"input":[],"model":"gpt-5.5","text":{"verbosity":"high","format":{"type":"text"}}}"#,
            "gpt-5.5",
            "medium",
            None,
            None,
            Some("high"),
        ),
        // `ultra` goes on the wire as `max`.
        (
            r#"{"input":[],"model":"gpt-6.1-sol","reasoning":{"effort":"ultra"}}"#,
            "gpt-6.1-sol",
            "max",
            None,
            Some(false),
            Some("low"),
        ),
        // A tier the model offers (`fast` is `priority`); one it does not is left out.
        (
            r#"{"input":[],"model":"gpt-5.5","service_tier":"fast"}"#,
            "gpt-5.5",
            "medium",
            Some("priority"),
            None,
            Some("low"),
        ),
        (
            r#"{"input":[],"model":"gpt-5.5","service_tier":"flex"}"#,
            "gpt-5.5",
            "medium",
            None,
            None,
            Some("low"),
        ),
        // A lite model takes no parallel tool calls; a classic one keeps the client's.
        (
            r#"{"input":[],"model":"gpt-6.1-sol","parallel_tool_calls":true}"#,
            "gpt-6.1-sol",
            "low",
            None,
            Some(false),
            Some("low"),
        ),
        (
            r#"{"input":[],"model":"gpt-5.5","parallel_tool_calls":true}"#,
            "gpt-5.5",
            "medium",
            None,
            Some(true),
            Some("low"),
        ),
    ];
    for (body, model, effort, tier, parallel, verbosity) in cases {
        let (value, translated) = run(body, CHATGPT).unwrap_or_else(|e| panic!("{body}: {e:?}"));
        assert_eq!(value["model"], *model, "{body}");
        assert_eq!(translated.model, *model, "{body}");
        assert_eq!(value["reasoning"]["effort"], *effort, "{body}");
        assert_eq!(value["service_tier"].as_str(), *tier, "{body}");
        assert_eq!(value["parallel_tool_calls"].as_bool(), *parallel, "{body}");
        assert_eq!(value["text"]["verbosity"].as_str(), *verbosity, "{body}");
    }
}
