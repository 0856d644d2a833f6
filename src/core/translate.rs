//! The response side of one request: upstream SSE bytes in, client bytes out. The framer,
//! the turn interpreter and a presenter are wired here once for every output format.

use crate::core::chat_aggregate::ChatAggregator;
use crate::core::chat_present::{ChatPresenter, ChatSink};
use crate::core::chat_stream::{ChatStreamWriter, write_error_frame};
use crate::core::error::ApiError;
use crate::core::reasoning::OutputMode;
use crate::core::sse::SseFramer;
use crate::core::turn::{Signal, Turn};

/// Carry-over cap for one incomplete upstream event.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// What the client receives once the upstream stream has ended.
#[derive(Debug, PartialEq)]
pub enum Outcome<'a> {
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
    fn outcome(&self) -> Outcome<'_>;
}

impl Output for ChatStreamWriter {
    fn clear(&mut self) {
        self.take_output().clear();
    }

    fn pending(&self) -> &[u8] {
        self.output()
    }

    fn outcome(&self) -> Outcome<'_> {
        Outcome::Tail(self.output())
    }
}

impl Output for ChatAggregator {
    fn clear(&mut self) {}

    fn pending(&self) -> &[u8] {
        &[]
    }

    fn outcome(&self) -> Outcome<'_> {
        match self.result() {
            Some(Ok(body)) => Outcome::Body(body),
            Some(Err(error)) => Outcome::Error(error),
            None => Outcome::Body(b""),
        }
    }
}

pub struct Translator<S> {
    framer: SseFramer,
    turn: Turn,
    presenter: ChatPresenter,
    sink: S,
}

impl<S: Output> Translator<S> {
    pub fn new(mode: OutputMode, sink: S) -> Self {
        Self {
            framer: SseFramer::new(MAX_EVENT_BYTES),
            turn: Turn::default(),
            presenter: ChatPresenter::new(mode),
            sink,
        }
    }

    /// Translates one upstream chunk; returns what to forward now.
    pub fn push(&mut self, chunk: &[u8], now: u64) -> &[u8] {
        self.sink.clear();
        let Self { framer, turn, presenter, sink } = self;
        let mut emit = |signal: Signal<'_>| presenter.signal(signal, sink);
        if !turn.is_done() && framer.push(chunk, |data| turn.event(data, now, &mut emit)).is_err() {
            turn.overflow(&mut emit);
        }
        self.sink.pending()
    }

    /// The upstream stream ended.
    pub fn finish(&mut self, now: u64) -> Outcome<'_> {
        self.sink.clear();
        let Self { framer, turn, presenter, sink } = self;
        let mut emit = |signal: Signal<'_>| presenter.signal(signal, sink);
        framer.finish(|data| turn.event(data, now, &mut emit));
        turn.end_of_stream(&mut emit);
        self.sink.outcome()
    }

    pub fn malformed_events(&self) -> u32 {
        self.turn.malformed_events
    }
}

/// An error to report when no translator can run (for example the upstream answered an
/// error after a streaming client already got its headers).
pub fn stream_error_bytes(error: &ApiError) -> Vec<u8> {
    let mut out = Vec::new();
    write_error_frame(&mut out, error);
    out
}

#[cfg(test)]
#[path = "translate_tests.rs"]
mod tests;
