use super::*;
use crate::core::auth::auth_json::tests::jwt;
use serde_json::json;

const NOW: u64 = 1_000_000;

fn token(exp: Option<u64>, account: &str) -> String {
    let mut claims = json!({"https://api.openai.com/auth": {"chatgpt_account_id": account}});
    if let Some(exp) = exp {
        claims["exp"] = exp.into();
    }
    jwt(&claims)
}

fn record(exp: Option<u64>, refresh: Option<&str>) -> TokenRecord {
    let tokens = ChatgptTokens::from_parts(token(exp, "acct-1"), refresh.map(str::to_string), None, None);
    TokenRecord::new(tokens, "src".into())
}

#[test]
fn valid_tokens_are_usable_and_not_due() {
    let r = record(Some(NOW + 3600), Some("rt"));
    assert!(matches!(r.availability(NOW), Availability::Usable(_)));
    assert!(!r.refresh_due(NOW));
}

#[test]
fn refresh_is_due_five_minutes_before_expiry_while_still_usable() {
    let r = record(Some(NOW + REFRESH_AHEAD_SECONDS), Some("rt"));
    assert!(r.refresh_due(NOW));
    assert!(matches!(r.availability(NOW), Availability::Usable(_)));
    assert!(!record(Some(NOW + REFRESH_AHEAD_SECONDS + 1), Some("rt")).refresh_due(NOW));
}

#[test]
fn expired_tokens_wait_for_the_refresh_or_are_dead_without_a_refresh_token() {
    let r = record(Some(NOW + EXPIRY_SKEW_SECONDS), Some("rt"));
    assert_eq!(r.availability(NOW), Availability::Wait);
    assert!(r.refresh_due(NOW));
    let r = record(Some(NOW - 1), None);
    assert!(matches!(r.availability(NOW), Availability::Dead(e) if e.status == 401));
    assert!(!r.refresh_due(NOW));
}

#[test]
fn without_exp_the_refresh_interval_decides() {
    let mut r = record(None, Some("rt"));
    assert!(
        !r.refresh_due(NOW),
        "no exp and no last_refresh: nothing to go by"
    );
    r.tokens.last_refresh = Some(NOW - REFRESH_INTERVAL_SECONDS + 1);
    assert!(!r.refresh_due(NOW));
    r.tokens.last_refresh = Some(NOW - REFRESH_INTERVAL_SECONDS);
    assert!(r.refresh_due(NOW));
    assert!(matches!(r.availability(NOW), Availability::Usable(_)));
}

#[test]
fn a_backend_401_makes_the_current_token_stale_once() {
    let mut r = record(Some(NOW + 3600), Some("rt"));
    r.generation = 3;
    assert!(!r.mark_stale(2), "a 401 for an older token changes nothing");
    assert!(r.mark_stale(3));
    assert!(!r.mark_stale(3), "already stale");
    assert_eq!(r.availability(NOW), Availability::Wait);
    assert!(r.refresh_due(NOW));
}

#[test]
fn a_successful_refresh_replaces_tokens_and_rederives_the_account() {
    let mut r = record(Some(NOW + 10), Some("rt_1"));
    r.stale = true;
    r = r.failed(
        RefreshError {
            permanent: false,
            code: "x".into(),
            message: "m".into(),
        },
        NOW,
    );
    let grant = Grant {
        access_token: token(Some(NOW + 86_400), "acct-2"),
        refresh_token: Some("rt_2".into()),
        id_token: None,
    };
    let next = r.refreshed(grant, NOW);
    assert_eq!(next.generation, 1);
    assert_eq!(next.tokens.refresh_token.as_deref(), Some("rt_2"));
    assert_eq!(next.tokens.account_id.as_deref(), Some("acct-2"));
    assert_eq!(next.tokens.expires_at, Some(NOW + 86_400));
    assert_eq!(next.tokens.last_refresh, Some(NOW));
    assert!(!next.stale && next.failure.is_none());
    // Fields the endpoint leaves out keep their values.
    let opaque = Grant {
        access_token: "opaque".into(),
        refresh_token: None,
        id_token: None,
    };
    let kept = next.refreshed(opaque, NOW + 1);
    assert_eq!(
        (
            kept.tokens.refresh_token.as_deref(),
            kept.tokens.account_id.as_deref()
        ),
        (Some("rt_2"), Some("acct-2"))
    );
}

