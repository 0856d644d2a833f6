//! `--status`: every login the wrapper could use, with what identifies it and how fresh it
//! is. Nothing printed here is a token, and a document that cannot be read is reported by
//! its problem alone (the core's messages never quote it).

use std::path::{Path, PathBuf};

use codex_openai_wrapper::core::auth::auth_json::{ChatgptTokens, format_rfc3339};

use crate::settings::Settings;
use crate::store::{auth_dir, codex_home_auth};

pub struct Login {
    pub label: String,
    pub source: String,
    pub found: Result<ChatgptTokens, String>,
    /// Why `make run` does not pass this login to the wrapper, when it does not.
    pub unused: Option<&'static str>,
}

/// The label the login in `$CODEX_HOME/auth.json` has beside the pool's files.
pub const DEFAULT_LABEL: &str = "default";

/// In `make run`'s order: `OPENAI_CODEX_AUTH` wins over `CODEX_AUTH_DIR`, which wins over
/// `$CODEX_HOME/auth.json`.
pub fn find(settings: &Settings) -> Vec<Login> {
    let mut logins = Vec::new();
    let from_environment = settings.var("OPENAI_CODEX_AUTH");
    if let Some(document) = &from_environment {
        logins.push(Login {
            label: "OPENAI_CODEX_AUTH".into(),
            source: "the environment or .dev.vars".into(),
            found: ChatgptTokens::from_auth_json(document),
            unused: None,
        });
    }
    let pool_unused = from_environment
        .is_some()
        .then_some("OPENAI_CODEX_AUTH is set and wins");
    let mut pool = Vec::new();
    if let Some(dir) = auth_dir(settings) {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| is_pool_file(p))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        for file in files {
            let label = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            pool.push(read(label, &file, pool_unused));
        }
    }
    let home = codex_home_auth(settings);
    if home.is_file() {
        let unused = pool_unused.or((!pool.is_empty()).then_some("CODEX_AUTH_DIR is set and wins"));
        logins.push(read(DEFAULT_LABEL.into(), &home, unused));
    }
    logins.extend(pool);
    logins
}

fn is_pool_file(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    path.is_file() && name.ends_with(".json") && !name.starts_with('.')
}

fn read(label: String, path: &Path, unused: Option<&'static str>) -> Login {
    let found = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot be read: {e}"))
        .and_then(|document| ChatgptTokens::from_auth_json(&document));
    Login {
        label,
        source: path.display().to_string(),
        found,
        unused,
    }
}

/// An account id short enough to tell accounts apart without spelling it out.
pub fn short_account(account: &str) -> String {
    match account.char_indices().nth(8) {
        Some((at, _)) if account.chars().count() > 12 => format!("{}…", account.get(..at).unwrap_or(account)),
        _ => account.to_string(),
    }
}

fn span(seconds: u64) -> String {
    let (days, hours, minutes) = (seconds / 86_400, seconds % 86_400 / 3_600, seconds % 3_600 / 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else {
        format!("{minutes}m")
    }
}

pub fn expiry(expires_at: Option<u64>, now: u64) -> String {
    match expires_at {
        None => "unknown (the access token has no exp)".into(),
        Some(at) if at > now => format!("{} (in {})", format_rfc3339(at), span(at - now)),
        Some(at) => format!(
            "{} (expired {} ago; refreshed on first use while the refresh token holds)",
            format_rfc3339(at),
            span(now.saturating_sub(at))
        ),
    }
}

/// The report, one block per login.
pub fn render(logins: &[Login], now: u64) -> String {
    let mut out = String::new();
    for login in logins {
        out.push_str(&format!("{}\n  file:         {}\n", login.label, login.source));
        if let Some(why) = login.unused {
            out.push_str(&format!(
                "  in use:       no, `make run` passes another login ({why})\n"
            ));
        }
        match &login.found {
            Ok(tokens) => {
                let plan = tokens.plan_type().unwrap_or_else(|| "unknown".into());
                let account = tokens
                    .account_id
                    .as_deref()
                    .map_or_else(|| "unknown".into(), short_account);
                let refreshed = tokens
                    .last_refresh
                    .map_or_else(|| "unknown".into(), format_rfc3339);
                out.push_str(&format!(
                    "  plan:         {plan}\n  account:      {account}\n  token expiry: {}\n  last refresh: {refreshed}\n  refresh token: {}\n",
                    expiry(tokens.expires_at, now),
                    if tokens.refresh_token.is_some() { "present" } else { "none (the login ends when the access token expires)" },
                ));
            }
            Err(problem) => out.push_str(&format!("  unusable:     the document {problem}\n")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_are_shortened() {
        assert_eq!(short_account("4f1c2d3e-aaaa-bbbb-cccc-1234567890ab"), "4f1c2d3e…");
        assert_eq!(short_account("acct_test_1"), "acct_test_1");
    }

    #[test]
    fn expiry_reads_as_a_span() {
        assert_eq!(
            expiry(Some(1_000 + 2 * 86_400 + 3_600), 1_000),
            "1970-01-03T01:16:40Z (in 2d 1h)"
        );
        assert!(expiry(Some(10), 70).contains("expired 1m ago"));
        assert!(expiry(None, 0).starts_with("unknown"));
    }
}
