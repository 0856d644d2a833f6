//! The catalogue fetch across several VMs over one shared memory and clock.

use std::rc::Rc;

use super::*;
use crate::core::background::tests::{NOW, TestVm, auth_json};
use crate::core::catalogue::MAX_CATALOGUE_BYTES;
use crate::core::catalogue::record::{RAW_KEY, STATE_KEY, raw_catalogue, read_state};
use crate::core::config::identity::DEFAULT_CLIENT_VERSION;
use crate::core::port::SharedMemory;

const BUILTIN: &[u8] = include_bytes!("builtin.json");
const LATER: u64 = NOW + 10 * 24 * 3600;

fn vm(shared: &Rc<SharedMemory>, me: u64, extra: &[(&str, &str)]) -> TestVm {
    let login = auth_json(LATER);
    let mut env = vec![("OPENAI_CODEX_AUTH", login.as_str())];
    env.extend_from_slice(extra);
    TestVm::start(shared, &env, me)
}

/// A catalogue other than the built-in one: two listed models.
fn changed() -> Vec<u8> {
    br#"{"models":[{"slug":"gpt-new","visibility":"list","priority":1,"base_instructions":"a long prompt"},
        {"slug":"gpt-old","visibility":"list","priority":2},{"slug":"hidden","visibility":"hide","priority":3}]}"#
        .to_vec()
}

fn listed(vm: &TestVm) -> Vec<String> {
    vm.vm
        .catalogue
        .borrow()
        .listed()
        .map(|e| e.slug.clone())
        .collect()
}

fn header<'a>(call: &'a Dispatch, name: &str) -> Option<&'a str> {
    call.headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
        .or_else(|| {
            call.credentials
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        })
}

fn outcomes(vm: &TestVm) -> Vec<CatalogueOutcome> {
    vm.port
        .metrics
        .borrow()
        .iter()
        .filter_map(|m| match m {
            Metric::Catalogue(outcome) => Some(*outcome),
            _ => None,
        })
        .collect()
}

/// Ticks every VM once; the catalogue calls they made.
fn tick_all(vms: &mut [&mut TestVm]) -> Vec<(usize, u32, Dispatch)> {
    let mut calls = Vec::new();
    for (i, vm) in vms.iter_mut().enumerate() {
        vm.tick();
        calls.extend(vm.catalogue_calls().into_iter().map(|(t, c)| (i, t, c)));
    }
    calls
}

fn one(calls: Vec<(usize, u32, Dispatch)>) -> (usize, u32, Dispatch) {
    assert_eq!(calls.len(), 1, "{calls:?}");
    calls.into_iter().next().unwrap_or_else(|| panic!("no call"))
}

#[test]
fn two_vms_send_one_call_per_interval_and_both_use_the_answer() {
    let shared = SharedMemory::at(NOW);
    let (mut a, mut b) = (vm(&shared, 1, &[]), vm(&shared, 2, &[]));
    let (who, token, call) = one(tick_all(&mut [&mut a, &mut b]));
    assert_eq!(who, 0);
    assert_eq!(call.cluster, "codex_catalogue");
    assert_eq!(call.timeout_ms, CALL_TIMEOUT_MS);
    assert_eq!(call.body, None);
    let expected_path = format!("/backend-api/codex/models?client_version={DEFAULT_CLIENT_VERSION}");
    assert_eq!(header(&call, ":method"), Some("GET"));
    assert_eq!(header(&call, ":path"), Some(expected_path.as_str()));
    assert_eq!(header(&call, ":authority"), Some("chatgpt.com"));
    let token_value = a.record().tokens.access_token;
    assert_eq!(
        header(&call, "authorization"),
        Some(format!("Bearer {token_value}").as_str())
    );
    assert_eq!(header(&call, "chatgpt-account-id"), Some("acct-1"));
    // The same identity headers as a turn's.
    let identity = a.vm.config.identity.headers();
    assert_eq!(call.headers.get(3..6), Some(&identity[..]));
    assert_eq!(header(&call, "version"), Some(DEFAULT_CLIENT_VERSION));
    assert_eq!(header(&call, "accept"), Some("*/*"));
    assert_eq!(header(&call, "if-none-match"), None);
    assert!(tick_all(&mut [&mut a, &mut b]).is_empty(), "one call at a time");

    a.answer_with(token, Some(200), &[("etag", "\"e1\"")], &changed());
    assert_eq!(
        listed(&a),
        ["gpt-new", "gpt-old"],
        "the fetching VM uses it at once"
    );
    assert_eq!(listed(&b).first().map(String::as_str), Some("gpt-6.1-sol"));
    assert!(tick_all(&mut [&mut a, &mut b]).is_empty());
    assert_eq!(
        listed(&b),
        ["gpt-new", "gpt-old"],
        "the other VM took it on its tick"
    );
    assert_eq!(b.vm.catalogue_seen.borrow().etag.as_deref(), Some("\"e1\""));
    assert_eq!(raw_catalogue(&b.port), Some(changed()));

    // Parsed once per change: later ticks keep the same catalogue object.
    let held = Rc::clone(&b.vm.catalogue.borrow());
    shared.advance(DEFAULT_REFRESH - 1);
    assert!(tick_all(&mut [&mut a, &mut b]).is_empty(), "not due yet");
    assert!(Rc::ptr_eq(&held, &b.vm.catalogue.borrow()));

    shared.advance(1);
    let (who, token, call) = one(tick_all(&mut [&mut b, &mut a]));
    assert_eq!(header(&call, "if-none-match"), Some("\"e1\""));
    let holder = if who == 0 { &mut b } else { &mut a };
    holder.answer(token, Some(304), b"");
    assert!(
        tick_all(&mut [&mut a, &mut b]).is_empty(),
        "a 304 counts as fetched"
    );
    assert_eq!(listed(&a), ["gpt-new", "gpt-old"]);
    assert!(
        Rc::ptr_eq(&held, &b.vm.catalogue.borrow()),
        "a 304 parses nothing"
    );
    shared.advance(DEFAULT_REFRESH);
    assert_eq!(tick_all(&mut [&mut a, &mut b]).len(), 1);
    let mut all = outcomes(&a);
    all.extend(outcomes(&b));
    all.sort_by_key(|o| *o as u8);
    assert_eq!(all, [CatalogueOutcome::Fetched, CatalogueOutcome::NotModified]);
}

