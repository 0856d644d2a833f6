//! The per-request flow: what the filter does at each step of one request's life.

pub mod response;
