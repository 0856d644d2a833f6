//! `codex-login`: a ChatGPT login without the Codex CLI (`make login`).
//!
//! ```text
//! codex-login [--browser] [--out FILE | --label NAME] [--env-file PATH] [--timeout SECONDS]
//! codex-login --status [--env-file PATH]
//! ```
//!
//! By default the device-code flow: it prints a URL and a one-time code, polls the issuer
//! until the code is entered, exchanges it and writes the login. `--browser` runs the
//! authorization-code flow with PKCE and a callback on `127.0.0.1:1455` (1457 when that port
//! is busy: the two the issuer accepts as redirect URIs). The login goes to
//! `$CODEX_HOME/auth.json` (default `~/.codex`), `--out FILE`, or `$CODEX_AUTH_DIR/NAME.json`
//! with `--label NAME`, written atomically with mode 0600 in Codex CLI's format, so either
//! program reads the other's login. `--status` lists the logins it finds, never a token.
//!
//! Settings (`CODEX_AUTH_ISSUER`, `CHATGPT_LOCAL_CLIENT_ID`, `CODEX_HOME`, `CODEX_AUTH_DIR`)
//! are `.dev.vars`'s values overridden by the environment, as for `make run`.
//!
//! Exit status: 0 done, 1 a network or file problem, 2 bad arguments or settings, 3 device
//! login disabled, 4 the code expired, 5 the issuer refused the login, 6 callback port busy.
//!
//! On wasm it compiles to an empty program so that `cargo clippy --target wasm32-wasip1`
//! stays whole; the module build (`--lib`) never sees it.

#[cfg(not(target_family = "wasm"))]
mod browser;
#[cfg(not(target_family = "wasm"))]
mod cli;
#[cfg(not(target_family = "wasm"))]
mod device;
#[cfg(not(target_family = "wasm"))]
#[path = "../codex-settings/env_file.rs"]
mod env_file;
#[cfg(not(target_family = "wasm"))]
mod failure;
#[cfg(not(target_family = "wasm"))]
mod http;
#[cfg(not(target_family = "wasm"))]
mod issuer;
// The settings tool's reading of `.dev.vars` and the environment, so both programs agree on
// what a setting is; this one uses less of it.
#[cfg(not(target_family = "wasm"))]
#[allow(dead_code)]
#[path = "../codex-settings/settings.rs"]
mod settings;
#[cfg(not(target_family = "wasm"))]
mod status;
#[cfg(not(target_family = "wasm"))]
mod store;

#[cfg(not(target_family = "wasm"))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(target_family = "wasm")]
fn main() {}
