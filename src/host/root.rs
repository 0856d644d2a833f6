//! The root context: configuration (once per VM), the factory of per-request contexts, and
//! the background work — fetching instruction texts, refreshing the ChatGPT token (one VM at
//! a time, under a lease in shared data) and resuming the requests that waited for it.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::rc::Rc;
use std::time::Duration;

use log::{error, info, warn};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use crate::core::auth::auth_json::ChatgptTokens;
use crate::core::auth::etcd;
use crate::core::auth::token::{self, Lease, TokenRecord};
use crate::core::config::upstream_url::UpstreamUrl;
use crate::core::config::{Config, FilterRole, plugin_values};
use crate::core::instructions::Fetch;
use crate::core::metrics::Metric;
use crate::core::port::Port;
use crate::core::translate::request::conversation_key::fingerprint;
use crate::core::vm::VmState;
use crate::host::credentials_http::CredentialsHttp;
use crate::host::http::Http;
use crate::host::metrics::Metrics;
use crate::host::port::HostPort;
use crate::host::shared::Shared;
use crate::host::unix_now;

const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const REFRESH_TIMEOUT: Duration = Duration::from_secs(20);
const IDLE_TICK: Duration = Duration::from_secs(1);
const BUSY_TICK: Duration = Duration::from_millis(100);
const STORE_TIMEOUT: Duration = Duration::from_secs(5);
const STORE_RETRY_SECONDS: u64 = 5;

enum Call {
    Instructions(usize),
    /// The OAuth refresh; with a store, the revision of our lock there.
    Refresh(Option<u64>),
    EtcdRead(Purpose),
    EtcdLock,
    /// Storing a record (the start-up reconciliation, or a refresh's outcome).
    EtcdWrite,
}

#[derive(Clone, Copy)]
enum Purpose {
    Sync,
    Refresh,
}

pub struct Root {
    shared: Option<Rc<Shared>>,
    fetches: Vec<Fetch>,
    calls: Vec<(u32, Call)>,
    /// This VM's identity in the refresh lease.
    me: u64,
    tick: Duration,
    /// Until when the token store is left alone after a failure or a lost race.
    store_retry_at: u64,
}

