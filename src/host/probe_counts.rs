//! Bench-only host call counts for the probe (`--features phase-probe`): `host::abi` counts
//! every call here, `host::probe` reports them (kept apart so neither module needs the other
//! both ways).

use std::cell::RefCell;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Call {
    MapGet,
    MapSet,
    ValueGet,
    ValueSet,
    ValueRemove,
    BodyGet,
    BodySet,
    Property,
    Clock,
    SharedGet,
    SharedSet,
    Metric,
    Log,
    LocalReply,
    Other,
}

pub const CALLS: [(Call, &str); 15] = [
    (Call::MapGet, "map_get"),
    (Call::MapSet, "map_set"),
    (Call::ValueGet, "value_get"),
    (Call::ValueSet, "value_set"),
    (Call::ValueRemove, "value_remove"),
    (Call::BodyGet, "body_get"),
    (Call::BodySet, "body_set"),
    (Call::Property, "property"),
    (Call::Clock, "clock"),
    (Call::SharedGet, "shared_get"),
    (Call::SharedSet, "shared_set"),
    (Call::Metric, "metric"),
    (Call::Log, "log"),
    (Call::LocalReply, "local_reply"),
    (Call::Other, "other"),
];

thread_local! {
    static COUNTS: RefCell<[u32; 15]> = const { RefCell::new([0; 15]) };
    static KEYS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Which shared-data key a read was for (listed with the counts).
pub fn shared_key(key: &str) {
    KEYS.with(|keys| keys.borrow_mut().push(key.to_string()));
}

/// Counts one host call of the filter's own.
pub fn count(call: Call) {
    COUNTS.with(|counts| {
        if let Some(slot) = counts.borrow_mut().get_mut(call as usize) {
            *slot = slot.saturating_add(1);
        }
    });
}

/// A request begins: its counts start from zero.
pub fn reset() {
    COUNTS.with(|counts| *counts.borrow_mut() = [0; 15]);
    KEYS.with(|keys| keys.borrow_mut().clear());
}

/// The counts as `kind=n …`, and the shared-data keys read, since the last [`reset`].
pub fn counts_line() -> (String, String) {
    let line = COUNTS.with(|counts| {
        let counts = counts.borrow();
        CALLS
            .iter()
            .zip(counts.iter())
            .map(|((_, name), n)| format!("{name}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    });
    (line, KEYS.with(|keys| keys.borrow().join(",")))
}
