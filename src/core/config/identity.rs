//! The client identity sent to the Codex backend: `originator`, a Codex-CLI-shaped
//! `User-Agent` and the `version` header, the same set on every Codex request (turns and the
//! model catalogue call, see [`Identity::headers`]).
//!
//! The `User-Agent` is `<originator>/<version> (<os> <os version>; <arch>) <terminal>
//! (<suffix>)`. The Codex CLI's front-ends (`codex exec`, the TUI) talk to an in-process
//! app-server, which appends `(<client name>; <client version>)` to the `User-Agent` of every
//! request once the front-end has introduced itself, which is before any turn: `codex exec`
//! 0.169.0 sends `codex_exec/0.169.0 (Debian 12.0.0; x86_64) xterm (codex_exec; 0.169.0)`.
//! The filter sends `(<originator>; <version>)` in that place, or the editor token
//! (`FORWARD_CLIENT_HEADERS_CODEX_EDITOR`, a VS Code client hint) when one is known, so there
//! is always exactly one such group, as in the official client.
//!
//! The backend refuses a model to a client older than the model's `minimal_client_version`,
//! so the version must follow the Codex CLI releases (`FORWARD_CLIENT_HEADERS_CODEX_VERSION`).
//! It comes from configuration at start-up — never from a network call — so it stays stable;
//! in `override-codex` mode a request's own client hints may refine it for that request only.

use crate::core::config::values::ascii_header_value;

/// The Codex CLI release the filter announces by default (current on 2026-12-01); every
/// gpt-6.x model needs 0.153.0 or later, and the catalogue hides models newer clients need.
pub const DEFAULT_CLIENT_VERSION: &str = "0.169.0";
/// The variable that sets the announced version, named in the error for an outdated client.
pub const VERSION_VARIABLE: &str = "FORWARD_CLIENT_HEADERS_CODEX_VERSION";
/// The `originator` the Codex CLI sends, used when no override is configured.
pub const DEFAULT_ORIGINATOR: &str = "codex_cli_rs";
/// The OS fields of the `User-Agent` when nothing describes the host (`make run` does).
pub const UNKNOWN: &str = "unknown";

/// Who the filter says it is to the Codex backend; each field is one part of the `User-Agent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub originator: String,
    pub version: String,
    pub os_type: String,
    pub os_version: String,
    pub arch: String,
    pub terminal: String,
    pub editor: Option<String>,
}

impl Identity {
    /// `var` returns non-blank values of the original project's variables.
    pub fn from_settings(var: &dyn Fn(&str) -> Option<String>) -> Self {
        let trimmed = |name: &str| var(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        Self {
            originator: trimmed("CODEX_INTERNAL_ORIGINATOR_OVERRIDE")
                .or_else(|| trimmed("FORWARD_CLIENT_HEADERS_CODEX_ORIGINATOR"))
                .unwrap_or_else(|| DEFAULT_ORIGINATOR.to_string()),
            version: trimmed(VERSION_VARIABLE).unwrap_or_else(|| DEFAULT_CLIENT_VERSION.to_string()),
            os_type: trimmed("FORWARD_CLIENT_HEADERS_CODEX_OS_TYPE").unwrap_or_else(|| UNKNOWN.to_string()),
            os_version: trimmed("FORWARD_CLIENT_HEADERS_CODEX_OS_VERSION")
                .unwrap_or_else(|| UNKNOWN.to_string()),
            arch: trimmed("FORWARD_CLIENT_HEADERS_CODEX_ARCH").unwrap_or_else(|| UNKNOWN.to_string()),
            terminal: terminal_token(&trimmed, var("TERM")),
            editor: trimmed("FORWARD_CLIENT_HEADERS_CODEX_EDITOR"),
        }
    }

    /// The Codex-CLI-shaped `User-Agent` header value, reduced to ASCII so it is always a valid
    /// header.
    pub fn user_agent(&self) -> String {
        let suffix = match &self.editor {
            Some(editor) => editor.clone(),
            None => format!("{}; {}", self.originator, self.version),
        };
        let ua = format!(
            "{}/{} ({} {}; {}) {} ({suffix})",
            self.originator, self.version, self.os_type, self.os_version, self.arch, self.terminal
        );
        ascii_header_value(&ua)
    }

    /// The identity headers of every Codex backend request, in the order they are sent:
    /// `originator`, `user-agent`, and `version` (which the official client's built-in OpenAI
    /// provider adds to every request).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("originator", ascii_header_value(&self.originator)),
            ("user-agent", self.user_agent()),
            ("version", ascii_header_value(&self.version)),
        ]
    }

    /// This request's client hints (`sec-ch-ua-platform`, …, and a VS Code `User-Agent`)
    /// take precedence over the configured values.
    pub fn with_client_hints(&self, header: &dyn Fn(&str) -> Option<String>) -> Self {
        let hint = |name: &str| {
            header(name)
                .map(|v| unquote(&v).to_string())
                .filter(|v| !v.is_empty())
        };
        Self {
            os_type: hint("sec-ch-ua-platform").unwrap_or_else(|| self.os_type.clone()),
            os_version: hint("sec-ch-ua-platform-version").unwrap_or_else(|| self.os_version.clone()),
            arch: hint("sec-ch-ua-arch").unwrap_or_else(|| self.arch.clone()),
            editor: header("user-agent")
                .as_deref()
                .and_then(vscode_editor)
                .or_else(|| self.editor.clone()),
            ..self.clone()
        }
    }
}

