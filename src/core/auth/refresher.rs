//! The background half of the token lifecycle: one VM at a time (under the lease in shared
//! data) refreshes the ChatGPT token when it is due, and with `TOKEN_STORE=etcd` reconciles
//! with the store first, so that several Envoy replicas never spend one refresh token twice.
//!
//! ```text
//! tick ── record due? ── lease taken? ──► no store: refresh call ──► outcome ──► release
//!                                     └─► store: read ─┬─ store newer ──► adopt, release
//!                                                      ├─ locked by another ──► look again in 1 s
//!                                                      ├─ sync after start-up ──► write (if empty)
//!                                                      └─ refresh ──► lock ──► refresh call
//!                                                                      ──► outcome ──► write
//! etcd unreachable or refused ──► leave the store alone for 5 s; no refresh without it
//! ```
//!
//! One call is out at a time. While it is, the lease is renewed on every tick, so a slow
//! token endpoint does not let another VM send the same refresh token; a VM that died stops
//! renewing and another takes over [`LEASE_SECONDS`] later. A refresh outcome is applied
//! only to the record it was sent for (same refresh token): if a new login or another VM
//! replaced it meanwhile, the outcome is stale and dropped. See [`crate::core::auth::token`]
//! for what a call without an answer means.

use log::{error, info, warn};

use crate::core::auth::etcd::{self, Stored, TxnOutcome};
use crate::core::auth::etcd_call;
use crate::core::auth::shared_record::TokenStore;
use crate::core::auth::token::{
    self, Grant, LEASE_SECONDS, Lease, OUTCOME_UNKNOWN, REFRESH_CALL_TIMEOUT_SECONDS, RefreshError,
    TokenRecord,
};
use crate::core::auth::waiters::WaitList;
use crate::core::config::upstream_url::UpstreamUrl;
use crate::core::metrics::{Metric, Owner};
use crate::core::port::{Dispatch, Port};
use crate::core::vm::VmState;

const STORE_CALL_TIMEOUT_MS: u64 = 5_000;
/// After the store failed (unreachable, refused, unreadable), leave it alone this long.
pub const STORE_RETRY_SECONDS: u64 = 5;
/// After another replica's lock or a lost compare-and-swap, look again this soon.
const STORE_RECHECK_SECONDS: u64 = 1;
/// Renew the lease this often while a call is out, well inside its lifetime.
const LEASE_RENEW_SECONDS: u64 = LEASE_SECONDS / 3;
/// The host answers every call by its timeout; one still unanswered this much later never
/// will be, and must not hold the lease for ever.
const ANSWER_GRACE_SECONDS: u64 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// Reconcile this VM's record with the store after start-up.
    Sync,
    Refresh,
}

/// The call that is out, and what its answer is for.
enum Step {
    StoreRead(Purpose),
    StoreLock,
    /// The OAuth refresh, with the refresh token it carries and, with a store, the revision
    /// of our lock there.
    Refresh {
        lock_revision: Option<u64>,
        sent: String,
    },
    /// Storing a record: the start-up reconciliation, or a refresh's outcome.
    StoreWrite,
}

/// A call that is out: its token, what it is for, and when to stop waiting for it.
struct Pending {
    token: u32,
    step: Step,
    give_up_at: u64,
}

/// The refresher of one VM: at most one outbound call at a time, driven by [`Refresher::tick`]
/// and the host's answers to its calls.
pub struct Refresher {
    /// This VM's identity in the lease and the store's lock.
    me: u64,
    /// The account it refreshes (0: the first, with one login the only one).
    index: usize,
    call: Option<Pending>,
    lease_renewed_at: u64,
    /// Until when the store is left alone after a failure or a lost race.
    store_retry_at: u64,
}

impl Refresher {
    /// `me` is this VM's holder id in the lease and the store's lock (random per VM start, so a
    /// restarted VM never mistakes a dead holder's lease for its own).
    pub fn new(me: u64) -> Self {
        Self::for_account(me, 0)
    }

    /// The refresher of the account at `index` of a pool (each account has its own record,
    /// lease and etcd record).
    pub fn for_account(me: u64, index: usize) -> Self {
        Self {
            me,
            index,
            call: None,
            lease_renewed_at: 0,
            store_retry_at: 0,
        }
    }

