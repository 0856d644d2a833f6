use super::*;
use crate::core::test_support::{catalogue, settings};
use crate::core::translate::request::common::DEFAULT_INSTRUCTIONS;
use serde_json::{Value, json};

/// The classic shape: most tests here are about the conversation, not the model's shape
/// (`lite_tests` below has those).
fn ctx() -> TranslateContext<'static> {
    TranslateContext {
        lite_shape: false,
        ..TranslateContext::defaults(catalogue(), settings())
    }
}

fn run(body: Value) -> Result<(Value, Translated), ApiError> {
    let bytes = body.to_string().into_bytes();
    assert!(typed_read_agrees(&bytes, &ctx()), "{body}");
    let out = translate(&bytes, &ctx())?;
    let upstream: Value = serde_json::from_slice(&out.body).unwrap();
    Ok((upstream, out))
}

fn upstream(body: Value) -> Value {
    run(body).unwrap_or_else(|e| panic!("{e:?}")).0
}

#[test]
fn minimal_request_has_every_required_field() {
    let (up, out) =
        run(json!({"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]})).unwrap();
    assert_eq!(
        up,
        json!({
            "model": "gpt-5.5",
            "instructions": DEFAULT_INSTRUCTIONS,
            "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
            "tools": [],
            "tool_choice": "auto",
            "parallel_tool_calls": true,
            // No effort anywhere: the model's catalogue default.
            "reasoning": {"effort": "medium", "summary": "auto"},
            "store": false,
            "stream": true,
            "include": ["reasoning.encrypted_content"],
            "prompt_cache_key": out.session_id,
            "text": {"verbosity": "low"},
        })
    );
    assert!(!out.stream && !out.include_usage && !out.lite);
    assert_eq!(out.model, "gpt-5.5");
}

#[test]
fn every_system_and_developer_message_is_kept() {
    let up = upstream(json!({"messages": [
        {"role": "system", "content": "A"},
        {"role": "developer", "content": [{"type": "text", "text": "B"}]},
        {"role": "user", "content": "q"},
        {"role": "system", "content": "C"},
    ]}));
    assert_eq!(up["instructions"], "A\n\nB");
    assert_eq!(
        up["input"],
        json!([
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "q"}]},
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "C"}]},
        ])
    );
}

#[test]
fn tool_round_trip_history() {
    let up = upstream(json!({"messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "call_2", "function": {"name": "get_time", "arguments": {"tz": "CET"}}}
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "12:00"}, {"type": "text", "text": "CET"}]},
    ]}));
    assert_eq!(
        up["input"],
        json!([
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
            {"type": "function_call", "call_id": "call_2", "name": "get_time", "arguments": "{\"tz\":\"CET\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            {"type": "function_call_output", "call_id": "call_2", "output": "12:00\nCET"},
        ])
    );
}

#[test]
fn images_keep_detail_and_are_repaired() {
    let up = upstream(json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA-_w", "detail": "high"}},
        {"type": "image_url", "image_url": "https://x/y.png"},
        {"type": "input_image", "image_url": "https://x/z.png", "detail": "low"},
    ]}]}));
    assert_eq!(
        up["input"][0]["content"],
        json!([
            {"type": "input_text", "text": "what is this"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAA+/w==", "detail": "high"},
            {"type": "input_image", "image_url": "https://x/y.png"},
            {"type": "input_image", "image_url": "https://x/z.png", "detail": "low"},
        ])
    );
}

#[test]
fn tools_choice_and_formats_map_to_the_responses_shape() {
    let up = upstream(json!({
        "messages": [{"role": "user", "content": "x"}],
        "tools": [
            {"type": "function", "function": {"name": "a", "description": "does a", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}, "strict": true}},
            {"type": "function", "function": {"name": "b", "description": ""}},
        ],
        "tool_choice": {"type": "function", "function": {"name": "a"}},
        "parallel_tool_calls": false,
        "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": true}},
        "verbosity": "high",
        "service_tier": "priority",
    }));
    assert_eq!(
        up["tools"],
        json!([
            {"type": "function", "name": "a", "description": "does a", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}, "strict": true},
            {"type": "function", "name": "b", "parameters": {"type": "object", "properties": {}}},
        ])
    );
    assert_eq!(up["tool_choice"], json!({"type": "function", "name": "a"}));
    assert_eq!(up["parallel_tool_calls"], false);
    assert_eq!(
        up["text"],
        json!({"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": true}, "verbosity": "high"})
    );
    assert_eq!(up["service_tier"], "priority");
    for (choice, expected) in [("required", "required"), ("none", "none"), ("auto", "auto")] {
        let up = upstream(json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": choice}));
        assert_eq!(up["tool_choice"], expected);
    }
    let up = upstream(
        json!({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}),
    );
    assert_eq!(
        up["text"],
        json!({"format": {"type": "json_object"}, "verbosity": "low"})
    );
    let up = upstream(
        json!({"model": "my-model", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "text"}}),
    );
    assert!(up.get("text").is_none());
}