impl Default for Root {
    fn default() -> Self {
        Self {
            shared: None,
            fetches: Vec::new(),
            calls: Vec::new(),
            me: RandomState::new().hash_one(0u8),
            tick: Duration::ZERO,
            store_retry_at: 0,
        }
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        let Some(at) = self.calls.iter().position(|(t, _)| *t == token) else {
            return;
        };
        let (_, call) = self.calls.swap_remove(at);
        let status = self
            .get_http_call_response_header(":status")
            .and_then(|s| s.parse().ok());
        let body = self.get_http_call_response_body(0, body_size).unwrap_or_default();
        let now = unix_now(self);
        match call {
            Call::Instructions(index) => self.instructions_arrived(index, status, &body, now),
            Call::Refresh(lock) => self.refresh_arrived(status, &body, lock, now),
            store_call => self.etcd_arrived(store_call, status, &body, now),
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let plugin = match self
            .get_plugin_configuration()
            .map(|bytes| plugin_values(&bytes))
            .transpose()
        {
            Ok(values) => values.unwrap_or_default(),
            Err(problem) => {
                error!("codex filter: the plugin configuration {problem}");
                return false;
            }
        };
        let source = |name: &str| plugin.get(name).cloned().or_else(|| std::env::var(name).ok());
        let config = match Config::load(&source) {
            Ok(config) => config,
            Err(e) => {
                error!("codex filter: {e}");
                return false;
            }
        };
        let port = HostPort {
            metrics: Metrics::define(),
        };
        let vm = VmState::new(config);
        let (config, store) = (&vm.config, &vm.tokens);
        if config.auth.is_chatgpt() {
            match config
                .codex_auth
                .as_deref()
                .map(ChatgptTokens::from_auth_json)
                .transpose()
            {
                Ok(Some(tokens)) => {
                    let source = fingerprint(
                        format!("{}\n{:?}", tokens.access_token, tokens.refresh_token).as_bytes(),
                    );
                    store.seed(&port, TokenRecord::new(tokens, source));
                    store.init_lease(&port);
                }
                Ok(None) => {}
                Err(problem) => {
                    error!("codex filter: invalid OPENAI_CODEX_AUTH: the document {problem}");
                    return false;
                }
            }
        }
        if config.role == FilterRole::Main {
            log_start_up(config, store.read(&port).as_ref());
        }
        if config.role == FilterRole::Main {
            let clusters = &config.clusters;
            self.fetches = [
                (&clusters.instructions_base, false, &config.instructions_base_url),
                (&clusters.instructions_codex, true, &config.instructions_codex_url),
            ]
            .into_iter()
            .filter_map(|(cluster, codex, url)| {
                url.clone().map(|url| Fetch::new(cluster.clone(), codex, url))
            })
            .collect();
        }
        let needs_tick = !self.fetches.is_empty() || config.auth.is_chatgpt();
        self.shared = Some(Rc::new(Shared { vm, port }));
        if needs_tick {
            self.set_tick(IDLE_TICK);
        }
        true
    }

    fn on_tick(&mut self) {
        let now = unix_now(self);
        self.fetch_instructions(now);
        self.maybe_refresh(now);
        self.serve_waiters();
        let busy = self
            .shared
            .as_ref()
            .is_some_and(|s| !s.vm.waiters.borrow().is_empty())
            || self
                .calls
                .iter()
                .any(|(_, c)| !matches!(c, Call::Instructions(_)));
        self.set_tick(if busy { BUSY_TICK } else { IDLE_TICK });
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.clone()?;
        Some(match shared.vm.config.role {
            FilterRole::Main => Box::new(Http::new(shared, context_id)),
            FilterRole::Credentials => Box::new(CredentialsHttp::new(shared, context_id)),
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Root {
    fn set_tick(&mut self, period: Duration) {
        if self.tick != period {
            self.tick = period;
            self.set_tick_period(period);
        }
    }

    fn fetch_instructions(&mut self, now: u64) {
        for index in 0..self.fetches.len() {
            if !self.fetches.get_mut(index).is_some_and(|f| f.start_if_due(now)) {
                continue;
            }
            let Some(fetch) = self.fetches.get(index).cloned() else {
                continue;
            };
            let headers = vec![
                (":method", "GET"),
                (":path", fetch.url.path.as_str()),
                (":authority", fetch.url.host.as_str()),
            ];
            match self.dispatch_http_call(&fetch.cluster, headers, None, vec![], FETCH_TIMEOUT) {
                Ok(token) => self.calls.push((token, Call::Instructions(index))),
                Err(status) => {
                    if let Some(f) = self.fetches.get_mut(index) {
                        let _ = f.complete(None, b"", now);
                    }
                    warn!(
                        "codex filter: cannot call cluster {} ({status:?}); is it in the Envoy configuration?",
                        fetch.cluster
                    );
                }
            }
        }
    }

    fn instructions_arrived(&mut self, index: usize, status: Option<u16>, body: &[u8], now: u64) {
        let Some(fetch) = self.fetches.get_mut(index) else {
            return;
        };
        match fetch.complete(status, body, now) {
            Ok(()) => info!(
                "codex filter: instructions loaded from cluster {} ({} bytes)",
                fetch.cluster,
                body.len()
            ),
            Err(problem) => warn!(
                "codex filter: instructions from cluster {}: {problem}; retrying later",
                fetch.cluster
            ),
        }
        if let (Some(shared), Some(text)) = (&self.shared, fetch.text.clone()) {
            let mut texts = shared.vm.instructions.borrow_mut();
            if fetch.codex {
                texts.codex = Some(text);
            } else {
                texts.base = Some(text);
            }
        }
    }

    /// Starts the next step of the token lifecycle when one is due and this VM wins the
    /// lease: reconciling with the external store after start-up, or a refresh.
    fn maybe_refresh(&mut self, now: u64) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let busy = self
            .calls
            .iter()
            .any(|(_, c)| !matches!(c, Call::Instructions(_)));
        if !shared.vm.config.auth.is_chatgpt() || busy || now < self.store_retry_at {
            return;
        }
        let Some(record) = shared.vm.tokens.read(&shared.port) else {
            return;
        };
        shared.port.metric(Metric::TokenAge {
            expires_in: record.tokens.expires_at.map(|e| e.saturating_sub(now)),
            age: record.tokens.last_refresh.map(|r| now.saturating_sub(r)),
        });
        let sync_due = shared.vm.config.etcd.is_some() && !record.store_synced;
        if !sync_due && !record.refresh_due(now) {
            return;
        }
        if !shared.vm.tokens.take_lease(&shared.port, self.me, now) {
            return;
        }
        shared.port.metric(Metric::LeaseTaken);
        match &shared.vm.config.etcd {
            Some((endpoint, key)) => {
                let purpose = if sync_due { Purpose::Sync } else { Purpose::Refresh };
                self.etcd_call(
                    endpoint,
                    etcd::RANGE_PATH,
                    etcd::range_body(key),
                    Call::EtcdRead(purpose),
                    now,
                );
            }
            None => self.start_oauth(&record, None, now),
        }
    }

    fn start_oauth(&mut self, record: &TokenRecord, lock_revision: Option<u64>, now: u64) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let Some(refresh_token) = record.tokens.refresh_token.as_deref() else {
            shared.vm.tokens.release_lease(&shared.port, self.me);
            return;
        };
        let cfg = &shared.vm.config;
        let body = token::refresh_body(&cfg.client_id, refresh_token);
        let user_agent = cfg.identity.user_agent();
        let headers = vec![
            (":method", "POST"),
            (":path", cfg.refresh_url.path.as_str()),
            (":authority", cfg.refresh_url.host.as_str()),
            ("content-type", "application/json"),
            ("accept", "application/json"),
            ("user-agent", user_agent.as_str()),
        ];
        let cluster = cfg.clusters.oauth.as_str();
        match self.dispatch_http_call(cluster, headers, Some(&body), vec![], REFRESH_TIMEOUT) {
            Ok(token) => self.calls.push((token, Call::Refresh(lock_revision))),
            Err(status) => {
                warn!(
                    "codex filter: cannot call cluster {cluster} ({status:?}); is it in the Envoy configuration?"
                );
                self.refresh_arrived(None, b"", lock_revision, now);
            }
        }
    }

    fn refresh_arrived(&mut self, status: Option<u16>, body: &[u8], lock_revision: Option<u64>, now: u64) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let outcome = token::parse_refresh_response(status, body);
        let written = shared.vm.tokens.update(&shared.port, |current| {
            let current = current?;
            Some(match &outcome {
                Ok(grant) => current.refreshed(grant.clone(), now),
                Err(error) => current.failed(error.clone(), now),
            })
        });
        match (&outcome, &written) {
            (Ok(_), Some(record)) => {
                shared.port.metric(Metric::Refresh {
                    ok: true,
                    permanent: false,
                });
                info!(
                    "codex filter: refreshed the ChatGPT access token (generation {}, expires at {})",
                    record.generation,
                    record
                        .tokens
                        .expires_at
                        .map_or_else(|| "an unknown time".to_string(), |e| e.to_string())
                );
            }
            (Err(error), Some(record)) => {
                shared.port.metric(Metric::Refresh {
                    ok: false,
                    permanent: error.permanent,
                });
                let next = record
                    .failure
                    .as_ref()
                    .map_or(0, |f| f.retry_at.saturating_sub(now));
                if error.permanent {
                    error!(
                        "codex filter: token refresh failed permanently: {}; run `codex login` again",
                        error.message
                    );
                } else {
                    warn!(
                        "codex filter: token refresh failed: {}; next attempt in {next}s",
                        error.message
                    );
                }
            }
            (_, None) => warn!("codex filter: could not store the token refresh outcome in shared data"),
        }
        self.serve_waiters();
        // With a store, the outcome (new tokens, or the failure) replaces our lock there.
        match (lock_revision, written, &shared.vm.config.etcd) {
            (Some(revision), Some(record), Some((endpoint, key))) => {
                let stored = etcd::Stored { record, lock: None };
                self.etcd_call(
                    endpoint,
                    etcd::TXN_PATH,
                    etcd::txn_body(key, revision, &stored),
                    Call::EtcdWrite,
                    now,
                );
            }
            _ => shared.vm.tokens.release_lease(&shared.port, self.me),
        }
    }

    fn etcd_call(&mut self, endpoint: &UpstreamUrl, path: &str, body: Vec<u8>, call: Call, now: u64) {
        let headers = vec![
            (":method", "POST"),
            (":path", path),
            (":authority", endpoint.host.as_str()),
            ("content-type", "application/json"),
        ];
        let cluster = self
            .shared
            .as_ref()
            .map_or_else(|| "etcd".to_string(), |s| s.vm.config.clusters.etcd.clone());
        match self.dispatch_http_call(&cluster, headers, Some(&body), vec![], STORE_TIMEOUT) {
            Ok(token) => self.calls.push((token, call)),
            Err(status) => {
                warn!(
                    "codex filter: cannot call cluster {cluster} ({status:?}); is it in the Envoy configuration?"
                );
                self.store_failed("etcd is not configured as a cluster", now);
            }
        }
    }

    /// The store could not be used: try again later; a due refresh waits for it, because
    /// refreshing without the store could spend a refresh token another replica rotated.
    fn store_failed(&mut self, problem: &str, now: u64) {
        warn!("codex filter: token store: {problem}; retrying in {STORE_RETRY_SECONDS}s");
        self.store_retry_at = now + STORE_RETRY_SECONDS;
        if let Some(shared) = &self.shared {
            shared.vm.tokens.release_lease(&shared.port, self.me);
        }
    }

    fn etcd_arrived(&mut self, call: Call, status: Option<u16>, body: &[u8], now: u64) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let Some((endpoint, key)) = shared.vm.config.etcd.clone() else {
            return;
        };
        let Some(ours) = shared.vm.tokens.read(&shared.port) else {
            shared.vm.tokens.release_lease(&shared.port, self.me);
            return;
        };
        let snapshot = match call {
            Call::EtcdRead(_) => etcd::parse_range(status, body),
            _ => match etcd::parse_txn(status, body) {
                Ok(etcd::TxnOutcome::Committed(revision)) => {
                    match call {
                        Call::EtcdLock => return self.start_oauth(&ours, Some(revision), now),
                        Call::EtcdWrite => self.mark_synced(&shared),
                        _ => {}
                    }
                    shared.vm.tokens.release_lease(&shared.port, self.me);
                    return;
                }
                Ok(etcd::TxnOutcome::Conflict(snapshot)) => Ok(*snapshot),
                Err(problem) => Err(problem),
            },
        };
        let snapshot = match snapshot {
            Ok(snapshot) => snapshot,
            Err(problem) => return self.store_failed(&problem, now),
        };
        if let Some(theirs) = snapshot
            .stored
            .as_ref()
            .map(|s| &s.record)
            .filter(|r| etcd::is_newer(r, &ours))
        {
            self.adopt(&shared, theirs.clone(), &ours);
            return shared.vm.tokens.release_lease(&shared.port, self.me);
        }
        match call {
            Call::EtcdRead(Purpose::Sync) if snapshot.stored.is_some() => {
                // The store already holds this login: nothing to write.
                self.mark_synced(&shared);
                shared.vm.tokens.release_lease(&shared.port, self.me);
            }
            Call::EtcdRead(Purpose::Sync) => {
                let stored = etcd::Stored {
                    record: ours,
                    lock: None,
                };
                let body = etcd::txn_body(&key, snapshot.mod_revision, &stored);
                self.etcd_call(&endpoint, etcd::TXN_PATH, body, Call::EtcdWrite, now);
            }
            Call::EtcdRead(Purpose::Refresh) if snapshot.locked_by_other(self.me, now) => {
                info!(
                    "codex filter: another replica is refreshing the ChatGPT token; waiting for its result"
                );
                self.store_retry_at = now + 1;
                shared.vm.tokens.release_lease(&shared.port, self.me);
            }
            Call::EtcdRead(Purpose::Refresh) => {
                let lock = Lease {
                    holder: self.me,
                    until: now + etcd::LOCK_SECONDS,
                };
                let stored = etcd::Stored {
                    record: ours,
                    lock: Some(lock),
                };
                let body = etcd::txn_body(&key, snapshot.mod_revision, &stored);
                self.etcd_call(&endpoint, etcd::TXN_PATH, body, Call::EtcdLock, now);
            }
            // A lock or write lost a race to another replica whose record is not newer
            // (for example its lock): try again on a later tick.
            _ => {
                self.store_retry_at = now + 1;
                shared.vm.tokens.release_lease(&shared.port, self.me);
            }
        }
    }

    /// Takes a newer record (another replica's refresh, or a newer login) from the store.
    fn adopt(&self, shared: &Shared, theirs: TokenRecord, ours: &TokenRecord) {
        let adopted = TokenRecord {
            source: ours.source.clone(),
            store_synced: true,
            ..theirs
        };
        let generation = adopted.generation;
        if shared
            .vm
            .tokens
            .update(&shared.port, |_| Some(adopted.clone()))
            .is_some()
        {
            info!("codex filter: took newer ChatGPT tokens from the token store (generation {generation})");
        }
    }

    fn mark_synced(&self, shared: &Shared) {
        shared.vm.tokens.update(&shared.port, |current| {
            let record = current?;
            (!record.store_synced).then(|| TokenRecord {
                store_synced: true,
                ..record.clone()
            })
        });
    }

    /// Resumes the requests that waited for a token, fails them when no token will come,
    /// or when they waited too long.
    fn serve_waiters(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let record = shared.vm.tokens.read(&shared.port);
        shared
            .vm
            .waiters
            .borrow_mut()
            .serve(&shared.port, &shared.vm.config.auth, record.as_ref());
    }
}

fn log_start_up(config: &Config, record: Option<&TokenRecord>) {
    if config.client_key.is_none() {
        warn!("codex filter: OPENAI_API_KEY is not set; every client is let through without a key");
    }
    if !config.auth.is_chatgpt() {
        info!(
            "codex filter: upstream uses an API key (header {})",
            config.auth.header
        );
        return;
    }
    match record {
        None => warn!(
            "codex filter: no ChatGPT credentials (OPENAI_CODEX_AUTH); chat requests will answer 401 until `codex login` is run"
        ),
        Some(r) => info!(
            "codex filter: ChatGPT credentials loaded (account {}, generation {}, access token expires at {})",
            r.tokens.account_id.as_deref().unwrap_or("unknown"),
            r.generation,
            r.tokens
                .expires_at
                .map_or_else(|| "an unknown time".to_string(), |e| e.to_string())
        ),
    }
}
