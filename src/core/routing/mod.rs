//! Header-time decisions: which route a request takes, the client key gate, and the headers
//! that go upstream.

pub mod decision;
pub mod key_gate;