#[test]
fn temporary_failures_back_off_and_permanent_ones_stop() {
    let mut r = record(Some(NOW), Some("rt"));
    let temporary = RefreshError {
        permanent: false,
        code: "http_503".into(),
        message: "m".into(),
    };
    let mut waits = Vec::new();
    let mut now = NOW;
    for _ in 0..8 {
        assert!(r.refresh_due(now));
        r = r.failed(temporary.clone(), now);
        let retry_at = r.failure.as_ref().map(|f| f.retry_at).unwrap_or(0);
        assert!(!r.refresh_due(now) && !r.refresh_due(retry_at - 1));
        waits.push(retry_at - now);
        now = retry_at;
    }
    assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300]);
    assert_eq!(r.availability(now), Availability::Wait);
    let permanent = RefreshError {
        permanent: true,
        code: "refresh_token_reused".into(),
        message: "m".into(),
    };
    let dead = r.failed(permanent, now);
    assert!(
        !dead.refresh_due(now + 1_000_000),
        "no retry storm after a permanent failure"
    );
    match dead.availability(now) {
        Availability::Dead(e) => {
            assert_eq!((e.status, e.code_str()), (401, Some("refresh_token_invalid")));
            assert!(e.message.contains("refresh_token_reused") && e.message.contains("make login"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn token_endpoint_answers_are_classified() {
    let ok = parse_refresh_response(
        Some(200),
        br#"{"access_token":"a","refresh_token":"r","id_token":"i","expires_in":864000}"#,
    );
    assert_eq!(
        ok,
        Ok(Grant {
            access_token: "a".into(),
            refresh_token: Some("r".into()),
            id_token: Some("i".into())
        })
    );
    let cases: &[(Option<u16>, &str, bool, &str)] = &[
        (
            Some(401),
            r#"{"error":{"code":"refresh_token_expired"}}"#,
            true,
            "refresh_token_expired",
        ),
        (
            Some(400),
            r#"{"error":"invalid_grant","code":"refresh_token_reused"}"#,
            true,
            "invalid_grant",
        ),
        (
            Some(400),
            r#"{"code":"refresh_token_invalidated"}"#,
            true,
            "refresh_token_invalidated",
        ),
        (Some(401), "nope", true, "http_401"),
        (
            Some(400),
            r#"{"error":"invalid_request"}"#,
            false,
            "invalid_request",
        ),
        (Some(503), "", false, "http_503"),
        (Some(200), r#"{"refresh_token":"r"}"#, false, "invalid_response"),
        (None, "", false, OUTCOME_UNKNOWN),
    ];
    for (status, body, permanent, code) in cases {
        let err = parse_refresh_response(*status, body.as_bytes()).unwrap_err();
        assert_eq!(
            (err.permanent, err.code.as_str()),
            (*permanent, *code),
            "{status:?} {body}"
        );
    }
}

#[test]
fn refresh_body_is_the_official_shape_and_stays_out_of_errors() {
    let body: serde_json::Value =
        serde_json::from_slice(&refresh_body(DEFAULT_CLIENT_ID, "rt_secret")).unwrap();
    assert_eq!(
        body,
        json!({"client_id": DEFAULT_CLIENT_ID, "grant_type": "refresh_token", "refresh_token": "rt_secret"})
    );
    let err = parse_refresh_response(
        Some(400),
        br#"{"error":"invalid_grant","error_description":"bad"}"#,
    )
    .unwrap_err();
    assert!(!err.message.contains("rt_secret"));
}

#[test]
fn the_lease_is_exclusive_until_it_runs_out() {
    let held = Lease {
        holder: 1,
        until: NOW + LEASE_SECONDS,
    };
    assert!(Lease::may_take(None, 2, NOW));
    assert!(Lease::may_take(Some(&held), 1, NOW));
    assert!(!Lease::may_take(Some(&held), 2, NOW));
    assert!(Lease::may_take(Some(&held), 2, NOW + LEASE_SECONDS));
}

#[test]
fn records_round_trip_through_shared_data() {
    let r = record(Some(NOW), Some("rt")).failed(
        RefreshError {
            permanent: false,
            code: "c".into(),
            message: "m".into(),
        },
        NOW,
    );
    let bytes = serde_json::to_vec(&r).unwrap();
    assert_eq!(serde_json::from_slice::<TokenRecord>(&bytes).unwrap(), r);
}

#[test]
fn what_a_request_may_do() {
    assert_eq!(
        for_request(None, NOW).unwrap_err().code_str(),
        Some("missing_credentials")
    );
    let valid = record(Some(NOW + 3600), Some("rt"));
    assert!(matches!(for_request(Some(&valid), NOW), Ok(Some(_))));
    let expiring = record(Some(NOW), Some("rt"));
    assert!(matches!(for_request(Some(&expiring), NOW), Ok(None)));
    let dead = record(Some(NOW), None);
    assert_eq!(for_request(Some(&dead), NOW).unwrap_err().status, 401);
}

#[test]
fn an_unknown_outcome_holds_the_refresh_token_back_and_explains_a_later_reuse() {
    let r = record(Some(NOW), Some("rt"));
    let unknown = parse_refresh_response(None, b"").unwrap_err();
    assert!(!unknown.permanent && unknown.message.contains("may have rotated"));
    let waiting = r.failed(unknown, NOW);
    let retry_at = waiting.failure.as_ref().map(|f| f.retry_at);
    assert_eq!(retry_at, Some(NOW + UNKNOWN_OUTCOME_RETRY_SECONDS));
    assert!(!waiting.refresh_due(NOW + UNKNOWN_OUTCOME_RETRY_SECONDS - 1));
    assert!(waiting.refresh_due(NOW + UNKNOWN_OUTCOME_RETRY_SECONDS));
    assert_eq!(
        waiting.availability(NOW),
        Availability::Wait,
        "requests keep waiting within their own limit"
    );

    let reused = parse_refresh_response(
        Some(400),
        br#"{"error":"invalid_grant","code":"refresh_token_reused"}"#,
    )
    .unwrap_err();
    let dead = waiting.failed(reused.clone(), NOW + UNKNOWN_OUTCOME_RETRY_SECONDS);
    let failure = dead.failure.as_ref().unwrap();
    assert!(failure.permanent && failure.code == "invalid_grant");
    assert!(
        failure.message.contains("answer never arrived"),
        "{}",
        failure.message
    );
    assert!(matches!(dead.availability(NOW), Availability::Dead(e) if e.status == 401));
    // The same with the reuse named in `error.code`.
    let named =
        parse_refresh_response(Some(401), br#"{"error":{"code":"refresh_token_reused"}}"#).unwrap_err();
    let named = waiting.failed(named, NOW + UNKNOWN_OUTCOME_RETRY_SECONDS);
    assert!(named.failure.unwrap().message.contains("answer never arrived"));
    // Without an earlier unknown outcome a reuse is just a reuse.
    let plain = r.failed(reused, NOW);
    assert!(!plain.failure.unwrap().message.contains("answer never arrived"));
    // A call the host refused never left: the ordinary backoff applies.
    let refused = r.failed(RefreshError::not_sent(), NOW);
    assert_eq!(refused.failure.map(|f| f.retry_at), Some(NOW + 5));
}

#[test]
fn the_generation_saturates_on_a_tampered_record() {
    let mut r = record(Some(NOW), Some("rt"));
    r.generation = u64::MAX;
    let grant = Grant {
        access_token: "a".into(),
        refresh_token: None,
        id_token: None,
    };
    assert_eq!(r.refreshed(grant, NOW).generation, u64::MAX);
}

#[test]
fn a_blank_error_code_names_nothing() {
    for (body, code) in [
        (r#"{"error":""}"#, "http_400"),
        (r#"{"error":{"code":" "},"code":""}"#, "http_400"),
        (
            r#"{"error":{"code":""},"code":"refresh_token_reused"}"#,
            "refresh_token_reused",
        ),
    ] {
        let err = parse_refresh_response(Some(400), body.as_bytes()).unwrap_err();
        assert_eq!(err.code, code, "{body}");
    }
}

/// The official client's failure classes (a 401, the three `refresh_token_*` codes at any
/// status, a 400 `invalid_grant`), the code read from `error.code`, then `error` as a string,
/// then a top-level `code`, without regard to case.
#[test]
fn refresh_failure_classes() {
    let cases: &[(u16, &str, bool, &str)] = &[
        // 400 invalid_grant, in each place the code may be, in any case: permanent.
        (400, r#"{"error":"invalid_grant"}"#, true, "invalid_grant"),
        (
            400,
            r#"{"error":{"code":"invalid_grant"}}"#,
            true,
            "invalid_grant",
        ),
        (400, r#"{"code":"invalid_grant"}"#, true, "invalid_grant"),
        (400, r#"{"error":"INVALID_GRANT"}"#, true, "INVALID_GRANT"),
        (
            400,
            r#"{"error":"invalid_grant","error_description":"Refresh token is invalid"}"#,
            true,
            "invalid_grant",
        ),
        // invalid_grant with another status is not the official client's permanent class.
        (403, r#"{"error":"invalid_grant"}"#, false, "invalid_grant"),
        (500, r#"{"error":"invalid_grant"}"#, false, "invalid_grant"),
        // The refresh_token_* codes are permanent at any status and in any case.
        (
            400,
            r#"{"error":{"code":"Refresh_Token_Expired"}}"#,
            true,
            "Refresh_Token_Expired",
        ),
        (
            403,
            r#"{"code":"refresh_token_reused"}"#,
            true,
            "refresh_token_reused",
        ),
        (
            400,
            r#"{"error":"refresh_token_invalidated"}"#,
            true,
            "refresh_token_invalidated",
        ),
        // Any 401 is permanent.
        (401, r#"{"error":"whatever"}"#, true, "whatever"),
        (401, "", true, "http_401"),
        // Lookup order: error.code, then error (string), then code.
        (
            400,
            r#"{"error":{"code":"refresh_token_expired"},"code":"other"}"#,
            true,
            "refresh_token_expired",
        ),
        (
            400,
            r#"{"error":"invalid_grant","code":"other"}"#,
            true,
            "invalid_grant",
        ),
        (
            400,
            r#"{"error":{"message":"m"},"code":"invalid_grant"}"#,
            true,
            "invalid_grant",
        ),
        // Everything else is temporary (retried with backoff).
        (400, r#"{"error":"invalid_request"}"#, false, "invalid_request"),
        (429, r#"{"error":{"code":"rate_limited"}}"#, false, "rate_limited"),
        (502, "<html>bad gateway</html>", false, "http_502"),
    ];
    for (status, body, permanent, code) in cases {
        let err = parse_refresh_response(Some(*status), body.as_bytes()).unwrap_err();
        assert_eq!(
            (err.permanent, err.code.as_str()),
            (*permanent, *code),
            "{status} {body}"
        );
        assert!(err.message.contains(&format!("HTTP {status}")), "{}", err.message);
    }
}

#[test]
fn a_400_invalid_grant_ends_the_login_with_a_log_in_again_error() {
    let r = record(Some(NOW - 60), Some("rt"));
    let err = parse_refresh_response(Some(400), br#"{"error":"invalid_grant"}"#).unwrap_err();
    let dead = r.failed(err, NOW);
    assert!(!dead.refresh_due(NOW + 86_400), "no further refresh attempts");
    match dead.availability(NOW) {
        Availability::Dead(error) => {
            assert_eq!(
                (error.status, error.code_str()),
                (401, Some("refresh_token_invalid"))
            );
            assert!(error.message.contains("make login"), "{}", error.message);
            assert!(error.message.contains("invalid_grant"), "{}", error.message);
        }
        other => panic!("{other:?}"),
    }
}
