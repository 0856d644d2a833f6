//! The root context: hands the configuration, the ticks and the answers to its calls to the
//! core's background machine ([`crate::core::background`]), and creates the request contexts.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::rc::Rc;

use log::error;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, MapType};

use crate::core::background::{self, Background};
use crate::core::config::FilterRole;
use crate::host::abi;
use crate::host::credentials_http::CredentialsHttp;
use crate::host::http::Http;
use crate::host::metrics::{Metrics, OwnedMetrics};
use crate::host::port::HostPort;
use crate::host::shared::Shared;

#[derive(Default)]
pub struct Root {
    shared: Option<Rc<Shared>>,
    background: Option<Background>,
}

impl Context for Root {
    /// Envoy ends a root context when its plugin configuration has been replaced (ECDS) and
    /// the last request of that configuration is done. Its timer would keep firing into the
    /// void: stop it. Calls still out are cancelled by Envoy: a refresh among them is left
    /// as if its VM had died (the lease runs out, another root context refreshes). The counts
    /// its requests kept since its last tick go to shared data first.
    fn on_done(&mut self) -> bool {
        if let Some(background) = self.background.take() {
            if let Some(shared) = &self.shared {
                background.done(&shared.vm, &shared.port);
            }
            let _ = abi::set_tick_period(std::time::Duration::ZERO);
        }
        true
    }

    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        let (Some(shared), Some(background)) = (&self.shared, &mut self.background) else {
            return;
        };
        let status = abi::header_value(MapType::HttpCallResponseHeaders, ":status")
            .and_then(|raw| background::status_code(&raw));
        let body = abi::buffer(
            BufferType::HttpCallResponseBody,
            0,
            body_size.min(background::MAX_ANSWER_BYTES),
        );
        let header = |name: &str| abi::header_value(MapType::HttpCallResponseHeaders, name);
        background.answered(&shared.vm, &shared.port, token, status, &header, &body);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let plugin = Some(abi::buffer(BufferType::PluginConfiguration, 0, usize::MAX))
            .filter(|bytes| !bytes.is_empty());
        let port = HostPort {
            metrics: Metrics::define(),
            owned: OwnedMetrics::default(),
        };
        // The VM's identity in the refresh lease: random, so a restarted VM is a new holder.
        let me = RandomState::new().hash_one(0u8);
        let env = |name: &str| std::env::var(name).ok();
        match background::start(plugin.as_deref(), &env, &port, me) {
            Ok(started) => {
                if let Some(period) = started.tick {
                    let _ = abi::set_tick_period(period);
                }
                self.shared = Some(Rc::new(Shared { vm: started.vm, port }));
                self.background = Some(started.background);
                true
            }
            Err(message) => {
                error!("{message}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let (Some(shared), Some(background)) = (&self.shared, &mut self.background) else {
            return;
        };
        if let Some(period) = background.tick(&shared.vm, &shared.port) {
            let _ = abi::set_tick_period(period);
        }
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
