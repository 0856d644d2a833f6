use std::rc::Rc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::*;
use crate::core::auth::token::{REFRESH_WAIT_SECONDS, UNKNOWN_OUTCOME_RETRY_SECONDS};
use crate::core::background::tests::{NOW, TestVm, access_token, auth_json, grant};
use crate::core::port::SharedMemory;

const EXPIRED: u64 = NOW - 60;

fn login(exp: u64) -> Vec<(&'static str, String)> {
    vec![("OPENAI_CODEX_AUTH", auth_json(exp))]
}

fn with_store(exp: u64) -> Vec<(&'static str, String)> {
    let mut env = login(exp);
    env.push(("TOKEN_STORE", "etcd".into()));
    env.push(("ETCD_ENDPOINT", "http://127.0.0.1:2379".into()));
    env
}

fn vm(shared: &Rc<SharedMemory>, env: &[(&'static str, String)], me: u64) -> TestVm {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestVm::start(shared, &pairs, me)
}

fn body_json(call: &Dispatch) -> Value {
    serde_json::from_slice(call.body.as_deref().unwrap_or_default()).unwrap_or(Value::Null)
}

fn reused() -> &'static [u8] {
    br#"{"error":"invalid_grant","code":"refresh_token_reused"}"#
}

/// Whether another VM could take the lease now (it was released or ran out).
fn lease_free(vm: &TestVm) -> bool {
    let taken = vm.vm.tokens.take_lease(&vm.port, 424_242, vm.port.now());
    vm.vm.tokens.release_lease(&vm.port, 424_242);
    taken
}

fn refresh_metrics(vm: &TestVm) -> Vec<Metric> {
    vm.port
        .metrics
        .borrow()
        .iter()
        .filter(|m| matches!(m, Metric::Refresh { .. }))
        .copied()
        .collect()
}

#[test]
fn a_due_refresh_sends_one_call_and_resumes_the_waiters_with_the_new_token() {
    let shared = SharedMemory::at(NOW);
    let mut a = vm(&shared, &login(EXPIRED), 1);
    a.wait(1);
    a.wait(2);
    a.tick();
    let (token, call) = a.one_call("oauth");
    assert_eq!(
        call.headers[..3],
        [
            (":method", "POST".to_string()),
            (":path", "/oauth/token".to_string()),
            (":authority", "auth.openai.com".to_string())
        ]
    );
    assert_eq!(call.timeout_ms, REFRESH_CALL_TIMEOUT_SECONDS * 1000);
    assert_eq!(body_json(&call)["refresh_token"], "rt_1");
    a.tick();
    assert!(a.calls().is_empty(), "one call at a time");
    assert!(a.resumed().is_empty());

    a.answer(token, Some(200), &grant(NOW + 7200, "rt_2"));
    let record = a.record();
    assert_eq!(
        (record.generation, record.tokens.refresh_token.as_deref()),
        (1, Some("rt_2"))
    );
    let bearer = format!("Bearer {}", access_token(NOW + 7200, "rt_2"));
    let resumed = a.resumed();
    assert_eq!(resumed.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(
        resumed[0].1,
        [
            ("authorization".to_string(), bearer),
            ("chatgpt-account-id".to_string(), "acct-1".to_string())
        ]
    );
    assert_eq!(
        refresh_metrics(&a),
        [Metric::Refresh {
            ok: true,
            permanent: false
        }]
    );
    assert!(a.port.metrics.borrow().contains(&Metric::LeaseTaken));
    a.tick();
    assert!(a.calls().is_empty(), "nothing is due any more");
    assert!(lease_free(&a), "the lease was released");
}

#[test]
fn two_vms_racing_for_a_due_refresh_send_exactly_one_call() {
    let shared = SharedMemory::at(NOW);
    let mut a = vm(&shared, &login(EXPIRED), 1);
    let mut b = vm(&shared, &login(EXPIRED), 2);
    b.wait(9);
    a.tick();
    b.tick();
    let (token, _) = a.one_call("oauth");
    assert!(b.calls().is_empty(), "the other VM holds the lease");
    a.answer(token, Some(200), &grant(NOW + 7200, "rt_2"));
    b.tick();
    assert!(b.calls().is_empty(), "VM b uses the token VM a fetched");
    assert_eq!(b.resumed().len(), 1);
    assert_eq!(b.record().generation, 1);
}

#[test]
fn a_dead_lease_holder_is_taken_over_after_the_lease_runs_out() {
    let shared = SharedMemory::at(NOW);
    let mut a = vm(&shared, &login(EXPIRED), 1);
    let mut b = vm(&shared, &login(EXPIRED), 2);
    a.tick();
    a.one_call("oauth");
    drop(a); // the VM dies with its call
    b.tick();
    shared.advance(LEASE_SECONDS - 1);
    b.tick();
    assert!(b.calls().is_empty(), "the lease is still held");
    shared.advance(1);
    b.tick();
    let (token, call) = b.one_call("oauth");
    assert_eq!(body_json(&call)["refresh_token"], "rt_1");
    b.answer(token, Some(200), &grant(NOW + 7200, "rt_2"));
    assert_eq!(b.record().generation, 1);
}

#[test]
fn a_slow_answer_keeps_the_lease_while_waiters_give_up_at_their_limit() {
    let shared = SharedMemory::at(NOW);
    let mut a = vm(&shared, &login(EXPIRED), 1);
    let mut b = vm(&shared, &login(EXPIRED), 2);
    a.wait(1);
    a.tick();
    let (token, _) = a.one_call("oauth");
    // The endpoint takes 100 s (the old 20 s timeout would have lost its answer).
    for second in 1..=100 {
        shared.advance(1);
        a.tick();
        b.tick();
        if second == REFRESH_WAIT_SECONDS - 1 {
            assert!(a.failed().is_empty());
        }
    }
    assert!(b.calls().is_empty(), "no second call with the same refresh token");
    assert!(a.calls().is_empty());
    let failed = a.failed();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].1, 503);
    assert!(failed[0].2.contains("token_refresh_pending"), "{}", failed[0].2);

    a.answer(token, Some(200), &grant(NOW + 7200, "rt_2"));
    assert_eq!(a.record().tokens.refresh_token.as_deref(), Some("rt_2"));
    b.wait(2);
    b.tick();
    assert_eq!(b.resumed().len(), 1, "a later request gets the rotated token");
}

