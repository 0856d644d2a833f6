//! The live model catalogue: one VM at a time fetches `GET <codex base>/models?client_version=…`
//! with the account's token, and every VM takes the result from shared data
//! ([`crate::core::catalogue::record`]).
//!
//! ```text
//! tick ── adopt a newer stored catalogue (parse once per change)
//!      ── due? (none fetched yet, CATALOGUE_REFRESH_SECONDS since the last answer, or a turn
//!         announced an x-models-etag the cache does not have) and a usable token
//!      ── lease taken (compare-and-swap on the state) ──► GET …/models, If-None-Match: <etag>
//!             200 ──► store compact + raw, version + 1, adopt here
//!             304 ──► keep, note the time
//!             401 ──► the token's generation is marked stale (the refresher runs), retry later
//!             else ─► keep what serves (the last catalogue or the built-in one), retry with backoff
//! ```
//!
//! The lease outlives the call's timeout, so a holder that died frees it without anyone's help.
//! Outside the ChatGPT login (API-key upstreams) nothing is fetched and the built-in catalogue
//! serves.

use std::rc::Rc;

use log::{debug, info, warn};

use crate::core::auth::auth_json::ChatgptTokens;
use crate::core::auth::token::{Availability, Lease};
use crate::core::catalogue::Catalogue;
use crate::core::catalogue::record::{self, State};
use crate::core::config::{Config, FilterRole};
use crate::core::metrics::{CatalogueOutcome, Metric};
use crate::core::port::{Dispatch, Port};
use crate::core::routing::decision::codex_identity_headers;
use crate::core::vm::VmState;

/// How long the catalogue call may take.
pub const CALL_TIMEOUT_MS: u64 = 10_000;
/// The host answers every call by its timeout; one still unanswered this much later never
/// will be.
const ANSWER_GRACE_SECONDS: u64 = 5;
/// The fetch lease: longer than a call can be out, so it never runs out under a live holder.
pub const LEASE_SECONDS: u64 = 30;
/// Backoff after failed calls: this, doubling, up to [`MAX_RETRY_SECONDS`].
pub const FIRST_RETRY_SECONDS: u64 = 5;
/// The longest wait between failed calls: the refresh interval's default.
pub const MAX_RETRY_SECONDS: u64 = 300;
/// A fetch for an announced ETag waits at least this long after the previous call, so a
/// backend that announces a new value on every turn costs one fetch per few seconds at most.
pub const ETAG_SPACING_SECONDS: u64 = 5;

/// The call that is out.
struct Pending {
    token: u32,
    give_up_at: u64,
    /// The token generation it carries, for a 401.
    generation: u64,
    /// The announced ETag when it left.
    wanted: Option<String>,
}

/// The catalogue fetch of one VM, driven by [`CatalogueRefresh::tick`] and the answer to its
/// call.
pub struct CatalogueRefresh {
    me: u64,
    interval: u64,
    call: Option<Pending>,
}

impl CatalogueRefresh {
    /// The fetch for this configuration: only with the ChatGPT login, in the main filter.
    pub fn for_config(config: &Config, me: u64) -> Option<Self> {
        (config.auth.is_chatgpt() && config.role == FilterRole::Main).then_some(Self {
            me,
            interval: config.catalogue_refresh_seconds,
            call: None,
        })
    }

    /// Takes a newer stored catalogue, then starts a fetch when one is due and this VM wins
    /// the lease.
    pub fn tick(&mut self, vm: &VmState, port: &dyn Port) {
        let now = port.now();
        let (state, _) = record::read_state(port);
        adopt(vm, port, &state);
        if self.call.take_if(|p| now >= p.give_up_at).is_some() {
            return self.failed(vm, port, "no answer from the host");
        }
        if self.call.is_some() {
            return;
        }
        let wanted = record::wanted(port);
        if !self.due(&state, wanted.as_deref(), now) {
            return;
        }
        let Some(tokens_record) = vm.tokens.read(port) else {
            return;
        };
        let Availability::Usable(tokens) = tokens_record.availability(now) else {
            return;
        };
        let me = self.me;
        let taken = record::update_state(port, |current| {
            (self.due(current, wanted.as_deref(), now) && Lease::may_take(current.lease.as_ref(), me, now))
                .then(|| State {
                    lease: Some(Lease {
                        holder: me,
                        until: now.saturating_add(LEASE_SECONDS),
                    }),
                    attempted_at: now,
                    ..current.clone()
                })
        });
        let Some(taken) = taken else {
            return;
        };
        let call = request(&vm.config, tokens, taken.etag.as_deref());
        let pending = Pending {
            token: 0,
            give_up_at: now
                .saturating_add(CALL_TIMEOUT_MS / 1000)
                .saturating_add(ANSWER_GRACE_SECONDS),
            generation: tokens_record.generation,
            wanted,
        };
        match port.dispatch(&call) {
            Some(token) => self.call = Some(Pending { token, ..pending }),
            None => self.failed(vm, port, "the catalogue cluster refused the call"),
        }
    }

