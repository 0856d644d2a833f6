use super::*;
use crate::core::test_support::{catalogue, settings};

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn the_list_is_the_listed_entries_in_priority_order() {
    let list = json_of(&list_body(catalogue(), settings(), 7));
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    let listed: Vec<&str> = catalogue().listed().map(|e| e.slug.as_str()).collect();
    assert_eq!(ids, listed);
    assert_eq!(ids.first(), Some(&"gpt-6.1-sol"));
    assert!(!ids.contains(&"codex-auto-review"));
    assert_eq!(
        list["data"][0],
        json!({"id": "gpt-6.1-sol", "object": "model", "created": 7, "owned_by": "openai-codex",
               "display_name": "GPT-6.1-Sol",
               "description": "Latest workhorse model for coding and everyday work.",
               "context_window": 272000})
    );
}

#[test]
fn expose_models_wins_and_hidden_entries_are_retrievable() {
    let exposed = ModelSettings::new(Some("gpt-5.5, my-model"), None).unwrap();
    let list = json_of(&list_body(catalogue(), &exposed, 7));
    assert_eq!(list["data"][0]["id"], "gpt-5.5");
    assert_eq!(list["data"][0]["context_window"], 272000);
    assert_eq!(
        list["data"][1],
        json!({"id": "my-model", "object": "model", "created": 7, "owned_by": "openai-codex"})
    );
    assert_eq!(list["data"].as_array().map(Vec::len), Some(2));

    let hidden = model_body(catalogue(), settings(), "codex-auto-review", 7).map(|b| json_of(&b));
    assert_eq!(
        hidden.as_ref().map(|m| &m["id"]),
        Some(&json!("codex-auto-review"))
    );
    assert!(model_body(catalogue(), settings(), "gpt-5.2", 7).is_none());
    assert!(model_body(catalogue(), settings(), "my-model", 7).is_none());
    assert!(model_body(catalogue(), &exposed, "my-model", 7).is_some());
    assert!(model_body(catalogue(), &exposed, "gpt-6-sol", 7).is_some());
}

/// The fields of codex-rs `ModelInfo` (codex-rs/protocol/src/openai_models.rs) that have no
/// serde default, with the JSON type Codex CLI parses them as, and the same for the nested
/// effort and tier objects. `Option` fields may be absent or null and are not listed.
const REQUIRED: &[(&str, &str)] = &[
    ("slug", "string"),
    ("display_name", "string"),
    ("supported_reasoning_levels", "array"),
    ("shell_type", "string"),
    ("visibility", "string"),
    ("supported_in_api", "bool"),
    ("priority", "i32"),
    ("base_instructions", "string"),
    ("supports_reasoning_summaries", "bool"),
    ("support_verbosity", "bool"),
    ("truncation_policy", "object"),
    ("supports_parallel_tool_calls", "bool"),
    ("experimental_supported_tools", "array"),
];

fn has_type(value: &Value, kind: &str) -> bool {
    match kind {
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "bool" => value.is_boolean(),
        "i32" => value.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
        _ => false,
    }
}

fn assert_codex_cli_accepts(body: &Value) {
    let models = body["models"].as_array().unwrap();
    assert!(!models.is_empty());
    for model in models {
        let slug = &model["slug"];
        for (name, kind) in REQUIRED {
            assert!(
                has_type(&model[*name], kind),
                "{slug}: {name} is not a {kind}: {}",
                model[*name]
            );
        }
        let policy = &model["truncation_policy"];
        assert!(
            ["bytes", "tokens"].contains(&policy["mode"].as_str().unwrap_or("")),
            "{slug}"
        );
        assert!(policy["limit"].is_i64(), "{slug}");
        assert!(
            ["list", "hide", "none"].contains(&model["visibility"].as_str().unwrap()),
            "{slug}"
        );
        for level in model["supported_reasoning_levels"].as_array().unwrap() {
            assert!(
                level["effort"].is_string() && level["description"].is_string(),
                "{slug}: {level}"
            );
        }
        for tier in model["service_tiers"].as_array().into_iter().flatten() {
            for field in ["id", "name", "description"] {
                assert!(tier[field].is_string(), "{slug}: {tier}");
            }
        }
        for optional in [
            "description",
            "default_verbosity",
            "apply_patch_tool_type",
            "default_service_tier",
        ] {
            assert!(
                model.get(optional).is_none_or(|v| v.is_null() || v.is_string()),
                "{slug}: {optional}"
            );
        }
        assert!(
            model.get("model_messages").is_none(),
            "{slug}: prompt texts are not kept"
        );
    }
}

