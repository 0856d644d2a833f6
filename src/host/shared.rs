//! What the root context and every request context of one VM hold in common.

use crate::core::vm::VmState;
use crate::host::port::HostPort;

pub struct Shared {
    pub vm: VmState,
    pub port: HostPort,
}
