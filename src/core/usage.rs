//! `GET /v1/usage`: what the wrapper knows about its own use, answered locally (never
//! forwarded) behind the key gate; `USAGE_ENDPOINT=false` hides the route. The ChatGPT
//! accounts' part comes from [`crate::core::accounts::report`]; no secret is in it.

use serde_json::{Map, Value, json};

use crate::core::accounts::report;
use crate::core::port::Port;
use crate::core::vm::VmState;

/// The JSON body.
pub fn body(vm: &VmState, port: &dyn Port, now: u64) -> Vec<u8> {
    let mut object = Map::new();
    object.insert("object".into(), json!("usage"));
    if vm.config.auth.is_chatgpt() {
        let (accounts, pool) = report::members(vm, port, now);
        object.insert("accounts".into(), accounts);
        object.insert("pool".into(), pool);
    }
    serde_json::to_vec(&Value::Object(object)).unwrap_or_default()
}
