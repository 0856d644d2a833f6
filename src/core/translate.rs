//! The response side of one request: upstream SSE bytes in, client bytes out. The framer,
//! the turn interpreter and a presenter are wired here once for every output format.

use crate::core::chat_aggregate::ChatAggregator;
use crate::core::chat_present::{ChatPresenter, ChatSink};
use crate::core::chat_stream::ChatStreamWriter;
use crate::core::error::ApiError;
use crate::core::reasoning::OutputMode;
use crate::core::sse::SseFramer;
use crate::core::turn::{Signal, Turn};

/// Carry-over cap for one incomplete upstream event.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// A sink that can hand its output to the host.
pub trait Output: ChatSink {
    /// What the sink produces once the upstream stream has ended.
    type Outcome<'a>
    where
        Self: 'a;
    /// Forgets what was already forwarded.
    fn clear(&mut self);
    /// Bytes to forward after a chunk (streaming); empty when aggregating.
    fn pending(&self) -> &[u8];
    fn outcome(&self) -> Self::Outcome<'_>;
}

impl Output for ChatStreamWriter {
    /// The last bytes of the stream.
    type Outcome<'a> = &'a [u8];

    fn clear(&mut self) {
        self.take_output().clear();
    }

    fn pending(&self) -> &[u8] {
        self.output()
    }

    fn outcome(&self) -> &[u8] {
        self.output()
    }
}

impl Output for ChatAggregator {
    /// The whole response body, or the error to answer with instead.
    type Outcome<'a> = Result<&'a [u8], &'a ApiError>;

    fn clear(&mut self) {}

    fn pending(&self) -> &[u8] {
        &[]
    }

    fn outcome(&self) -> Result<&[u8], &ApiError> {
        match self.result() {
            Some(Ok(body)) => Ok(body),
            Some(Err(error)) => Err(error),
            None => Ok(b""),
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
        let Self {
            framer,
            turn,
            presenter,
            sink,
        } = self;
        let mut emit = |signal: Signal<'_>| presenter.signal(signal, sink);
        if !turn.is_done()
            && framer
                .push(chunk, |data| turn.event(data, now, &mut emit))
                .is_err()
        {
            turn.overflow(&mut emit);
        }
        self.sink.pending()
    }

    /// The upstream stream ended.
    pub fn finish(&mut self, now: u64) -> S::Outcome<'_> {
        self.sink.clear();
        let Self {
            framer,
            turn,
            presenter,
            sink,
        } = self;
        let mut emit = |signal: Signal<'_>| presenter.signal(signal, sink);
        framer.finish(|data| turn.event(data, now, &mut emit));
        turn.end_of_stream(&mut emit);
        self.sink.outcome()
    }

    pub fn malformed_events(&self) -> u32 {
        self.turn.malformed_events
    }
}

#[cfg(test)]
#[path = "translate_tests.rs"]
mod tests;
