//! Layers: backends that wrap another backend and are backends themselves.
//!
//! A layer implements every method of [`BackupBackend`](crate::BackupBackend),
//! the ones it does not change by forwarding, under
//! `#[deny(clippy::missing_trait_methods)]`: a method added to the trait with
//! a default would otherwise run the default on the layer instead of reaching
//! the wrapped backend's own implementation. Write a new layer the same way.

mod fault;
mod instrumented;

pub use fault::{FaultConfig, FaultCounts, FaultInjection};
pub use instrumented::{Instrumented, InstrumentedStats, OpStats};
