//! The model catalogue the backend answers `GET …/models` with: anyone between the filter and
//! the backend, or a backend change, controls these bytes.
//!
//! * never a panic, whatever the body;
//! * a catalogue read from it has at most `MAX_ENTRIES` entries, in priority order, each with
//!   a non-blank slug;
//! * the default model is a listed entry, and `find` finds every entry by its slug;
//! * the compact copy kept in shared data (`record::slim`) exists exactly when the catalogue
//!   does, and reads back as the same catalogue.

use codex_openai_wrapper::core::catalogue::record::slim;
use codex_openai_wrapper::core::catalogue::{Catalogue, MAX_ENTRIES, Visibility};

use crate::engine::{Target, fnv, mix};

pub const TARGET: Target = Target {
    name: "catalogue",
    seeds,
    dictionary: DICTIONARY,
    check,
    mutate: None,
    max_len: 64 * 1024,
};

const DICTIONARY: &[&str] = &[
    r#""models":"#,
    r#""slug":"#,
    r#""visibility":"list""#,
    r#""visibility":"hide""#,
    r#""priority":-9223372036854775808"#,
    r#""priority":9223372036854775807"#,
    r#""supported_reasoning_levels":[{"effort":"ultra"},{"effort":"low"}]"#,
    r#""default_reasoning_level":"max""#,
    r#""use_responses_lite":true"#,
    r#""service_tiers":[{"id":"priority"}]"#,
    r#""additional_speed_tiers":["fast"]"#,
    r#""context_window":18446744073709551615"#,
    "null",
];

fn seeds() -> Vec<Vec<u8>> {
    vec![include_bytes!("../../../src/core/catalogue/builtin.json").to_vec()]
}

fn check(input: &[u8]) -> u64 {
    let compact = slim(input);
    let Ok(cat) = Catalogue::parse(input) else {
        assert!(compact.is_err(), "a compact copy of what is not a catalogue");
        return 1;
    };
    match compact {
        Ok(compact) => assert_eq!(
            Catalogue::parse(&compact).as_ref(),
            Ok(&cat),
            "the compact copy reads back differently"
        ),
        Err(problem) => panic!("a catalogue without a compact copy: {problem}"),
    }
    assert!(!cat.entries.is_empty() && cat.entries.len() <= MAX_ENTRIES);
    let mut signature = 2;
    for pair in cat.entries.windows(2) {
        if let [a, b] = pair {
            assert!(a.priority <= b.priority, "entries out of priority order");
        }
    }
    for entry in &cat.entries {
        assert!(!entry.slug.trim().is_empty(), "blank slug");
        assert!(cat.find(&entry.slug).is_some());
        signature = mix(&[signature, fnv(entry.slug.as_bytes()) & 0xff]);
    }
    if let Some(default) = cat.default_slug() {
        assert_eq!(cat.find(default).map(|e| e.visibility), Some(Visibility::List));
    }
    signature
}
