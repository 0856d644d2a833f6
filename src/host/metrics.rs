//! Filter counters, exported by Envoy with its own stats (`/stats/prometheus` on the admin
//! endpoint, as `codex_*`). Metrics with the same name are shared by every worker VM.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use proxy_wasm::hostcalls::{define_metric, increment_metric, record_metric};
use proxy_wasm::types::MetricType;

use crate::core::metrics::{CatalogueOutcome, Metric, Owner, RouteKind};
use crate::core::translate::response::upstream_error::Window;
use crate::core::translate::response::usage::Usage;

#[derive(Default, Clone, Copy)]
pub struct Metrics {
    requests: [[Option<u32>; 4]; 5],
    upstream_errors: Option<u32>,
    tokens_prompt: Option<u32>,
    tokens_completion: Option<u32>,
    tokens_reasoning: Option<u32>,
    tokens_cached: Option<u32>,
    refresh_ok: Option<u32>,
    refresh_temporary: Option<u32>,
    refresh_permanent: Option<u32>,
    lease_taken: Option<u32>,
    usage_limit_hits: Option<u32>,
    key_limit_reached: Option<u32>,
    /// primary/secondary × used percent/reset time
    windows: [[Option<u32>; 2]; 2],
    token_expires_in: Option<u32>,
    token_age: Option<u32>,
    /// fetched / not modified / failed
    catalogue: [Option<u32>; 3],
}

const ROUTES: [&str; 5] = ["chat", "completions", "local", "ollama", "responses"];
const CLASSES: [&str; 4] = ["2xx", "4xx", "5xx", "other"];

impl Metrics {
    pub fn define() -> Self {
        let counter = |name: &str| define_metric(MetricType::Counter, name).ok();
        let mut m = Self::default();
        for (r, route) in ROUTES.iter().enumerate() {
            for (c, class) in CLASSES.iter().enumerate() {
                if let Some(slot) = m.requests.get_mut(r).and_then(|row| row.get_mut(c)) {
                    *slot = counter(&format!("codex.requests.{route}.{class}"));
                }
            }
        }
        m.upstream_errors = counter("codex.upstream_errors");
        m.tokens_prompt = counter("codex.tokens.prompt");
        m.tokens_completion = counter("codex.tokens.completion");
        m.tokens_reasoning = counter("codex.tokens.reasoning");
        m.tokens_cached = counter("codex.tokens.cached");
        m.refresh_ok = counter("codex.token_refresh.ok");
        m.refresh_temporary = counter("codex.token_refresh.temporary_failure");
        m.refresh_permanent = counter("codex.token_refresh.permanent_failure");
        m.lease_taken = counter("codex.token_refresh.lease_taken");
        m.usage_limit_hits = counter("codex.usage_limit_reached");
        m.key_limit_reached = counter("codex.key_limit_reached");
        m.catalogue = [
            counter("codex.catalogue.fetched"),
            counter("codex.catalogue.not_modified"),
            counter("codex.catalogue.failed"),
        ];
        let gauge = |name: &str| define_metric(MetricType::Gauge, name).ok();
        for (w, window) in ["primary", "secondary"].iter().enumerate() {
            if let Some(slots) = m.windows.get_mut(w) {
                *slots = [
                    gauge(&format!("codex.rate_limit.{window}.used_percent")),
                    gauge(&format!("codex.rate_limit.{window}.resets_at")),
                ];
            }
        }
        m.token_expires_in = gauge("codex.token.expires_in_seconds");
        m.token_age = gauge("codex.token.age_seconds");
        m
    }

    pub fn record(&self, metric: Metric) {
        match metric {
            Metric::Request { route, status } => self.request(route, status),
            Metric::UpstreamError => bump(self.upstream_errors, 1),
            Metric::Tokens(usage) => self.tokens(&usage),
            Metric::Refresh { ok, permanent } => self.refresh(ok, permanent),
            Metric::LeaseTaken => bump(self.lease_taken, 1),
            Metric::UsageLimitHit => bump(self.usage_limit_hits, 1),
            Metric::KeyLimitReached => bump(self.key_limit_reached, 1),
            Metric::RateLimits(windows) => self.rate_limits(&windows),
            Metric::Catalogue(outcome) => {
                let [fetched, not_modified, failed] = self.catalogue;
                bump(
                    match outcome {
                        CatalogueOutcome::Fetched => fetched,
                        CatalogueOutcome::NotModified => not_modified,
                        CatalogueOutcome::Failed => failed,
                    },
                    1,
                );
            }
            // Only counted per account (`Owned`).
            Metric::Exhausted(_) => {}
            Metric::TokenAge { expires_in, age } => {
                set(self.token_expires_in, expires_in);
                set(self.token_age, age);
            }
        }
    }

    fn request(&self, route: RouteKind, status: u16) {
        let class = class_of(status);
        if let Some(id) = self.requests.get(route as usize).and_then(|row| row.get(class)) {
            bump(*id, 1);
        }
    }

    fn tokens(&self, usage: &Usage) {
        bump(self.tokens_prompt, usage.prompt_tokens);
        bump(self.tokens_completion, usage.completion_tokens);
        bump(
            self.tokens_reasoning,
            usage.completion_tokens_details.reasoning_tokens,
        );
        bump(self.tokens_cached, usage.prompt_tokens_details.cached_tokens);
    }

