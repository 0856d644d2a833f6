use super::*;
use crate::core::auth::auth_json::tests::auth_json;
use crate::core::flow::upload::BodyStep;
use std::collections::HashMap;

fn config(pairs: &[(&str, &str)]) -> Config {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::load(&move |n: &str| map.get(n).cloned()).unwrap()
}

fn tokens() -> ChatgptTokens {
    ChatgptTokens::from_auth_json(&auth_json(2_000_000_000, true)).unwrap()
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn decide_for(cfg: &Config, method: &str, path: &str, pairs: &[(&str, &str)]) -> Decision {
    let h = headers(pairs);
    decide(
        cfg,
        crate::core::test_support::catalogue(),
        &RequestHead {
            method,
            path,
            headers: &h,
        },
        7,
    )
}

fn status(d: &Decision) -> u16 {
    match d {
        Decision::Reply(r) => r.status,
        Decision::Forward(_) => 0,
        Decision::PassThrough => 1,
        Decision::CodexCatalogue | Decision::Usage => 200,
    }
}

#[test]
#[allow(clippy::type_complexity)] // a table of cases reads best as tuples
fn routes_methods_and_the_gate() {
    let cfg = config(&[("OPENAI_API_KEY", "k")]);
    let auth = ("authorization", "Bearer k");
    let cases: &[(&str, &str, &[(&str, &str)], u16)] = &[
        ("GET", "/", &[], 200),
        ("GET", "/health", &[], 200),
        ("HEAD", "/health", &[], 200),
        ("POST", "/health", &[], 405),
        ("GET", "/v1/models", &[], 401),
        ("GET", "/v1/models", &[auth], 200),
        ("GET", "/v1/models?x=1", &[auth], 200),
        ("GET", "/v1/models/gpt-5.5", &[auth], 200),
        ("GET", "/v1/models/nope", &[auth], 404),
        ("GET", "/v1/models/codex-auto-review", &[auth], 200),
        ("GET", "/v1/models?client_version=0.169.0", &[auth], 200),
        ("GET", "/v1/models?client_version=0.169.0", &[], 401),
        ("POST", "/v1/models", &[auth], 405),
        ("GET", "/v1/chat/completions", &[auth], 405),
        ("POST", "/v1/chat/completions", &[], 401),
        (
            "POST",
            "/v1/chat/completions",
            &[("authorization", "Bearer nope")],
            401,
        ),
        ("POST", "/v1/chat/completions", &[auth], 0),
        ("POST", "/v1/completions", &[auth], 0),
        (
            "POST",
            "/v1/chat/completions",
            &[auth, ("content-type", "application/json; charset=utf-8")],
            0,
        ),
        (
            "POST",
            "/v1/chat/completions",
            &[auth, ("content-type", "text/plain")],
            415,
        ),
        (
            "POST",
            "/v1/chat/completions",
            &[auth, ("content-length", "999999999")],
            413,
        ),
        ("GET", "/v2/other", &[auth], 404),
        ("GET", "/nope", &[], 404),
        ("GET", "/v1/models/", &[auth], 404),
        ("POST", "/tagged/v1/chat/completions", &[auth], 404),
        ("POST", "/v1/responses", &[], 401),
        (
            "POST",
            "/v1/responses",
            &[auth, ("content-encoding", "zstd")],
            415,
        ),
        (
            "POST",
            "/v1/responses",
            &[auth, ("content-encoding", "identity")],
            0,
        ),
        ("POST", "/v1/responses", &[auth], 0),
        ("POST", "/v1/responses/compact", &[auth], 0),
        ("GET", "/v1/responses", &[auth], 405),
        ("POST", "/v1/responses/other", &[auth], 404),
        // A WebSocket handshake is told at once to use HTTP (behind the gate like the rest).
        ("GET", "/v1/responses", &[auth, ("upgrade", "websocket")], 426),
        (
            "GET",
            "/v1/responses",
            &[auth, ("upgrade", "h2c, WebSocket")],
            426,
        ),
        ("GET", "/v1/responses", &[("upgrade", "websocket")], 401),
        (
            "POST",
            "/v1/chat/completions",
            &[auth, ("upgrade", "websocket")],
            426,
        ),
        (
            "GET",
            "/v1/chat/completions",
            &[auth, ("upgrade", "websocket")],
            405,
        ),
    ];
    for (method, path, hs, expected) in cases {
        assert_eq!(
            status(&decide_for(&cfg, method, path, hs)),
            *expected,
            "{method} {path} {hs:?}"
        );
    }
}

#[test]
fn error_replies_are_openai_shaped() {
    let cfg = config(&[("OPENAI_API_KEY", "k")]);
    let Decision::Reply(reply) = decide_for(&cfg, "DELETE", "/v1/chat/completions", &[]) else {
        panic!()
    };
    assert!(reply.headers.contains(&("allow", "POST".to_string())));
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
    let Decision::Reply(reply) = decide_for(&cfg, "GET", "/nope", &[]) else {
        panic!()
    };
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(
        (body["error"]["type"].as_str(), body["error"]["code"].as_str()),
        (Some("invalid_request_error"), Some("unknown_url"))
    );
}

#[test]
fn prefixed_modes_exist_only_with_all() {
    let cfg = config(&[("REASONING_OUTPUT_MODE", "all")]);
    for (path, mode) in [
        ("/tagged/v1/chat/completions", OutputMode::Tagged),
        ("/r1/v1/chat/completions", OutputMode::R1),
        ("/o3/v1/completions", OutputMode::O3),
        ("/openai/v1/chat/completions", OutputMode::OpenAi),
        ("/hidden/v1/chat/completions", OutputMode::Hidden),
        ("/v1/chat/completions", OutputMode::OpenAi),
    ] {
        match decide_for(&cfg, "POST", path, &[]) {
            Decision::Forward(f) => assert_eq!(f.mode, mode, "{path}"),
            other => panic!("{path}: {other:?}"),
        }
    }
    assert_eq!(status(&decide_for(&cfg, "GET", "/tagged/v1/models", &[])), 200);
    assert_eq!(status(&decide_for(&cfg, "GET", "/tagged/health", &[])), 404);
    let cfg = config(&[("REASONING_OUTPUT_MODE", "tagged")]);
    match decide_for(&cfg, "POST", "/v1/chat/completions", &[]) {
        Decision::Forward(f) => assert_eq!(f.mode, OutputMode::Tagged),
        other => panic!("{other:?}"),
    }
}

#[test]
fn session_hints_come_from_the_client_headers() {
    let cfg = config(&[]);
    for name in ["x-session-id", "session_id", "session-id"] {
        match decide_for(&cfg, "POST", "/v1/chat/completions", &[(name, " conv-9 ")]) {
            Decision::Forward(f) => assert_eq!(f.session_hint.as_deref(), Some("conv-9"), "{name}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn upstream_headers_are_exactly_the_codex_set() {
    let cfg = config(&[(
        "CHATGPT_RESPONSES_URL",
        "http://127.0.0.1:9/backend-api/codex/responses",
    )]);
    let t = tokens();
    let up = upstream_headers(&cfg, Some(&t), &[], Some("sess-1"), Some(42));
    let get = |n: &str| {
        up.iter()
            .filter(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(get(":path"), ["/backend-api/codex/responses"]);
    assert_eq!(get("authorization"), [format!("Bearer {}", t.access_token)]);
    assert_eq!(get("chatgpt-account-id"), ["acct-file"]);
    assert_eq!(get("originator"), ["codex_cli_rs"]);
    assert_eq!(get("accept"), ["text/event-stream"]);
    assert_eq!(get("session-id"), ["sess-1"]);
    assert_eq!(get("content-length"), ["42"]);
    assert_eq!(
        get("user-agent"),
        ["codex_cli_rs/0.169.0 (unknown unknown; unknown) unknown (codex_cli_rs; 0.169.0)"]
    );
    assert_eq!(get("version"), ["0.169.0"]);
    let names: Vec<&str> = up.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            ":path",
            "authorization",
            "chatgpt-account-id",
            "accept",
            "content-type",
            "content-length",
            "session-id",
            "originator",
            "user-agent",
            "version"
        ]
    );
}

#[test]
fn envoy_routing_headers_are_left_to_the_route_configuration() {
    for name in [
        ":authority",
        ":path",
        "x-forwarded-proto",
        "x-forwarded-for",
        "x-request-id",
        "x-envoy-client-path",
    ] {
        assert!(is_envoy_header(name), "{name}");
    }
    for name in [
        "x-envoy-original-path",
        "x-envoy-foo",
        "x-envoy-retry-on",
        "authorization",
        "cookie",
        "x-api-key",
        "user-agent",
        "x-forwarder",
    ] {
        assert!(!is_envoy_header(name), "{name}");
    }
}

#[test]
fn ollama_routes_pass_through_the_gate_only_when_configured() {
    let off = config(&[("OPENAI_API_KEY", "k")]);
    let on = config(&[
        ("OPENAI_API_KEY", "k"),
        ("OLLAMA_API_URL", "http://127.0.0.1:11434"),
    ]);
    let auth = ("authorization", "Bearer k");
    assert_eq!(status(&decide_for(&off, "POST", "/api/chat", &[auth])), 503);
    assert_eq!(status(&decide_for(&on, "POST", "/api/chat", &[auth])), 1);
    assert_eq!(status(&decide_for(&on, "GET", "/api/tags", &[auth])), 1);
    assert_eq!(status(&decide_for(&on, "DELETE", "/api/delete", &[auth])), 1);
    assert_eq!(status(&decide_for(&on, "GET", "/api/tags", &[])), 401);
    assert_eq!(status(&decide_for(&on, "PATCH", "/api/tags", &[auth])), 405);
    let Decision::Reply(reply) = decide_for(&off, "GET", "/api/tags", &[auth]) else {
        panic!()
    };
    assert!(String::from_utf8_lossy(&reply.body).contains("OLLAMA_API_URL"));
}

#[test]
fn api_key_upstreams_get_no_chatgpt_headers_and_need_no_login() {
    let cfg = config(&[
        ("UPSTREAM_AUTH_MODE", "apikey_env"),
        ("UPSTREAM_API_KEY", "sk-up"),
        ("UPSTREAM_AUTH_HEADER", "api-key"),
        ("UPSTREAM_AUTH_SCHEME", "none"),
    ]);
    let h = headers(&[]);
    let head = RequestHead {
        method: "POST",
        path: "/v1/chat/completions",
        headers: &h,
    };
    assert!(matches!(
        decide(&cfg, crate::core::test_support::catalogue(), &head, 0),
        Decision::Forward(_)
    ));
    let up = upstream_headers(&cfg, None, &[], Some("s"), None);
    let names: Vec<&str> = up.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [":path", "api-key", "accept", "content-type", "user-agent"]
    );
    assert_eq!(up[1].1, "sk-up");
    assert!(up[4].1.starts_with("codex-openai-wrapper/"));
}

#[test]
fn forwarding_modes_shape_the_upstream_headers() {
    let client = headers(&[
        ("user-agent", "Open WebUI/1"),
        ("x-trace", "t"),
        ("authorization", "Bearer client"),
        ("sec-ch-ua-platform", "\"Linux\""),
    ]);
    let t = tokens();
    let get = |cfg: &Config, name: &str| {
        upstream_headers(cfg, Some(&t), &client, None, None)
            .into_iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v)
            .collect::<Vec<_>>()
    };
    let safe = config(&[("FORWARD_CLIENT_HEADERS_MODE", "safe")]);
    assert_eq!(get(&safe, "user-agent"), ["Open WebUI/1"]);
    assert_eq!(
        get(&safe, "authorization"),
        [format!("Bearer {}", t.access_token)]
    );
    let list = config(&[
        ("FORWARD_CLIENT_HEADERS_MODE", "list"),
        ("FORWARD_CLIENT_HEADERS_LIST", "x-trace"),
    ]);
    assert_eq!(get(&list, "x-trace"), ["t"]);
    assert!(get(&list, "user-agent")[0].starts_with("codex_cli_rs/"));
    let over = config(&[
        ("FORWARD_CLIENT_HEADERS_MODE", "override"),
        (
            "FORWARD_CLIENT_HEADERS_OVERRIDE",
            r#"{"originator": "codex_vscode", "X-Extra": "1", "Accept": "nope"}"#,
        ),
    ]);
    assert_eq!(get(&over, "originator"), ["codex_vscode"]);
    assert_eq!(get(&over, "x-extra"), ["1"]);
    assert_eq!(get(&over, "accept"), ["text/event-stream"]);
    let codex = config(&[
        ("FORWARD_CLIENT_HEADERS_MODE", "override-codex"),
        ("FORWARD_CLIENT_HEADERS_CODEX_VERSION", "0.150.0"),
    ]);
    assert_eq!(
        get(&codex, "user-agent"),
        ["codex_cli_rs/0.150.0 (Linux unknown; unknown) unknown (codex_cli_rs; 0.150.0)"]
    );
    assert_eq!(get(&codex, "version"), ["0.150.0"]);
    let fixed = config(&[
        ("FORWARD_CLIENT_HEADERS_MODE", "override-codex"),
        (
            "FORWARD_CLIENT_HEADERS_OVERRIDE_CODEX",
            r#"{"originator": "codex-tui"}"#,
        ),
    ]);
    assert_eq!(get(&fixed, "originator"), ["codex-tui"]);
    assert_eq!(get(&fixed, "version"), ["0.169.0"]);
    let off = config(&[]);
    assert!(get(&off, "x-trace").is_empty());
}

#[test]
fn the_final_map_keeps_envoys_headers_and_nothing_else_from_the_client() {
    let client = headers(&[
        (":authority", "localhost:8787"),
        (":path", "/v1/chat/completions"),
        (":method", "POST"),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "r1"),
        ("x-envoy-client-path", "/v1/chat/completions"),
        ("x-envoy-original-path", "/evil"),
        ("x-envoy-foo", "bar"),
        ("authorization", "Bearer client"),
        ("cookie", "c"),
        ("user-agent", "curl"),
    ]);
    let upstream = headers(&[
        (":path", "/backend"),
        ("authorization", "Bearer upstream"),
        ("user-agent", "codex"),
    ]);
    let merged = final_request_headers(&client, upstream);
    let flat: Vec<(&str, &str)> = merged.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        flat,
        [
            (":authority", "localhost:8787"),
            (":method", "POST"),
            ("x-forwarded-proto", "http"),
            ("x-request-id", "r1"),
            ("x-envoy-client-path", "/v1/chat/completions"),
            (":path", "/backend"),
            ("authorization", "Bearer upstream"),
            ("user-agent", "codex"),
        ]
    );
}