const DEFAULT_REFRESH: u64 = crate::core::config::DEFAULT_CATALOGUE_REFRESH_SECONDS as u64;

#[test]
fn the_interval_setting_is_honoured() {
    let shared = SharedMemory::at(NOW);
    let mut a = vm(&shared, 1, &[("CATALOGUE_REFRESH_SECONDS", "3")]);
    let (_, token, _) = one(tick_all(&mut [&mut a]));
    a.answer(token, Some(200), BUILTIN);
    shared.advance(2);
    assert!(tick_all(&mut [&mut a]).is_empty());
    shared.advance(1);
    let (_, _, call) = one(tick_all(&mut [&mut a]));
    assert_eq!(header(&call, "if-none-match"), None, "the answer had no ETag");
}

#[test]
fn a_holder_that_died_frees_the_lease_when_it_runs_out() {
    let shared = SharedMemory::at(NOW);
    let (mut a, mut b) = (vm(&shared, 1, &[]), vm(&shared, 2, &[]));
    let (_, dead_token, _) = one(tick_all(&mut [&mut a, &mut b]));
    drop(a);
    shared.advance(LEASE_SECONDS - 1);
    assert!(tick_all(&mut [&mut b]).is_empty(), "the lease still holds");
    shared.advance(1);
    let (_, token, _) = one(tick_all(&mut [&mut b]));
    let _ = dead_token;
    b.answer(token, Some(200), BUILTIN);
    assert_eq!(read_state(&b.port).0.version, 1);
    assert_eq!(read_state(&b.port).0.lease, None);
}

#[test]
fn a_late_answer_after_another_vm_took_over_is_dropped() {
    let shared = SharedMemory::at(NOW);
    let (mut a, mut b) = (vm(&shared, 1, &[]), vm(&shared, 2, &[]));
    let (_, slow, _) = one(tick_all(&mut [&mut a, &mut b]));
    // The host never answers a's call in time: a gives up, b is not blocked for ever.
    shared.advance(LEASE_SECONDS);
    let calls = tick_all(&mut [&mut b]);
    let (_, token, _) = one(calls);
    b.answer(token, Some(200), &changed());
    a.answer(slow, Some(200), BUILTIN);
    assert_eq!(read_state(&a.port).0.version, 1, "the stale answer wrote nothing");
    assert!(tick_all(&mut [&mut a]).is_empty());
    assert_eq!(listed(&a), ["gpt-new", "gpt-old"]);
}

