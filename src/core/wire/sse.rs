//! Incremental Server-Sent Events framing for the upstream Responses stream.
//!
//! Envoy hands the filter the response body in arbitrary chunks, so an event, a line, a CRLF
//! pair or a multi-byte UTF-8 character can be cut anywhere. [`SseFramer`] turns that chunk
//! sequence back into the `data` payloads of complete events, following the WHATWG
//! event-stream grammar on raw bytes. It never decodes UTF-8: a character split across chunks
//! is reassembled by plain concatenation before its event is handed out.
//!
//! The framer runs on every response chunk, which shapes its design:
//!
//! * Between chunks it carries only what the unfinished event still needs: the unterminated
//!   line and the data collected so far. Comment, `event`, `id` and `retry` lines are dropped
//!   as soon as they end, so keep-alive comments never accumulate.
//! * A chunk is parsed in place; each byte is searched for a line end exactly once, and only
//!   the unterminated tail is copied. A single-line payload (the usual Responses event) is
//!   handed out as a sub-slice of the chunk; multi-line payloads are joined in a reusable
//!   scratch buffer.
//! * The carried bytes are capped so a peer that never ends an event cannot grow the
//!   filter's memory without bound; exceeding the cap poisons the framer.

use std::fmt;
use std::ops::Range;

/// UTF-8 byte order mark, which the spec strips once at the start of the stream.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Error when an unterminated event grows beyond the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameOverflow;

impl fmt::Display for FrameOverflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unterminated SSE event exceeds the carry cap")
    }
}

impl std::error::Error for FrameOverflow {}

/// Incremental SSE parser that yields the `data` payload of each complete event.
pub struct SseFramer {
    cap: usize,
    /// Unterminated line left over from the previous chunk.
    line: Vec<u8>,
    /// Data of the event being built, owned because it outlives a chunk or spans lines.
    event: EventData,
    /// The previous line ended with CR, so an LF arriving next is its other half, not a
    /// blank line. Kept across chunks because CRLF can be split between them.
    skip_lf: bool,
    /// `Some(n)` while still at the stream start with `n` BOM bytes already matched; the
    /// BOM itself can be split across chunks.
    bom_matched: Option<usize>,
    /// Set on overflow: the stream has lost bytes, so nothing after it can be trusted.
    poisoned: bool,
}

/// Owned data buffer of the current event.
///
/// Lines are joined with `\n` as they arrive instead of being terminated by it, which is the
/// same as the spec's "append LF, strip the last LF at dispatch" without the strip.
#[derive(Default)]
struct EventData {
    buf: Vec<u8>,
    /// Payload start in `buf`; non-zero when a carried line was adopted together with its
    /// `data:` prefix to avoid copying it.
    start: usize,
    /// An event with an empty `data:` line is still dispatched, so emptiness of `buf` cannot
    /// tell whether a data field was seen.
    present: bool,
}

impl EventData {
    fn payload(&self) -> Option<&[u8]> {
        if self.present {
            self.buf.get(self.start..)
        } else {
            None
        }
    }

    fn push_value(&mut self, value: &[u8]) {
        if self.present {
            self.buf.push(b'\n');
        } else {
            self.clear();
            self.present = true;
        }
        self.buf.extend_from_slice(value);
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
        self.present = false;
    }
}