#[test]
fn a_declared_oversize_body_is_refused_at_once_only_when_the_headers_cannot_wait() {
    let auth = ("authorization", "Bearer k");
    let over = ("content-length", "5000");
    let released = config(&[("OPENAI_API_KEY", "k"), ("MAX_REQUEST_BODY_BYTES", "4096")]);
    assert_eq!(
        status(&decide_for(
            &released,
            "POST",
            "/v1/chat/completions",
            &[auth, over]
        )),
        413
    );
    let held = config(&[
        ("OPENAI_API_KEY", "k"),
        ("MAX_REQUEST_BODY_BYTES", "4096"),
        ("ENVOY_HOLD_HEADERS", "true"),
    ]);
    let Decision::Forward(mut forward) = decide_for(&held, "POST", "/v1/chat/completions", &[auth, over])
    else {
        panic!("a held request is read to its end first")
    };
    assert_eq!(forward.body.step(100, false), BodyStep::Discard);
    let Decision::Forward(mut forward) = decide_for(
        &held,
        "POST",
        "/v1/chat/completions",
        &[auth, ("content-length", "4096")],
    ) else {
        panic!()
    };
    assert_eq!(forward.body.step(4096, true), BodyStep::Complete);
}

#[test]
fn responses_routes_keep_the_codex_turn_headers_and_compaction_has_its_path() {
    let cfg = config(&[(
        "CHATGPT_RESPONSES_URL",
        "http://127.0.0.1:9/backend-api/codex/responses",
    )]);
    let t = tokens();
    let client = headers(&[
        ("thread-id", "th-1"),
        ("x-client-request-id", "th-1"),
        ("x-codex-window-id", "w:0"),
        ("x-codex-turn-metadata", "{}"),
        ("x-codex-turn-state", "ts"),
        ("x-api-key", "secret"),
        ("authorization", "Bearer client"),
        ("x-codex-empty", " "),
    ]);
    let kept = |endpoint: Endpoint| {
        let up = upstream_headers_for(&cfg, endpoint, Some(&t), &client, Some("s"), None);
        let names: Vec<String> = up
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| n != "authorization" && client.iter().any(|(c, _)| c == n))
            .collect();
        let path = up.iter().find(|(n, _)| n == ":path").map(|(_, v)| v.clone());
        let accept = up.iter().find(|(n, _)| n == "accept").map(|(_, v)| v.clone());
        let authorization: Vec<String> = up
            .iter()
            .filter(|(n, _)| n == "authorization")
            .map(|(_, v)| v.clone())
            .collect();
        assert_eq!(authorization, [format!("Bearer {}", t.access_token)]);
        (names, path, accept)
    };
    let turn = [
        "thread-id",
        "x-client-request-id",
        "x-codex-window-id",
        "x-codex-turn-metadata",
        "x-codex-turn-state",
    ];
    let (names, path, accept) = kept(Endpoint::Responses);
    assert_eq!(names, turn);
    assert_eq!(path.as_deref(), Some("/backend-api/codex/responses"));
    assert_eq!(accept.as_deref(), Some("text/event-stream"));
    let (names, path, accept) = kept(Endpoint::ResponsesCompact);
    assert_eq!(names, turn);
    assert_eq!(path.as_deref(), Some("/backend-api/codex/responses/compact"));
    assert_eq!(accept.as_deref(), Some("application/json"));
    let (names, _, _) = kept(Endpoint::ChatCompletions);
    assert!(names.is_empty(), "{names:?}");
    // An API-key upstream gets none of them.
    let keyed = config(&[
        ("UPSTREAM_AUTH_MODE", "apikey_env"),
        ("UPSTREAM_API_KEY", "sk-up"),
        ("UPSTREAM_BASE_URL", "http://127.0.0.1:9/v1"),
    ]);
    let up = upstream_headers_for(&keyed, Endpoint::Responses, None, &client, Some("s"), None);
    assert!(
        !up.iter()
            .any(|(n, _)| n.starts_with("x-codex-") || n == "thread-id"),
        "{up:?}"
    );
    assert!(up.contains(&(":path".to_string(), "/v1/responses".to_string())));
}