#[test]
fn failures_keep_the_builtin_catalogue_and_back_off() {
    let shared = SharedMemory::at(NOW);
    let mut a = vm(&shared, 1, &[]);
    let builtin = listed(&a);
    let (_, token, _) = one(tick_all(&mut [&mut a]));
    a.answer(token, Some(503), b"{\"error\":\"busy\"}");
    assert_eq!(listed(&a), builtin);
    let state = read_state(&a.port).0;
    assert_eq!((state.failures, state.retry_at, state.lease), (1, NOW + 5, None));
    assert!(tick_all(&mut [&mut a]).is_empty(), "backing off");
    shared.advance(FIRST_RETRY_SECONDS);
    let (_, token, _) = one(tick_all(&mut [&mut a]));
    a.answer(token, None, b"");
    shared.advance(FIRST_RETRY_SECONDS);
    assert!(
        tick_all(&mut [&mut a]).is_empty(),
        "the second wait is twice as long"
    );
    shared.advance(FIRST_RETRY_SECONDS);
    let (_, token, _) = one(tick_all(&mut [&mut a]));
    a.answer(token, Some(200), b"<html>not json</html>");
    assert_eq!(read_state(&a.port).0.failures, 3);
    assert_eq!(listed(&a), builtin);
    assert_eq!(raw_catalogue(&a.port), None);
    shared.advance(backoff(3));
    let (_, token, _) = one(tick_all(&mut [&mut a]));
    a.answer(token, Some(200), &changed());
    assert_eq!(read_state(&a.port).0.failures, 0);
    assert_eq!(listed(&a), ["gpt-new", "gpt-old"]);
    assert_eq!(
        outcomes(&a),
        [
            CatalogueOutcome::Failed,
            CatalogueOutcome::Failed,
            CatalogueOutcome::Failed,
            CatalogueOutcome::Fetched
        ]
    );
    assert_eq!(
        (backoff(1), backoff(2), backoff(4), backoff(10), backoff(u32::MAX)),
        (5, 10, 40, MAX_RETRY_SECONDS, MAX_RETRY_SECONDS)
    );
}

#[test]
fn a_failure_after_a_fetch_keeps_the_fetched_catalogue() {
    let shared = SharedMemory::at(NOW);
    let mut a = vm(&shared, 1, &[]);
    let (_, token, _) = one(tick_all(&mut [&mut a]));
    a.answer_with(token, Some(200), &[("etag", "e1")], &changed());
    shared.advance(DEFAULT_REFRESH);
    let (_, token, _) = one(tick_all(&mut [&mut a]));
    a.answer(token, Some(502), b"");
    assert_eq!(listed(&a), ["gpt-new", "gpt-old"]);
    assert_eq!(raw_catalogue(&a.port), Some(changed()));
    assert_eq!(read_state(&a.port).0.etag.as_deref(), Some("e1"));
}

#[test]
fn a_refused_dispatch_is_a_failure_that_frees_the_lease() {
    let shared = SharedMemory::at(NOW);
    let mut a = vm(&shared, 1, &[]);
    a.port.refuse_dispatch.set(true);
    assert!(tick_all(&mut [&mut a]).is_empty());
    let state = read_state(&a.port).0;
    assert_eq!((state.failures, state.lease), (1, None));
}

#[test]
fn a_401_marks_the_token_stale_and_the_fetch_waits_for_the_refresh() {
    let shared = SharedMemory::at(NOW);
    let mut a = vm(&shared, 1, &[]);
    let (_, token, _) = one(tick_all(&mut [&mut a]));
    a.answer(token, Some(401), b"{\"error\":{\"code\":\"token_expired\"}}");
    assert!(a.record().stale, "the refresher runs now");
    shared.advance(FIRST_RETRY_SECONDS);
    assert!(
        tick_all(&mut [&mut a]).is_empty(),
        "no catalogue call with a token the backend refused"
    );
    let refresh = a.calls();
    assert_eq!(refresh.len(), 1, "{refresh:?}");
    assert_eq!(refresh.first().map(|(_, c)| c.cluster.as_str()), Some("oauth"));
}

#[test]
fn a_304_without_a_cached_catalogue_is_a_failure() {
    let shared = SharedMemory::at(NOW);
    let mut a = vm(&shared, 1, &[]);
    let (_, token, _) = one(tick_all(&mut [&mut a]));
    a.answer(token, Some(304), b"");
    assert_eq!(read_state(&a.port).0.failures, 1);
    assert_eq!(read_state(&a.port).0.fetched_at, None);
}