impl SseFramer {
    /// `cap` bounds the carried-over bytes of an incomplete event (the filter uses 1 MiB).
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            line: Vec::new(),
            event: EventData::default(),
            skip_lf: false,
            bom_matched: Some(0),
            poisoned: false,
        }
    }

    /// Feeds one chunk. Calls `on_event(data)` once per complete event that has at least one
    /// `data` field, in order; `data` is the event's data buffer (multiple data lines joined with
    /// b'\n', without the trailing newline). Returns Err(FrameOverflow) when the incomplete tail
    /// would exceed `cap`; after that the framer is poisoned and every later call returns the error.
    pub fn push(&mut self, chunk: &[u8], mut on_event: impl FnMut(&[u8])) -> Result<(), FrameOverflow> {
        if self.poisoned {
            return Err(FrameOverflow);
        }
        let input = self.strip_bom(chunk);
        // The current event's only data value so far, still inside `input`: it is copied out
        // only if a second data line arrives or the chunk ends before the event does.
        let mut pending: Option<Range<usize>> = None;
        let mut pos = 0;

        while let Some(rest) = input.get(pos..).filter(|rest| !rest.is_empty()) {
            if std::mem::take(&mut self.skip_lf) && rest.first() == Some(&b'\n') {
                pos += 1;
                continue;
            }
            let Some(len) = find_line_end(rest) else {
                break;
            };
            let start = pos;
            let end = pos + len;
            self.skip_lf = input.get(end) == Some(&b'\r');
            pos = end + 1;

            if !self.line.is_empty() {
                // Only the first line of a chunk can continue a carried one, so `pending` is
                // still empty here.
                self.line
                    .extend_from_slice(input.get(start..end).unwrap_or_default());
                self.take_carried_line();
                continue;
            }
            let line = input.get(start..end).unwrap_or_default();
            if line.is_empty() {
                match pending.take() {
                    Some(range) => on_event(input.get(range).unwrap_or_default()),
                    None => {
                        if let Some(data) = self.event.payload() {
                            on_event(data);
                        }
                    }
                }
                self.event.clear();
            } else if let Some(offset) = data_value_offset(line) {
                let value = start + offset..end;
                if let Some(first) = pending.take() {
                    self.event.push_value(input.get(first).unwrap_or_default());
                }
                if self.event.present {
                    self.event.push_value(input.get(value).unwrap_or_default());
                } else {
                    pending = Some(value);
                }
            }
        }

        let tail = input.get(pos..).unwrap_or_default();
        let pending_len = pending.as_ref().map_or(0, |range| range.len());
        // Checked before copying so an oversized chunk is rejected without being buffered.
        if self.carried() + tail.len() + pending_len > self.cap {
            self.poison();
            return Err(FrameOverflow);
        }
        self.line.extend_from_slice(tail);
        if let Some(range) = pending {
            self.event.push_value(input.get(range).unwrap_or_default());
        }
        Ok(())
    }

    /// End of stream: dispatches a final event that was not terminated by a blank line
    /// (if it has data), then resets. Never fails.
    ///
    /// An unterminated last line counts as complete, so a stream that stops right after
    /// `data: ...` still yields that data. The poison flag survives the reset: a framer that
    /// overflowed has dropped bytes and must be replaced rather than reused.
    pub fn finish(&mut self, mut on_event: impl FnMut(&[u8])) {
        if !self.poisoned {
            if !self.line.is_empty() {
                self.take_carried_line();
            }
            if let Some(data) = self.event.payload() {
                on_event(data);
            }
        }
        self.line.clear();
        self.event.clear();
        self.skip_lf = false;
        self.bom_matched = Some(0);
    }

    /// Bytes currently carried (for metrics/tests).
    pub fn carried(&self) -> usize {
        self.line.len() + self.event.buf.len()
    }

    /// Returns the part of `chunk` after any BOM at the stream start.
    fn strip_bom<'a>(&mut self, chunk: &'a [u8]) -> &'a [u8] {
        let Some(matched) = self.bom_matched else {
            return chunk;
        };
        let wanted = BOM.get(matched..).unwrap_or_default();
        let n = wanted.len().min(chunk.len());
        if chunk.get(..n) == wanted.get(..n) {
            if n == wanted.len() {
                self.bom_matched = None;
                return chunk.get(n..).unwrap_or_default();
            }
            // The whole chunk is a BOM prefix; wait for more before deciding.
            self.bom_matched = Some(matched + n);
            return &[];
        }
        // Not a BOM after all: the bytes held back from earlier chunks start the first line.
        self.line
            .extend_from_slice(BOM.get(..matched).unwrap_or_default());
        self.bom_matched = None;
        chunk
    }

    /// Processes the now complete line in `self.line`, which is never blank.
    fn take_carried_line(&mut self) {
        match data_value_offset(&self.line) {
            Some(offset) if self.event.present => {
                self.event.push_value(self.line.get(offset..).unwrap_or_default())
            }
            Some(offset) => {
                // The line may be a large payload that arrived in many chunks; adopting the
                // buffer avoids copying it a second time.
                std::mem::swap(&mut self.line, &mut self.event.buf);
                self.event.start = offset;
                self.event.present = true;
            }
            None => {}
        }
        self.line.clear();
    }

    fn poison(&mut self) {
        self.poisoned = true;
        // The framer is dead, so give its memory back instead of keeping it for reuse.
        self.line = Vec::new();
        self.event = EventData::default();
    }
}

