use std::collections::HashMap;
use std::rc::Rc;

use serde_json::{Value, json};

use super::*;
use crate::core::auth::auth_json::tests::auth_json;
use crate::core::auth::token::{Grant, TokenRecord};
use crate::core::auth::waiters::WaitList;
use crate::core::catalogue::Catalogue;
use crate::core::config::Config;
use crate::core::port::{MemoryPort, SharedMemory};
use crate::core::test_support::text_stream;
use crate::core::wire::header_map;

const NOW: u64 = 1_800_000_000;
const CLIENT_KEY: &str = "sk-client-key";

/// One VM: its state, its port, and the memory it shares with other VMs.
pub(crate) struct Vm {
    pub vm: VmState,
    pub port: MemoryPort,
    pub shared: Rc<SharedMemory>,
}

/// A VM configured with `pairs` over the test defaults (a client key, a ChatGPT login valid
/// for ten days, held headers); an empty value unsets a default. The login is seeded into
/// shared data as the root context does at start-up.
pub(crate) fn vm_with(pairs: &[(&str, &str)]) -> Vm {
    let auth = auth_json(NOW + 10 * 86_400, true);
    let mut settings: HashMap<String, String> = [
        ("OPENAI_API_KEY", CLIENT_KEY),
        ("OPENAI_CODEX_AUTH", auth.as_str()),
        ("ENVOY_HOLD_HEADERS", "true"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in pairs {
        settings.insert(k.to_string(), v.to_string());
    }
    let config = Config::load(&move |n: &str| settings.get(n).cloned()).unwrap();
    let shared = SharedMemory::at(NOW);
    let port = MemoryPort::new(&shared);
    let vm = VmState::new(config);
    if let (true, Some(doc)) = (vm.config.auth.is_chatgpt(), vm.config.codex_auth.as_deref()) {
        // One document, or a pool's array: every account seeded.
        let logins = crate::core::accounts::login::parse(doc).unwrap();
        for (login, account) in logins.into_iter().zip(vm.accounts()) {
            account
                .tokens
                .seed(&port, TokenRecord::new(login.tokens, "login".into()));
        }
    }
    Vm { vm, port, shared }
}

/// What the refresher does when the token endpoint answers: the next generation.
pub(crate) fn refresh(vm: &VmState, port: &MemoryPort) {
    let grant = Grant {
        access_token: "at-refreshed".into(),
        refresh_token: Some("rt-2".into()),
        id_token: None,
    };
    let now = port.now();
    vm.tokens
        .update(port, |current| Some(current?.refreshed(grant.clone(), now)))
        .unwrap();
}

fn map(pairs: &[(&str, &[u8])]) -> Vec<u8> {
    header_map::serialize(pairs)
}

fn post(path: &str, extra: &[(&str, &[u8])]) -> Vec<u8> {
    let bearer = format!("Bearer {CLIENT_KEY}");
    let mut pairs: Vec<(&str, &[u8])> = vec![
        (":method", b"POST"),
        (":path", path.as_bytes()),
        (":authority", b"localhost"),
        ("authorization", bearer.as_bytes()),
        ("content-type", b"application/json"),
        ("x-forwarded-proto", b"http"),
    ];
    pairs.extend_from_slice(extra);
    map(&pairs)
}

fn chat(stream: bool) -> Vec<u8> {
    json!({"model": "gpt-5.5", "messages": [{"role": "user", "content": "hello"}], "stream": stream})
        .to_string()
        .into_bytes()
}

fn upstream_head(status: &str, content_type: &[u8]) -> Vec<u8> {
    map(&[
        (":status", status.as_bytes()),
        ("content-type", content_type),
        ("content-length", b"1234"),
        ("x-upstream-trace", b"t-1"),
    ])
}

fn reply_of(steps: &Steps) -> Option<&Reply> {
    steps.writes.iter().find_map(|step| match step {
        Step::Reply(reply) => Some(reply),
        _ => None,
    })
}

fn error_code(steps: &Steps) -> Option<(u16, String)> {
    let reply = reply_of(steps)?;
    let body: Value = serde_json::from_slice(&reply.body).ok()?;
    Some((
        reply.status,
        body["error"]["code"].as_str().unwrap_or("").to_string(),
    ))
}

fn upstream_headers(steps: &Steps) -> Option<&Vec<(String, String)>> {
    steps.writes.iter().find_map(|step| match step {
        Step::ReplaceRequestHeaders(headers) => Some(headers),
        _ => None,
    })
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn response_sets(steps: &Steps) -> Vec<(&'static str, &str)> {
    steps
        .writes
        .iter()
        .filter_map(|step| match step {
            Step::SetResponseHeader(name, value) => Some((*name, value.as_str())),
            _ => None,
        })
        .collect()
}

fn response_body(steps: &Steps) -> Option<&[u8]> {
    steps.writes.iter().find_map(|step| match step {
        Step::ReplaceResponseBody(body) => Some(body.as_slice()),
        _ => None,
    })
}

/// A request driven the way the host drives it; the upstream body is delivered in one chunk.
struct Drive<'a> {
    vm: &'a Vm,
    flow: RequestFlow,
}

impl<'a> Drive<'a> {
    fn new(vm: &'a Vm, id: u32) -> Self {
        Self {
            vm,
            flow: RequestFlow::new(id),
        }
    }

    fn headers(&mut self, map: &[u8], end_of_stream: bool) -> Steps {
        self.flow
            .request_headers(&self.vm.vm, &self.vm.port, map, end_of_stream)
    }

    fn body(&mut self, body: &[u8]) -> Steps {
        let bytes = body.to_vec();
        self.flow
            .request_body(&self.vm.vm, &self.vm.port, body.len(), true, move || bytes)
    }

    fn response(&mut self, head: &[u8], details: &str) -> Steps {
        let head = head.to_vec();
        let details = details.as_bytes().to_vec();
        self.flow
            .response_headers(&self.vm.vm, &self.vm.port, move || details, move || head, false)
    }

    fn response_end(&mut self, chunk: &[u8]) -> Steps {
        let bytes = chunk.to_vec();
        self.flow
            .response_body(&self.vm.port, chunk.len(), true, move || bytes)
    }

    fn log(&mut self, status: u16) -> Option<String> {
        let code = u64::from(status).to_le_bytes().to_vec();
        self.flow.log(&self.vm.vm, &self.vm.port, move || Some(code))
    }
}

#[test]
#[allow(clippy::type_complexity)] // a table of cases reads best as tuples
fn local_replies_and_their_response_pass_through_untouched() {
    let vm = vm_with(&[("VERBOSE", "true")]);
    let mut drive = Drive::new(&vm, 1);
    let health = drive.headers(&map(&[(":method", b"GET"), (":path", b"/health")]), true);
    assert_eq!(reply_of(&health).map(|r| r.status), Some(200));
    assert_eq!(health.next, Next::Pause);
    // The reply comes back through the response callbacks: not touched, not read.
    let steps = drive
        .flow
        .response_headers(&vm.vm, &vm.port, || panic!("read"), || panic!("read"), false);
    assert_eq!(steps, Steps::go_on());
    assert_eq!(
        drive.flow.response_body(&vm.port, 10, true, || panic!("read")),
        Steps::go_on()
    );
    assert!(
        drive
            .log(200)
            .unwrap()
            .starts_with("codex filter: GET /health -> 200 model=-")
    );

    let cases: &[(&str, &str, &[(&str, &[u8])], u16, &str)] = &[
        ("GET", "/v1/models", &[], 401, "invalid_api_key"),
        ("GET", "/v2/x", &[], 404, "unknown_url"),
        ("GET", "/v1/chat/completions", &[], 405, "method_not_allowed"),
        (
            "POST",
            "/api/chat",
            &[("authorization", b"Bearer sk-client-key")],
            503,
            "ollama_not_configured",
        ),
    ];
    for (method, path, extra, status, code) in cases {
        let mut pairs: Vec<(&str, &[u8])> = vec![(":method", method.as_bytes()), (":path", path.as_bytes())];
        pairs.extend_from_slice(extra);
        let mut drive = Drive::new(&vm, 2);
        let steps = drive.headers(&map(&pairs), true);
        assert_eq!(error_code(&steps), Some((*status, code.to_string())), "{path}");
        drive.log(*status);
    }
    let routes: Vec<RouteKind> = vm
        .port
        .metrics
        .borrow()
        .iter()
        .filter_map(|m| match m {
            Metric::Request { route, .. } => Some(*route),
            _ => None,
        })
        .collect();
    assert!(routes.iter().all(|r| *r == RouteKind::Local), "{routes:?}");
}

#[test]
fn a_header_time_refusal_reads_and_drops_the_body_before_it_answers() {
    let drop = Steps::then(vec![Step::ReplaceRequestBody(Vec::new())], Next::Pause);
    // Portable mode answers at once (Envoy would not hold its headers meanwhile).
    let portable = vm_with(&[("ENVOY_HOLD_HEADERS", "false")]);
    let wrong_key = post("/v1/chat/completions", &[("authorization", b"Bearer wrong")]);
    let steps = Drive::new(&portable, 9).headers(&wrong_key, false);
    assert_eq!(error_code(&steps), Some((401, "invalid_api_key".into())));
    // Held headers: answering now would make Envoy close the connection under a client still
    // writing, so the body is read and dropped first.
    let vm = vm_with(&[]);
    let mut drive = Drive::new(&vm, 1);
    assert_eq!(drive.headers(&wrong_key, false), Steps::pause());
    for _ in 0..3 {
        let steps = drive
            .flow
            .request_body(&vm.vm, &vm.port, 64 * 1024, false, || panic!("read"));
        assert_eq!(steps, drop);
    }
    let steps = drive
        .flow
        .request_body(&vm.vm, &vm.port, 10, true, || panic!("read"));
    assert_eq!(error_code(&steps), Some((401, "invalid_api_key".into())));
    assert_eq!(drive.body(b"{}"), Steps::go_on(), "a later callback is not ours");
    assert!(vm.port.dispatched.borrow().is_empty());
    // Without a body the answer goes out at once; a body past the discard bound ends it.
    let get = map(&[(":method", b"GET"), (":path", b"/v1/models")]);
    assert_eq!(
        error_code(&Drive::new(&vm, 2).headers(&get, true)).map(|(s, _)| s),
        Some(401)
    );
    let mut drive = Drive::new(&vm, 3);
    drive.headers(&post("/v2/nowhere", &[]), false);
    let steps = drive
        .flow
        .request_body(&vm.vm, &vm.port, MAX_DISCARDED_BYTES + 1, false, || {
            panic!("read")
        });
    assert_eq!(error_code(&steps), Some((404, "unknown_url".into())));
}

#[test]
fn held_headers_wait_for_the_body_and_carry_its_length_and_session() {
    let vm = vm_with(&[]);
    let mut drive = Drive::new(&vm, 1);
    assert_eq!(
        drive.headers(&post("/v1/chat/completions", &[]), false),
        Steps::pause()
    );
    // Partial body: keep buffering.
    assert_eq!(
        drive
            .flow
            .request_body(&vm.vm, &vm.port, 5, false, || panic!("read early")),
        Steps::pause()
    );
    let steps = drive.body(&chat(true));
    assert_eq!(steps.next, Next::Continue);
    let Some(Step::ReplaceRequestBody(body)) = steps.writes.first() else {
        panic!("{steps:?}")
    };
    let body: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(body["model"], "gpt-5.5");
    let headers = upstream_headers(&steps).unwrap();
    assert_eq!(header(headers, ":path"), Some("/backend-api/codex/responses"));
    assert!(header(headers, "authorization").is_some_and(|a| a.starts_with("Bearer ey")));
    assert_eq!(header(headers, "chatgpt-account-id"), Some("acct-file"));
    let length = serde_json::to_vec(&body).unwrap().len();
    assert_eq!(
        header(headers, "content-length"),
        Some(length.to_string().as_str())
    );
    assert!(header(headers, "session-id").is_some());
    // The client's key never goes upstream; Envoy's own headers stay.
    assert!(!headers.iter().any(|(_, v)| v.contains(CLIENT_KEY)));
    assert_eq!(header(headers, "x-forwarded-proto"), Some("http"));
}

#[test]
fn portable_headers_leave_at_header_time_with_the_client_session() {
    let vm = vm_with(&[("ENVOY_HOLD_HEADERS", "")]);
    let mut drive = Drive::new(&vm, 1);
    let steps = drive.headers(
        &post("/v1/chat/completions", &[("x-session-id", b"conv-7")]),
        false,
    );
    assert_eq!(steps.next, Next::Continue);
    let headers = upstream_headers(&steps).unwrap();
    assert!(header(headers, "authorization").is_some());
    assert_eq!(header(headers, "session-id"), Some("conv-7"));
    assert_eq!(header(headers, "content-length"), None);
    let steps = drive.body(&chat(false));
    assert_eq!(steps.next, Next::Continue);
    assert!(matches!(steps.writes.as_slice(), [Step::ReplaceRequestBody(_)]));
}

fn chat_for(model: &str) -> Vec<u8> {
    json!({"model": model, "messages": [{"role": "user", "content": "hello"}]})
        .to_string()
        .into_bytes()
}

#[test]
fn a_lite_model_goes_out_in_the_lite_shape_with_its_header() {
    let vm = vm_with(&[]);
    let (mut lite, mut classic) = (Drive::new(&vm, 1), Drive::new(&vm, 2));
    // A client's copy of the header never decides the shape.
    let spoofed = post("/v1/chat/completions", &[(decision::LITE_HEADER, b"true")]);
    lite.headers(&spoofed, false);
    classic.headers(&spoofed, false);
    let steps = lite.body(&chat_for("gpt-6.1-sol"));
    let headers = upstream_headers(&steps).unwrap();
    assert_eq!(header(headers, decision::LITE_HEADER), Some("true"));
    assert_eq!(
        headers.iter().filter(|(n, _)| n == decision::LITE_HEADER).count(),
        1
    );
    let Some(Step::ReplaceRequestBody(body)) = steps.writes.first() else {
        panic!("{steps:?}")
    };
    let body: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(body["input"][0]["type"], "additional_tools");
    assert!(body.get("instructions").is_none());

    let steps = classic.body(&chat_for("gpt-5.5"));
    let headers = upstream_headers(&steps).unwrap();
    assert_eq!(header(headers, decision::LITE_HEADER), None);
}

#[test]
fn portable_mode_sends_every_model_in_the_classic_shape() {
    let vm = vm_with(&[("ENVOY_HOLD_HEADERS", "")]);
    let mut drive = Drive::new(&vm, 1);
    let steps = drive.headers(
        &post("/v1/chat/completions", &[(decision::LITE_HEADER, b"true")]),
        false,
    );
    assert_eq!(
        header(upstream_headers(&steps).unwrap(), decision::LITE_HEADER),
        None
    );
    let steps = drive.body(&chat_for("gpt-6.1-sol"));
    let Some(Step::ReplaceRequestBody(body)) = steps.writes.first() else {
        panic!("{steps:?}")
    };
    let body: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(body["model"], "gpt-6.1-sol");
    assert!(body["instructions"].is_string() && body["tools"].is_array());
    assert_eq!(body["parallel_tool_calls"], false);
}

#[test]
fn requests_use_the_catalogue_the_vm_holds_now() {
    let vm = vm_with(&[]);
    let fetched = Catalogue::parse(
        br#"{"models":[{"slug":"gpt-7","visibility":"list","priority":1,"use_responses_lite":true}]}"#,
    )
    .unwrap();
    *vm.vm.catalogue.borrow_mut() = Rc::new(fetched);
    let mut drive = Drive::new(&vm, 1);
    drive.headers(&post("/v1/chat/completions", &[]), false);
    let steps = drive.body(br#"{"messages":[{"role":"user","content":"x"}]}"#);
    let Some(Step::ReplaceRequestBody(body)) = steps.writes.first() else {
        panic!("{steps:?}")
    };
    let body: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(body["model"], "gpt-7");
    assert_eq!(
        header(upstream_headers(&steps).unwrap(), decision::LITE_HEADER),
        Some("true")
    );
    let mut models = Drive::new(&vm, 2);
    let bearer = format!("Bearer {CLIENT_KEY}");
    let get = map(&[
        (":method", b"GET"),
        (":path", b"/v1/models"),
        ("authorization", bearer.as_bytes()),
    ]);
    let listed: Value = serde_json::from_slice(&reply_of(&models.headers(&get, true)).unwrap().body).unwrap();
    assert_eq!(listed["data"][0]["id"], "gpt-7");
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1));
}

#[test]
fn codex_cli_gets_the_backends_own_catalogue_once_one_was_fetched() {
    let bearer = format!("Bearer {CLIENT_KEY}");
    let get = map(&[
        (":method", b"GET"),
        (":path", b"/v1/models?client_version=0.169.0"),
        ("authorization", bearer.as_bytes()),
    ]);
    let answer = |vm: &Vm, id: u32| -> Value {
        let mut drive = Drive::new(vm, id);
        serde_json::from_slice(&reply_of(&drive.headers(&get, true)).unwrap().body).unwrap()
    };
    let raw =
        br#"{"models":[{"slug":"gpt-7","base_instructions":"You are Codex.","model_messages":{"a":1}}]}"#;
    let vm = vm_with(&[]);
    // Before a fetch: the built-in entries, without prompt texts.
    let built_in = answer(&vm, 1);
    assert_eq!(built_in["models"][0]["slug"], "gpt-6.1-sol");
    assert_eq!(built_in["models"][0]["base_instructions"], "");
    vm.shared.poke(catalogue::record::RAW_KEY, raw);
    assert_eq!(answer(&vm, 2), serde_json::from_slice::<Value>(raw).unwrap());
    // EXPOSE_MODELS narrows the list, so the answer is built from the exposed ids.
    let exposed = vm_with(&[("EXPOSE_MODELS", "gpt-5.5")]);
    exposed.shared.poke(catalogue::record::RAW_KEY, raw);
    let narrowed = answer(&exposed, 3);
    assert_eq!(narrowed["models"].as_array().map(Vec::len), Some(1));
    assert_eq!(narrowed["models"][0]["slug"], "gpt-5.5");
}

#[test]
fn bodies_over_the_limit_empty_bodies_and_bad_json_never_go_upstream() {
    let vm = vm_with(&[("MAX_REQUEST_BODY_BYTES", "100")]);
    let mut drive = Drive::new(&vm, 1);
    drive.headers(&post("/v1/chat/completions", &[]), false);
    // An oversize body is emptied as it arrives and answered at its end, so that a client
    // still writing it reads the 413 instead of a reset connection.
    let drop = Steps::then(vec![Step::ReplaceRequestBody(Vec::new())], Next::Pause);
    let steps = drive
        .flow
        .request_body(&vm.vm, &vm.port, 101, false, || panic!("read"));
    assert_eq!(steps, drop);
    let steps = drive
        .flow
        .request_body(&vm.vm, &vm.port, 10, false, || panic!("read"));
    assert_eq!(steps, drop, "once over the limit, the rest is dropped too");
    let steps = drive
        .flow
        .request_body(&vm.vm, &vm.port, 3, true, || panic!("read"));
    assert_eq!(error_code(&steps), Some((413, "request_too_large".into())));
    // A later callback is not ours any more.
    assert_eq!(drive.body(b"{}"), Steps::go_on());

    // A declared oversize: held headers wait, the body is dropped from its first byte.
    let mut drive = Drive::new(&vm, 2);
    let steps = drive.headers(
        &post("/v1/chat/completions", &[("content-length", b"101")]),
        false,
    );
    assert_eq!(steps, Steps::pause());
    let steps = drive
        .flow
        .request_body(&vm.vm, &vm.port, 1, false, || panic!("read"));
    assert_eq!(steps, drop);
    // Released headers would leave with the credentials: refused at once.
    let portable = vm_with(&[("MAX_REQUEST_BODY_BYTES", "100"), ("ENVOY_HOLD_HEADERS", "false")]);
    let steps = Drive::new(&portable, 5).headers(
        &post("/v1/chat/completions", &[("content-length", b"101")]),
        false,
    );
    assert_eq!(error_code(&steps), Some((413, "request_too_large".into())));

    let steps = Drive::new(&vm, 3).headers(&post("/v1/chat/completions", &[]), true);
    assert_eq!(error_code(&steps).map(|(s, _)| s), Some(400));
    assert!(reply_of(&steps).is_some_and(|r| String::from_utf8_lossy(&r.body).contains("empty")));

    for bad in [&b"{not json"[..], br#"{"model":"gpt-5.5"}"#, b"[]"] {
        let mut drive = Drive::new(&vm, 4);
        drive.headers(&post("/v1/chat/completions", &[]), false);
        let steps = drive.body(bad);
        let (status, _) = error_code(&steps).unwrap();
        assert!((400..500).contains(&status), "{status}");
        assert_eq!(steps.writes.len(), 1, "only the reply: {steps:?}");
        assert_eq!(steps.next, Next::Pause);
        // The reply then passes through the response side untouched.
        assert_eq!(
            drive.response(&upstream_head("400", b"application/json"), "codex_filter"),
            Steps::go_on()
        );
    }
}

#[test]
fn a_request_without_a_usable_token_waits_and_is_resumed_with_the_refreshed_one() {
    let vm = vm_with(&[]);
    vm.shared.advance(20 * 86_400); // the login has expired; a refresh is due
    let mut drive = Drive::new(&vm, 5);
    assert_eq!(
        drive.headers(&post("/v1/chat/completions", &[]), false),
        Steps::pause()
    );
    let steps = drive.body(&chat(false));
    assert_eq!(steps.next, Next::Pause, "parked until the refresh lands");
    let headers = upstream_headers(&steps).unwrap();
    assert_eq!(header(headers, "authorization"), None);
    assert!(!vm.vm.waiters.borrow().is_empty());

    refresh(&vm.vm, &vm.port);
    let record = vm.vm.tokens.read(&vm.port);
    WaitList::serve(&vm.vm.waiters, &vm.port, &vm.vm.config.auth, record.as_ref());
    let resumed = vm.port.resumed.borrow().clone();
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0].0, 5);
    assert!(
        resumed[0]
            .1
            .contains(&("authorization".into(), "Bearer at-refreshed".into()))
    );

    // The backend refuses that token: the generation it was resumed with is marked stale.
    drive.response(&upstream_head("401", b"application/json"), "via_upstream");
    let record = vm.vm.tokens.read(&vm.port).unwrap();
    assert_eq!((record.generation, record.stale), (1, true));
}