/// The terminal token the Codex CLI derives from its environment (Envoy's, here).
fn terminal_token(var: &dyn Fn(&str) -> Option<String>, term: Option<String>) -> String {
    if let Some(program) = var("TERM_PROGRAM") {
        return match var("TERM_PROGRAM_VERSION") {
            Some(version) => format!("{program}/{version}"),
            None => program,
        };
    }
    let term = term.unwrap_or_default();
    if let Some(v) = var("WEZTERM_VERSION") {
        return format!("WezTerm/{v}");
    }
    if var("KITTY_WINDOW_ID").is_some() || term.to_ascii_lowercase().contains("kitty") {
        return "kitty".to_string();
    }
    if var("ALACRITTY_SOCKET").is_some() || term == "alacritty" {
        return "Alacritty".to_string();
    }
    if let Some(v) = var("KONSOLE_VERSION") {
        return format!("Konsole/{v}");
    }
    if let Some(v) = var("VTE_VERSION") {
        return format!("VTE/{v}");
    }
    if var("WT_SESSION").is_some() {
        return "WindowsTerminal".to_string();
    }
    if term.trim().is_empty() {
        "unknown".to_string()
    } else {
        term
    }
}

/// `Code/1.91.1` or `vscode/1.91.1` in a client User-Agent → `vscode/1.91.1`.
fn vscode_editor(user_agent: &str) -> Option<String> {
    user_agent.split_whitespace().find_map(|token| {
        let (name, version) = token.split_once('/')?;
        (matches!(name, "Code" | "vscode") && !version.is_empty()).then(|| format!("vscode/{version}"))
    })
}

