//! The request body limit, applied while the body arrives. A body over the limit is read to
//! its end and thrown away before the 413 goes out: Envoy closes an HTTP/1.1 connection whose
//! request it answered early, and a client still writing its body (Python's `urllib` writes the
//! whole body before it reads the answer) then gets a connection reset instead of the 413.

use crate::core::error::{ApiError, Code};

/// How much of an oversize body is read and dropped before the 413 goes out anyway (and a
/// client still writing may then see a reset): bounds what one request can make the proxy read.
pub const MAX_DISCARDED_BYTES: usize = 128 * 1024 * 1024;

/// The 413 `request_too_large` for a body over `limit` bytes, by `content-length` or as
/// buffered; also stands in for Envoy's own 413.
pub fn body_too_large(limit: usize) -> ApiError {
    ApiError::of(
        Code::RequestTooLarge,
        format!("The request body is larger than the {limit}-byte limit (MAX_REQUEST_BODY_BYTES)."),
    )
}

/// One request body against `MAX_REQUEST_BODY_BYTES`: kept while within it, dropped once over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyLimit {
    limit: usize,
    discarding: bool,
    discarded: usize,
}

/// What the host does with the body bytes of one callback.
#[derive(Debug, PartialEq)]
pub enum BodyStep {
    /// Keep the bytes and wait for the rest.
    Buffer,
    /// The whole body has arrived, within the limit.
    Complete,
    /// Drop every byte held so far and wait for the rest.
    Discard,
    /// Answer with this error now.
    Reject(ApiError),
}

impl BodyLimit {
    /// A body of unknown length (chunked, or `content-length` within the limit).
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            discarding: false,
            discarded: 0,
        }
    }

    /// A body whose declared `content-length` is over the limit is dropped from its first byte.
    pub fn declared(limit: usize, content_length: Option<usize>) -> Self {
        Self {
            discarding: content_length.is_some_and(|length| length > limit),
            ..Self::new(limit)
        }
    }

    /// The body arrived further; `held` is what the host holds of it now (Envoy reports the
    /// bytes buffered so far, which a `Discard` empties).
    pub fn step(&mut self, held: usize, end_of_stream: bool) -> BodyStep {
        if !self.discarding && held <= self.limit {
            return if end_of_stream {
                BodyStep::Complete
            } else {
                BodyStep::Buffer
            };
        }
        self.discarding = true;
        self.discarded = self.discarded.saturating_add(held);
        if end_of_stream || self.discarded > MAX_DISCARDED_BYTES {
            BodyStep::Reject(body_too_large(self.limit))
        } else {
            BodyStep::Discard
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_413(step: &BodyStep) -> bool {
        matches!(step, BodyStep::Reject(e) if e.status == 413 && e.code_str() == Some("request_too_large"))
    }

    #[test]
    fn a_body_within_the_limit_is_buffered_to_its_end() {
        let mut body = BodyLimit::new(100);
        assert_eq!(body.step(40, false), BodyStep::Buffer);
        assert_eq!(body.step(100, false), BodyStep::Buffer);
        assert_eq!(body.step(100, true), BodyStep::Complete);
    }

    #[test]
    fn an_oversize_body_is_dropped_until_its_end_then_answered() {
        let mut body = BodyLimit::new(100);
        assert_eq!(body.step(60, false), BodyStep::Buffer);
        assert_eq!(body.step(120, false), BodyStep::Discard);
        // Once dropping, a small remainder is still dropped, never buffered again.
        assert_eq!(body.step(10, false), BodyStep::Discard);
        assert!(is_413(&body.step(5, true)));
    }

    #[test]
    fn a_declared_oversize_body_is_dropped_from_the_first_byte() {
        let mut body = BodyLimit::declared(100, Some(101));
        assert_eq!(body.step(1, false), BodyStep::Discard);
        assert!(is_413(&body.step(0, true)));
        let mut body = BodyLimit::declared(100, Some(100));
        assert_eq!(body.step(100, true), BodyStep::Complete);
        assert_eq!(BodyLimit::declared(100, None), BodyLimit::new(100));
    }

    #[test]
    fn dropping_stops_after_the_cap() {
        let mut body = BodyLimit::new(10);
        let chunk = MAX_DISCARDED_BYTES / 4;
        let steps: Vec<bool> = (0..5).map(|_| is_413(&body.step(chunk + 1, false))).collect();
        assert_eq!(steps, [false, false, false, true, true]);
    }
}
