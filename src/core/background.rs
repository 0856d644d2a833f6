//! What a VM does besides answering requests: start-up (configuration, seeding the token
//! record, the start-up log), then on every tick the instruction-text fetches, the token
//! refresher, the model catalogue fetch, the counts this VM kept since the last tick, and the
//! requests waiting for a token, and the tick period to ask for next.
//!
//! The host turns its callbacks into the three events here — [`start`], [`Background::tick`],
//! [`Background::answered`] — and the machine acts through the [`Port`].

use std::time::Duration;

use log::{info, warn};

use crate::core::accounts::pool;
use crate::core::accounts::replicas::StateSync;
use crate::core::auth::refresher::{Refresher, serve_waiters};
use crate::core::auth::shared_record::TokenStore;
use crate::core::auth::token::TokenRecord;
use crate::core::catalogue::refresh::CatalogueRefresh;
use crate::core::config::{Config, FilterRole, plugin_values};
use crate::core::instructions::Fetch;
use crate::core::keys::sync::KeysSync;
use crate::core::port::{Dispatch, Port};
use crate::core::translate::request::conversation_key::fingerprint;
use crate::core::vm::VmState;

/// The tick period while nothing is pending.
pub const IDLE_TICK: Duration = Duration::from_secs(1);
/// The tick period while requests wait for a token or a refresher call is out, so waiters
/// are resumed, and given up on, promptly.
pub const BUSY_TICK: Duration = Duration::from_millis(100);
const FETCH_TIMEOUT_MS: u64 = 10_000;
/// The host reads at most this much of a call's answer: one byte over the largest any machine
/// accepts (the model catalogue), so a longer one is still seen as too large, and an upstream
/// cannot make the VM hold more.
pub const MAX_ANSWER_BYTES: usize = crate::core::catalogue::MAX_CATALOGUE_BYTES + 1;

/// A configured VM.
pub struct Started {
    pub vm: VmState,
    pub background: Background,
    /// The tick period to ask for; `None` when nothing runs in the background.
    pub tick: Option<Duration>,
}

/// Configures a VM from the plugin configuration (JSON, wins) and the environment, and puts
/// the configured login in shared data. `Err` is the line to log before refusing to start.
pub fn start(
    plugin_configuration: Option<&[u8]>,
    env: &dyn Fn(&str) -> Option<String>,
    port: &dyn Port,
    me: u64,
) -> Result<Started, String> {
    let plugin = plugin_configuration
        .map(plugin_values)
        .transpose()
        .map_err(|problem| format!("codex filter: the plugin configuration {problem}"))?
        .unwrap_or_default();
    let source = |name: &str| plugin.get(name).cloned().or_else(|| env(name));
    let config = Config::load(&source).map_err(|e| format!("codex filter: {e}"))?;
    let logins = config
        .chatgpt_logins()
        .map_err(|e| format!("codex filter: {e}"))?;
    let vm = VmState::new(config);
    for (login, account) in logins.into_iter().zip(vm.accounts()) {
        let tokens = login.tokens;
        let source = fingerprint(format!("{}\n{:?}", tokens.access_token, tokens.refresh_token).as_bytes());
        // Where the same login's record was kept before a reload changed the accounts.
        let earlier = match vm.is_pool() {
            true => TokenStore::default(),
            false => TokenStore::labelled(account.label),
        };
        account
            .tokens
            .seed_from(port, TokenRecord::new(tokens, source), &earlier);
        account.tokens.init_lease(port);
    }
    let main = vm.config.role == FilterRole::Main;
    if main {
        log_start_up(&vm.config, vm.tokens.read(port).as_ref());
        pool::log_pool(&vm);
    }
    let fetches = if main {
        instruction_fetches(&vm.config)
    } else {
        Vec::new()
    };
    let refreshers: Vec<Refresher> = match vm.config.auth.is_chatgpt() {
        true => vm
            .accounts()
            .map(|a| Refresher::for_account(me, a.index))
            .collect(),
        false => Vec::new(),
    };
    let catalogue = CatalogueRefresh::for_config(&vm.config, me);
    let state_sync = StateSync::for_vm(&vm);
    let keys_sync = KeysSync::for_config(&vm.config, me);
    // The main instance counts requests per VM and adds them to shared data on its tick.
    let counts = main && (!vm.config.keys.entries.is_empty() || vm.config.auth.is_chatgpt());
    let tick =
        (!fetches.is_empty() || !refreshers.is_empty() || keys_sync.is_some() || counts).then_some(IDLE_TICK);
    let background = Background {
        refreshers,
        state_sync,
        catalogue,
        keys_sync,
        fetches,
        fetch_calls: Vec::new(),
        period: tick,
    };
    Ok(Started { vm, background, tick })
}

fn instruction_fetches(config: &Config) -> Vec<Fetch> {
    let clusters = &config.clusters;
    [
        (&clusters.instructions_base, false, &config.instructions_base_url),
        (&clusters.instructions_codex, true, &config.instructions_codex_url),
    ]
    .into_iter()
    .filter_map(|(cluster, codex, url)| url.clone().map(|url| Fetch::new(cluster.clone(), codex, url)))
    .collect()
}

/// The `:status` of a call's answer, as the host hands it over.
pub fn status_code(raw: &[u8]) -> Option<u16> {
    std::str::from_utf8(raw).ok()?.parse().ok()
}