#[test]
fn the_codex_shape_has_every_field_codex_cli_requires() {
    let body = json_of(&codex_body(catalogue(), settings()));
    assert_codex_cli_accepts(&body);
    let slugs: Vec<&str> = body["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs.len(), catalogue().entries.len());
    let sol = &body["models"][0];
    assert_eq!(sol["slug"], "gpt-6.1-sol");
    // The catalogue's own values survive.
    assert_eq!(sol["use_responses_lite"], true);
    assert_eq!(sol["visibility"], "list");
    assert_eq!(sol["priority"], 1);
    assert_eq!(sol["shell_type"], "shell_command");
    assert_eq!(
        sol["truncation_policy"],
        json!({"mode": "tokens", "limit": 10000})
    );
    assert_eq!(sol["supported_reasoning_levels"][5]["effort"], "ultra");
    assert_eq!(sol["service_tiers"][0]["name"], "Fast");
    assert!(
        body["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["visibility"] == "hide")
    );
}

#[test]
fn sparse_entries_and_exposed_ids_get_the_defaults() {
    let sparse = Catalogue::parse(
        br#"{"models":[{"slug":"m","priority":99999999999,"supported_reasoning_levels":[{"effort":"low"}],"service_tiers":[{"id":"priority"}]}]}"#,
    )
    .unwrap();
    let body = json_of(&codex_body(&sparse, settings()));
    assert_codex_cli_accepts(&body);
    assert_eq!(body["models"][0]["display_name"], "m");
    assert_eq!(body["models"][0]["priority"], i32::MAX);

    let exposed = ModelSettings::new(Some("gpt-5.5 my-model"), None).unwrap();
    let body = json_of(&codex_body(catalogue(), &exposed));
    assert_codex_cli_accepts(&body);
    let models = body["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    assert_eq!(
        (&models[0]["slug"], &models[0]["priority"]),
        (&json!("gpt-5.5"), &json!(1))
    );
    assert_eq!(models[0]["use_responses_lite"], false);
    assert_eq!(
        (&models[1]["slug"], &models[1]["visibility"]),
        (&json!("my-model"), &json!("list"))
    );
}

#[test]
fn the_readme_lists_the_builtin_catalogue() {
    let readme = include_str!("../../../README.md");
    let table = readme
        .split("| model | efforts (default) | lite | service tiers |")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .unwrap_or_else(|| panic!("README.md has no model table"));
    let rows: Vec<Vec<&str>> = table
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| l.split('|').map(str::trim).collect())
        .collect();
    let listed: Vec<&ModelEntry> = catalogue().listed().collect();
    assert_eq!(rows.len(), listed.len());
    for (row, entry) in rows.iter().zip(listed) {
        assert!(row[1].starts_with(&format!("`{}`", entry.slug)), "{row:?}");
        let efforts: Vec<String> = entry
            .supported_efforts
            .iter()
            .map(|e| serde_json::to_value(e).unwrap().as_str().unwrap().to_string())
            .collect();
        let default = entry
            .default_effort
            .map(|e| serde_json::to_value(e).unwrap().as_str().unwrap().to_string())
            .unwrap_or_default();
        assert_eq!(
            row[2],
            format!("{} ({default})", efforts.join(", ")),
            "{}",
            entry.slug
        );
        assert_eq!(row[3], if entry.lite { "yes" } else { "no" }, "{}", entry.slug);
        assert!(
            row[4].starts_with(&entry.service_tiers.join(", ")),
            "{}",
            entry.slug
        );
        assert_eq!(
            row[4].contains("default tier"),
            entry.default_service_tier.is_some(),
            "{}",
            entry.slug
        );
    }
}
