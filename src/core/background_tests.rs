//! Start-up, instruction fetches and the tick period; the harness here (several VMs over one
//! shared memory and clock) also drives the refresher's tests.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::*;
use crate::core::auth::auth_json::tests::jwt;
use crate::core::config::DEFAULT_CATALOGUE_CLUSTER;
use crate::core::port::{MemoryPort, SharedMemory};

pub(crate) const NOW: u64 = 1_000_000;

/// A JWT access token that expires at `exp`.
pub(crate) fn access_token(exp: u64, tag: &str) -> String {
    jwt(&serde_json::json!({
        "exp": exp,
        "tag": tag,
        "https://api.openai.com/auth": {"chatgpt_account_id": "acct-1"}
    }))
}

/// An auth.json whose access token expires at `exp`, with refresh token `rt_1`.
pub(crate) fn auth_json(exp: u64) -> String {
    serde_json::json!({"tokens": {"access_token": access_token(exp, "login"), "refresh_token": "rt_1"}})
        .to_string()
}

/// The token endpoint's 200 body.
pub(crate) fn grant(exp: u64, refresh_token: &str) -> Vec<u8> {
    serde_json::json!({"access_token": access_token(exp, refresh_token), "refresh_token": refresh_token})
        .to_string()
        .into_bytes()
}

/// One worker VM: its port onto the shared memory, its state and its background machine.
pub(crate) struct TestVm {
    pub port: MemoryPort,
    pub vm: VmState,
    pub background: Background,
    pub tick: Option<Duration>,
    /// Model catalogue calls and the others, kept apart so each machine's tests see only
    /// their own.
    catalogue_calls: RefCell<Vec<(u32, Dispatch)>>,
    other_calls: RefCell<Vec<(u32, Dispatch)>>,
}

impl TestVm {
    pub fn start(shared: &Rc<SharedMemory>, env: &[(&str, &str)], me: u64) -> Self {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let port = MemoryPort::new(shared);
        let started =
            start(None, &|name| env.get(name).cloned(), &port, me).unwrap_or_else(|e| panic!("{e}"));
        Self {
            port,
            vm: started.vm,
            background: started.background,
            tick: started.tick,
            catalogue_calls: RefCell::new(Vec::new()),
            other_calls: RefCell::new(Vec::new()),
        }
    }

    pub fn tick(&mut self) -> Option<Duration> {
        self.background.tick(&self.vm, &self.port)
    }

    pub fn answer(&mut self, token: u32, status: Option<u16>, body: &[u8]) {
        self.background
            .answered(&self.vm, &self.port, token, status, &|_| None, body);
    }

    /// Answers call `token` with `headers` too.
    pub fn answer_with(&mut self, token: u32, status: Option<u16>, headers: &[(&str, &str)], body: &[u8]) {
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_bytes().to_vec())
        };
        self.background
            .answered(&self.vm, &self.port, token, status, &header, body);
    }

    /// The calls dispatched since the last look, the model catalogue's aside.
    pub fn calls(&self) -> Vec<(u32, Dispatch)> {
        self.sort_calls();
        std::mem::take(&mut *self.other_calls.borrow_mut())
    }

    /// The model catalogue calls dispatched since the last look.
    pub fn catalogue_calls(&self) -> Vec<(u32, Dispatch)> {
        self.sort_calls();
        std::mem::take(&mut *self.catalogue_calls.borrow_mut())
    }

    fn sort_calls(&self) {
        let (catalogue, others): (Vec<_>, Vec<_>) = self
            .port
            .take_dispatched()
            .into_iter()
            .partition(|(_, call)| call.cluster == DEFAULT_CATALOGUE_CLUSTER);
        self.catalogue_calls.borrow_mut().extend(catalogue);
        self.other_calls.borrow_mut().extend(others);
    }

    /// The one call dispatched since the last look, to `cluster`.
    pub fn one_call(&self, cluster: &str) -> (u32, Dispatch) {
        let mut calls = self.calls();
        assert_eq!(calls.len(), 1, "{calls:?}");
        let call = calls.remove(0);
        assert_eq!(call.1.cluster, cluster);
        call
    }

    pub fn record(&self) -> TokenRecord {
        self.vm
            .tokens
            .read(&self.port)
            .unwrap_or_else(|| panic!("no record"))
    }

    pub fn wait(&self, context_id: u32) {
        let now = self.port.now();
        self.vm
            .waiters
            .borrow_mut()
            .wait(context_id, now)
            .unwrap_or_else(|e| panic!("{e:?}"));
    }

    pub fn failed(&self) -> Vec<(u32, u16, String)> {
        self.port
            .failed
            .borrow()
            .iter()
            .map(|(id, r)| (*id, r.status, String::from_utf8_lossy(&r.body).into_owned()))
            .collect()
    }

    pub fn resumed(&self) -> Vec<(u32, Vec<(String, String)>)> {
        self.port.resumed.borrow().clone()
    }
}

