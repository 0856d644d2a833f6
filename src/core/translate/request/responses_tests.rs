use super::*;
use crate::core::models::ModelCatalog;
use serde_json::{Value, json};

const CHATGPT: Upstream = Upstream::Chatgpt { lite_shape: false };

fn run(body: &str, upstream: Upstream) -> Result<(Value, Translated), ApiError> {
    let models = ModelCatalog::new(None, None).unwrap();
    let ctx = TranslateContext::defaults(&models);
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
                   "reasoning": {"effort": "low", "summary": "auto"}, "store": false, "stream": true,
                   "include": ["reasoning.encrypted_content"], "prompt_cache_key": "<derived>"}),
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
                   "reasoning": {"effort": "low", "summary": "auto"}}),
        ),
        // Model resolution and the effort: the client's reasoning object wins over the suffix,
        // its other members stay, and no summary is added to it.
        (
            r#"{"model":"gpt-5-codex-high","input":[],"reasoning":{"context":"all_turns"}}"#,
            json!({"model": "gpt-5.5", "input": [], "instructions": DEFAULT_INSTRUCTIONS,
                   "reasoning": {"context": "all_turns", "effort": "high"}, "store": false, "stream": true,
                   "include": ["reasoning.encrypted_content"], "prompt_cache_key": "<derived>"}),
        ),
        (
            r#"{"model":"gpt-5.5-high","input":[],"reasoning":{"effort":"XHIGH","summary":"detailed"}}"#,
            json!({"model": "gpt-5.5", "input": [], "instructions": DEFAULT_INSTRUCTIONS,
                   "reasoning": {"effort": "xhigh", "summary": "detailed"}, "store": false, "stream": true,
                   "include": ["reasoning.encrypted_content"], "prompt_cache_key": "<derived>"}),
        ),
        // null counts as absent everywhere it is read.
        (
            r#"{"model":null,"input":[],"instructions":null,"reasoning":null,"previous_response_id":null,"include":null}"#,
            json!({"model": "gpt-5.5", "input": [], "instructions": DEFAULT_INSTRUCTIONS,
                   "reasoning": {"effort": "low", "summary": "auto"}, "store": false, "stream": true,
                   "include": ["reasoning.encrypted_content"], "prompt_cache_key": "<derived>",
                   "previous_response_id": null}),
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
    let models = ModelCatalog::new(None, None).unwrap();
    let ctx = TranslateContext {
        session_hint: Some("sess-h"),
        ..TranslateContext::defaults(&models)
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
    let models = ModelCatalog::new(None, None).unwrap();
    let ctx = TranslateContext::defaults(&models);
    let body =
        br#"{"model":"gpt-5.5","input":[{"type":"message","role":"user","content":"x"}],"instructions":"i"}"#;
    let translated = compact(body, &ctx).unwrap();
    assert_eq!(
        (translated.body.as_slice(), translated.model.as_str()),
        (&body[..], "gpt-5.5")
    );
    assert!(compact(b"null", &ctx).is_err());
}

#[test]
fn the_model_rules_seam_resolves_like_chat() {
    let models = ModelCatalog::new(None, Some("gpt-5.2".into())).unwrap();
    let ctx = TranslateContext::defaults(&models);
    assert_eq!(
        model_rules(&ctx, Some("gpt-5.5-xhigh"), None),
        ModelChoice {
            model: "gpt-5.2".into(),
            effort: Effort::Xhigh
        }
    );
    assert_eq!(
        model_rules(&ctx, None, Some(Effort::Medium)).effort,
        Effort::Medium
    );
}