#[test]
fn a_temporary_failure_backs_off_while_requests_keep_waiting() {
    let shared = SharedMemory::at(NOW);
    let mut a = vm(&shared, &login(EXPIRED), 1);
    a.wait(1);
    a.tick();
    let (token, _) = a.one_call("oauth");
    a.answer(token, Some(503), br#"{"error":"temporarily_unavailable"}"#);
    let failure = a.record().failure.unwrap_or_else(|| panic!("no failure"));
    assert_eq!(
        (failure.permanent, failure.code.as_str(), failure.retry_at),
        (false, "temporarily_unavailable", NOW + 5)
    );
    assert_eq!(
        refresh_metrics(&a),
        [Metric::Refresh {
            ok: false,
            permanent: false
        }]
    );
    assert!(a.failed().is_empty() && a.resumed().is_empty());
    assert!(lease_free(&a));
    shared.advance(4);
    a.tick();
    assert!(a.calls().is_empty(), "retried before the backoff");
    shared.advance(1);
    a.tick();
    let (token, _) = a.one_call("oauth");
    a.answer(token, Some(200), &grant(NOW + 7200, "rt_2"));
    assert_eq!(a.resumed().len(), 1);
    assert!(a.record().failure.is_none());
}

#[test]
fn a_permanent_failure_fails_the_waiters_with_401_and_stops_refreshing() {
    let shared = SharedMemory::at(NOW);
    let mut a = vm(&shared, &login(EXPIRED), 1);
    a.wait(1);
    a.tick();
    let (token, _) = a.one_call("oauth");
    a.answer(token, Some(400), reused());
    let failed = a.failed();
    assert_eq!((failed.len(), failed[0].1), (1, 401));
    assert!(failed[0].2.contains("refresh_token_invalid") && failed[0].2.contains("make login"));
    assert_eq!(
        refresh_metrics(&a),
        [Metric::Refresh {
            ok: false,
            permanent: true
        }]
    );
    shared.advance(86_400);
    a.tick();
    assert!(a.calls().is_empty(), "no retry storm");
}

#[test]
fn a_backend_401_marks_the_token_stale_and_triggers_exactly_one_refresh() {
    let shared = SharedMemory::at(NOW);
    let mut a = vm(&shared, &login(NOW + 3600), 1);
    let mut b = vm(&shared, &login(NOW + 3600), 2);
    a.tick();
    assert!(a.calls().is_empty(), "the token is good for an hour");
    // Two requests on two VMs were refused with generation 0.
    a.vm.token_rejected(&a.port, 0);
    b.vm.token_rejected(&b.port, 0);
    a.tick();
    b.tick();
    let (token, _) = a.one_call("oauth");
    assert!(b.calls().is_empty());
    a.answer(token, Some(200), &grant(NOW + 7200, "rt_2"));
    // A late 401 for the old token changes nothing.
    b.vm.token_rejected(&b.port, 0);
    a.tick();
    b.tick();
    assert!(a.calls().is_empty() && b.calls().is_empty());
    assert!(!a.record().stale);
}

#[test]
fn an_unknown_outcome_holds_the_refresh_token_back_and_a_later_reuse_is_final() {
    let shared = SharedMemory::at(NOW);
    let mut a = vm(&shared, &login(EXPIRED), 1);
    a.wait(1);
    a.tick();
    let (token, _) = a.one_call("oauth");
    a.answer(token, None, b"");
    let failure = a.record().failure.unwrap_or_else(|| panic!("no failure"));
    assert_eq!(
        (failure.permanent, failure.code.as_str(), failure.retry_at),
        (false, OUTCOME_UNKNOWN, NOW + UNKNOWN_OUTCOME_RETRY_SECONDS)
    );
    assert!(a.failed().is_empty(), "the waiter keeps waiting");
    shared.advance(UNKNOWN_OUTCOME_RETRY_SECONDS - 1);
    a.tick();
    assert!(
        a.calls().is_empty(),
        "the same refresh token is not sent again at once"
    );
    shared.advance(1);
    a.tick();
    let (token, call) = a.one_call("oauth");
    assert_eq!(body_json(&call)["refresh_token"], "rt_1");
    let failed = a.failed();
    assert_eq!(
        failed.iter().map(|f| (f.0, f.1)).collect::<Vec<_>>(),
        [(1, 503)],
        "its own limit"
    );
    a.wait(2);
    // The lost call had rotated the token: the login is gone.
    a.answer(token, Some(400), reused());
    let failure = a.record().failure.unwrap_or_else(|| panic!("no failure"));
    assert!(failure.permanent);
    assert!(
        failure.message.contains("answer never arrived"),
        "{}",
        failure.message
    );
    let failed = a.failed();
    assert_eq!((failed[1].0, failed[1].1), (2, 401));
}

#[test]
fn a_call_the_host_never_answers_does_not_hold_the_lease_for_ever() {
    let shared = SharedMemory::at(NOW);
    let mut a = vm(&shared, &login(EXPIRED), 1);
    let mut b = vm(&shared, &login(EXPIRED), 2);
    a.tick();
    let (token, _) = a.one_call("oauth");
    for _ in 0..REFRESH_CALL_TIMEOUT_SECONDS + 4 {
        shared.advance(1);
        a.tick();
        b.tick();
    }
    assert!(a.record().failure.is_none() && b.calls().is_empty());
    shared.advance(1);
    a.tick();
    let failure = a.record().failure.unwrap_or_else(|| panic!("no failure"));
    assert_eq!(failure.code, OUTCOME_UNKNOWN, "no answer is an unknown outcome");
    assert!(lease_free(&a));
    a.answer(token, Some(200), &grant(NOW + 7200, "rt_2"));
    assert!(a.record().failure.is_some(), "an answer given up on is ignored");
}

#[test]
fn a_refused_refresh_call_is_an_ordinary_temporary_failure() {
    let shared = SharedMemory::at(NOW);
    let mut a = vm(&shared, &login(EXPIRED), 1);
    a.port.refuse_dispatch.set(true);
    a.tick();
    let failure = a.record().failure.unwrap_or_else(|| panic!("no failure"));
    assert_eq!(
        (failure.code.as_str(), failure.retry_at),
        ("unreachable", NOW + 5)
    );
    assert!(lease_free(&a));
}

#[test]
fn an_outcome_for_a_replaced_login_is_dropped() {
    let shared = SharedMemory::at(NOW);
    let mut a = vm(&shared, &login(EXPIRED), 1);
    a.tick();
    let (token, _) = a.one_call("oauth");
    // Envoy reloads with a new login while the call is out.
    let new_login =
        json!({"tokens": {"access_token": access_token(NOW + 3600, "new"), "refresh_token": "rt_new"}});
    let _b = vm(&shared, &[("OPENAI_CODEX_AUTH", new_login.to_string())], 2);
    a.answer(token, Some(400), reused());
    let record = a.record();
    assert_eq!(record.tokens.refresh_token.as_deref(), Some("rt_new"));
    assert!(record.failure.is_none(), "the new login is not marked dead");
    assert!(refresh_metrics(&a).is_empty());
    assert!(lease_free(&a));
}

// --- with the etcd store ---------------------------------------------------------------------

const KEY: &str = etcd::DEFAULT_KEY;

fn kv(stored: &Stored, revision: u64) -> Value {
    json!({
        "key": STANDARD.encode(KEY),
        "value": STANDARD.encode(serde_json::to_vec(stored).unwrap_or_default()),
        "mod_revision": revision.to_string()
    })
}

fn range_answer(stored: Option<&Stored>, revision: u64) -> Vec<u8> {
    let kvs: Vec<Value> = stored.iter().map(|s| kv(s, revision)).collect();
    json!({"header": {"revision": "20"}, "kvs": kvs})
        .to_string()
        .into_bytes()
}

fn committed(revision: u64) -> Vec<u8> {
    json!({"header": {"revision": revision.to_string()}, "succeeded": true})
        .to_string()
        .into_bytes()
}

fn conflict(stored: &Stored, revision: u64) -> Vec<u8> {
    json!({"header": {}, "responses": [{"response_range": {"kvs": [kv(stored, revision)]}}]})
        .to_string()
        .into_bytes()
}

/// A transaction's compare clause and the value it would write.
fn txn(call: &Dispatch) -> (Value, Stored) {
    let body = body_json(call);
    let value = body["success"][0]["request_put"]["value"]
        .as_str()
        .unwrap_or_default();
    let stored = serde_json::from_slice(&STANDARD.decode(value).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {body}"));
    (body["compare"][0].clone(), stored)
}

fn path(call: &Dispatch) -> &str {
    call.headers
        .iter()
        .find(|(name, _)| *name == ":path")
        .map_or("", |(_, v)| v.as_str())
}

/// Starts a VM with the store and gets through the start-up reconciliation (the store
/// already holds this login).
/// Answers the store read the VM just sent with its own record, unlocked, at revision 5.
fn answer_read_unlocked(a: &mut TestVm) {
    let (token, _) = a.one_call("etcd");
    let current = Stored {
        record: a.record(),
        lock: None,
    };
    a.answer(token, Some(200), &range_answer(Some(&current), 5));
}

fn synced(shared: &Rc<SharedMemory>, exp: u64, me: u64) -> TestVm {
    let mut vm = vm(shared, &with_store(exp), me);
    vm.tick();
    let (token, call) = vm.one_call("etcd");
    assert_eq!(path(&call), etcd::RANGE_PATH);
    assert_eq!(body_json(&call), json!({"key": STANDARD.encode(KEY)}));
    let stored = Stored {
        record: vm.record(),
        lock: None,
    };
    vm.answer(token, Some(200), &range_answer(Some(&stored), 5));
    assert!(vm.record().store_synced);
    assert!(
        vm.calls().is_empty(),
        "the store holds this login: nothing to write"
    );
    vm
}

#[test]
fn start_up_writes_the_login_into_an_empty_store() {
    let shared = SharedMemory::at(NOW);
    let mut a = vm(&shared, &with_store(NOW + 3600), 1);
    a.tick();
    let (token, _) = a.one_call("etcd");
    a.answer(token, Some(200), &range_answer(None, 0));
    let (token, call) = a.one_call("etcd");
    assert_eq!(path(&call), etcd::TXN_PATH);
    let (compare, stored) = txn(&call);
    assert_eq!(compare["target"], "CREATE", "only if the key is still absent");
    assert_eq!(stored.record.tokens.refresh_token.as_deref(), Some("rt_1"));
    assert_eq!(stored.lock, None);
    a.answer(token, Some(200), &committed(6));
    assert!(a.record().store_synced);
    assert!(lease_free(&a));
    shared.advance(60);
    a.tick();
    assert!(a.calls().is_empty(), "reconciled once");
}

#[test]
fn a_newer_record_in_the_store_is_adopted_instead_of_refreshing() {
    let shared = SharedMemory::at(NOW);
    let mut a = vm(&shared, &with_store(EXPIRED), 1);
    a.tick();
    let (token, _) = a.one_call("etcd");
    let mut theirs = a.record();
    let ours_source = theirs.source.clone();
    theirs.tokens = crate::core::auth::auth_json::ChatgptTokens::from_parts(
        access_token(NOW + 7200, "theirs"),
        Some("rt_9".into()),
        None,
        None,
    );
    theirs.tokens.last_refresh = Some(NOW - 10);
    theirs.generation = 3;
    theirs.source = "another replica's login".into();
    let stored = Stored {
        record: theirs,
        lock: None,
    };
    a.answer(token, Some(200), &range_answer(Some(&stored), 9));
    let record = a.record();
    assert_eq!(
        (
            record.generation,
            record.tokens.refresh_token.as_deref(),
            record.store_synced
        ),
        (3, Some("rt_9"), true)
    );
    assert_eq!(
        record.source, ours_source,
        "a restart with the same login keeps this record"
    );
    a.tick();
    assert!(a.calls().is_empty(), "the adopted token is valid: no refresh");
}

#[test]
fn a_refresh_takes_the_store_lock_and_stores_its_outcome() {
    let shared = SharedMemory::at(NOW);
    let mut a = synced(&shared, EXPIRED, 1);
    a.wait(1);
    a.tick();
    let (token, call) = a.one_call("etcd");
    assert_eq!(path(&call), etcd::RANGE_PATH);
    let current = Stored {
        record: a.record(),
        lock: None,
    };
    a.answer(token, Some(200), &range_answer(Some(&current), 5));
    let (token, call) = a.one_call("etcd");
    let (compare, stored) = txn(&call);
    assert_eq!(
        (compare["target"].as_str(), compare["mod_revision"].as_str()),
        (Some("MOD"), Some("5"))
    );
    assert_eq!(
        stored.lock,
        Some(Lease {
            holder: 1,
            until: NOW + etcd::LOCK_SECONDS
        })
    );
    a.answer(token, Some(200), &committed(6));
    let (token, _) = a.one_call("oauth");
    a.answer(token, Some(200), &grant(NOW + 7200, "rt_2"));
    assert_eq!(a.resumed().len(), 1, "waiters do not wait for the store write");
    let (token, call) = a.one_call("etcd");
    let (compare, stored) = txn(&call);
    assert_eq!(compare["mod_revision"], "6", "the outcome replaces our lock");
    assert_eq!(stored.lock, None);
    assert_eq!(stored.record.tokens.refresh_token.as_deref(), Some("rt_2"));
    a.answer(token, Some(200), &committed(7));
    assert!(lease_free(&a));
}

#[test]
fn another_replicas_lock_makes_this_one_wait_for_its_result() {
    let shared = SharedMemory::at(NOW);
    let mut a = synced(&shared, EXPIRED, 1);
    a.tick();
    let (token, _) = a.one_call("etcd");
    let locked = Stored {
        record: a.record(),
        lock: Some(Lease {
            holder: 99,
            until: NOW + 60,
        }),
    };
    a.answer(token, Some(200), &range_answer(Some(&locked), 5));
    assert!(a.calls().is_empty(), "no lock attempt, no refresh");
    a.tick();
    assert!(a.calls().is_empty());
    shared.advance(1);
    a.tick();
    let (token, _) = a.one_call("etcd");
    // The other replica's refresh landed in the store: take it.
    let mut theirs = a.record();
    theirs.tokens = crate::core::auth::auth_json::ChatgptTokens::from_parts(
        access_token(NOW + 7200, "theirs"),
        Some("rt_2".into()),
        None,
        None,
    );
    theirs.tokens.last_refresh = Some(NOW);
    theirs.generation = 1;
    let done = Stored {
        record: theirs,
        lock: None,
    };
    a.answer(token, Some(200), &range_answer(Some(&done), 6));
    assert_eq!(a.record().tokens.refresh_token.as_deref(), Some("rt_2"));
    a.tick();
    assert!(a.calls().is_empty());
}

#[test]
fn a_lost_lock_race_looks_again_a_second_later() {
    let shared = SharedMemory::at(NOW);
    let mut a = synced(&shared, EXPIRED, 1);
    a.tick();
    answer_read_unlocked(&mut a);
    let (token, _) = a.one_call("etcd");
    let their_lock = Stored {
        record: a.record(),
        lock: Some(Lease {
            holder: 99,
            until: NOW + 60,
        }),
    };
    a.answer(token, Some(200), &conflict(&their_lock, 6));
    assert!(a.calls().is_empty(), "no refresh without the lock");
    assert!(lease_free(&a));
    a.tick();
    assert!(a.calls().is_empty());
    shared.advance(1);
    a.tick();
    assert_eq!(path(&a.one_call("etcd").1), etcd::RANGE_PATH);
}

#[test]
fn a_write_conflict_with_a_newer_record_adopts_it() {
    let shared = SharedMemory::at(NOW);
    let mut a = vm(&shared, &with_store(NOW + 3600), 1);
    a.tick();
    let (token, _) = a.one_call("etcd");
    a.answer(token, Some(200), &range_answer(None, 0));
    let (token, _) = a.one_call("etcd");
    let mut theirs = a.record();
    theirs.tokens.refresh_token = Some("rt_7".into());
    theirs.tokens.last_refresh = Some(NOW);
    theirs.generation = 2;
    let stored = Stored {
        record: theirs,
        lock: None,
    };
    a.answer(token, Some(200), &conflict(&stored, 3));
    let record = a.record();
    assert_eq!(
        (record.tokens.refresh_token.as_deref(), record.store_synced),
        (Some("rt_7"), true)
    );
}

#[test]
fn an_unreachable_store_means_no_refresh_until_it_answers() {
    let shared = SharedMemory::at(NOW);
    let mut a = synced(&shared, EXPIRED, 1);
    a.tick();
    let (token, _) = a.one_call("etcd");
    a.answer(token, None, b"");
    assert!(a.calls().is_empty(), "no refresh without the store");
    for _ in 0..STORE_RETRY_SECONDS - 1 {
        shared.advance(1);
        a.tick();
        assert!(a.calls().is_empty(), "the store is left alone for a while");
    }
    shared.advance(1);
    a.tick();
    let (token, _) = a.one_call("etcd");
    a.answer(token, Some(503), b"");
    assert!(a.calls().is_empty());
    // Refused by the host (no etcd cluster): the same.
    shared.advance(STORE_RETRY_SECONDS);
    a.port.refuse_dispatch.set(true);
    a.tick();
    a.port.refuse_dispatch.set(false);
    a.tick();
    assert!(a.calls().is_empty());
    assert!(
        a.record().failure.is_none(),
        "a store problem is not a refresh failure"
    );
    assert!(lease_free(&a));
}

#[test]
fn after_an_unknown_outcome_the_store_stays_locked_until_the_retry() {
    let shared = SharedMemory::at(NOW);
    let mut a = synced(&shared, EXPIRED, 1);
    a.tick();
    answer_read_unlocked(&mut a);
    let (token, _) = a.one_call("etcd");
    a.answer(token, Some(200), &committed(6));
    let (token, _) = a.one_call("oauth");
    a.answer(token, None, b"");
    let (token, call) = a.one_call("etcd");
    let (_, stored) = txn(&call);
    let retry_at = NOW + UNKNOWN_OUTCOME_RETRY_SECONDS;
    assert_eq!(
        stored.lock,
        Some(Lease {
            holder: 1,
            until: retry_at
        })
    );
    a.answer(token, Some(200), &committed(7));

    // Another Envoy replica (its own shared memory) with the same login reads that value.
    let elsewhere = SharedMemory::at(NOW + 1);
    let mut b = synced(&elsewhere, EXPIRED, 2);
    b.tick();
    let (token, _) = b.one_call("etcd");
    b.answer(token, Some(200), &range_answer(Some(&stored), 7));
    assert!(
        b.calls().is_empty(),
        "replica b does not send the same refresh token either"
    );

    // At the retry time this replica takes its own lock again and refreshes.
    shared.set_now(retry_at);
    a.tick();
    let (token, _) = a.one_call("etcd");
    a.answer(token, Some(200), &range_answer(Some(&stored), 7));
    let (token, call) = a.one_call("etcd");
    assert_eq!(txn(&call).1.lock.map(|l| l.holder), Some(1));
    a.answer(token, Some(200), &committed(8));
    a.one_call("oauth");
}