fn unquote(value: &str) -> &str {
    let v = value.trim();
    let v = v.strip_prefix('"').unwrap_or(v);
    v.strip_suffix('"').unwrap_or(v).trim()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn identity(pairs: &[(&str, &str)]) -> Identity {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Identity::from_settings(&|name: &str| map.get(name).cloned())
    }

    #[test]
    fn user_agent_from_settings() {
        assert_eq!(
            identity(&[]).user_agent(),
            "codex_cli_rs/0.169.0 (unknown unknown; unknown) unknown (codex_cli_rs; 0.169.0)"
        );
        // The shape `codex exec` 0.169.0 sends on a turn.
        let exec = identity(&[
            ("FORWARD_CLIENT_HEADERS_CODEX_ORIGINATOR", "codex_exec"),
            ("FORWARD_CLIENT_HEADERS_CODEX_OS_TYPE", "Debian"),
            ("FORWARD_CLIENT_HEADERS_CODEX_OS_VERSION", "12.0.0"),
            ("FORWARD_CLIENT_HEADERS_CODEX_ARCH", "x86_64"),
            ("TERM", "xterm"),
        ]);
        assert_eq!(
            exec.user_agent(),
            "codex_exec/0.169.0 (Debian 12.0.0; x86_64) xterm (codex_exec; 0.169.0)"
        );
        let id = identity(&[
            ("FORWARD_CLIENT_HEADERS_CODEX_VERSION", "0.36.0"),
            ("FORWARD_CLIENT_HEADERS_CODEX_OS_TYPE", "Linux"),
            ("FORWARD_CLIENT_HEADERS_CODEX_OS_VERSION", "6.1"),
            ("FORWARD_CLIENT_HEADERS_CODEX_ARCH", "x86_64"),
            ("FORWARD_CLIENT_HEADERS_CODEX_EDITOR", "vscode/1.104.0"),
            ("TERM", "xterm-256color"),
            ("FORWARD_CLIENT_HEADERS_CODEX_ORIGINATOR", "codex_vscode"),
        ]);
        assert_eq!(
            id.user_agent(),
            "codex_vscode/0.36.0 (Linux 6.1; x86_64) xterm-256color (vscode/1.104.0)"
        );
        assert_eq!(
            identity(&[
                ("CODEX_INTERNAL_ORIGINATOR_OVERRIDE", "x"),
                ("FORWARD_CLIENT_HEADERS_CODEX_ORIGINATOR", "y")
            ])
            .originator,
            "x"
        );
    }

    #[test]
    fn every_codex_request_carries_the_same_identity_headers() {
        let id = identity(&[
            ("FORWARD_CLIENT_HEADERS_CODEX_VERSION", " 0.170.1 "),
            ("TERM", "xterm"),
        ]);
        assert_eq!(
            id.headers(),
            vec![
                ("originator", "codex_cli_rs".to_string()),
                (
                    "user-agent",
                    "codex_cli_rs/0.170.1 (unknown unknown; unknown) xterm (codex_cli_rs; 0.170.1)"
                        .to_string()
                ),
                ("version", "0.170.1".to_string()),
            ]
        );
        let odd = identity(&[
            ("FORWARD_CLIENT_HEADERS_CODEX_VERSION", "0.169.0\u{e9}"),
            ("FORWARD_CLIENT_HEADERS_CODEX_ORIGINATOR", "codex\u{e9}"),
        ]);
        assert!(
            odd.headers().iter().all(|(_, v)| v.is_ascii()),
            "{:?}",
            odd.headers()
        );
    }

    #[test]
    fn terminal_tokens() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("TERM_PROGRAM", "iTerm.app"), ("TERM_PROGRAM_VERSION", "3.6")],
                "iTerm.app/3.6",
            ),
            (&[("TERM_PROGRAM", "vscode")], "vscode"),
            (&[("WEZTERM_VERSION", "2024")], "WezTerm/2024"),
            (&[("TERM", "xterm-kitty")], "kitty"),
            (&[("TERM", "alacritty")], "Alacritty"),
            (&[("VTE_VERSION", "7600")], "VTE/7600"),
            (&[("WT_SESSION", "1")], "WindowsTerminal"),
            (&[], "unknown"),
        ];
        for (pairs, expected) in cases {
            assert_eq!(identity(pairs).terminal, *expected, "{pairs:?}");
        }
    }

    #[test]
    fn client_hints_refine_one_request_only() {
        let base = identity(&[
            ("FORWARD_CLIENT_HEADERS_CODEX_VERSION", "0.36.0"),
            ("TERM", "xterm-256color"),
        ]);
        let headers: HashMap<&str, &str> = [
            ("sec-ch-ua-platform", "\"Windows\""),
            ("user-agent", "Mozilla/5.0 Code/1.91.1 Electron/30"),
        ]
        .into_iter()
        .collect();
        let hinted = base.with_client_hints(&|n: &str| headers.get(n).map(|v| v.to_string()));
        assert_eq!(
            hinted.user_agent(),
            "codex_cli_rs/0.36.0 (Windows unknown; unknown) xterm-256color (vscode/1.91.1)"
        );
        assert_eq!(base.os_type, "unknown");
    }
}