#[test]
fn portable_requests_wait_at_header_time() {
    let vm = vm_with(&[("ENVOY_HOLD_HEADERS", "")]);
    vm.shared.advance(20 * 86_400);
    let mut drive = Drive::new(&vm, 5);
    let steps = drive.headers(&post("/v1/chat/completions", &[]), false);
    assert_eq!(steps.next, Next::Pause);
    assert!(upstream_headers(&steps).is_some());
    assert!(!vm.vm.waiters.borrow().is_empty());
    drive.log(0);
    assert!(
        vm.vm.waiters.borrow().is_empty(),
        "a finished request waits no more"
    );
}

#[test]
fn a_backend_401_marks_only_the_generation_the_request_used() {
    let vm = vm_with(&[]);
    let mut first = Drive::new(&vm, 1);
    first.headers(&post("/v1/chat/completions", &[]), false);
    first.body(&chat(false));
    let mut second = Drive::new(&vm, 2);
    second.headers(&post("/v1/chat/completions", &[]), false);
    second.body(&chat(false));
    // An Envoy-made 401 (not from the upstream) says nothing about the token.
    first.response(&upstream_head("401", b"text/plain"), "upstream_reset");
    assert!(!vm.vm.tokens.read(&vm.port).unwrap().stale);
    first.response(&upstream_head("401", b"application/json"), "via_upstream");
    assert!(vm.vm.tokens.read(&vm.port).unwrap().stale);
    // Refreshed since: a late 401 for the old generation leaves the new token alone.
    refresh(&vm.vm, &vm.port);
    second.response(&upstream_head("401", b"application/json"), "via_upstream");
    let record = vm.vm.tokens.read(&vm.port).unwrap();
    assert_eq!((record.generation, record.stale), (1, false));
}