fn started(plugin: Option<&[u8]>, env: &[(&str, &str)]) -> Result<Started, String> {
    let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let shared = SharedMemory::at(NOW);
    start(
        plugin,
        &|name| env.get(name).cloned(),
        &MemoryPort::new(&shared),
        7,
    )
}

#[test]
fn start_up_errors_are_one_line_naming_the_problem() {
    let bad_json = started(Some(b"{nope"), &[]).err().unwrap_or_default();
    assert!(
        bad_json.starts_with("codex filter: the plugin configuration is not a JSON object"),
        "{bad_json}"
    );
    let bad_value = started(None, &[("REASONING_EFFORT", "extreme")])
        .err()
        .unwrap_or_default();
    assert!(bad_value.contains("invalid REASONING_EFFORT"), "{bad_value}");
    let bad_login = started(None, &[("OPENAI_CODEX_AUTH", r#"{"tokens":{}}"#)])
        .err()
        .unwrap_or_default();
    assert!(
        bad_login.starts_with("codex filter: invalid OPENAI_CODEX_AUTH: the document"),
        "{bad_login}"
    );
    // An API-key upstream does not read the document as a ChatGPT login.
    let api_key = [
        ("OPENAI_CODEX_AUTH", "{}"),
        ("UPSTREAM_AUTH_MODE", "apikey_env"),
        ("UPSTREAM_API_KEY", "k"),
    ];
    assert!(started(None, &api_key).is_ok());
}

#[test]
fn the_plugin_configuration_wins_over_the_environment() {
    let plugin = br#"{"REASONING_EFFORT": "high"}"#;
    let s = started(Some(plugin), &[("REASONING_EFFORT", "low")]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        s.vm.config.default_effort,
        Some(crate::core::reasoning::Effort::High)
    );
    assert!(
        started(Some(b"  "), &[]).is_ok(),
        "an empty configuration is no configuration"
    );
}

#[test]
fn start_up_seeds_the_login_once_for_every_vm() {
    let shared = SharedMemory::at(NOW);
    let auth = auth_json(NOW + 3600);
    let mut a = TestVm::start(&shared, &[("OPENAI_CODEX_AUTH", &auth)], 1);
    assert_eq!(a.tick, Some(IDLE_TICK), "the refresher runs on ticks");
    assert_eq!(a.record().tokens.refresh_token.as_deref(), Some("rt_1"));
    // A refresh happened; a VM starting later must not put the spent login back.
    a.vm.tokens.update(&a.port, |r| {
        r.map(|r| TokenRecord {
            generation: 4,
            ..r.clone()
        })
    });
    let b = TestVm::start(&shared, &[("OPENAI_CODEX_AUTH", &auth)], 2);
    assert_eq!(b.record().generation, 4);
    assert!(a.tick().is_none(), "nothing is due: the period stays");
}

#[test]
fn without_background_work_no_tick_is_asked_for() {
    let shared = SharedMemory::at(NOW);
    let api_key = TestVm::start(
        &shared,
        &[("UPSTREAM_AUTH_MODE", "apikey_env"), ("UPSTREAM_API_KEY", "k")],
        1,
    );
    assert_eq!(api_key.tick, None);
    let fetching = TestVm::start(
        &shared,
        &[
            ("UPSTREAM_AUTH_MODE", "apikey_env"),
            ("UPSTREAM_API_KEY", "k"),
            ("INSTRUCTIONS_BASE_URL", "https://prompts.example/base.md"),
        ],
        2,
    );
    assert_eq!(fetching.tick, Some(IDLE_TICK));
    // The upstream (credentials) instance fetches nothing.
    let credentials = TestVm::start(
        &shared,
        &[
            ("UPSTREAM_AUTH_MODE", "apikey_env"),
            ("UPSTREAM_API_KEY", "k"),
            ("FILTER_ROLE", "credentials"),
            ("INSTRUCTIONS_BASE_URL", "https://prompts.example/base.md"),
        ],
        3,
    );
    assert_eq!(credentials.tick, None);
}

const INSTRUCTIONS: [(&str, &str); 4] = [
    ("UPSTREAM_AUTH_MODE", "apikey_env"),
    ("UPSTREAM_API_KEY", "k"),
    ("INSTRUCTIONS_BASE_URL", "https://prompts.example/base.md"),
    ("INSTRUCTIONS_CODEX_URL", "https://prompts.example/codex.md"),
];

#[test]
fn instruction_texts_are_fetched_once_and_kept() {
    let shared = SharedMemory::at(NOW);
    let mut vm = TestVm::start(&shared, &INSTRUCTIONS, 1);
    vm.tick();
    let calls = vm.calls();
    let clusters: Vec<&str> = calls.iter().map(|(_, c)| c.cluster.as_str()).collect();
    assert_eq!(clusters, ["instructions_base", "instructions_codex"]);
    let (base, codex) = (&calls[0], &calls[1]);
    assert_eq!(
        base.1.headers,
        [
            (":method", "GET".to_string()),
            (":path", "/base.md".to_string()),
            (":authority", "prompts.example".to_string())
        ]
    );
    assert_eq!(base.1.timeout_ms, FETCH_TIMEOUT_MS);
    vm.tick();
    assert!(vm.calls().is_empty(), "one fetch at a time");
    vm.answer(base.0, Some(200), b"  Base text.\n");
    vm.answer(codex.0, Some(200), b"Codex text.");
    let texts = vm.vm.instructions.borrow();
    assert_eq!(
        (texts.base.as_deref(), texts.codex.as_deref()),
        (Some("Base text."), Some("Codex text."))
    );
    drop(texts);
    shared.advance(3600);
    vm.tick();
    assert!(vm.calls().is_empty(), "a text is fetched once");
}

#[test]
fn a_failed_fetch_backs_off_and_a_refused_one_too() {
    let shared = SharedMemory::at(NOW);
    let mut vm = TestVm::start(&shared, &INSTRUCTIONS[..3], 1);
    vm.tick();
    let (token, _) = vm.one_call("instructions_base");
    vm.answer(token, Some(503), b"");
    assert!(vm.vm.instructions.borrow().base.is_none());
    shared.advance(4);
    vm.tick();
    assert!(vm.calls().is_empty(), "retried before the backoff");
    shared.advance(1);
    vm.tick();
    let (token, _) = vm.one_call("instructions_base");
    vm.answer(token, None, b"");
    shared.advance(10);
    // The host refuses the call (no such cluster): no panic, the same backoff.
    vm.port.refuse_dispatch.set(true);
    vm.tick();
    assert!(vm.vm.instructions.borrow().base.is_none());
    vm.port.refuse_dispatch.set(false);
    shared.advance(19);
    vm.tick();
    assert!(
        vm.calls().is_empty(),
        "a refused call backs off like a failed one"
    );
    shared.advance(1);
    vm.tick();
    let (token, _) = vm.one_call("instructions_base");
    vm.answer(token, Some(200), b"Base text.");
    assert_eq!(vm.vm.instructions.borrow().base.as_deref(), Some("Base text."));
    // An answer nobody asked for changes nothing.
    vm.answer(999, Some(200), b"other");
    assert_eq!(vm.vm.instructions.borrow().base.as_deref(), Some("Base text."));
}

#[test]
fn the_tick_is_fast_only_while_something_is_pending() {
    let shared = SharedMemory::at(NOW);
    let mut vm = TestVm::start(&shared, &[("OPENAI_CODEX_AUTH", &auth_json(NOW + 3600))], 1);
    assert_eq!(vm.tick, Some(IDLE_TICK));
    vm.wait(5);
    assert_eq!(
        vm.tick(),
        None,
        "the token is usable: the waiter is resumed at once"
    );
    assert_eq!(vm.resumed().len(), 1);
    // Expired: a refresh call goes out and a request waits for it.
    shared.advance(3600);
    vm.wait(6);
    assert_eq!(vm.tick(), Some(BUSY_TICK));
    assert_eq!(vm.tick(), None, "unchanged");
    let (token, _) = vm.one_call("oauth");
    vm.answer(token, Some(200), &grant(NOW + 7200, "rt_2"));
    assert_eq!(vm.tick(), Some(IDLE_TICK));
}

#[test]
fn call_statuses_are_read_from_bytes() {
    assert_eq!(status_code(b"200"), Some(200));
    assert_eq!(status_code(b"caf\xe9"), None);
    assert_eq!(status_code(b""), None);
    assert_eq!(status_code(b"99999"), None);
}

/// An auth.json for `account` whose tokens are tagged `tag` (another login).
fn login_of(account: &str, tag: &str, refresh_token: &str) -> String {
    let access = jwt(&serde_json::json!({
        "exp": NOW + 3600,
        "tag": tag,
        "https://api.openai.com/auth": {"chatgpt_account_id": account}
    }));
    serde_json::json!({"tokens": {"access_token": access, "refresh_token": refresh_token}}).to_string()
}

#[test]
fn a_reloaded_configuration_keeps_a_refreshed_login_and_a_replaced_login_replaces_it() {
    // Every new plugin configuration starts a new root context in the same VM, which seeds its
    // configured login again: the rule decides whether a replaced auth.json takes effect.
    let shared = SharedMemory::at(NOW);
    let first = login_of("acct-1", "first", "rt_1");
    let a = TestVm::start(&shared, &[("OPENAI_CODEX_AUTH", &first)], 1);
    let grant = crate::core::auth::token::parse_refresh_response(Some(200), &grant(NOW + 7200, "rt_2"))
        .unwrap_or_else(|e| panic!("{e:?}"));
    a.vm.tokens
        .update(&a.port, |r| r.map(|r| r.refreshed(grant.clone(), NOW)));
    assert_eq!(a.record().generation, 1);

    // The same login with another setting changed: the refreshed tokens stay.
    let same = TestVm::start(
        &shared,
        &[("OPENAI_CODEX_AUTH", &first), ("REASONING_EFFORT", "high")],
        2,
    );
    assert_eq!(same.record().generation, 1);
    assert_eq!(same.record().tokens.refresh_token.as_deref(), Some("rt_2"));

    // A new login of the same account (new tokens) replaces the record.
    let again = login_of("acct-1", "second", "rt_3");
    let renewed = TestVm::start(&shared, &[("OPENAI_CODEX_AUTH", &again)], 3);
    let record = renewed.record();
    assert_eq!(
        (record.generation, record.tokens.refresh_token.as_deref()),
        (0, Some("rt_3"))
    );
    assert_eq!(record.tokens.account_id.as_deref(), Some("acct-1"));

    // Another account replaces it too, and every VM then reads that one.
    let other = login_of("acct-2", "other", "rt_4");
    let switched = TestVm::start(&shared, &[("OPENAI_CODEX_AUTH", &other)], 4);
    assert_eq!(switched.record().tokens.account_id.as_deref(), Some("acct-2"));
    assert_eq!(a.record().tokens.refresh_token.as_deref(), Some("rt_4"));
}

#[test]
fn a_vms_own_counts_reach_shared_data_on_its_tick_and_when_it_is_done() {
    use crate::core::keys::counters;
    let shared = SharedMemory::at(NOW);
    let env = [
        ("UPSTREAM_AUTH_MODE", "apikey_env"),
        ("UPSTREAM_API_KEY", "k"),
        ("OPENAI_API_KEY", "sk-client"),
    ];
    let mut a = TestVm::start(&shared, &env, 1);
    let b = TestVm::start(&shared, &env, 2);
    assert_eq!(
        a.tick,
        Some(IDLE_TICK),
        "nothing else runs, but the counts need the tick"
    );
    let entry = a.vm.config.keys.entries[0].clone();
    a.vm.key_counts.admit(&a.port, 0, &entry, NOW, false).unwrap();
    a.vm.key_counts.add_tokens(&a.port, 0, &entry, (5, 2), NOW, false);
    b.vm.key_counts.admit(&b.port, 0, &entry, NOW, false).unwrap();
    assert_eq!(counters::read(&a.port, "key-1").requests, 0);
    a.tick();
    let after_tick = counters::read(&a.port, "key-1");
    assert_eq!((after_tick.requests, after_tick.input_tokens), (1, 5));
    // A replaced configuration's last counts are not lost with it.
    b.background.done(&b.vm, &b.port);
    assert_eq!(counters::read(&a.port, "key-1").requests, 2);
    // The upstream (credentials) instance counts nothing and needs no tick for it.
    let credentials = TestVm::start(
        &shared,
        &[env[0], env[1], env[2], ("FILTER_ROLE", "credentials")],
        3,
    );
    assert_eq!(credentials.tick, None);
}