#[test]
fn rejected_parameters_are_dropped() {
    let up = upstream(json!({
        "messages": [{"role": "user", "content": "x"}],
        "temperature": 0.2, "top_p": 1, "max_tokens": 5, "max_completion_tokens": 5, "stop": ["x"],
        "presence_penalty": 0, "frequency_penalty": 0, "seed": 1, "logprobs": true, "top_logprobs": 2,
        "logit_bias": {}, "user": "u", "metadata": {}, "store": true, "n": 1,
        "stream": true, "stream_options": {"include_usage": true},
    }));
    let keys: Vec<&str> = up.as_object().unwrap().keys().map(String::as_str).collect();
    for dropped in [
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "max_output_tokens",
        "stop",
        "seed",
        "user",
        "metadata",
        "stream_options",
        "n",
    ] {
        assert!(!keys.contains(&dropped), "{dropped} leaked: {keys:?}");
    }
    assert_eq!(up["store"], false);
    assert_eq!(up["stream"], true);
}

#[test]
fn model_suffix_and_reasoning_settings() {
    let up = upstream(json!({"model": "gpt-5-high", "messages": [{"role": "user", "content": "x"}]}));
    assert_eq!(
        (up["model"].clone(), up["reasoning"].clone()),
        (json!("gpt-6.1-sol"), json!({"effort": "high", "summary": "auto"}))
    );
    // The body's effort beats the suffix, then the model's efforts bound it.
    let up = upstream(
        json!({"model": "gpt-5.5-high", "reasoning_effort": "minimal", "messages": [{"role": "user", "content": "x"}]}),
    );
    assert_eq!(up["reasoning"]["effort"], "low");
    let up = upstream(
        json!({"model": "my-model-high", "reasoning_effort": "minimal", "messages": [{"role": "user", "content": "x"}]}),
    );
    assert_eq!(up["reasoning"]["effort"], "minimal");
    let up = upstream(
        json!({"reasoning": {"effort": "medium", "summary": "none"}, "messages": [{"role": "user", "content": "x"}]}),
    );
    assert_eq!(up["reasoning"], json!({"effort": "medium"}));
}