/// The VM's background machine: the refresher and the catalogue fetch (ChatGPT modes only)
/// and the instruction-text fetches, ticked by the host and fed the answers to their calls.
pub struct Background {
    /// One per account (none with an API-key upstream).
    refreshers: Vec<Refresher>,
    /// A pool with etcd: the accounts' marks shared with other replicas.
    state_sync: Option<StateSync>,
    catalogue: Option<CatalogueRefresh>,
    /// The client keys' counters shared through etcd (`TOKEN_STORE=etcd` only).
    keys_sync: Option<KeysSync>,
    fetches: Vec<Fetch>,
    /// Instruction fetches that are out: call token, index into `fetches`.
    fetch_calls: Vec<(u32, usize)>,
    /// The tick period last asked for.
    period: Option<Duration>,
}

impl Background {
    /// One tick: starts what is due, serves the waiting requests, and returns the new tick
    /// period when it should change.
    pub fn tick(&mut self, vm: &VmState, port: &dyn Port) -> Option<Duration> {
        self.fetch_instructions(port);
        for refresher in &mut self.refreshers {
            refresher.tick(vm, port);
        }
        if let Some(catalogue) = self.catalogue.as_mut() {
            catalogue.tick(vm, port);
        }
        if let Some(sync) = self.state_sync.as_mut() {
            sync.tick(vm, port);
        }
        // Before the etcd flush, so that it carries this VM's counts too.
        vm.flush_counts(port);
        if let Some(sync) = self.keys_sync.as_mut() {
            sync.tick(port);
        }
        serve_waiters(vm, port);
        let busy = vm.accounts().any(|a| !a.waiters.borrow().is_empty())
            || self.refreshers.iter().any(Refresher::busy);
        let period = if busy { BUSY_TICK } else { IDLE_TICK };
        (self.period != Some(period)).then(|| {
            self.period = Some(period);
            period
        })
    }

    /// The VM's configuration was replaced and its last request is over (the host ends this
    /// machine): what it counted since its last tick goes to shared data now, not lost.
    pub fn done(&self, vm: &VmState, port: &dyn Port) {
        vm.flush_counts(port);
    }

    /// The answer to call `token`; `status` is `None` when the call got none (timed out,
    /// reset, connection failed); `header` reads one of the answer's headers.
    pub fn answered(
        &mut self,
        vm: &VmState,
        port: &dyn Port,
        token: u32,
        status: Option<u16>,
        header: &dyn Fn(&str) -> Option<Vec<u8>>,
        body: &[u8],
    ) {
        for refresher in &mut self.refreshers {
            if refresher.answered(vm, port, token, status, body) {
                return;
            }
        }
        if let Some(catalogue) = self.catalogue.as_mut() {
            if catalogue.answered(vm, port, token, status, header, body) {
                return;
            }
        }
        if let Some(sync) = self.state_sync.as_mut() {
            if sync.answered(vm, port, token, status, body) {
                return;
            }
        }
        if let Some(sync) = self.keys_sync.as_mut() {
            if sync.answered(port, token, status, body) {
                return;
            }
        }
        if let Some(at) = self.fetch_calls.iter().position(|(t, _)| *t == token) {
            let (_, index) = self.fetch_calls.swap_remove(at);
            self.instructions_arrived(vm, index, status, body, port.now());
        }
    }

    fn fetch_instructions(&mut self, port: &dyn Port) {
        let now = port.now();
        for (index, fetch) in self.fetches.iter_mut().enumerate() {
            if !fetch.start_if_due(now) {
                continue;
            }
            let call = Dispatch {
                cluster: fetch.cluster.clone(),
                headers: vec![
                    (":method", "GET".into()),
                    (":path", fetch.url.path.clone()),
                    (":authority", fetch.url.host.clone()),
                ],
                credentials: Vec::new(),
                body: None,
                timeout_ms: FETCH_TIMEOUT_MS,
            };
            match port.dispatch(&call) {
                Some(token) => self.fetch_calls.push((token, index)),
                // The port has said why; the fetch backs off like any failure.
                None => {
                    let _ = fetch.complete(None, b"", now);
                }
            }
        }
    }

    fn instructions_arrived(
        &mut self,
        vm: &VmState,
        index: usize,
        status: Option<u16>,
        body: &[u8],
        now: u64,
    ) {
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
        if let Some(text) = fetch.text.clone() {
            let mut texts = vm.instructions.borrow_mut();
            if fetch.codex {
                texts.codex = Some(text);
            } else {
                texts.base = Some(text);
            }
        }
    }
}

fn log_start_up(config: &Config, record: Option<&TokenRecord>) {
    if config.keys.is_open() {
        warn!(
            "codex filter: OPENAI_API_KEY is not set and there is no keys file (CLIENT_KEYS_FILE); every client is let through without a key"
        );
    } else if config.keys.entries.is_empty() {
        warn!("codex filter: the keys file has no keys; every request behind the key gate is refused");
    } else {
        let names: Vec<&str> = config.keys.entries.iter().map(|e| e.name.as_str()).collect();
        info!("codex filter: {} client keys: {}", names.len(), names.join(", "));
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
            "codex filter: no ChatGPT credentials (OPENAI_CODEX_AUTH); chat requests will answer 401 until `make login` (or `codex login`) is run"
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

#[cfg(test)]
#[path = "background_tests.rs"]
pub(crate) mod tests;
