//! Performs what a flow machine returned, in order, and tells Envoy whether to go on.

use log::warn;
use proxy_wasm::types::{Action, BufferType, MapType};

use crate::core::flow::step::{Next, Step, Steps, body_write_failed};
use crate::core::reply::Reply;
use crate::host::abi;

/// `body_size` is the size of the body this callback carried (what a body step replaces).
pub fn perform(steps: Steps, body_size: usize) -> Action {
    use MapType::{HttpRequestHeaders as Request, HttpResponseHeaders as Response};
    for step in &steps.writes {
        let (what, written) = match step {
            Step::Reply(reply) => ("local reply", send(reply)),
            Step::ReplaceRequestHeaders(headers) => ("upstream headers", abi::set_headers(Request, headers)),
            Step::ReplaceRequestBody(body) => (
                "request body",
                abi::set_buffer(BufferType::HttpRequestBody, 0, body_size, body),
            ),
            Step::ReplaceResponseBody(body) => (
                "response body",
                abi::set_buffer(BufferType::HttpResponseBody, 0, body_size, body),
            ),
            // A header the host refuses to change leaves the stream as it was; nothing to tell.
            Step::SetRequestHeader(name, value) => ("", abi::set_header(Request, name, value)),
            Step::RemoveRequestHeader(name) => ("", abi::remove_header(Request, name)),
            Step::SetResponseHeader(name, value) => ("", abi::set_header(Response, name, value)),
            Step::RemoveResponseHeader(name) => ("", abi::remove_header(Response, name)),
        };
        if let (Err(status), false) = (written, what.is_empty()) {
            warn!("codex filter: the host refused the {what}: {status:?}");
            if matches!(step, Step::ReplaceRequestBody(_)) {
                let _ = send(&Reply::from(body_write_failed()));
                return Action::Pause;
            }
        }
    }
    match steps.next {
        Next::Continue => Action::Continue,
        Next::Pause => Action::Pause,
    }
}

fn send(reply: &Reply) -> Result<(), proxy_wasm::types::Status> {
    abi::send_response(reply.status, &reply.headers, &reply.body)
}