#[test]
fn stream_flags_and_cache_keys() {
    let (_, out) = run(json!({"stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "x"}]})).unwrap();
    assert!(out.stream && out.include_usage);
    let (up, out) =
        run(json!({"prompt_cache_key": "conv-1", "messages": [{"role": "user", "content": "x"}]})).unwrap();
    assert_eq!(
        (up["prompt_cache_key"].as_str(), out.session_id.as_str()),
        (Some("conv-1"), "conv-1")
    );
    let turn1 = run(json!({"messages": [{"role": "user", "content": "plan a trip"}]}))
        .unwrap()
        .1
        .session_id;
    let turn2 = run(json!({"messages": [
        {"role": "user", "content": "plan a trip"}, {"role": "assistant", "content": "where?"}, {"role": "user", "content": "Rome"}
    ]}))
    .unwrap()
    .1
    .session_id;
    let other = run(json!({"messages": [{"role": "user", "content": "write a poem"}]}))
        .unwrap()
        .1
        .session_id;
    assert_eq!(turn1, turn2);
    assert_ne!(turn1, other);
    let hinted = TranslateContext {
        session_hint: Some("from-header"),
        ..ctx()
    };
    let out = translate(br#"{"messages":[{"role":"user","content":"x"}]}"#, &hinted).unwrap();
    assert_eq!(out.session_id, "from-header");
}

#[test]
fn a_cache_key_that_cannot_be_a_header_is_rejected_before_anything_goes_upstream() {
    let huge = "k".repeat(100 * 1024);
    for key in ["conv\r\nx-injected: 1", "nul\0byte", "line\nfeed", huge.as_str()] {
        let error = run(json!({"prompt_cache_key": key, "messages": [{"role": "user", "content": "x"}]}))
            .err()
            .unwrap_or_else(|| panic!("{key:?} was accepted"));
        assert_eq!(
            (error.status, error.param.as_deref(), error.code_str()),
            (400, Some("prompt_cache_key"), Some("invalid_prompt_cache_key")),
            "{key:?}"
        );
    }
    let (up, out) =
        run(json!({"prompt_cache_key": "", "messages": [{"role": "user", "content": "x"}]})).unwrap();
    assert!(
        !out.session_id.is_empty(),
        "an empty key counts as none: one is derived"
    );
    assert_eq!(up["prompt_cache_key"].as_str(), Some(out.session_id.as_str()));
}

#[test]
fn bad_input_names_the_problem() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({}), "messages", "`messages` is required"),
        (
            json!({"messages": "hi"}),
            "messages",
            "Invalid `messages`: invalid type: string \"hi\", expected a sequence.",
        ),
        (json!({"messages": []}), "messages", "at least one message"),
        (json!({"messages": [1]}), "messages[0]", "Invalid `messages[0]`"),
        (
            json!({"messages": [{"content": "x"}]}),
            "messages[0]",
            "missing field `role`",
        ),
        (
            json!({"messages": [{"role": "wizard", "content": "x"}]}),
            "messages[0].role",
            "Unknown role \"wizard\"",
        ),
        (
            json!({"messages": [{"role": "function", "content": "x"}]}),
            "messages[0].role",
            "deprecated `function` role",
        ),
        (
            json!({"messages": [{"role": "tool", "content": "x"}]}),
            "messages[0].tool_call_id",
            "without `tool_call_id`",
        ),
        (
            json!({"messages": [{"role": "user", "content": 5}]}),
            "messages[0].content",
            "Invalid `messages[0].content`",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}),
            "messages[0].content[0]",
            "\"input_audio\" is not supported",
        ),
        (
            json!({"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": "u"}]}]}),
            "messages[0].content[0]",
            "only text parts",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "stream": "false"}),
            "stream",
            "expected a boolean",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "n": 2}),
            "n",
            "Only n=1",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "extreme"}),
            "reasoning_effort",
            "Invalid reasoning_effort \"extreme\"",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web_search"}]}),
            "tools[0].type",
            "\"web_search\" is not supported",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}),
            "tools[0]",
            "no `function` object",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": "always"}),
            "tool_choice",
            "must be \"auto\"",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "yaml"}}),
            "response_format.type",
            "Unknown response_format type",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "verbosity": "loud"}),
            "verbosity",
            "Invalid verbosity",
        ),
        (
            json!({"model": 5, "messages": [{"role": "user", "content": "x"}]}),
            "model",
            "Invalid `model`",
        ),
    ];
    for (body, param, message) in cases {
        let err = run(body.clone())
            .err()
            .unwrap_or_else(|| panic!("accepted {body}"));
        assert_eq!(err.status, 400, "{body}");
        assert_eq!(err.param.as_deref(), Some(param), "{body}: {}", err.message);
        assert!(err.message.contains(message), "{body}: {}", err.message);
    }
}

#[test]
fn nested_tools_format_keeps_the_chat_shape() {
    let nested = TranslateContext {
        tools_format: ToolsFormat::Nested,
        ..ctx()
    };
    let body = json!({
        "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": "a", "description": "d", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "a"}},
    });
    let out = translate(body.to_string().as_bytes(), &nested).unwrap();
    let up: Value = serde_json::from_slice(&out.body).unwrap();
    assert_eq!(
        up["tools"],
        json!([{"type": "function", "function": {"name": "a", "description": "d", "parameters": {"type": "object"}}}])
    );
    assert_eq!(
        up["tool_choice"],
        json!({"type": "function", "function": {"name": "a"}})
    );
}

// ------------------------------------------------------------------------------------------
// The lite shape (`use_responses_lite` entries, held headers).

fn lite(body: Value) -> (Value, Translated) {
    let bytes = body.to_string().into_bytes();
    let out = translate(&bytes, &TranslateContext::defaults(catalogue(), settings()))
        .unwrap_or_else(|e| panic!("{e:?}"));
    (serde_json::from_slice(&out.body).unwrap(), out)
}