/// Without the credentials instance nothing can send the request again with the refreshed
/// token, so a backend 401 becomes a 503 "retry" (what the OpenAI SDKs retry on their own)
/// while a refresh can still fix the login, and stays a 401 "log in again" when none can.
#[test]
fn a_backend_401_on_a_token_this_instance_attached_asks_the_client_to_retry() {
    for hold in ["true", ""] {
        let vm = vm_with(&[("ENVOY_HOLD_HEADERS", hold)]);
        let mut drive = Drive::new(&vm, 1);
        drive.headers(&post("/v1/chat/completions", &[]), false);
        drive.body(&chat(false));
        let steps = drive.response(&upstream_head("401", b"application/json"), "via_upstream");
        assert_eq!(steps.next, Next::Continue, "hold={hold}");
        let sets = response_sets(&steps);
        assert!(sets.contains(&(":status", "503")), "hold={hold} {sets:?}");
        assert!(sets.contains(&("retry-after", "1")), "hold={hold} {sets:?}");
        let end = drive.response_end(br#"{"error":{"code":"token_expired"}}"#);
        let body: Value = serde_json::from_slice(response_body(&end).unwrap()).unwrap();
        assert_eq!(body["error"]["code"], "upstream_token_rejected");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("Retry the request"), "{message}");
        assert!(!message.contains("codex login"), "{message}");
        assert!(vm.vm.tokens.read(&vm.port).unwrap().stale, "the refresh runs now");
    }

    // No refresh token: nothing will fix the login, so the backend's 401 is passed on.
    let mut document: Value = serde_json::from_str(&auth_json(NOW + 10 * 86_400, true)).unwrap();
    document["tokens"]
        .as_object_mut()
        .unwrap()
        .remove("refresh_token");
    let vm = vm_with(&[("OPENAI_CODEX_AUTH", &document.to_string())]);
    let mut drive = Drive::new(&vm, 1);
    drive.headers(&post("/v1/chat/completions", &[]), false);
    drive.body(&chat(false));
    drive.response(&upstream_head("401", b"application/json"), "via_upstream");
    let end = drive.response_end(br#"{"error":{"code":"token_revoked","message":"revoked"}}"#);
    let body: Value = serde_json::from_slice(response_body(&end).unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "token_revoked");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("make login"),
        "{body}"
    );
}