    /// A fetch should start now (the lease aside).
    fn due(&self, state: &State, wanted: Option<&str>, now: u64) -> bool {
        if now < state.retry_at {
            return false;
        }
        let Some(fetched_at) = state.fetched_at else {
            return true;
        };
        if now >= fetched_at.saturating_add(self.interval) {
            return true;
        }
        wanted.is_some()
            && !record::same_etag(wanted, state.etag.as_deref())
            && !record::same_etag(wanted, state.served_wanted.as_deref())
            && now >= state.attempted_at.saturating_add(ETAG_SPACING_SECONDS)
    }

    /// The answer to call `token` (`status` is `None` when there was none; `header` reads
    /// the answer's headers); false when the call is not this machine's.
    pub fn answered(
        &mut self,
        vm: &VmState,
        port: &dyn Port,
        token: u32,
        status: Option<u16>,
        header: &dyn Fn(&str) -> Option<Vec<u8>>,
        body: &[u8],
    ) -> bool {
        let Some(pending) = self.call.take_if(|p| p.token == token) else {
            return false;
        };
        match status {
            Some(200) => self.fetched(vm, port, &pending, header, body),
            Some(304) => self.not_modified(vm, port, &pending),
            Some(401) => {
                vm.token_rejected(port, pending.generation);
                self.failed(vm, port, "the backend rejected the access token (401)");
            }
            Some(other) => self.failed(vm, port, &format!("the backend answered HTTP {other}")),
            None => self.failed(vm, port, "no answer (timeout, reset or connection failure)"),
        }
        true
    }

    fn holds(&self, state: &State) -> bool {
        state.lease.as_ref().is_some_and(|l| l.holder == self.me)
    }

    fn fetched(
        &mut self,
        vm: &VmState,
        port: &dyn Port,
        pending: &Pending,
        header: &dyn Fn(&str) -> Option<Vec<u8>>,
        body: &[u8],
    ) {
        let parsed = Catalogue::parse(body).and_then(|catalogue| Ok((catalogue, record::slim(body)?)));
        let (catalogue, compact) = match parsed {
            Ok(parsed) => parsed,
            Err(problem) => return self.failed(vm, port, &format!("the answer is {problem}")),
        };
        let etag = header("etag")
            .and_then(|raw| String::from_utf8(raw).ok())
            .map(|e| e.trim().to_string())
            .filter(|e| record::etag_key(e).is_some());
        let (state, _) = record::read_state(port);
        if !self.holds(&state) {
            return superseded();
        }
        let version = state.version.saturating_add(1);
        if !record::write_catalogue(port, version, &compact, body) {
            return self.failed(vm, port, "shared data refused the catalogue");
        }
        let now = port.now();
        let written = record::update_state(port, |current| {
            self.holds(current).then(|| State {
                version,
                etag: etag.clone(),
                fetched_at: Some(now),
                failures: 0,
                retry_at: 0,
                served_wanted: pending.wanted.clone().or_else(|| current.served_wanted.clone()),
                lease: None,
                ..current.clone()
            })
        });
        let Some(written) = written else {
            return superseded();
        };
        port.metric(Metric::Catalogue(CatalogueOutcome::Fetched));
        recovered(&state);
        let listed = catalogue.listed().count();
        {
            let mut seen = vm.catalogue_seen.borrow_mut();
            seen.version = written.version;
            seen.etag = written.etag.clone();
        }
        *vm.catalogue.borrow_mut() = Rc::new(catalogue);
        info!(
            "codex filter: fetched the model catalogue (version {version}, {listed} models listed, {} bytes, etag {})",
            body.len(),
            written.etag.as_deref().unwrap_or("none")
        );
    }

    fn not_modified(&mut self, vm: &VmState, port: &dyn Port, pending: &Pending) {
        let (state, _) = record::read_state(port);
        if state.etag.is_none() {
            return self.failed(vm, port, "the backend answered 304 to a call without an ETag");
        }
        let now = port.now();
        let written = record::update_state(port, |current| {
            self.holds(current).then(|| State {
                fetched_at: Some(now),
                failures: 0,
                retry_at: 0,
                served_wanted: pending.wanted.clone().or_else(|| current.served_wanted.clone()),
                lease: None,
                ..current.clone()
            })
        });
        if written.is_none() {
            return superseded();
        }
        port.metric(Metric::Catalogue(CatalogueOutcome::NotModified));
        recovered(&state);
        debug!("codex filter: the model catalogue is unchanged");
    }

