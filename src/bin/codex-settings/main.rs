//! `codex-settings`: the configuration worked out by the filter's own code, for the renderer
//! (`envoy/render.py`), `make run` (`envoy/run.py`) and anyone checking a `.dev.vars`.
//!
//! ```text
//! codex-settings resolve [--env-file PATH]             what the renderer needs, as JSON (no secret)
//! codex-settings env [--env-file PATH] [--codex-auth]  the merged environment for Envoy's process
//!                                                      (secrets included: for run.py's pipe only)
//! codex-settings variables                             every variable: reader, default, allowed values
//! ```
//!
//! Settings are the env file's values (read with `dotenvy`) overridden by the process
//! environment. A bad value exits with status 2, the filter's own message ("invalid NAME: ...")
//! on stderr and `{"error": {"variable", "message"}}` on stdout.
//!
//! The module build has no use for it (`cargo build --target wasm32-wasip1 --lib`); on wasm it
//! compiles to an empty program so that `cargo clippy --target wasm32-wasip1` stays whole.

#[cfg(not(target_family = "wasm"))]
mod cli;
#[cfg(not(target_family = "wasm"))]
mod deployment;
#[cfg(not(target_family = "wasm"))]
mod env_file;
#[cfg(not(target_family = "wasm"))]
mod resolve;
#[cfg(not(target_family = "wasm"))]
mod settings;
#[cfg(not(target_family = "wasm"))]
mod variables;

#[cfg(not(target_family = "wasm"))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(target_family = "wasm")]
fn main() {}