    fn refresh(&self, ok: bool, permanent: bool) {
        bump(
            match (ok, permanent) {
                (true, _) => self.refresh_ok,
                (false, false) => self.refresh_temporary,
                (false, true) => self.refresh_permanent,
            },
            1,
        );
    }

    /// The usage windows the backend reported with its last response.
    fn rate_limits(&self, windows: &[Window; 2]) {
        for (slots, window) in self.windows.iter().zip(windows) {
            let [used, resets] = *slots;
            set_changed(used, window.used_percent);
            set_changed(resets, window.resets_at);
        }
    }
}

/// The index into `CLASSES` of a status.
fn class_of(status: u16) -> usize {
    match status {
        200..=299 => 0,
        400..=499 => 1,
        500..=599 => 2,
        _ => 3,
    }
}

thread_local! {
    /// The value this VM last recorded for each gauge written through [`set_changed`].
    static LAST: RefCell<HashMap<u32, u64>> = RefCell::new(HashMap::new());
}

/// [`set`], skipped when this VM recorded the same value last: for the usage windows, which
/// every response reports and which rarely change. Only for gauges no other kind of VM writes
/// (the credentials instance writes `exhausted`), so that a skipped write cannot leave another
/// VM's value standing. Workers of one instance share the gauge: one may skip a value that
/// another overwrote since, until its next change.
fn set_changed(id: Option<u32>, value: Option<u64>) {
    let (Some(key), Some(value)) = (id, value) else {
        return;
    };
    let unchanged = LAST.with(|last| last.borrow_mut().insert(key, value) == Some(value));
    if !unchanged {
        set(id, Some(value));
    }
}

fn set(id: Option<u32>, value: Option<u64>) {
    if let (Some(id), Some(value)) = (id, value) {
        #[cfg(feature = "phase-probe")]
        crate::core::probe::count(crate::core::probe::Call::Metric);
        let _ = record_metric(id, value);
    }
}

fn bump(id: Option<u32>, by: u64) {
    if let (Some(id), true) = (id, by > 0) {
        #[cfg(feature = "phase-probe")]
        crate::core::probe::count(crate::core::probe::Call::Metric);
        let _ = increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
    }
}

/// The most labels one owner kind gets stats of its own; later ones share `_other`, so a
/// keys file or an account pool cannot grow Envoy's stat table without bound.
const MAX_LABELS: usize = 256;

/// Stats per key name and per account label (`codex_openai_wrapper.<kind>.<label>.<stat>`,
/// the label made a `codex_key` / `codex_account` tag by the rendered `stats_tags`), defined
/// on first use and their ids cached (a refused definition too, so it is not asked again).
#[derive(Default)]
pub struct OwnedMetrics {
    ids: RefCell<HashMap<String, Option<u32>>>,
    labels: RefCell<[HashSet<String>; 2]>,
}

impl OwnedMetrics {
    pub fn record(&self, owner: Owner<'_>, metric: Metric) {
        let (kind, slot) = match owner {
            Owner::Key(_) => ("key", 0),
            Owner::Account(_) => ("account", 1),
        };
        let label = self.label(slot, owner.label());
        let stat =
            |name: &str, of: MetricType| self.id(&format!("codex_openai_wrapper.{kind}.{label}.{name}"), of);
        use MetricType::{Counter, Gauge};
        match metric {
            Metric::Request { route, status } => {
                let route = ROUTES.get(route as usize).copied().unwrap_or("local");
                let class = CLASSES.get(class_of(status)).copied().unwrap_or("other");
                bump(stat(&format!("requests.{route}.{class}"), Counter), 1);
            }
            Metric::Tokens(usage) => {
                bump(stat("tokens.input", Counter), usage.prompt_tokens);
                bump(stat("tokens.output", Counter), usage.completion_tokens);
            }
            Metric::RateLimits(windows) => {
                for (window, w) in ["primary", "secondary"].iter().zip(windows) {
                    if w.used_percent.is_some() {
                        set_changed(stat(&format!("{window}_used_percent"), Gauge), w.used_percent);
                    }
                    if w.resets_at.is_some() {
                        set_changed(stat(&format!("{window}_resets_at"), Gauge), w.resets_at);
                    }
                }
                // A response came: the account is serving.
                set(stat("exhausted", Gauge), Some(0));
            }
            Metric::Exhausted(out) => set(stat("exhausted", Gauge), Some(u64::from(out))),
            Metric::UsageLimitHit => bump(stat("usage_limit_reached", Counter), 1),
            Metric::KeyLimitReached => bump(stat("limit_rejected", Counter), 1),
            Metric::Refresh { ok, permanent } => {
                let outcome = match (ok, permanent) {
                    (true, _) => "ok",
                    (false, false) => "temporary_failure",
                    (false, true) => "permanent_failure",
                };
                bump(stat(&format!("token_refresh_{outcome}"), Counter), 1);
            }
            _ => {}
        }
    }

    fn label(&self, slot: usize, label: String) -> String {
        let mut labels = self.labels.borrow_mut();
        let Some(seen) = labels.get_mut(slot) else {
            return "_other".to_string();
        };
        if seen.contains(&label) {
            return label;
        }
        if seen.len() >= MAX_LABELS {
            return "_other".to_string();
        }
        seen.insert(label.clone());
        label
    }

    fn id(&self, name: &str, kind: MetricType) -> Option<u32> {
        if let Some(id) = self.ids.borrow().get(name) {
            return *id;
        }
        let id = define_metric(kind, name).ok();
        self.ids.borrow_mut().insert(name.to_string(), id);
        id
    }
}