#[test]
fn behind_the_credentials_instance_the_main_filter_neither_attaches_nor_waits() {
    let vm = vm_with(&[("CREDENTIALS_UPSTREAM", "true")]);
    vm.shared.advance(20 * 86_400);
    let mut drive = Drive::new(&vm, 1);
    drive.headers(&post("/v1/chat/completions", &[]), false);
    let steps = drive.body(&chat(false));
    assert_eq!(steps.next, Next::Continue);
    let headers = upstream_headers(&steps).unwrap();
    assert_eq!(header(headers, "authorization"), None);
    assert!(vm.vm.waiters.borrow().is_empty());
    drive.response(&upstream_head("401", b"application/json"), "via_upstream");
    assert!(
        !vm.vm.tokens.read(&vm.port).unwrap().stale,
        "the credentials instance judges 401s"
    );

    // A login that can never work is still refused at header time (answered once the body
    // has been read and dropped).
    let vm = vm_with(&[("CREDENTIALS_UPSTREAM", "true"), ("OPENAI_CODEX_AUTH", "")]);
    let mut drive = Drive::new(&vm, 1);
    assert_eq!(
        drive.headers(&post("/v1/chat/completions", &[]), false),
        Steps::pause()
    );
    let steps = drive.body(b"{}");
    assert_eq!(error_code(&steps), Some((401, "missing_credentials".into())));
}

