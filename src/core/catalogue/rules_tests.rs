use super::*;
use crate::core::test_support::{catalogue, odd_catalogue, settings};

fn resolved(requested: Option<&str>) -> (String, Option<Effort>, bool) {
    let r = resolve(catalogue(), settings(), requested);
    (r.slug, r.suffix_effort, r.fast)
}

#[test]
fn models_resolve_against_the_catalogue() {
    use Effort::{High, Low, Minimal, Ultra, Xhigh};
    let cases: &[(Option<&str>, &str, Option<Effort>, bool)] = &[
        // Missing: the first listed entry.
        (None, "gpt-6.1-sol", None, false),
        (Some("  "), "gpt-6.1-sol", None, false),
        // Known slugs, any case, hidden ones too.
        (Some("gpt-5.5"), "gpt-5.5", None, false),
        (Some("GPT-6-Luna"), "gpt-6-luna", None, false),
        (Some("codex-auto-review"), "codex-auto-review", None, false),
        // Effort suffixes with every separator.
        (Some("gpt-5.5-high"), "gpt-5.5", Some(High), false),
        (Some("gpt-5.6-sol_xhigh"), "gpt-5.6-sol", Some(Xhigh), false),
        (Some("gpt-6-sol:ultra"), "gpt-6-sol", Some(Ultra), false),
        (Some("GPT-5.5 -high"), "gpt-5.5", Some(High), false),
        // -fast, alone and with an effort on either side.
        (Some("gpt-6.1-sol-fast"), "gpt-6.1-sol", None, true),
        (Some("gpt-5.5-fast-high"), "gpt-5.5", Some(High), true),
        (Some("gpt-5.5-high-fast"), "gpt-5.5", Some(High), true),
        (Some("gpt-5.4-fast"), "gpt-5.6-terra", None, true),
        // Retired ids: named successors, families, the default.
        (Some("gpt-5.4"), "gpt-5.6-terra", None, false),
        (Some("gpt-5.4-mini"), "gpt-5.6-luna", None, false),
        (Some("gpt-5.4-mini-low"), "gpt-5.6-luna", Some(Low), false),
        (Some("gpt-5.2"), "gpt-6.1-sol", None, false),
        (Some("gpt-5.2-codex"), "gpt-6.1-sol", None, false),
        (Some("GPT-5-Codex-LOW"), "gpt-6.1-sol", Some(Low), false),
        (Some("gpt5_minimal"), "gpt-6.1-sol", Some(Minimal), false),
        (Some("codex-mini-latest"), "gpt-6.1-sol", None, false),
        (Some("gpt-5.1-codex-max"), "gpt-6.1-sol", None, false),
        (Some("gpt-5.3-codex"), "gpt-6.1-sol", None, false),
        // Unknown ids pass on, lower-cased; an unknown `-fast` id stays whole.
        (Some("My-Model"), "my-model", None, false),
        (Some("my-model-fast"), "my-model-fast", None, false),
        (Some("my-model-high"), "my-model", Some(High), false),
        (Some("high"), "high", None, false),
        (Some("odd model :low"), "odd model", Some(Low), false),
    ];
    for (requested, slug, effort, fast) in cases {
        assert_eq!(
            resolved(*requested),
            (slug.to_string(), *effort, *fast),
            "{requested:?}"
        );
    }
}

#[test]
fn an_alias_whose_target_left_the_catalogue_means_the_default() {
    let cat = Catalogue::parse(
        br#"{"models":[{"slug":"gpt-7","visibility":"list","priority":1},{"slug":"gpt-5.6-luna","visibility":"hide","priority":2}]}"#,
    )
    .unwrap();
    let slug = |m: &str| resolve(&cat, settings(), Some(m)).slug;
    assert_eq!(slug("gpt-5.4"), "gpt-7");
    assert_eq!(slug("gpt-5.4-mini"), "gpt-5.6-luna");
    assert_eq!(slug("gpt-5-codex"), "gpt-7");
    assert_eq!(resolve(&cat, settings(), None).slug, "gpt-7");
}

