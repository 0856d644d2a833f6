//! The root context: configuration (once per VM), the factory of per-request contexts, and
//! the background fetch of optional instruction texts.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use log::{error, info, warn};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use crate::core::config::{Config, plugin_values};
use crate::core::credentials::ChatgptTokens;
use crate::core::instructions::Fetch;
use crate::host::http::Http;
use crate::host::metrics::Metrics;
use crate::host::unix_now;

const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const TICK: Duration = Duration::from_secs(1);

/// What every request of this VM shares.
pub struct Shared {
    pub config: Config,
    pub tokens: Option<ChatgptTokens>,
    pub metrics: Metrics,
    /// Base instruction texts, filled in by the root context once fetched.
    pub instructions: RefCell<Instructions>,
}

#[derive(Default)]
pub struct Instructions {
    pub base: Option<String>,
    pub codex: Option<String>,
}

#[derive(Default)]
pub struct Root {
    shared: Option<Rc<Shared>>,
    fetches: Vec<Fetch>,
    /// dispatch token → index into `fetches`
    pending: Vec<(u32, usize)>,
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        let Some(at) = self.pending.iter().position(|(t, _)| *t == token) else {
            return;
        };
        let (_, index) = self.pending.swap_remove(at);
        let status = self
            .get_http_call_response_header(":status")
            .and_then(|s| s.parse().ok());
        let body = self.get_http_call_response_body(0, body_size).unwrap_or_default();
        let now = unix_now(self);
        let Some(fetch) = self.fetches.get_mut(index) else {
            return;
        };
        match fetch.complete(status, &body, now) {
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
            let mut texts = shared.instructions.borrow_mut();
            match fetch.cluster {
                "instructions_codex" => texts.codex = Some(text),
                _ => texts.base = Some(text),
            }
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
        let tokens = if config.auth.is_chatgpt() {
            match config
                .codex_auth
                .as_deref()
                .map(ChatgptTokens::from_auth_json)
                .transpose()
            {
                Ok(tokens) => tokens,
                Err(problem) => {
                    error!("codex filter: invalid OPENAI_CODEX_AUTH: the document {problem}");
                    return false;
                }
            }
        } else {
            None
        };
        log_start_up(&config, tokens.as_ref());
        self.fetches = [
            ("instructions_base", &config.instructions_base_url),
            ("instructions_codex", &config.instructions_codex_url),
        ]
        .into_iter()
        .filter_map(|(cluster, url)| url.clone().map(|url| Fetch::new(cluster, url)))
        .collect();
        if !self.fetches.is_empty() {
            self.set_tick_period(TICK);
        }
        self.shared = Some(Rc::new(Shared {
            config,
            tokens,
            metrics: Metrics::define(),
            instructions: RefCell::new(Instructions::default()),
        }));
        true
    }

    fn on_tick(&mut self) {
        let now = unix_now(self);
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
            match self.dispatch_http_call(fetch.cluster, headers, None, vec![], FETCH_TIMEOUT) {
                Ok(token) => self.pending.push((token, index)),
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
        if self.fetches.iter().all(Fetch::done) {
            self.set_tick_period(Duration::ZERO);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.clone()?;
        Some(Box::new(Http::new(shared)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

fn log_start_up(config: &Config, tokens: Option<&ChatgptTokens>) {
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
    match tokens {
        None => warn!(
            "codex filter: no ChatGPT credentials (OPENAI_CODEX_AUTH); chat requests will answer 401 until `codex login` is run"
        ),
        Some(t) => info!(
            "codex filter: ChatGPT credentials loaded (account {}, access token expires at {})",
            t.account_id.as_deref().unwrap_or("unknown"),
            t.expires_at
                .map_or_else(|| "an unknown time".to_string(), |e| e.to_string())
        ),
    }
}