#[test]
fn an_api_key_upstream_needs_no_token() {
    let vm = vm_with(&[
        ("UPSTREAM_AUTH_MODE", "apikey_env"),
        ("UPSTREAM_API_KEY", "sk-upstream"),
    ]);
    let mut drive = Drive::new(&vm, 1);
    drive.headers(&post("/v1/chat/completions", &[]), false);
    let steps = drive.body(&chat(false));
    assert_eq!(steps.next, Next::Continue);
    let headers = upstream_headers(&steps).unwrap();
    assert_eq!(header(headers, "authorization"), Some("Bearer sk-upstream"));
    drive.response(&upstream_head("401", b"application/json"), "via_upstream");
    assert!(vm.port.metrics.borrow().contains(&Metric::UpstreamError));
}

#[test]
fn streaming_answers_pass_each_chunk_on() {
    let vm = vm_with(&[]);
    let mut drive = Drive::new(&vm, 1);
    drive.headers(&post("/v1/chat/completions", &[]), false);
    drive.body(&chat(true));
    let steps = drive.response(&upstream_head("200", b"text/event-stream"), "via_upstream");
    assert_eq!(steps.next, Next::Continue);
    assert!(
        steps
            .writes
            .contains(&Step::RemoveResponseHeader("content-length"))
    );
    assert_eq!(
        response_sets(&steps),
        [
            ("content-type", "text/event-stream; charset=utf-8"),
            ("cache-control", "no-cache")
        ]
    );
    let stream = text_stream(&["Hel", "lo"]);
    let (head, tail) = stream.split_at(stream.len() / 2);
    let first = drive
        .flow
        .response_body(&vm.port, head.len(), false, || head.to_vec());
    assert_eq!(first.next, Next::Continue);
    let last = drive.response_end(tail);
    assert_eq!(last.next, Next::Continue);
    let text = [response_body(&first).unwrap(), response_body(&last).unwrap()].concat();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains("\"content\":\"Hel\"") && text.ends_with("data: [DONE]\n\n"),
        "{text}"
    );
    assert!(
        response_sets(&last).is_empty(),
        "streaming headers are already out"
    );
}

#[test]
fn held_non_streaming_answers_get_their_status_and_headers_at_the_end() {
    let vm = vm_with(&[]);
    let mut drive = Drive::new(&vm, 1);
    drive.headers(&post("/v1/chat/completions", &[]), false);
    drive.body(&chat(false));
    let steps = drive.response(&upstream_head("200", b"text/event-stream"), "via_upstream");
    assert_eq!(steps.next, Next::Pause);
    assert_eq!(steps.writes, [Step::RemoveResponseHeader("content-length")]);
    let stream = text_stream(&["Hello", " world"]);
    let middle = drive
        .flow
        .response_body(&vm.port, stream.len(), false, || stream.clone());
    assert_eq!(
        middle,
        Steps::then(vec![Step::ReplaceResponseBody(Vec::new())], Next::Pause)
    );
    let last = drive.response_end(b"");
    assert_eq!(last.next, Next::Continue);
    let body: Value = serde_json::from_slice(response_body(&last).unwrap()).unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "Hello world");
    assert_eq!(
        response_sets(&last),
        [(":status", "200"), ("content-type", "application/json")]
    );

    // Portable mode: the headers went out at once; the end only writes the body.
    let vm = vm_with(&[("ENVOY_HOLD_HEADERS", "")]);
    let mut drive = Drive::new(&vm, 1);
    drive.headers(&post("/v1/chat/completions", &[]), false);
    drive.body(&chat(false));
    let steps = drive.response(&upstream_head("200", b"text/event-stream"), "via_upstream");
    assert_eq!(steps.next, Next::Continue);
    assert_eq!(response_sets(&steps), [("content-type", "application/json")]);
    let last = drive.response_end(&text_stream(&["Hi"]));
    assert!(response_sets(&last).is_empty());
    assert!(response_body(&last).is_some_and(|b| !b.is_empty()));
}

fn logged_statuses(vm: &Vm) -> Vec<u16> {
    vm.port
        .metrics
        .borrow()
        .iter()
        .filter_map(|m| match m {
            Metric::Request { status, .. } => Some(*status),
            _ => None,
        })
        .collect()
}

#[test]
fn the_status_is_asked_of_the_host_only_when_the_flow_does_not_know_it() {
    let unread = || -> Option<Vec<u8>> { panic!("the status was known") };
    let code = |status: u64| move || Some(status.to_le_bytes().to_vec());
    let vm = vm_with(&[]);
    // Its own reply.
    let mut drive = Drive::new(&vm, 1);
    drive.headers(&map(&[(":method", b"GET"), (":path", b"/v2/x")]), true);
    drive.flow.log(&vm.vm, &vm.port, unread);
    // An upstream 2xx: not Envoy's reply nor the filter's, so the details are not read either;
    // held, the status is the one written at the end.
    let mut drive = Drive::new(&vm, 2);
    drive.headers(&post("/v1/chat/completions", &[]), false);
    drive.body(&chat(false));
    let head = upstream_head("200", b"text/event-stream");
    let steps = drive
        .flow
        .response_headers(&vm.vm, &vm.port, || panic!("details read"), || head, false);
    assert_eq!(steps.next, Next::Pause);
    drive.response_end(&text_stream(&["Hi"]));
    drive.flow.log(&vm.vm, &vm.port, unread);
    // Held headers that never went out (the stream ended first): whatever Envoy answered.
    let mut drive = Drive::new(&vm, 3);
    drive.headers(&post("/v1/chat/completions", &[]), false);
    drive.body(&chat(false));
    drive.response(&upstream_head("200", b"text/event-stream"), "via_upstream");
    drive.flow.log(&vm.vm, &vm.port, code(503));
    // Envoy's own reply, passed on as it is (its status is in the headers the flow read),
    // and a reset before any answer.
    let mut drive = Drive::new(&vm, 4);
    drive.headers(&post("/v1/chat/completions", &[]), false);
    drive.body(&chat(true));
    let head = upstream_head("503", b"application/json");
    let steps = drive.response(&head, "upstream_reset_before_response_started");
    assert!(response_sets(&steps).iter().all(|(name, _)| *name != ":status"));
    drive.flow.log(&vm.vm, &vm.port, unread);
    let mut drive = Drive::new(&vm, 5);
    drive.headers(&post("/v1/chat/completions", &[]), false);
    drive.body(&chat(true));
    drive.flow.log(&vm.vm, &vm.port, code(504));
    // Portable mode: the upstream's status went out with the headers.
    let portable = vm_with(&[("ENVOY_HOLD_HEADERS", "")]);
    let mut drive = Drive::new(&portable, 6);
    drive.headers(&post("/v1/chat/completions", &[]), false);
    drive.body(&chat(true));
    drive.response(&upstream_head("200", b"text/event-stream"), "via_upstream");
    drive.flow.log(&portable.vm, &portable.port, unread);
    assert_eq!(logged_statuses(&vm), [404, 200, 503, 503, 504]);
    assert_eq!(logged_statuses(&portable), [200]);
}

