//! Fuzz targets for the core, on the stable toolchain: each target checks one input against
//! the invariants its module documents, and the engine feeds it its corpus and mutations of
//! it. `make fuzz` runs them long; `make test` runs each for a few seconds.

pub mod engine;
pub mod mutate;
pub mod targets;