#[test]
fn an_announced_etag_that_differs_fetches_on_the_next_tick() {
    let shared = SharedMemory::at(NOW);
    let (mut a, mut b) = (vm(&shared, 1, &[]), vm(&shared, 2, &[]));
    let (_, token, _) = one(tick_all(&mut [&mut a, &mut b]));
    a.answer_with(token, Some(200), &[("etag", "W/\"e1\"")], BUILTIN);
    assert!(tick_all(&mut [&mut a, &mut b]).is_empty());

    etag_announced(&b.vm, &b.port, "e1");
    assert_eq!(shared.peek(WANTED), None, "the same ETag, spelled plainly");
    shared.advance(ETAG_SPACING_SECONDS);
    etag_announced(&b.vm, &b.port, "e2");
    let after_one = shared.peek(WANTED);
    assert_eq!(after_one.as_deref(), Some(&b"e2"[..]));
    // A marker in place of the value: a second write of e2 would replace it.
    shared.poke(WANTED, b"marker");
    etag_announced(&b.vm, &b.port, "\"e2\"");
    assert_eq!(
        shared.peek(WANTED).as_deref(),
        Some(&b"marker"[..]),
        "recorded once per value and VM"
    );
    shared.poke(WANTED, b"e2");

    let (who, token, call) = one(tick_all(&mut [&mut a, &mut b]));
    assert_eq!(header(&call, "if-none-match"), Some("W/\"e1\""));
    let holder = if who == 0 { &mut a } else { &mut b };
    holder.answer_with(token, Some(200), &[("etag", "\"e2\"")], &changed());
    assert!(tick_all(&mut [&mut a, &mut b]).is_empty());
    assert_eq!(listed(&a), ["gpt-new", "gpt-old"]);
    assert_eq!(listed(&b), ["gpt-new", "gpt-old"]);
    etag_announced(&a.vm, &a.port, "e2");
    shared.advance(ETAG_SPACING_SECONDS);
    assert!(tick_all(&mut [&mut a, &mut b]).is_empty(), "nothing new");
}

#[test]
fn an_announced_etag_the_backend_spells_differently_fetches_only_once() {
    let shared = SharedMemory::at(NOW);
    let mut a = vm(&shared, 1, &[]);
    let (_, token, _) = one(tick_all(&mut [&mut a]));
    a.answer_with(token, Some(200), &[("etag", "e1")], BUILTIN);
    shared.advance(ETAG_SPACING_SECONDS);
    etag_announced(&a.vm, &a.port, "models-v2");
    let (_, token, _) = one(tick_all(&mut [&mut a]));
    a.answer_with(token, Some(200), &[("etag", "e2")], &changed());
    for _ in 0..3 {
        shared.advance(ETAG_SPACING_SECONDS);
        assert!(tick_all(&mut [&mut a]).is_empty());
    }
}

#[test]
fn an_oversized_answer_is_refused_and_nothing_is_stored() {
    let shared = SharedMemory::at(NOW);
    let mut a = vm(&shared, 1, &[]);
    let (_, token, _) = one(tick_all(&mut [&mut a]));
    let mut huge = b"{\"models\":[{\"slug\":\"x\",\"pad\":\"".to_vec();
    huge.resize(MAX_CATALOGUE_BYTES + 1, b'a');
    huge.extend_from_slice(b"\"}]}");
    a.answer(token, Some(200), &huge);
    assert_eq!(read_state(&a.port).0.failures, 1);
    assert_eq!(shared.peek(RAW_KEY), None);
    assert_eq!(listed(&a).first().map(String::as_str), Some("gpt-6.1-sol"));
}

#[test]
fn api_key_upstreams_and_missing_logins_never_fetch() {
    let shared = SharedMemory::at(NOW);
    let mut keyed = TestVm::start(
        &shared,
        &[
            ("UPSTREAM_AUTH_MODE", "apikey_env"),
            ("UPSTREAM_API_KEY", "sk-test"),
        ],
        1,
    );
    let mut no_login = TestVm::start(&shared, &[("OLLAMA_API_URL", "http://127.0.0.1:11434")], 2);
    for _ in 0..3 {
        assert!(tick_all(&mut [&mut keyed, &mut no_login]).is_empty());
        shared.advance(DEFAULT_REFRESH);
    }
    etag_announced(&keyed.vm, &keyed.port, "e9");
    assert_eq!(shared.peek(WANTED), None);
    assert_eq!(shared.peek(STATE_KEY), None);
    assert_eq!(listed(&keyed), listed(&no_login));
    assert_eq!(listed(&keyed).first().map(String::as_str), Some("gpt-6.1-sol"));
}

#[test]
fn the_path_is_the_responses_base_plus_models() {
    assert_eq!(
        models_path("/backend-api/codex/responses", "0.169.0"),
        "/backend-api/codex/models?client_version=0.169.0"
    );
    assert_eq!(
        models_path("/v1/responses?x=1", "1.0 beta&x"),
        "/v1/models?client_version=1.0%20beta%26x"
    );
    assert_eq!(models_path("/responses", "1"), "/models?client_version=1");
}

const WANTED: &str = crate::core::catalogue::record::WANTED_KEY;