#[test]
fn debug_model_forces_the_id_but_keeps_the_suffixes() {
    let forced = ModelSettings::new(None, Some(" gpt-5.5 ".into())).unwrap();
    let got = resolve(catalogue(), &forced, Some("gpt-6-sol-high"));
    assert_eq!(
        (got.slug.as_str(), got.suffix_effort),
        ("gpt-5.5", Some(Effort::High))
    );
    assert_eq!(resolve(catalogue(), &forced, None).slug, "gpt-5.5");
    // The rules are the forced model's.
    let rules = for_request(catalogue(), &forced, &request(Some("gpt-6-sol"), None, None));
    assert!(!rules.lite);
}

fn request<'a>(model: Option<&'a str>, effort: Option<Effort>, tier: Option<&'a str>) -> ModelRequest<'a> {
    ModelRequest {
        model,
        effort,
        default_effort: Option::None,
        service_tier: tier,
    }
}

#[test]
fn effort_is_clamped_to_what_the_model_supports() {
    use Effort::*;
    // (model, explicit effort, expected on the wire)
    let cases: &[(&str, Option<Effort>, Effort)] = &[
        // gpt-6.1-sol: low … ultra; ultra goes out as max.
        ("gpt-6.1-sol", Some(Ultra), Max),
        ("gpt-6.1-sol", Some(Max), Max),
        ("gpt-6.1-sol", Some(Medium), Medium),
        ("gpt-6.1-sol", Some(Minimal), Low),
        ("gpt-6.1-sol", Some(None), Low),
        // None asked: the entry's default.
        ("gpt-6.1-sol", Option::None, Low),
        ("gpt-6-sol", Option::None, Medium),
        ("gpt-5.5", Option::None, Medium),
        // gpt-6-luna: low … max.
        ("gpt-6-luna", Some(Ultra), Max),
        // gpt-5.5: low … xhigh.
        ("gpt-5.5", Some(Ultra), Xhigh),
        ("gpt-5.5", Some(Max), Xhigh),
        ("gpt-5.5", Some(Xhigh), Xhigh),
        ("gpt-5.5", Some(None), Low),
        // The suffix counts when the body names no effort, and loses to one that does.
        ("gpt-5.5-max", Option::None, Xhigh),
        ("gpt-6-sol:ultra", Option::None, Max),
        ("gpt-6-sol-ultra", Some(Medium), Medium),
        // No entry: as asked, except ultra.
        ("my-model", Some(Ultra), Max),
        ("my-model", Some(Minimal), Minimal),
        ("my-model", Option::None, Low),
    ];
    for (model, effort, expected) in cases {
        let rules = for_request(
            catalogue(),
            settings(),
            &request(Some(model), *effort, Option::None),
        );
        assert_eq!(rules.effort, *expected, "{model} {effort:?}");
    }
}

#[test]
fn reasoning_effort_beats_the_catalogue_default_and_the_fallback_is_low() {
    let with_default = |model: &str, default: Option<Effort>| {
        let mut req = request(Some(model), None, None);
        req.default_effort = default;
        for_request(catalogue(), settings(), &req).effort
    };
    assert_eq!(with_default("gpt-6-sol", Some(Effort::High)), Effort::High);
    assert_eq!(with_default("gpt-5.5", Some(Effort::Ultra)), Effort::Xhigh);
    assert_eq!(with_default("gpt-6-sol", None), Effort::Medium);
    assert_eq!(with_default("my-model", None), FALLBACK_EFFORT);
    assert_eq!(with_default("my-model", Some(Effort::Ultra)), Effort::Max);
    let odd = odd_catalogue();
    assert_eq!(
        for_request(&odd, settings(), &request(Some("gapped"), None, None)).effort,
        Effort::Low
    );
}