#[test]
fn a_lite_model_gets_instructions_and_tools_as_leading_input_items() {
    let (up, out) = lite(json!({
        "model": "gpt-6.1-sol",
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ],
        "tools": [{"type": "function", "function": {"name": "get", "parameters": {"type": "object"}}}],
        "parallel_tool_calls": true,
        "reasoning_effort": "ultra",
        "service_tier": "fast",
    }));
    assert_eq!(
        up,
        json!({
            "model": "gpt-6.1-sol",
            "input": [
                {"type": "additional_tools", "role": "developer",
                 "tools": [{"type": "function", "name": "get", "parameters": {"type": "object"}}]},
                {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Be terse."}]},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
                {"type": "function_call", "call_id": "c1", "name": "get", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            ],
            "tool_choice": "auto",
            "parallel_tool_calls": false,
            "reasoning": {"effort": "max", "summary": "auto", "context": "all_turns"},
            "store": false,
            "stream": true,
            "include": ["reasoning.encrypted_content"],
            "prompt_cache_key": out.session_id,
            "text": {"verbosity": "low"},
            "service_tier": "priority",
        })
    );
    assert!(out.lite);
    // The session key is the classic one: the same conversation keeps its key across shapes.
    let classic = translate(
        &json!({"model": "gpt-6.1-sol", "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "weather?"}]})
            .to_string()
            .into_bytes(),
        &ctx(),
    )
    .unwrap();
    assert_eq!(classic.session_id, out.session_id);
    assert!(!classic.lite);
}

#[test]
fn the_default_model_is_lite_and_classic_models_keep_their_shape() {
    let (up, out) = lite(json!({"messages": [{"role": "user", "content": "x"}], "verbosity": "high"}));
    assert_eq!(out.model, "gpt-6.1-sol");
    assert!(up.get("instructions").is_none() && up.get("tools").is_none());
    assert_eq!(
        up["input"][0],
        json!({"type": "additional_tools", "role": "developer", "tools": []})
    );
    assert_eq!(up["text"], json!({"verbosity": "high"}));

    let (up, out) = lite(
        json!({"model": "gpt-5.5", "messages": [{"role": "user", "content": "x"}],
                                 "reasoning": {"effort": "ultra"}, "service_tier": "default"}),
    );
    assert!(!out.lite);
    assert_eq!(up["instructions"], DEFAULT_INSTRUCTIONS);
    assert_eq!(up["tools"], json!([]));
    assert_eq!(up["parallel_tool_calls"], true);
    assert_eq!(up["reasoning"], json!({"effort": "xhigh", "summary": "auto"}));
    assert!(up.get("service_tier").is_none());
    assert_eq!(up["input"][0]["role"], "user");
}

/// Bodies for the typed read of `messages`: each shape of content, tool calls, member order
/// and encoding, valid and not.
const EDGE_BODIES: &[&str] = &[
    r#"{"messages":[{"role":"user","content":"hi"}]}"#,
    r#"{"messages":[{"role":"user","content":null}]}"#,
    r#"{"messages":[{"role":"user"}]}"#,
    r#"{"messages":[{"role":"user","content":[]}]}"#,
    r#"{"messages":[{"role":"user","content":{}}]}"#,
    r#"{"messages":[{"role":"user","content":{"type":"text","text":"x"}}]}"#,
    r#"{"messages":[{"role":"user","content":7}]}"#,
    r#"{"messages":[{"role":"user","content":true}]}"#,
    r#"{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"input_text","text":"b"}]}]}"#,
    r#"{"messages":[{"role":"user","content":[{"type":"text"}]}]}"#,
    r#"{"messages":[{"role":"user","content":[{"type":"text","text":null}]}]}"#,
    r#"{"messages":[{"role":"user","content":[null]}]}"#,
    r#"{"messages":[{"role":"user","content":["x"]}]}"#,
    r#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":"https://x/y.png","detail":"low"}]}]}"#,
    r#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA","detail":"high"}}]}]}"#,
    r#"{"messages":[{"role":"user","content":[{"type":"input_image","image_url":null}]}]}"#,
    r#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":5}]}]}"#,
    r#"{"messages":[{"role":"user","content":[{"type":"text","text":"t","image_url":5}]}]}"#,
    r#"{"messages":[{"role":"user","content":[{"type":"audio","text":"t"}]}]}"#,
    r#"{"messages":[{"role":"system","content":"s1"},{"role":"developer","content":[{"type":"text","text":"s2"}]},{"role":"user","content":"u"},{"role":"system","content":"late"}]}"#,
    r#"{"messages":[{"role":"system","content":[{"type":"image_url","image_url":"x"}]},{"role":"user","content":"u"}]}"#,
    r#"{"messages":[{"role":"system","content":7},{"role":"user","content":"u"}]}"#,
    r#"{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},{"role":"tool","tool_call_id":"c1","content":"r"}]}"#,
    r#"{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"say","tool_calls":[{"id":"c1","function":{"name":"f","arguments":{"a":[1,2]}}},{"id":"c2","type":"function","function":{"name":"g","arguments":"{}"}}]}]}"#,
    r#"{"messages":[{"role":"user","content":"q"},{"role":"assistant","tool_calls":[{"id":"c1","type":"custom","function":{"name":"f","arguments":"{}"}}]}]}"#,
    r#"{"messages":[{"role":"user","content":"q"},{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f"}}]}]}"#,
    r#"{"messages":[{"role":"user","content":"q"},{"role":"assistant","tool_calls":[]}]}"#,
    r#"{"messages":[{"role":"user","content":"q"},{"role":"assistant","tool_calls":null,"content":[]}]}"#,
    r#"{"messages":[{"role":"user","content":"q"},{"role":"assistant","tool_calls":{}}]}"#,
    r#"{"messages":[{"role":"user","content":"q"},{"role":"tool","content":"r"}]}"#,
    r#"{"messages":[{"role":"user","content":"q"},{"role":"tool","tool_call_id":"","content":"r"}]}"#,
    r#"{"messages":[{"role":"user","content":"q"},{"role":"tool","content":{}}]}"#,
    r#"{"messages":[{"role":"user","content":"q"},{"role":"tool","tool_call_id":"c","content":{}}]}"#,
    r#"{"messages":[{"role":"user","content":"q"},{"role":"function","content":{}}]}"#,
    r#"{"messages":[{"role":"user","content":"q"},{"role":"robot","content":7}]}"#,
    r#"{"messages":[{"role":"robot","content":"x"},{"role":"user","content":7}]}"#,
    r#"{"messages":[{"role":"user","content":"a","content":"b"}]}"#,
    r#"{"messages":[{"role":"user","role":"system","content":"b"}]}"#,
    r#"{"messages":[{"role":"user","content":"first"}],"messages":[{"role":"user","content":"second"}]}"#,
    r#"{"messages":[{"role":"user","content":{}}],"messages":[{"role":"user","content":"second"}]}"#,
    r#"{"messages":[{"role":"user","content":"x","name":"bob","extra":{"deep":[1,{"a":null}]}}],"unknown":[1,2]}"#,
    r#"{"messages":[{"role":"us\u0065r","content":"line\nbreak \"quoted\" \\ \u00e9\ud83d\ude00"}]}"#,
    r#"{"messages":[{"role":"user","content":[{"type":"te\u0078t","text":"\t\u0000"}]}]}"#,
    "{\"messages\":[{\"role\":\"user\",\"content\":\"caf\u{e9} \u{65e5}\u{672c} \u{1f600}\"}]}",
    r#"{"messages":[{"role":"user","content":"x"},null]}"#,
    r#"{"messages":[{"role":"user","content":"x"},"text"]}"#,
    r#"{"messages":[{"content":"x"}]}"#,
    r#"{"messages":[{"role":7,"content":"x"}]}"#,
    r#"{"messages":[]}"#,
    r#"{"messages":null}"#,
    r#"{"messages":{}}"#,
    r#"{"messages":"hi"}"#,
    r#"{"model":"gpt-5.5"}"#,
    r#"{"messages":[{"role":"user","content":"x"}],"n":2}"#,
    r#"{"messages":[{"role":"user","content":{}}],"n":2}"#,
    r#"{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":null}}],"tool_choice":{"type":"function","function":{"name":"f"}}}"#,
    r#" { "messages" : [ { "role" : "user" , "content" : [ { "type" : "text" , "text" : "spaced" } ] } ] } "#,
];

#[test]
fn the_typed_read_agrees_with_the_layered_read() {
    let mut accepted = 0;
    let mut rejected = 0;
    for body in EDGE_BODIES {
        for ctx in [ctx(), TranslateContext::defaults(catalogue(), settings())] {
            assert!(typed_read_agrees(body.as_bytes(), &ctx), "{body}");
        }
        let fields = Fields::parse(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e:?}"));
        let typed = fields.raw("messages").and_then(Conversation::read_typed);
        match translate(body.as_bytes(), &ctx()) {
            // Every body the translation accepts takes the one-pass read.
            Ok(_) => {
                accepted += 1;
                assert!(typed.is_some(), "{body} fell back to the layered read");
            }
            Err(e) => {
                rejected += 1;
                if e.param.as_deref().is_some_and(|p| p.starts_with("messages")) {
                    assert!(typed.is_none(), "{body} was read in one pass and then refused");
                }
            }
        }
    }
    assert!(
        accepted >= 20 && rejected >= 20,
        "{accepted} accepted, {rejected} rejected"
    );
}