    fn tokens<'v>(&self, vm: &'v VmState) -> &'v TokenStore {
        vm.account(self.index).map_or(&vm.tokens, |a| a.tokens)
    }

    /// The etcd endpoint and this account's key there: the configured key for a single
    /// login, `<key>/accounts/<label>` in a pool.
    fn etcd(&self, vm: &VmState) -> Option<(UpstreamUrl, String)> {
        let (endpoint, key) = vm.config.etcd.as_ref()?;
        let key = match (vm.is_pool(), vm.account(self.index)) {
            (true, Some(account)) => format!("{key}/accounts/{}", account.label),
            _ => key.clone(),
        };
        Some((endpoint.clone(), key))
    }

    /// ` (account <label>)` in a pool's log lines, nothing with one login.
    fn whose(&self, vm: &VmState) -> String {
        match (vm.is_pool(), vm.account(self.index)) {
            (true, Some(account)) => format!(" (account {})", account.label),
            _ => String::new(),
        }
    }

    fn count_refresh(&self, vm: &VmState, port: &dyn Port, ok: bool, permanent: bool) {
        port.metric(Metric::Refresh { ok, permanent });
        if let Some(account) = vm.account(self.index) {
            port.metric_for(Owner::Account(account.label), Metric::Refresh { ok, permanent });
        }
    }

    /// A call of the refresher is out.
    pub fn busy(&self) -> bool {
        self.call.is_some()
    }

    /// Starts the next step of the lifecycle when one is due and this VM wins the lease.
    pub fn tick(&mut self, vm: &VmState, port: &dyn Port) {
        let now = port.now();
        if let Some(pending) = self.call.take_if(|p| now >= p.give_up_at) {
            warn!("codex filter: a token refresher call got no answer from the host; giving up on it");
            self.step_answered(vm, port, pending.step, None, &[]);
            return;
        }
        if self.call.is_some() {
            self.keep_lease(vm, port, now);
            return;
        }
        if !vm.config.auth.is_chatgpt() || now < self.store_retry_at {
            return;
        }
        let Some(record) = self.tokens(vm).read(port) else {
            return;
        };
        port.metric(Metric::TokenAge {
            expires_in: record.tokens.expires_at.map(|e| e.saturating_sub(now)),
            age: record.tokens.last_refresh.map(|r| now.saturating_sub(r)),
        });
        let etcd = self.etcd(vm);
        let sync_due = etcd.is_some() && !record.store_synced;
        if !sync_due && !record.refresh_due(now) {
            return;
        }
        if !self.tokens(vm).take_lease(port, self.me, now) {
            return;
        }
        self.lease_renewed_at = now;
        port.metric(Metric::LeaseTaken);
        match etcd {
            Some((endpoint, key)) => {
                let purpose = if sync_due { Purpose::Sync } else { Purpose::Refresh };
                let body = etcd::range_body(&key);
                self.store_call(
                    vm,
                    port,
                    &endpoint,
                    etcd::RANGE_PATH,
                    body,
                    Step::StoreRead(purpose),
                );
            }
            None => self.start_refresh(vm, port, &record, None),
        }
    }

    /// An answer to one of the calls (`status` is `None` when the call got none); false when
    /// `token` is not the refresher's.
    pub fn answered(
        &mut self,
        vm: &VmState,
        port: &dyn Port,
        token: u32,
        status: Option<u16>,
        body: &[u8],
    ) -> bool {
        let Some(pending) = self.call.take_if(|p| p.token == token) else {
            return false;
        };
        self.step_answered(vm, port, pending.step, status, body);
        true
    }

    fn step_answered(&mut self, vm: &VmState, port: &dyn Port, step: Step, status: Option<u16>, body: &[u8]) {
        match step {
            Step::Refresh { lock_revision, sent } => {
                let outcome = token::parse_refresh_response(status, body);
                self.refresh_outcome(vm, port, outcome, lock_revision, &sent);
            }
            store_step => self.store_answered(vm, port, store_step, status, body),
        }
    }

    fn sent(&mut self, port: &dyn Port, token: u32, step: Step, timeout_ms: u64) {
        let give_up_at = port
            .now()
            .saturating_add(timeout_ms / 1000)
            .saturating_add(ANSWER_GRACE_SECONDS);
        self.call = Some(Pending {
            token,
            step,
            give_up_at,
        });
    }

    fn keep_lease(&mut self, vm: &VmState, port: &dyn Port, now: u64) {
        if now.saturating_sub(self.lease_renewed_at) < LEASE_RENEW_SECONDS {
            return;
        }
        self.lease_renewed_at = now;
        if !self.tokens(vm).take_lease(port, self.me, now) {
            warn!(
                "codex filter: another worker took over the token refresh while this one waited for an answer"
            );
        }
    }

    fn release(&self, vm: &VmState, port: &dyn Port) {
        self.tokens(vm).release_lease(port, self.me);
    }

    fn start_refresh(
        &mut self,
        vm: &VmState,
        port: &dyn Port,
        record: &TokenRecord,
        lock_revision: Option<u64>,
    ) {
        let Some(refresh_token) = record.tokens.refresh_token.clone() else {
            return self.release(vm, port);
        };
        let cfg = &vm.config;
        let call = Dispatch {
            cluster: cfg.clusters.oauth.clone(),
            headers: vec![
                (":method", "POST".into()),
                (":path", cfg.refresh_url.path.clone()),
                (":authority", cfg.refresh_url.host.clone()),
                ("content-type", "application/json".into()),
                ("accept", "application/json".into()),
                ("user-agent", cfg.identity.user_agent()),
            ],
            credentials: Vec::new(),
            body: Some(token::refresh_body(&cfg.client_id, &refresh_token)),
            timeout_ms: REFRESH_CALL_TIMEOUT_SECONDS.saturating_mul(1000),
        };
        match port.dispatch(&call) {
            Some(token) => {
                let step = Step::Refresh {
                    lock_revision,
                    sent: refresh_token,
                };
                self.sent(port, token, step, call.timeout_ms);
            }
            None => {
                let outcome = Err(RefreshError::not_sent());
                self.refresh_outcome(vm, port, outcome, lock_revision, &refresh_token);
            }
        }
    }

    fn refresh_outcome(
        &mut self,
        vm: &VmState,
        port: &dyn Port,
        outcome: Result<Grant, RefreshError>,
        lock_revision: Option<u64>,
        sent: &str,
    ) {
        let now = port.now();
        let mut superseded = false;
        let written = self.tokens(vm).update(port, |current| {
            let current = current?;
            if current.tokens.refresh_token.as_deref() != Some(sent) {
                superseded = true;
                return None;
            }
            Some(match &outcome {
                Ok(grant) => current.refreshed(grant.clone(), now),
                Err(error) => current.failed(error.clone(), now),
            })
        });
        match (&outcome, &written) {
            (_, None) if superseded => info!(
                "codex filter: a token refresh finished after its login was replaced; its outcome is dropped"
            ),
            (_, None) => warn!("codex filter: could not store the token refresh outcome in shared data"),
            (Ok(_), Some(record)) => {
                self.count_refresh(vm, port, true, false);
                info!(
                    "codex filter: refreshed the ChatGPT access token{} (generation {}, expires at {})",
                    self.whose(vm),
                    record.generation,
                    record
                        .tokens
                        .expires_at
                        .map_or_else(|| "an unknown time".to_string(), |e| e.to_string())
                );
            }
            (Err(error), Some(record)) => {
                self.count_refresh(vm, port, false, error.permanent);
                let failure = record.failure.as_ref();
                let message = failure.map_or(error.message.as_str(), |f| f.message.as_str());
                if error.permanent {
                    error!(
                        "codex filter: token refresh failed permanently{}: {message}; run `make login` (or `codex login`) again",
                        self.whose(vm)
                    );
                } else {
                    let next = failure.map_or(0, |f| f.retry_at.saturating_sub(now));
                    warn!(
                        "codex filter: token refresh failed{}: {message}; next attempt in {next}s",
                        self.whose(vm)
                    );
                }
            }
        }
        serve_waiters(vm, port);
        // With a store, the outcome (new tokens, or the failure) replaces our lock there. After
        // an unknown outcome the lock stays until the retry time, so that no other replica
        // sends the same refresh token sooner either.
        match (lock_revision, written, self.etcd(vm)) {
            (Some(revision), Some(record), Some((endpoint, key))) => {
                let lock = record
                    .failure
                    .as_ref()
                    .filter(|f| f.code == OUTCOME_UNKNOWN)
                    .map(|f| Lease {
                        holder: self.me,
                        until: f.retry_at,
                    });
                let body = etcd::txn_body(&key, revision, &Stored { record, lock });
                self.store_call(vm, port, &endpoint, etcd::TXN_PATH, body, Step::StoreWrite);
            }
            _ => self.release(vm, port),
        }
    }

    fn store_call(
        &mut self,
        vm: &VmState,
        port: &dyn Port,
        endpoint: &UpstreamUrl,
        path: &str,
        body: Vec<u8>,
        step: Step,
    ) {
        let call = etcd_call::call(
            &vm.config.clusters.etcd,
            endpoint,
            path,
            body,
            STORE_CALL_TIMEOUT_MS,
        );
        match port.dispatch(&call) {
            Some(token) => self.sent(port, token, step, call.timeout_ms),
            None => self.store_failed(vm, port, "etcd is not configured as a cluster"),
        }
    }

    /// The store could not be used: try again later; a due refresh waits for it, because
    /// refreshing without the store could spend a refresh token another replica rotated.
    fn store_failed(&mut self, vm: &VmState, port: &dyn Port, problem: &str) {
        warn!("codex filter: token store: {problem}; retrying in {STORE_RETRY_SECONDS}s");
        self.store_retry_at = port.now().saturating_add(STORE_RETRY_SECONDS);
        self.release(vm, port);
    }

    fn recheck_store_soon(&mut self, vm: &VmState, port: &dyn Port) {
        self.store_retry_at = port.now().saturating_add(STORE_RECHECK_SECONDS);
        self.release(vm, port);
    }

    fn store_answered(
        &mut self,
        vm: &VmState,
        port: &dyn Port,
        step: Step,
        status: Option<u16>,
        body: &[u8],
    ) {
        let Some((endpoint, key)) = self.etcd(vm) else {
            return self.release(vm, port);
        };
        let (endpoint, key) = (&endpoint, &key);
        let Some(ours) = self.tokens(vm).read(port) else {
            return self.release(vm, port);
        };
        let snapshot = match step {
            Step::StoreRead(_) => etcd::parse_range(status, body),
            _ => match etcd::parse_txn(status, body) {
                Ok(TxnOutcome::Committed(revision)) => {
                    if matches!(step, Step::StoreLock) {
                        return self.start_refresh(vm, port, &ours, Some(revision));
                    }
                    mark_synced(self.tokens(vm), port);
                    return self.release(vm, port);
                }
                Ok(TxnOutcome::Conflict(snapshot)) => Ok(*snapshot),
                Err(problem) => Err(problem),
            },
        };
        let snapshot = match snapshot {
            Ok(snapshot) => snapshot,
            Err(problem) => return self.store_failed(vm, port, &problem),
        };
        if let Some(theirs) = snapshot
            .stored
            .as_ref()
            .map(|s| &s.record)
            .filter(|r| etcd::is_newer(r, &ours))
        {
            adopt(self.tokens(vm), port, theirs.clone(), &ours);
            return self.release(vm, port);
        }
        let now = port.now();
        match step {
            Step::StoreRead(Purpose::Sync) if snapshot.stored.is_some() => {
                // The store already holds this login: nothing to write.
                mark_synced(self.tokens(vm), port);
                self.release(vm, port);
            }
            Step::StoreRead(Purpose::Sync) => {
                let stored = Stored {
                    record: ours,
                    lock: None,
                };
                let body = etcd::txn_body(key, snapshot.mod_revision, &stored);
                self.store_call(vm, port, endpoint, etcd::TXN_PATH, body, Step::StoreWrite);
            }
            Step::StoreRead(Purpose::Refresh) if snapshot.locked_by_other(self.me, now) => {
                info!(
                    "codex filter: another replica is refreshing the ChatGPT token; waiting for its result"
                );
                self.recheck_store_soon(vm, port);
            }
            Step::StoreRead(Purpose::Refresh) => {
                let lock = Lease {
                    holder: self.me,
                    until: now.saturating_add(etcd::LOCK_SECONDS),
                };
                let stored = Stored {
                    record: ours,
                    lock: Some(lock),
                };
                let body = etcd::txn_body(key, snapshot.mod_revision, &stored);
                self.store_call(vm, port, endpoint, etcd::TXN_PATH, body, Step::StoreLock);
            }
            // A lock or write lost a race to another replica whose record is not newer (for
            // example its lock): try again on a later tick.
            _ => self.recheck_store_soon(vm, port),
        }
    }
}

/// Resumes the requests that waited for a token, fails them when no token will come, or
/// when they waited too long.
pub fn serve_waiters(vm: &VmState, port: &dyn Port) {
    for account in vm.accounts() {
        let record = account.tokens.read(port);
        WaitList::serve(account.waiters, port, &vm.config.auth, record.as_ref());
    }
}

/// Takes a newer record (another replica's refresh, or a newer login) from the store.
fn adopt(tokens: &TokenStore, port: &dyn Port, theirs: TokenRecord, ours: &TokenRecord) {
    let adopted = TokenRecord {
        source: ours.source.clone(),
        store_synced: true,
        ..theirs
    };
    let generation = adopted.generation;
    if tokens.update(port, |_| Some(adopted.clone())).is_some() {
        info!("codex filter: took newer ChatGPT tokens from the token store (generation {generation})");
    }
}

fn mark_synced(tokens: &TokenStore, port: &dyn Port) {
    tokens.update(port, |current| {
        let record = current?;
        (!record.store_synced).then(|| TokenRecord {
            store_synced: true,
            ..record.clone()
        })
    });
}

#[cfg(test)]
#[path = "refresher_tests.rs"]
mod tests;
