//! Optional base instruction texts (`INSTRUCTIONS_BASE_URL`, `INSTRUCTIONS_CODEX_URL`):
//! fetched once through an Envoy cluster, kept, retried with backoff while they fail. Until a
//! text arrives requests use the client's own instructions (or the short default).

use crate::core::config::upstream_url::UpstreamUrl;

/// Texts larger than this are not instructions; they are refused.
pub const MAX_INSTRUCTIONS_BYTES: usize = 256 * 1024;
const FIRST_RETRY_SECONDS: u64 = 5;
const MAX_RETRY_SECONDS: u64 = 600;

/// One text to fetch: where from, and how it is going.
#[derive(Debug, Clone)]
pub struct Fetch {
    pub cluster: String,
    /// The text for `*codex*` models (`INSTRUCTIONS_CODEX_URL`), else the base text.
    pub codex: bool,
    pub url: UpstreamUrl,
    pub text: Option<String>,
    in_flight: bool,
    next_attempt: u64,
    failures: u32,
}

impl Fetch {
    /// A fetch not yet tried: due on the first tick. `cluster` is the Envoy cluster that reaches
    /// `url`'s host.
    pub fn new(cluster: String, codex: bool, url: UpstreamUrl) -> Self {
        Self {
            cluster,
            codex,
            url,
            text: None,
            in_flight: false,
            next_attempt: 0,
            failures: 0,
        }
    }

    /// Whether a request should be sent now (and marks it sent).
    pub fn start_if_due(&mut self, now: u64) -> bool {
        let due = self.text.is_none() && !self.in_flight && now >= self.next_attempt;
        self.in_flight |= due;
        due
    }

    /// Records the answer; `Err` says why it was not usable (for the log).
    pub fn complete(&mut self, status: Option<u16>, body: &[u8], now: u64) -> Result<(), String> {
        self.in_flight = false;
        let outcome = match status {
            Some(200) if body.len() > MAX_INSTRUCTIONS_BYTES => {
                Err(format!("larger than {MAX_INSTRUCTIONS_BYTES} bytes"))
            }
            Some(200) => match std::str::from_utf8(body).map(str::trim) {
                Ok(text) if !text.is_empty() => Ok(text.to_string()),
                Ok(_) => Err("empty".to_string()),
                Err(_) => Err("not UTF-8 text".to_string()),
            },
            Some(other) => Err(format!("HTTP {other}")),
            None => Err("no response (connection failed or reset)".to_string()),
        };
        match outcome {
            Ok(text) => {
                self.text = Some(text);
                Ok(())
            }
            Err(problem) => {
                self.failures = self.failures.saturating_add(1);
                let backoff =
                    FIRST_RETRY_SECONDS.saturating_mul(1 << self.failures.min(10).saturating_sub(1));
                self.next_attempt = now.saturating_add(backoff.min(MAX_RETRY_SECONDS));
                Err(problem)
            }
        }
    }

    /// The text arrived; it is never fetched again.
    pub fn done(&self) -> bool {
        self.text.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetch() -> Fetch {
        Fetch::new(
            "instructions_base".into(),
            false,
            UpstreamUrl::parse("http://127.0.0.1:1/prompt.md").unwrap(),
        )
    }

    #[test]
    fn fetches_once_and_keeps_the_text() {
        let mut f = fetch();
        assert!(f.start_if_due(0));
        assert!(!f.start_if_due(0), "one request at a time");
        assert_eq!(f.complete(Some(200), b"  You are Codex.\n", 0), Ok(()));
        assert_eq!(f.text.as_deref(), Some("You are Codex."));
        assert!(!f.start_if_due(1000) && f.done());
    }

    #[test]
    fn failures_back_off_exponentially_up_to_a_cap() {
        let mut f = fetch();
        let mut waits = Vec::new();
        let mut now = 0;
        for _ in 0..10 {
            assert!(f.start_if_due(now));
            assert!(f.complete(Some(503), b"", now).is_err());
            assert!(!f.start_if_due(now), "retried without waiting");
            waits.push(f.next_attempt - now);
            now = f.next_attempt;
        }
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 600, 600, 600]);
        for (status, body, problem) in [
            (None, &b""[..], "no response"),
            (Some(200), &b"   "[..], "empty"),
            (Some(200), &b"\xff\xfe"[..], "UTF-8"),
            (Some(404), &b"x"[..], "HTTP 404"),
        ] {
            let mut f = fetch();
            f.start_if_due(0);
            assert!(f.complete(status, body, 0).unwrap_err().contains(problem));
        }
        let mut f = fetch();
        f.start_if_due(0);
        assert!(
            f.complete(Some(200), &vec![b'a'; MAX_INSTRUCTIONS_BYTES + 1], 0)
                .is_err()
        );
    }
}
