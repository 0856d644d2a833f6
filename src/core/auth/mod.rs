//! ChatGPT credentials: the Codex `auth.json` login, the shared token record and its
//! lifecycle, the refresher that drives it, and the optional token store on etcd.

pub mod auth_json;
pub mod etcd;
pub mod etcd_call;
pub mod refresher;
pub mod shared_record;
pub mod token;
pub mod waiters;