#[test]
fn upstream_and_proxy_errors_become_openai_errors() {
    let vm = vm_with(&[]);
    let mut drive = Drive::new(&vm, 1);
    drive.headers(&post("/v1/chat/completions", &[]), false);
    drive.body(&chat(true));
    let steps = drive.response(
        &map(&[(":status", b"429"), ("content-type", b"application/json")]),
        "via_upstream",
    );
    assert_eq!(steps.next, Next::Pause, "an error answer is held to its end");
    let last = drive
        .response_end(br#"{"error":{"type":"usage_limit_reached","message":"m","resets_in_seconds":30}}"#);
    assert_eq!(
        response_sets(&last)[..2],
        [(":status", "429"), ("content-type", "application/json")]
    );
    assert!(response_sets(&last).contains(&("retry-after", "30")));
    let metrics = vm.port.metrics.borrow().clone();
    assert!(metrics.contains(&Metric::UpstreamError) && metrics.contains(&Metric::UsageLimitHit));

    // Envoy's own 503 (no upstream reached), whole in its headers callback.
    let mut drive = Drive::new(&vm, 2);
    drive.headers(&post("/v1/chat/completions", &[]), false);
    drive.body(&chat(false));
    let head = map(&[(":status", b"503"), ("content-type", b"text/plain")]);
    let steps = drive.flow.response_headers(
        &vm.vm,
        &vm.port,
        || b"upstream_reset_before_response_started".to_vec(),
        || head,
        true,
    );
    assert_eq!(error_code(&steps), Some((502, "upstream_unavailable".into())));
}

#[test]
fn an_answer_that_ends_in_its_headers_is_one_merged_reply() {
    let vm = vm_with(&[]);
    let mut drive = Drive::new(&vm, 1);
    drive.headers(&post("/v1/chat/completions", &[]), false);
    drive.body(&chat(false));
    let head = map(&[
        (":status", b"429"),
        ("content-type", b"application/json"),
        ("retry-after", b"7"),
    ]);
    let steps = drive
        .flow
        .response_headers(&vm.vm, &vm.port, || b"via_upstream".to_vec(), || head, true);
    let reply = reply_of(&steps).unwrap();
    assert_eq!(reply.status, 429);
    let content_types = reply.headers.iter().filter(|(n, _)| *n == "content-type").count();
    assert_eq!(content_types, 1, "{:?}", reply.headers);
    // After a reply, the body callbacks are not the filter's business.
    assert_eq!(drive.response_end(b"x"), Steps::go_on());

    assert_eq!(
        merged(
            &[("content-type", "a".into()), ("x-keep", "1".into())],
            &[("content-type", "b".into()), ("retry-after", "5".into())]
        ),
        [
            ("x-keep", "1".to_string()),
            ("content-type", "b".into()),
            ("retry-after", "5".into())
        ]
    );
}

#[test]
fn an_oversized_non_streaming_answer_is_a_502_not_a_buffer_overflow() {
    let vm = vm_with(&[("MAX_REQUEST_BODY_BYTES", "4096")]);
    let big = "x".repeat(1000);
    let deltas: Vec<&str> = (0..10).map(|_| big.as_str()).collect();
    let mut drive = Drive::new(&vm, 1);
    drive.headers(&post("/v1/chat/completions", &[]), false);
    drive.body(&chat(false));
    drive.response(&upstream_head("200", b"text/event-stream"), "via_upstream");
    let last = drive.response_end(&text_stream(&deltas));
    let body: Value = serde_json::from_slice(response_body(&last).unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "upstream_response_too_large");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"stream\": true")
    );
    assert_eq!(response_sets(&last)[0], (":status", "502"));

    // Under the limit the same answer is whole; a streaming client is never capped.
    let mut drive = Drive::new(&vm, 2);
    drive.headers(&post("/v1/completions", &[]), false);
    drive.body(br#"{"model":"gpt-5.5","prompt":"hi"}"#);
    drive.response(&upstream_head("200", b"text/event-stream"), "via_upstream");
    let last = drive.response_end(&text_stream(&deltas[..3]));
    assert_eq!(response_sets(&last)[0], (":status", "200"));
    let mut drive = Drive::new(&vm, 3);
    drive.headers(&post("/v1/chat/completions", &[]), false);
    drive.body(&chat(true));
    drive.response(&upstream_head("200", b"text/event-stream"), "via_upstream");
    let last = drive.response_end(&text_stream(&deltas));
    assert!(!String::from_utf8_lossy(response_body(&last).unwrap()).contains("too_large"));
}

#[test]
fn headers_that_are_not_utf8() {
    let vm = vm_with(&[("OLLAMA_API_URL", "http://127.0.0.1:11434")]);
    // A header the filter reads: refused with a 400 naming it.
    for name in ["authorization", "content-type", "x-session-id"] {
        let mut pairs: Vec<(&str, &[u8])> = vec![(":method", b"POST"), (":path", b"/v1/chat/completions")];
        pairs.push((name, b"caf\xe9"));
        let mut drive = Drive::new(&vm, 1);
        assert_eq!(drive.headers(&map(&pairs), false), Steps::pause(), "{name}");
        let steps = drive.body(b"{}");
        assert_eq!(error_code(&steps), Some((400, "invalid_header".into())), "{name}");
    }
    // Any other header: the request is served, and the header does not go upstream.
    let mut drive = Drive::new(&vm, 2);
    assert_eq!(
        drive.headers(&post("/v1/chat/completions", &[("x-odd", b"caf\xe9")]), false),
        Steps::pause()
    );
    let steps = drive.body(&chat(false));
    let headers = upstream_headers(&steps).unwrap();
    assert!(header(headers, "authorization").is_some());
    assert!(!headers.iter().any(|(n, _)| n == "x-odd"));
    // The Ollama pass-through leaves the map alone, except for the credentials it strips.
    let steps = Drive::new(&vm, 3).headers(
        &post("/api/chat", &[("x-odd", b"caf\xe9"), ("cookie", b"s=\xff")]),
        false,
    );
    assert_eq!(
        steps,
        Steps::then(
            vec![
                Step::RemoveRequestHeader("authorization"),
                Step::RemoveRequestHeader("cookie")
            ],
            Next::Continue
        )
    );
    // Upstream response headers: a content type that is not text is not an event stream;
    // other such headers are left for Envoy to pass on.
    let mut drive = Drive::new(&vm, 4);
    drive.headers(&post("/v1/chat/completions", &[]), false);
    drive.body(&chat(true));
    let head = map(&[
        (":status", b"200"),
        ("content-type", b"text/event-stream\xff"),
        ("x-odd", b"\xe9"),
    ]);
    let steps = drive.response(&head, "via_upstream");
    assert!(
        !steps
            .writes
            .iter()
            .any(|s| matches!(s, Step::RemoveResponseHeader("x-odd")))
    );
    let last = drive.response_end(b"whatever");
    assert_eq!(response_sets(&last)[0], (":status", "502"));
    // An unreadable map is no headers at all, never a panic.
    let steps = Drive::new(&vm, 5).headers(b"\x05\x00", true);
    assert!(reply_of(&steps).is_some());
}

