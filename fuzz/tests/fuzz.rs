//! One test per target, so `cargo test -p codex-openai-wrapper-fuzz --profile fuzz -- <name>`
//! runs one and libtest runs the others side by side.

use codex_openai_wrapper_fuzz::engine::run;
use codex_openai_wrapper_fuzz::targets::{
    auth, decision, etcd, request, responses, sse_stream, upstream_error,
};

#[test]
fn sse_stream() {
    run(&sse_stream::TARGET);
}

#[test]
fn upstream_error() {
    run(&upstream_error::TARGET);
}

#[test]
fn chat_request() {
    run(&request::CHAT);
}

#[test]
fn completions_request() {
    run(&request::COMPLETIONS);
}

#[test]
fn responses_request() {
    run(&responses::REQUEST);
}

#[test]
fn responses_stream() {
    run(&responses::STREAM);
}

#[test]
fn auth_json() {
    run(&auth::TARGET);
}

#[test]
fn etcd() {
    run(&etcd::TARGET);
}

#[test]
fn header_decision() {
    run(&decision::TARGET);
}
