//! Layers: backends that wrap another backend and are backends themselves.

mod fault;
mod instrumented;

pub use fault::{FaultConfig, FaultCounts, FaultInjection};
pub use instrumented::{Instrumented, InstrumentedStats, OpStats};
