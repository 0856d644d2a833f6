//! The root context: configuration (once per VM) and the factory of per-request contexts.

use std::rc::Rc;

use log::{error, info, warn};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use crate::core::config::{Config, plugin_values};
use crate::core::credentials::ChatgptTokens;
use crate::host::http::Http;

/// What every request of this VM shares.
pub struct Shared {
    pub config: Config,
    pub tokens: Option<ChatgptTokens>,
}

#[derive(Default)]
pub struct Root {
    shared: Option<Rc<Shared>>,
}

impl Context for Root {}

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
        let source = |name: &str| {
            plugin
                .get(name)
                .cloned()
                .or_else(|| std::env::var(name).ok())
        };
        let config = match Config::load(&source) {
            Ok(config) => config,
            Err(e) => {
                error!("codex filter: {e}");
                return false;
            }
        };
        let tokens = match config
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
        };
        if config.client_key.is_none() {
            warn!(
                "codex filter: OPENAI_API_KEY is not set; every client is let through without a key"
            );
        }
        match &tokens {
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
        self.shared = Some(Rc::new(Shared { config, tokens }));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.clone()?;
        Some(Box::new(Http::new(shared)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
