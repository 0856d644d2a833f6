//! The response side of one request: upstream SSE bytes in, client bytes out. The framer,
//! the turn interpreter and a presenter are wired here once for every output format.

use crate::core::error::{ApiError, Code};
use crate::core::reasoning::OutputMode;
use crate::core::translate::response::chat_aggregate::ChatAggregator;
use crate::core::translate::response::chat_stream::ChatStreamWriter;
use crate::core::translate::response::completions::{CompletionAggregator, CompletionStreamWriter};
use crate::core::translate::response::events::{Signal, Turn};
use crate::core::translate::response::presenter::{ChatPresenter, ChatSink};
use crate::core::translate::response::usage::Usage;
use crate::core::wire::sse::SseFramer;

/// Carry-over cap for one incomplete upstream event.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// The 502 `upstream_response_too_large` for a non-streaming answer over `limit` bytes.
pub fn answer_too_large(limit: usize) -> ApiError {
    ApiError::of(
        Code::UpstreamResponseTooLarge,
        format!(
            "The answer is larger than the {limit}-byte limit for non-streaming responses (MAX_REQUEST_BODY_BYTES); send the request with \"stream\": true, or raise MAX_REQUEST_BODY_BYTES."
        ),
    )
}

/// What the client receives once the upstream stream has ended.
#[derive(Debug, PartialEq)]
pub enum End<'a> {
    /// Streaming: the last bytes of the stream.
    Tail(&'a [u8]),
    /// Non-streaming: the whole response body.
    Body(&'a [u8]),
    /// Non-streaming: the error to answer with instead.
    Error(&'a ApiError),
}

/// A sink that can hand its output to the host.
pub trait Output: ChatSink {
    /// Forgets what was already forwarded.
    fn clear(&mut self);
    /// Bytes to forward after a chunk (streaming); empty when aggregating.
    fn pending(&self) -> &[u8];
    /// What the client gets once the upstream ended: the stream's tail, or the aggregated body
    /// or error.
    fn end(&self) -> End<'_>;
}

impl Output for ChatStreamWriter {
    fn clear(&mut self) {
        self.take_output().clear();
    }

    fn pending(&self) -> &[u8] {
        self.output()
    }

    fn end(&self) -> End<'_> {
        End::Tail(self.output())
    }
}

impl Output for CompletionStreamWriter {
    fn clear(&mut self) {
        CompletionStreamWriter::clear(self);
    }

    fn pending(&self) -> &[u8] {
        self.output()
    }

    fn end(&self) -> End<'_> {
        End::Tail(self.output())
    }
}

fn aggregated(result: Option<&Result<Vec<u8>, ApiError>>) -> End<'_> {
    match result {
        Some(Ok(body)) => End::Body(body),
        Some(Err(error)) => End::Error(error),
        None => End::Body(b""),
    }
}

impl Output for ChatAggregator {
    fn clear(&mut self) {}

    fn pending(&self) -> &[u8] {
        &[]
    }

    fn end(&self) -> End<'_> {
        aggregated(self.result())
    }
}

impl Output for CompletionAggregator {
    fn clear(&mut self) {}

    fn pending(&self) -> &[u8] {
        &[]
    }

    fn end(&self) -> End<'_> {
        aggregated(self.result())
    }
}

/// The host-facing side of a translator, whatever its output format.
pub trait Pipeline {
    /// Translates one upstream chunk; returns what to forward now.
    fn push(&mut self, chunk: &[u8], now: u64) -> &[u8];
    /// The upstream stream ended.
    fn finish(&mut self, now: u64) -> End<'_>;
    /// Token usage reported by the terminal event, if any.
    fn usage(&self) -> Option<Usage>;
    /// The upstream body goes on as it came (`push` returns nothing for it): the host leaves
    /// each chunk in place, and adds only what `finish` returns.
    fn relays(&self) -> bool {
        false
    }
}

/// Framer → turn interpreter → presenter → sink `S`, for one response; the sink decides the
/// client format.
pub struct Translator<S> {
    framer: SseFramer,
    turn: Turn,
    output: Presented<S>,
}

/// The client side of the pipeline: the presenter, its sink, and the usage seen in passing.
struct Presented<S> {
    presenter: ChatPresenter,
    sink: S,
    usage: Option<Usage>,
}

impl<S: Output> Presented<S> {
    fn emit(&mut self, signal: Signal<'_>) {
        if let Signal::Finish {
            usage: Some(usage), ..
        } = &signal
        {
            self.usage = Some(*usage);
        }
        self.presenter.signal(signal, &mut self.sink);
    }
}

impl<S: Output> Translator<S> {
    /// A translator presenting reasoning in `mode` (completions use `Hidden`) into `sink`.
    pub fn new(mode: OutputMode, sink: S) -> Self {
        Self {
            framer: SseFramer::new(MAX_EVENT_BYTES),
            turn: Turn::default(),
            output: Presented {
                presenter: ChatPresenter::new(mode),
                sink,
                usage: None,
            },
        }
    }

    /// Upstream events so far that were not JSON and were skipped (diagnostics only).
    pub fn malformed_events(&self) -> u32 {
        self.turn.malformed_events
    }
}

impl<S: Output> Pipeline for Translator<S> {
    fn push(&mut self, chunk: &[u8], now: u64) -> &[u8] {
        self.output.sink.clear();
        let Self { framer, turn, output } = self;
        let mut emit = |signal: Signal<'_>| output.emit(signal);
        if !turn.is_done()
            && framer
                .push(chunk, |data| turn.event(data, now, &mut emit))
                .is_err()
        {
            turn.overflow(&mut emit);
        }
        self.output.sink.pending()
    }

    fn finish(&mut self, now: u64) -> End<'_> {
        self.output.sink.clear();
        let Self { framer, turn, output } = self;
        let mut emit = |signal: Signal<'_>| output.emit(signal);
        framer.finish(|data| turn.event(data, now, &mut emit));
        turn.end_of_stream(&mut emit);
        self.output.sink.end()
    }

    fn usage(&self) -> Option<Usage> {
        self.output.usage
    }
}

#[cfg(test)]
#[path = "translator_tests.rs"]
mod tests;