#[test]
fn the_verbose_line_names_the_request_and_never_a_credential() {
    let vm = vm_with(&[("VERBOSE", "true")]);
    let mut drive = Drive::new(&vm, 1);
    drive.headers(&post("/v1/chat/completions?api_key=sk-in-query", &[]), false);
    let sent = drive.body(&chat(true));
    vm.shared.advance(2);
    drive.response(&upstream_head("200", b"text/event-stream"), "via_upstream");
    drive.response_end(&text_stream(&["hi"]));
    vm.shared.advance(1);
    let line = drive.log(200).unwrap();
    assert_eq!(
        line,
        "codex filter: POST /v1/chat/completions -> 200 model=gpt-5.5 upstream=2000ms total=3000ms tokens=7+3 (cached 2, reasoning 1) key=key-1"
    );
    let access_token = header(upstream_headers(&sent).unwrap(), "authorization").unwrap();
    let record = vm.vm.tokens.read(&vm.port).unwrap();
    for secret in [
        CLIENT_KEY,
        "sk-in-query",
        access_token.trim_start_matches("Bearer "),
        record.tokens.refresh_token.as_deref().unwrap(),
    ] {
        assert!(!line.contains(secret));
    }
    assert!(vm.port.metrics.borrow().contains(&Metric::Request {
        route: RouteKind::Chat,
        status: 200
    }));
    // Without VERBOSE there is no line, but the metrics are counted.
    let vm = vm_with(&[]);
    let mut drive = Drive::new(&vm, 1);
    drive.headers(&map(&[(":method", b"GET"), (":path", b"/health")]), true);
    assert_eq!(drive.log(200), None);
    assert_eq!(vm.port.metrics.borrow().len(), 1);
}