/// Offset of the value in `line` if it is a `data` field, after the optional single space.
fn data_value_offset(line: &[u8]) -> Option<usize> {
    match line.strip_prefix(b"data")? {
        [] => Some(4),
        [b':', b' ', ..] => Some(6),
        [b':', ..] => Some(5),
        _ => None,
    }
}

/// Position of the first CR or LF in `hay`.
///
/// Scans eight bytes per step (SWAR) since std exposes no stable two-byte memchr and
/// Responses events are mostly long single JSON lines.
fn find_line_end(hay: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const LF: u64 = LO * b'\n' as u64;
    const CR: u64 = LO * b'\r' as u64;
    // Flags zero bytes. Borrows only propagate upwards from a zero byte, so the lowest flag
    // is exact, which is all the little-endian `trailing_zeros` below looks at.
    fn zero_bytes(x: u64) -> u64 {
        x.wrapping_sub(LO) & !x & HI
    }

    let mut words = hay.chunks_exact(8);
    let mut base = 0;
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().unwrap_or_default());
        let hits = zero_bytes(word ^ LF) | zero_bytes(word ^ CR);
        if hits != 0 {
            return Some(base + (hits.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&b| b == b'\n' || b == b'\r')
        .map(|i| base + i)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    const CAP: usize = 1 << 20;

    /// Feeds `chunks` then finishes, returning the dispatched payloads.
    fn collect(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut framer = SseFramer::new(CAP);
        let mut out = Vec::new();
        for chunk in chunks {
            framer.push(chunk, |d| out.push(d.to_vec())).unwrap();
            assert!(framer.carried() <= CAP);
        }
        framer.finish(|d| out.push(d.to_vec()));
        assert_eq!(framer.carried(), 0);
        out
    }

    fn strings(events: Vec<Vec<u8>>) -> Vec<String> {
        events
            .into_iter()
            .map(|e| String::from_utf8(e).unwrap())
            .collect()
    }

    fn expected(events: &[&str]) -> Vec<String> {
        events.iter().map(|e| (*e).to_owned()).collect()
    }

    const CODEX_STREAM: &str = concat!(
        "event: response.created\n",
        "data: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"status\":\"in_progress\"}}\n\n",
        "event: response.in_progress\n",
        "data: {\"type\":\"response.in_progress\",\"response\":{\"id\":\"resp_1\"}}\n\n",
        ": keep-alive\n\n",
        "event: response.output_item.added\n",
        "data: {\"type\":\"response.output_item.added\",\"output_index\":0,\"item\":{\"type\":\"message\"}}\n\n",
        "event: response.content_part.added\n",
        "data: {\"type\":\"response.content_part.added\",\"part\":{\"type\":\"output_text\",\"text\":\"\"}}\n\n",
        "event: response.output_text.delta\n",
        "data: {\"type\":\"response.output_text.delta\",\"delta\":\"héllo 🌍 世界\"}\n\n",
        "event: response.output_text.delta\n",
        "data: {\"type\":\"response.output_text.delta\",\"delta\":\" — ça va? 日本語 👍🏽\"}\n\n",
        "event: response.output_text.done\n",
        "data: {\"type\":\"response.output_text.done\",\"text\":\"héllo 🌍 世界 — ça va? 日本語 👍🏽\"}\n\n",
        "event: response.output_item.done\n",
        "data: {\"type\":\"response.output_item.done\",\"output_index\":0}\n\n",
        "event: response.completed\n",
        "data: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"status\":\"completed\",\"usage\":{\"input_tokens\":3,\"output_tokens\":9}}}\n\n",
    );

    const CODEX_EVENTS: &[&str] = &[
        "{\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"status\":\"in_progress\"}}",
        "{\"type\":\"response.in_progress\",\"response\":{\"id\":\"resp_1\"}}",
        "{\"type\":\"response.output_item.added\",\"output_index\":0,\"item\":{\"type\":\"message\"}}",
        "{\"type\":\"response.content_part.added\",\"part\":{\"type\":\"output_text\",\"text\":\"\"}}",
        "{\"type\":\"response.output_text.delta\",\"delta\":\"héllo 🌍 世界\"}",
        "{\"type\":\"response.output_text.delta\",\"delta\":\" — ça va? 日本語 👍🏽\"}",
        "{\"type\":\"response.output_text.done\",\"text\":\"héllo 🌍 世界 — ça va? 日本語 👍🏽\"}",
        "{\"type\":\"response.output_item.done\",\"output_index\":0}",
        "{\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"status\":\"completed\",\"usage\":{\"input_tokens\":3,\"output_tokens\":9}}}",
    ];

    /// (name, stream, expected payloads) for the split-invariance tests.
    const SPLIT_CASES: &[(&str, &[u8], &[&str])] = &[
        ("lf", b"data: a\n\ndata: b\n\n", &["a", "b"]),
        ("crlf", b"data: a\r\n\r\ndata: b\r\n\r\n", &["a", "b"]),
        ("lone cr", b"data: a\r\rdata: b\r\r", &["a", "b"]),
        (
            "mixed endings",
            b"data: a\r\n\ndata: b\r\rdata: c\n\r\ndata: d\r\n\r",
            &["a", "b", "c", "d"],
        ),
        (
            "comments and fields",
            b": hello\nevent: x\nid: 1\nretry: 10\nfoo: bar\ndata: a\n\n:c\r\n\r\nevent: y\n\n",
            &["a"],
        ),
        ("multi-line", b"data: a\ndata:\ndata: c\r\n\r\n", &["a\n\nc"]),
        (
            "multi-line cr",
            b"data: a\rdata: b\r\rdata: c\r\r",
            &["a\nb", "c"],
        ),
        ("no space", b"data:x\ndata:  y\n\n", &["x\n y"]),
        ("colon only value", b"data::\n\ndata\n\n", &[":", ""]),
        ("unterminated final", b"data: a\n\ndata: b", &["a", "b"]),
        ("final without blank", b"data: a\n\ndata: b\r\n", &["a", "b"]),
        ("final with cr", b"data: a\r\rdata: b\r", &["a", "b"]),
        ("bom", b"\xEF\xBB\xBFdata: a\r\n\r\n", &["a"]),
        (
            "bom only once",
            "\u{FEFF}data: a\n\n\u{FEFF}data: b\n\ndata: c\n\n".as_bytes(),
            &["a", "c"],
        ),
        ("broken bom", b"\xEF\xBBdata: a\n\ndata: b\n\n", &["b"]),
        (
            "utf-8",
            "data: héllo 🌍\ndata: 世界\n\n".as_bytes(),
            &["héllo 🌍\n世界"],
        ),
        ("codex", CODEX_STREAM.as_bytes(), CODEX_EVENTS),
    ];

    fn check_case(name: &str, how: &str, chunks: &[&[u8]], want: &[&str]) {
        assert_eq!(strings(collect(chunks)), expected(want), "{name}: {how}");
    }

    #[test]
    fn codex_stream_yields_every_payload() {
        let events = strings(collect(&[CODEX_STREAM.as_bytes()]));
        assert_eq!(events, expected(CODEX_EVENTS));
        assert!(events[4].contains("héllo 🌍 世界"));
    }

    #[test]
    fn unsplit_cases() {
        for (name, stream, want) in SPLIT_CASES {
            check_case(name, "whole", &[stream], want);
        }
    }

    #[test]
    fn every_two_way_split() {
        for (name, stream, want) in SPLIT_CASES {
            for i in 0..=stream.len() {
                let (a, b) = stream.split_at(i);
                check_case(name, &format!("split at {i}"), &[a, b], want);
            }
        }
    }

    #[test]
    fn every_three_way_split() {
        // Cubic in the length: the long Codex stream is left to the other split tests.
        for (name, stream, want) in SPLIT_CASES.iter().filter(|c| c.1.len() <= 200) {
            for i in 0..=stream.len() {
                for j in i..=stream.len() {
                    let chunks = [&stream[..i], &stream[i..j], &stream[j..]];
                    check_case(name, &format!("split at {i},{j}"), &chunks, want);
                }
            }
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        for (name, stream, want) in SPLIT_CASES {
            let chunks: Vec<&[u8]> = stream.chunks(1).collect();
            check_case(name, "bytewise", &chunks, want);
            // Empty pushes must not lose a pending CR or BOM prefix.
            let with_empty: Vec<&[u8]> = chunks.iter().flat_map(|c| [*c, &[][..]]).collect();
            check_case(name, "bytewise with empty chunks", &with_empty, want);
        }
    }

    #[test]
    fn fixed_chunk_sizes_at_every_offset() {
        for (name, stream, want) in SPLIT_CASES {
            for size in 2..=64 {
                for offset in 0..=stream.len() {
                    let (head, rest) = stream.split_at(offset);
                    let mut chunks = vec![head];
                    chunks.extend(rest.chunks(size));
                    check_case(name, &format!("size {size} offset {offset}"), &chunks, want);
                }
            }
        }
    }

    #[test]
    fn edge_cases() {
        /// (name, chunks, expected payloads)
        type Case<'a> = (&'a str, &'a [&'a [u8]], &'a [&'a str]);
        let cases: &[Case] = &[
            (
                "crlf split across chunks",
                &[b"data: a\r", b"\ndata: b\n\n"],
                &["a\nb"],
            ),
            (
                "crlf split by empty chunk",
                &[b"data: a\r", b"", b"\ndata: b\n\n"],
                &["a\nb"],
            ),
            ("cr then blank cr", &[b"data: a\r", b"\r", b"\n"], &["a"]),
            ("cr at end of stream", &[b"data: a\r"], &["a"]),
            ("data without colon", &[b"data\ndata\n\n"], &["\n"]),
            ("lone data line", &[b"data\n\n"], &[""]),
            ("empty data", &[b"data:\n\n"], &[""]),
            ("empty data with space", &[b"data: \n\n"], &[""]),
            (
                "events without data",
                &[b"event: ping\nid: 3\n\nretry: 5\n\ndata: x\n\n"],
                &["x"],
            ),
            (
                "near-miss field names",
                &[b"datax: y\nData: y\n data: y\n\n"],
                &[],
            ),
            ("comment only", &[b": one\n\n: two\r\n\r\n:\r\r"], &[]),
            ("blank lines only", &[b"\n\n\r\n\r\r"], &[]),
            ("empty stream", &[], &[]),
            ("only empty chunks", &[b"", b""], &[]),
            ("partial bom at end", &[b"\xEF\xBB"], &[]),
            ("bom split", &[b"\xEF", b"\xBB", b"\xBFdata: a\n\n"], &["a"]),
            ("final partial line", &[b"data: a\n", b"data: b"], &["a\nb"]),
            (
                "dispatch order",
                &[b"data: 1\n\ndata: 2\n\ndata: 3\n\n"],
                &["1", "2", "3"],
            ),
        ];
        for (name, chunks, want) in cases {
            check_case(name, "edge", chunks, want);
        }
    }

    #[test]
    fn single_line_payload_is_borrowed_from_the_chunk() {
        let chunk = b"event: x\ndata: {\"a\":1}\n\n";
        let mut framer = SseFramer::new(CAP);
        let mut seen = 0;
        framer
            .push(chunk, |d| {
                assert_eq!(d, b"{\"a\":1}");
                assert!(chunk.as_ptr_range().contains(&d.as_ptr()));
                seen += 1;
            })
            .unwrap();
        assert_eq!(seen, 1);
        assert_eq!(framer.event.buf.capacity(), 0, "scratch must stay unused");
        assert_eq!(framer.line.capacity(), 0, "nothing carried");
    }

    #[test]
    fn overflow_poisons() {
        let mut framer = SseFramer::new(16);
        let mut events = Vec::new();
        // Complete events are never carried, so they may exceed the cap.
        framer
            .push(b"data: 0123456789abcdefghij\n\n", |d| events.push(d.to_vec()))
            .unwrap();
        assert_eq!(events, vec![b"0123456789abcdefghij".to_vec()]);
        // Exactly `cap` carried bytes is allowed, one more is not.
        framer.push(b"data: 0123456789", |_| panic!()).unwrap();
        assert_eq!(framer.carried(), 16);
        assert_eq!(framer.push(b"x", |_| panic!()), Err(FrameOverflow));
        assert_eq!(framer.carried(), 0);
        assert_eq!(framer.push(b"\n\n", |_| panic!()), Err(FrameOverflow));
        assert_eq!(framer.push(b"", |_| panic!()), Err(FrameOverflow));
        framer.finish(|_| panic!());
        assert_eq!(framer.push(b"data: ok\n\n", |_| panic!()), Err(FrameOverflow));
    }

    #[test]
    fn overflow_counts_data_carried_across_lines() {
        // A complete data line whose event is still open is carried as well.
        let mut framer = SseFramer::new(10);
        assert_eq!(
            framer.push(b"data: 0123456789a\n", |_| panic!()),
            Err(FrameOverflow)
        );
        let mut framer = SseFramer::new(10);
        framer.push(b"data: 12345\n", |_| panic!()).unwrap();
        assert_eq!(framer.carried(), 5);
        assert_eq!(framer.push(b"data: 67890\n", |_| panic!()), Err(FrameOverflow));
    }

    #[test]
    fn overflow_in_one_big_chunk_is_not_buffered() {
        let mut framer = SseFramer::new(1024);
        let chunk = vec![b'x'; 1 << 16];
        assert_eq!(framer.push(&chunk, |_| panic!()), Err(FrameOverflow));
        assert_eq!(framer.line.capacity(), 0);
    }

    #[test]
    fn large_event_in_small_chunks() {
        let body: String = (0..200_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let payload = format!("{{\"type\":\"response.output_text.delta\",\"delta\":\"{body}\"}}");
        let stream = format!("event: response.output_text.delta\ndata: {payload}\n\ndata: tail\n\n");
        let mut framer = SseFramer::new(CAP);
        let mut events = Vec::new();
        for chunk in stream.as_bytes().chunks(100) {
            framer.push(chunk, |d| events.push(d.to_vec())).unwrap();
            assert!(framer.carried() <= payload.len() + 6);
        }
        assert_eq!(framer.carried(), 0);
        framer.finish(|d| events.push(d.to_vec()));
        assert_eq!(events, vec![payload.into_bytes(), b"tail".to_vec()]);
    }

    #[test]
    fn large_multi_line_event_in_small_chunks() {
        let lines: Vec<String> = (0..5_000).map(|i| format!("line {i} ünïcødé")).collect();
        let stream: String = lines.iter().map(|l| format!("data: {l}\r\n")).collect::<String>() + "\r\n";
        let chunks: Vec<&[u8]> = stream.as_bytes().chunks(7).collect();
        assert_eq!(strings(collect(&chunks)), vec![lines.join("\n")]);
    }

    #[test]
    fn finish_on_empty_framer_emits_nothing() {
        let mut framer = SseFramer::new(CAP);
        framer.finish(|_| panic!());
        framer.finish(|_| panic!());
        assert_eq!(framer.carried(), 0);
    }

    #[test]
    fn reuse_after_finish() {
        let mut framer = SseFramer::new(CAP);
        let mut events = Vec::new();
        framer.push(b"data: a\ndata: b", |_| panic!()).unwrap();
        framer.finish(|d| events.push(d.to_vec()));
        // A new stream: its BOM is stripped again and no state leaks from the last one.
        framer
            .push(b"\xEF\xBB\xBFdata: c\r", |d| events.push(d.to_vec()))
            .unwrap();
        framer.finish(|d| events.push(d.to_vec()));
        framer
            .push(b"\ndata: d\n\n", |d| events.push(d.to_vec()))
            .unwrap();
        framer.finish(|_| panic!());
        assert_eq!(events, vec![b"a\nb".to_vec(), b"c".to_vec(), b"d".to_vec()]);
    }

    #[test]
    fn find_line_end_matches_naive_search() {
        let fillers = [b'a', 0x00, 0x0B, 0x0C, 0x0E, 0x8A, 0x8D, 0xFF, 0x09];
        for len in 0..40 {
            for filler in fillers {
                let mut hay = vec![filler; len];
                assert_eq!(find_line_end(&hay), None);
                for at in 0..len {
                    for (term, other) in [(b'\n', b'\r'), (b'\r', b'\n')] {
                        hay[at] = term;
                        if at + 3 < len {
                            hay[at + 3] = other;
                        }
                        assert_eq!(find_line_end(&hay), Some(at), "len {len} at {at}");
                        hay.fill(filler);
                    }
                }
            }
        }
    }

    /// Whole-stream parser written straight from the spec, as an oracle for random input.
    fn reference(stream: &[u8]) -> Vec<Vec<u8>> {
        let stream = stream.strip_prefix(BOM).unwrap_or(stream);
        let mut lines = Vec::new();
        let mut start = 0;
        let mut i = 0;
        while i < stream.len() {
            match stream[i] {
                b'\n' => {
                    lines.push(&stream[start..i]);
                    start = i + 1;
                }
                b'\r' => {
                    lines.push(&stream[start..i]);
                    if stream.get(i + 1) == Some(&b'\n') {
                        i += 1;
                    }
                    start = i + 1;
                }
                _ => {}
            }
            i += 1;
        }
        if start < stream.len() {
            lines.push(&stream[start..]);
        }
        let mut events = Vec::new();
        let mut data: Option<Vec<u8>> = None;
        for line in lines {
            if line.is_empty() {
                if let Some(mut d) = data.take() {
                    d.pop();
                    events.push(d);
                }
                continue;
            }
            if line[0] == b':' {
                continue;
            }
            let (name, value) = match line.iter().position(|&b| b == b':') {
                Some(p) => {
                    let v = &line[p + 1..];
                    (&line[..p], v.strip_prefix(b" ").unwrap_or(v))
                }
                None => (line, &[][..]),
            };
            if name == b"data" {
                let d = data.get_or_insert_with(Vec::new);
                d.extend_from_slice(value);
                d.push(b'\n');
            }
        }
        if let Some(mut d) = data {
            d.pop();
            events.push(d);
        }
        events
    }

    #[test]
    fn random_streams_match_reference() {
        const PIECES: &[&[u8]] = &[
            b"data",
            b"data:",
            b"data: ",
            b":",
            b" ",
            b"\r",
            b"\n",
            b"\r\n",
            b"x",
            b"event: e",
            b"id",
            b"\xEF\xBB\xBF",
            b"\xEF",
            "é🌍".as_bytes(),
            b"da",
            b"ta",
            b"\n\n",
        ];
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move |bound: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % bound as u64) as usize
        };
        for _ in 0..3_000 {
            let mut stream = Vec::new();
            for _ in 0..next(40) {
                stream.extend_from_slice(PIECES[next(PIECES.len())]);
            }
            let want = reference(&stream);
            let mut chunks = Vec::new();
            let mut rest = &stream[..];
            while !rest.is_empty() {
                let (chunk, tail) = rest.split_at(next(rest.len().min(9) + 1));
                chunks.push(chunk);
                rest = tail;
            }
            assert_eq!(
                collect(&chunks),
                want,
                "stream {:?}",
                String::from_utf8_lossy(&stream)
            );
            assert_eq!(collect(&[&stream]), want);
        }
    }
}
