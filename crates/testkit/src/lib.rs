//! Test kit for pagebackup backends: the conformance suite every backend
//! runs, deterministic page generators, and model-based and multi-threaded
//! checkers.
//!
//! A backend crate runs the whole suite with one rstest template:
//!
//! ```
//! use pagebackup_core::MemoryBackend;
//! use pagebackup_testkit::{Check, Subject, conformance};
//! use rstest::rstest;
//! use rstest_reuse::apply;
//!
//! #[apply(conformance)]
//! fn memory(#[case] check: Check) {
//!     let subject = Subject::new("memory", || Box::new(MemoryBackend::new()))
//!         .with_limit(|bytes| Box::new(MemoryBackend::with_limit(bytes)), true);
//!     check.run(&subject);
//! }
//! # fn main() {}
//! ```
//!
//! (The crate using the template depends on `rstest` and `rstest_reuse`.)

mod concurrent;
mod failing;
mod failure_rules;
mod fork;
mod generator;
mod model;
mod rng;
mod subject;
mod suite;

pub use concurrent::{ConcurrentConfig, ConcurrentReport, check_concurrent};
pub use failing::{DeviceOp, FailingDevice, FaultPlan};
pub use failure_rules::{MakeFailing, check_failure_rules};
pub use fork::in_forked_child;
pub use generator::{Mismatch, PageClass, PageSpec};
pub use model::{Divergence, ModelConfig, ModelReport, check_model};
pub use rng::SplitMix64;
pub use subject::{Capabilities, Subject};
pub use suite::{
    Check, LIMIT_PAGES, batch_matches_single, batch_stops_at_failure, caller_page_reusable, conformance,
    drop_releases_storage, dropped_handles_invalid, errors_name_backend_and_operation, exact_bytes,
    foreign_handles_invalid, forged_handles_invalid, idx_never_aliases, interrupt_and_resume, model_sequence, no_space,
    run_all, threads, writeback_and_flush,
};