#[test]
fn a_responses_request_goes_up_normalised_and_its_stream_comes_back_event_for_event() {
    let vm = vm_with(&[]);
    let mut drive = Drive::new(&vm, 1);
    let turn: &[(&str, &[u8])] = &[("thread-id", b"th-1"), ("x-codex-window-id", b"w:0")];
    assert_eq!(drive.headers(&post("/v1/responses", turn), false), Steps::pause());
    let steps = drive.body(br#"{"model":"gpt-5.5","input":"hi","stream":true,"temperature":1}"#);
    let Some(Step::ReplaceRequestBody(body)) = steps.writes.first() else {
        panic!("{steps:?}")
    };
    let body: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(
        (body["store"].as_bool(), body["stream"].as_bool()),
        (Some(false), Some(true))
    );
    assert!(body.get("temperature").is_none());
    let headers = upstream_headers(&steps).unwrap();
    assert_eq!(header(headers, ":path"), Some("/backend-api/codex/responses"));
    assert_eq!(header(headers, "thread-id"), Some("th-1"));
    assert_eq!(header(headers, "x-codex-window-id"), Some("w:0"));
    assert_eq!(header(headers, "session-id"), body["prompt_cache_key"].as_str());
    drive.response(&upstream_head("200", b"text/event-stream"), "via_upstream");
    let stream = text_stream(&["Hel", "lo"]);
    let steps = drive.response_end(&stream);
    let out = String::from_utf8(response_body(&steps).unwrap().to_vec()).unwrap();
    assert!(
        out.starts_with("event: response.created\ndata: {\"type\":\"response.created\""),
        "{out}"
    );
    assert!(out.contains(r#""delta":"Hel""#));
    drive.log(200);
    let metrics = vm.port.metrics.borrow();
    assert!(
        metrics
            .iter()
            .any(|m| matches!(m, Metric::Tokens(u) if u.prompt_tokens == 7))
    );
    assert!(metrics.iter().any(|m| matches!(
        m,
        Metric::Request {
            route: RouteKind::Responses,
            status: 200
        }
    )));
}

#[test]
fn compaction_goes_to_its_path_and_its_answer_is_left_in_place() {
    let vm = vm_with(&[]);
    let mut drive = Drive::new(&vm, 1);
    drive.headers(&post("/v1/responses/compact", &[]), false);
    let request = br#"{"model":"gpt-5.5","input":[]}"#;
    let steps = drive.body(request);
    assert_eq!(
        steps.writes.first(),
        Some(&Step::ReplaceRequestBody(request.to_vec()))
    );
    let headers = upstream_headers(&steps).unwrap();
    assert_eq!(
        header(headers, ":path"),
        Some("/backend-api/codex/responses/compact")
    );
    assert_eq!(header(headers, "accept"), Some("application/json"));
    assert_eq!(header(headers, "session-id"), None);
    let steps = drive.response(&upstream_head("200", b"application/json"), "via_upstream");
    assert!(response_sets(&steps).is_empty(), "{steps:?}");
    // The body is not replaced, not even by a copy of itself.
    let steps = drive.response_end(br#"{"output":[]}"#);
    assert_eq!(response_body(&steps), None);
    assert_eq!(steps.next, Next::Continue);
    assert!(!vm.port.metrics.borrow().contains(&Metric::UpstreamError));
}

#[test]
fn a_websocket_handshake_is_answered_at_once_even_with_held_headers() {
    let vm = vm_with(&[]);
    let bearer = format!("Bearer {CLIENT_KEY}");
    let handshake = map(&[
        (":method", b"GET"),
        (":path", b"/v1/responses"),
        ("authorization", bearer.as_bytes()),
        ("upgrade", b"websocket"),
        ("connection", b"Upgrade"),
    ]);
    let steps = Drive::new(&vm, 1).headers(&handshake, false);
    assert_eq!(error_code(&steps), Some((426, "websocket_unsupported".into())));
}

#[test]
fn a_turn_announcing_another_catalogue_etag_asks_for_a_fetch() {
    use crate::core::catalogue::record::WANTED_KEY;
    let head = |etag: &[u8]| {
        map(&[
            (":status", b"200"),
            ("content-type", b"text/event-stream"),
            ("x-models-etag", etag),
        ])
    };
    let vm = vm_with(&[]);
    vm.vm.catalogue_seen.borrow_mut().etag = Some("\"cat-1\"".into());
    let mut drive = Drive::new(&vm, 1);
    drive.headers(&post("/v1/chat/completions", &[]), false);
    drive.body(&chat(true));
    drive.response(&head(b"cat-1"), "via_upstream");
    assert_eq!(vm.shared.peek(WANTED_KEY), None, "the catalogue in use");
    let mut drive = Drive::new(&vm, 2);
    drive.headers(&post("/v1/chat/completions", &[]), false);
    drive.body(&chat(true));
    drive.response(&head(b"cat-2"), "via_upstream");
    assert_eq!(vm.shared.peek(WANTED_KEY).as_deref(), Some(&b"cat-2"[..]));

    let keyed = vm_with(&[
        ("UPSTREAM_AUTH_MODE", "apikey_env"),
        ("UPSTREAM_API_KEY", "sk-upstream"),
    ]);
    let mut drive = Drive::new(&keyed, 1);
    drive.headers(&post("/v1/chat/completions", &[]), false);
    drive.body(&chat(true));
    drive.response(&head(b"cat-2"), "via_upstream");
    assert_eq!(
        keyed.shared.peek(WANTED_KEY),
        None,
        "API-key upstreams have no catalogue"
    );
}

/// Three accounts, `a`, `b`, `c`, each its own ChatGPT account id.
pub(crate) fn pool_auth() -> String {
    let accounts: Vec<Value> = ["a", "b", "c"]
        .iter()
        .map(|label| {
            let claim = json!({"exp": NOW + 10 * 86_400, "https://api.openai.com/auth": {"chatgpt_account_id": format!("acct-{label}")}});
            let jwt = crate::core::auth::auth_json::tests::jwt(&claim);
            json!({"label": label, "tokens": {"access_token": jwt, "refresh_token": format!("rt-{label}"), "id_token": jwt}})
        })
        .collect();
    Value::Array(accounts).to_string()
}

fn limited_head(resets_at: u64) -> Vec<u8> {
    let reset = resets_at.to_string();
    map(&[
        (":status", b"429"),
        ("content-type", b"application/json"),
        ("x-codex-primary-used-percent", b"100"),
        ("x-codex-primary-reset-at", reset.as_bytes()),
    ])
}

#[test]
fn portable_pool_a_usage_limit_asks_for_a_retry_at_once_and_the_retry_goes_elsewhere() {
    let auth = pool_auth();
    let vm = vm_with(&[("ENVOY_HOLD_HEADERS", ""), ("OPENAI_CODEX_AUTH", auth.as_str())]);
    let session: &[(&str, &[u8])] = &[("x-session-id", b"conv-1")];
    let account_of =
        |steps: &Steps| header(upstream_headers(steps).unwrap(), "chatgpt-account-id").map(str::to_string);
    let mut first = Drive::new(&vm, 1);
    let sent = account_of(&first.headers(&post("/v1/chat/completions", session), false)).unwrap();
    first.body(&chat(false));
    // The same conversation again: the same account.
    let mut second = Drive::new(&vm, 2);
    assert_eq!(
        account_of(&second.headers(&post("/v1/chat/completions", session), false)).as_deref(),
        Some(sent.as_str())
    );
    second.body(&chat(false));
    let steps = second.response(&limited_head(NOW + 600), "via_upstream");
    let sets = response_sets(&steps);
    assert!(sets.contains(&(":status", "503")), "{sets:?}");
    assert!(sets.contains(&("retry-after", "1")), "{sets:?}");
    let body = second.response_end(br#"{"error":{"type":"usage_limit_reached","resets_at":1}}"#);
    let body: Value = serde_json::from_slice(response_body(&body).unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "account_switched");
    // The client's retry: another account, and the conversation stays there.
    let mut retry = Drive::new(&vm, 3);
    let moved = account_of(&retry.headers(&post("/v1/chat/completions", session), false)).unwrap();
    assert_ne!(moved, sent);
    let mut later = Drive::new(&vm, 4);
    assert_eq!(
        account_of(&later.headers(&post("/v1/chat/completions", session), false)),
        Some(moved)
    );
}

#[test]
fn portable_pool_the_last_usable_account_spent_is_a_429_with_the_earliest_reset() {
    let auth = pool_auth();
    let vm = vm_with(&[("ENVOY_HOLD_HEADERS", ""), ("OPENAI_CODEX_AUTH", auth.as_str())]);
    for (id, resets_in) in [(1, 900), (2, 300), (3, 600)] {
        let mut drive = Drive::new(&vm, id);
        drive.headers(&post("/v1/chat/completions", &[]), false);
        drive.body(&chat(false));
        drive.response(&limited_head(NOW + resets_in), "via_upstream");
    }
    let mut refused = Drive::new(&vm, 9);
    let steps = refused.headers(&post("/v1/chat/completions", &[]), false);
    assert_eq!(error_code(&steps), Some((429, "usage_limit_reached".into())));
    let reply = reply_of(&steps).unwrap();
    assert!(
        reply.headers.contains(&("retry-after", "300".to_string())),
        "{:?}",
        reply.headers
    );
}

#[test]
fn a_single_account_429_passes_through_and_marks_nothing() {
    let vm = vm_with(&[("ENVOY_HOLD_HEADERS", "")]);
    let mut drive = Drive::new(&vm, 1);
    drive.headers(&post("/v1/chat/completions", &[]), false);
    drive.body(&chat(false));
    let steps = drive.response(&limited_head(NOW + 600), "via_upstream");
    assert!(response_sets(&steps).contains(&(":status", "429")));
    let mut next = Drive::new(&vm, 2);
    let steps = next.headers(&post("/v1/chat/completions", &[]), false);
    assert!(
        upstream_headers(&steps).is_some(),
        "the one account is still used"
    );
}

#[test]
fn the_counts_of_a_request_show_in_usage_on_its_vm_at_once_and_on_the_others_after_a_tick() {
    let vm = vm_with(&[]);
    let mut drive = Drive::new(&vm, 1);
    drive.headers(&post("/v1/chat/completions", &[]), false);
    drive.body(&chat(false));
    drive.response(&upstream_head("200", b"text/event-stream"), "via_upstream");
    drive.response_end(&text_stream(&["hi"]));
    drive.log(200);
    let key_record = crate::core::keys::counters::shared_key("key-1");
    assert_eq!(
        vm.shared.peek(&key_record),
        None,
        "a key without limits costs no shared-data write per request"
    );
    let usage_of = |state: &VmState, port: &MemoryPort| -> Value {
        let mut flow = RequestFlow::new(9);
        let get = map(&[
            (":method", b"GET"),
            (":path", b"/v1/usage"),
            ("authorization", format!("Bearer {CLIENT_KEY}").as_bytes()),
        ]);
        let steps = flow.request_headers(state, port, &get, true);
        serde_json::from_slice(&reply_of(&steps).unwrap().body).unwrap()
    };
    let counts = |usage: &Value| {
        (
            usage["key"]["requests"].as_u64(),
            usage["key"]["input_tokens"].as_u64(),
            usage["key"]["output_tokens"].as_u64(),
            usage["key"]["limits"]["requests_per_minute"]["used"].as_u64(),
            usage["accounts"][0]["requests"].as_u64(),
            usage["accounts"][0]["input_tokens"].as_u64(),
        )
    };
    let mine = usage_of(&vm.vm, &vm.port);
    assert_eq!(
        counts(&mine),
        (Some(1), Some(7), Some(3), Some(1), Some(1), Some(7))
    );
    // Another VM of the same Envoy sees them once this VM's tick has shared them.
    let other = VmState::new(vm.vm.config.clone());
    let other_port = MemoryPort::new(&vm.shared);
    assert_eq!(counts(&usage_of(&other, &other_port)).0, Some(0));
    vm.vm.flush_counts(&vm.port);
    let theirs = usage_of(&other, &other_port);
    assert_eq!(counts(&theirs), counts(&mine));
    assert_eq!(
        counts(&usage_of(&vm.vm, &vm.port)),
        counts(&mine),
        "shared once, counted once"
    );
}