#[test]
fn the_lite_header_marks_a_responses_forward() {
    let cfg = config(&[]);
    let lite = |path: &str, value: &str| match decide_for(&cfg, "POST", path, &[(LITE_HEADER, value)]) {
        Decision::Forward(forward) => forward.lite_shape,
        _ => panic!("{path}"),
    };
    assert!(lite("/v1/responses", "true"));
    assert!(lite("/v1/responses", " TRUE "));
    assert!(!lite("/v1/responses", "false"));
    assert!(!lite("/v1/chat/completions", "true"));
}

#[test]
fn models_answers_come_from_the_catalogue() {
    let cfg = config(&[]);
    let body = |path: &str| match decide_for(&cfg, "GET", path, &[]) {
        Decision::Reply(reply) => serde_json::from_slice::<serde_json::Value>(&reply.body).unwrap(),
        Decision::CodexCatalogue => serde_json::from_slice::<serde_json::Value>(&listing::codex_answer(
            None,
            crate::core::test_support::catalogue(),
            &cfg.models,
        ))
        .unwrap(),
        other => panic!("{other:?}"),
    };
    let list = body("/v1/models");
    assert_eq!(list["object"], "list");
    assert_eq!(list["data"][0]["id"], "gpt-6.1-sol");
    let codex = body("/v1/models?client_version=0.169.0");
    assert_eq!(codex["models"][0]["slug"], "gpt-6.1-sol");
    assert!(codex.get("data").is_none());
    // Only the parameter's name counts, not a value that looks like it.
    assert_eq!(body("/v1/models?x=client_version")["object"], "list");
    assert_eq!(
        body("/v1/models?a=1&client_version")["models"][0]["slug"],
        "gpt-6.1-sol"
    );
}

#[test]
fn the_lite_header_follows_the_body_shape() {
    let mut up = headers(&[(LITE_HEADER, "true"), ("accept", "text/event-stream")]);
    mark_lite(&mut up, false);
    assert_eq!(up, headers(&[("accept", "text/event-stream")]));
    mark_lite(&mut up, true);
    mark_lite(&mut up, true);
    assert_eq!(
        up,
        headers(&[("accept", "text/event-stream"), (LITE_HEADER, "true")])
    );
}
