//! How a turn's signals appear to a Chat Completions client under each reasoning output
//! mode. The same pieces feed the SSE writer and the non-streaming aggregator.

use crate::core::error::ApiError;
use crate::core::reasoning::OutputMode;
use crate::core::translate::response::events::{FinishReason, Signal};
use crate::core::translate::response::usage::Usage;

/// One delta field of a `chat.completion.chunk`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    Role,
    Content(&'a str),
    ReasoningContent(&'a str),
    /// The `o3` shape: `reasoning: {content: [{type: "text", text}]}`.
    Reasoning(&'a str),
    ToolStart {
        index: usize,
        id: &'a str,
        name: &'a str,
    },
    ToolArgs {
        index: usize,
        delta: &'a str,
    },
}

/// A client output format (stream writer or aggregator) fed by [`ChatPresenter`]; exactly
/// one of `finish` or `fail` ends each turn.
pub trait ChatSink {
    /// The upstream response id and creation time (Unix seconds), for the answer's own id.
    fn meta(&mut self, id: &str, created: Option<u64>);
    /// One delta; `Role` always comes first, once.
    fn piece(&mut self, piece: Piece<'_>);
    /// The turn completed; `usage` is the upstream's, when it reported one.
    fn finish(&mut self, reason: FinishReason, usage: Option<Usage>);
    /// The turn failed, possibly after pieces were already written.
    fn fail(&mut self, error: ApiError);
}

/// Maps a turn's signals to pieces under one reasoning output mode: hides, renames or tags
/// reasoning, and sends the role first.
pub struct ChatPresenter {
    mode: OutputMode,
    meta_sent: bool,
    role_sent: bool,
    think_open: bool,
}

impl ChatPresenter {
    /// A presenter for one turn in `mode`.
    pub fn new(mode: OutputMode) -> Self {
        Self {
            mode,
            meta_sent: false,
            role_sent: false,
            think_open: false,
        }
    }

    /// Passes one signal on to `sink` as the mode shows it (closing an open `<think>` before
    /// text, tools or the end).
    pub fn signal(&mut self, signal: Signal<'_>, sink: &mut impl ChatSink) {
        match signal {
            // One answer has one id and time: a repeated or late `response.created` must not
            // rename the chunks a client already has.
            Signal::Meta { id, created } => {
                if !self.meta_sent && !self.role_sent {
                    self.meta_sent = true;
                    sink.meta(id, created);
                }
            }
            Signal::Text(text) => {
                self.close_think(sink);
                self.emit(Piece::Content(text), sink);
            }
            Signal::Reasoning(text) => match self.mode {
                OutputMode::Hidden => self.role(sink),
                OutputMode::OpenAi | OutputMode::R1 => self.emit(Piece::ReasoningContent(text), sink),
                OutputMode::O3 => self.emit(Piece::Reasoning(text), sink),
                OutputMode::Tagged => {
                    if !self.think_open {
                        self.emit(Piece::Content("<think>"), sink);
                        self.think_open = true;
                    }
                    self.emit(Piece::Content(text), sink);
                }
            },
            Signal::ReasoningBreak => match self.mode {
                OutputMode::OpenAi => self.emit(Piece::ReasoningContent("\n"), sink),
                OutputMode::O3 => self.emit(Piece::Reasoning("\n"), sink),
                OutputMode::Tagged if self.think_open => self.emit(Piece::Content("\n"), sink),
                _ => {}
            },
            Signal::ToolCallStart { index, call_id, name } => {
                self.close_think(sink);
                self.emit(
                    Piece::ToolStart {
                        index,
                        id: call_id,
                        name,
                    },
                    sink,
                );
            }
            Signal::ToolCallArgs { index, delta } => self.emit(Piece::ToolArgs { index, delta }, sink),
            Signal::Finish { reason, usage } => {
                self.close_think(sink);
                self.role(sink);
                sink.finish(reason, usage);
            }
            Signal::Fail(error) => {
                self.close_think(sink);
                sink.fail(error);
            }
        }
    }

    fn role(&mut self, sink: &mut impl ChatSink) {
        if !self.role_sent {
            self.role_sent = true;
            sink.piece(Piece::Role);
        }
    }

    fn emit(&mut self, piece: Piece<'_>, sink: &mut impl ChatSink) {
        self.role(sink);
        sink.piece(piece);
    }

    fn close_think(&mut self, sink: &mut impl ChatSink) {
        if std::mem::take(&mut self.think_open) {
            sink.piece(Piece::Content("</think>"));
        }
    }
}