    fn failed(&mut self, vm: &VmState, port: &dyn Port, problem: &str) {
        let now = port.now();
        let written = record::update_state(port, |current| {
            self.holds(current).then(|| {
                let failures = current.failures.saturating_add(1);
                State {
                    failures,
                    retry_at: now.saturating_add(backoff(failures)),
                    lease: None,
                    ..current.clone()
                }
            })
        });
        port.metric(Metric::Catalogue(CatalogueOutcome::Failed));
        let Some(written) = written else {
            return superseded();
        };
        let serving = if vm.catalogue_seen.borrow().version == 0 {
            "built-in"
        } else {
            "last fetched"
        };
        let retry = backoff(written.failures);
        if written.failures == 1 {
            warn!(
                "codex filter: could not fetch the model catalogue: {problem}; the {serving} catalogue serves, retrying in {retry}s"
            );
        } else {
            debug!(
                "codex filter: model catalogue fetch failed again ({} in a row): {problem}; retrying in {retry}s",
                written.failures
            );
        }
    }
}

/// The wait after `failures` failed calls in a row.
pub fn backoff(failures: u32) -> u64 {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_RETRY_SECONDS
        .saturating_mul(1u64 << doublings)
        .min(MAX_RETRY_SECONDS)
}

fn superseded() {
    info!("codex filter: another worker took over the model catalogue fetch; this answer is dropped");
}

fn recovered(before: &State) {
    if before.failures > 0 {
        info!(
            "codex filter: the model catalogue fetch works again after {} failed calls",
            before.failures
        );
    }
}

/// Puts the stored catalogue in use on this VM when the shared state moved past the one it
/// has; the parse happens here, once per change, never on a request.
fn adopt(vm: &VmState, port: &dyn Port, state: &State) {
    let mut seen = vm.catalogue_seen.borrow_mut();
    if state.version == seen.version {
        return;
    }
    // Looked at even when unreadable, so a bad copy is not parsed again on every tick.
    seen.version = state.version;
    match record::read_catalogue(port) {
        Some((version, Ok(catalogue))) => {
            let listed = catalogue.listed().count();
            seen.etag = state.etag.clone();
            *vm.catalogue.borrow_mut() = Rc::new(catalogue);
            info!("codex filter: using model catalogue version {version} ({listed} models listed)");
        }
        Some((_, Err(problem))) => {
            warn!("codex filter: the stored model catalogue is {problem}; keeping the current one");
        }
        None => warn!("codex filter: the stored model catalogue is unreadable; keeping the current one"),
    }
}

/// A turn's response announced the catalogue ETag `announced` (`x-models-etag`): when it
/// is not the one in use, it is recorded (once per value and VM) so the next tick fetches.
pub fn etag_announced(vm: &VmState, port: &dyn Port, announced: &str) {
    if !vm.config.auth.is_chatgpt() {
        return;
    }
    let Some(key) = record::etag_key(announced) else {
        return;
    };
    let mut seen = vm.catalogue_seen.borrow_mut();
    let in_use = seen.etag.as_deref().and_then(record::etag_key);
    if in_use == Some(key) || seen.wanted.as_deref() == Some(key) {
        return;
    }
    seen.wanted = Some(key.to_string());
    record::want(port, key);
}

/// The catalogue call as the official client sends it: the account's credential headers, the
/// client identity, `client_version` in the query.
fn request(cfg: &Config, tokens: &ChatgptTokens, etag: Option<&str>) -> Dispatch {
    let mut headers = vec![
        (":method", "GET".to_string()),
        (":path", models_path(&cfg.upstream.path, &cfg.identity.version)),
        (":authority", cfg.upstream.host.clone()),
    ];
    headers.extend(codex_identity_headers(cfg, &[]));
    headers.push(("accept", "*/*".to_string()));
    if let Some(etag) = etag {
        headers.push(("if-none-match", etag.to_string()));
    }
    Dispatch {
        cluster: cfg.clusters.catalogue.clone(),
        headers,
        credentials: cfg.auth.credential_headers(Some(tokens)),
        body: None,
        timeout_ms: CALL_TIMEOUT_MS,
    }
}

/// `<base>/models?client_version=<version>`, where the base is the Responses path without its
/// last segment (`/backend-api/codex/responses` → `/backend-api/codex`).
pub fn models_path(responses_path: &str, version: &str) -> String {
    let path = responses_path.split(['?', '#']).next().unwrap_or_default();
    let base = path.rsplit_once('/').map_or("", |(base, _)| base);
    let mut query = String::with_capacity(version.len());
    for byte in version.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'_' | b'~') {
            query.push(char::from(byte));
        } else {
            query.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("{base}/models?client_version={query}")
}

#[cfg(test)]
#[path = "refresh_tests.rs"]
mod tests;