#[test]
fn the_nearest_effort_wins_and_ties_go_up() {
    use Effort::*;
    let supported = [Low, High];
    let cases = [
        (None, Low),
        (Minimal, Low),
        (Low, Low),
        (Medium, High),
        (High, High),
        (Xhigh, High),
        (Ultra, High),
    ];
    for (asked, expected) in cases {
        assert_eq!(clamp(asked, &supported), expected, "{asked:?}");
    }
    assert_eq!(clamp(Minimal, &[]), Minimal);
    let odd = odd_catalogue();
    let rules = for_request(
        &odd,
        settings(),
        &request(Some("gapped"), Some(Medium), Option::None),
    );
    assert_eq!(rules.effort, High);
    let bare = for_request(
        &odd,
        settings(),
        &request(Some("bare"), Some(Ultra), Option::None),
    );
    assert_eq!(bare.effort, Max);
}

#[test]
fn service_tiers_follow_the_entry() {
    // (model, service_tier in the body, expected on the wire)
    let cases: &[(&str, Option<&str>, Option<&str>)] = &[
        ("gpt-6.1-sol", Some("fast"), Some("priority")),
        ("gpt-6.1-sol", Some("priority"), Some("priority")),
        ("gpt-6.1-sol", Some(" Priority "), Some("priority")),
        ("gpt-6.1-sol", Some("default"), None),
        ("gpt-6.1-sol", Some("flex"), None),
        ("gpt-6.1-sol", Some("auto"), None),
        ("gpt-6.1-sol", Some(""), None),
        ("gpt-6.1-sol", None, None),
        // gpt-6-sol's catalogue default is priority; `default` opts out of it.
        ("gpt-6-sol", None, Some("priority")),
        ("gpt-6-sol", Some("default"), None),
        // -fast selects priority; an explicit tier wins over the suffix.
        ("gpt-5.5-fast", None, Some("priority")),
        ("gpt-5.5-fast", Some("default"), None),
        // A model without tiers.
        ("gpt-daybreak-blue-latest", Some("fast"), None),
        // No entry: fast still means priority, default is still dropped, the rest passes.
        ("my-model", Some("fast"), Some("priority")),
        ("my-model", Some("default"), None),
        ("my-model", Some("flex"), Some("flex")),
    ];
    for (model, tier, expected) in cases {
        let rules = for_request(catalogue(), settings(), &request(Some(model), None, *tier));
        assert_eq!(rules.service_tier.as_deref(), *expected, "{model} {tier:?}");
    }
    let odd = odd_catalogue();
    let tier =
        |t: Option<&str>| for_request(&odd, settings(), &request(Some("gapped"), None, t)).service_tier;
    assert_eq!(tier(None).as_deref(), Some("flex"));
    assert_eq!(tier(Some("fast")).as_deref(), Some("priority"));
}

#[test]
fn shape_verbosity_and_parallel_calls_follow_the_entry() {
    let rules =
        |cat: &Catalogue, model: &str| for_request(cat, settings(), &request(Some(model), None, None));
    let sol = rules(catalogue(), "gpt-6.1-sol");
    assert!(sol.lite && sol.known);
    assert_eq!(sol.default_verbosity, Some("low"));
    assert_eq!(sol.parallel_tool_calls, ParallelToolCalls::Off);
    let classic = rules(catalogue(), "gpt-5.5");
    assert!(!classic.lite);
    assert_eq!(classic.default_verbosity, Some("low"));
    assert_eq!(classic.parallel_tool_calls, ParallelToolCalls::Client);
    let red = rules(catalogue(), "gpt-daybreak-red-latest");
    assert_eq!(red.default_verbosity, Some("high"));
    let unknown = rules(catalogue(), "my-model");
    assert!(!unknown.lite && !unknown.known);
    assert_eq!(
        (unknown.default_verbosity, unknown.parallel_tool_calls),
        (None, ParallelToolCalls::Client)
    );
    let odd = odd_catalogue();
    let gapped = rules(&odd, "gapped");
    assert_eq!(
        (gapped.lite, gapped.default_verbosity, gapped.parallel_tool_calls),
        (false, None, ParallelToolCalls::Off)
    );
    assert!(!ParallelToolCalls::Off.apply(Some(true)));
    assert!(ParallelToolCalls::Client.apply(None));
    assert!(!ParallelToolCalls::Client.apply(Some(false)));
}
