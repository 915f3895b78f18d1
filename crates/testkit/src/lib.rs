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
//!
//! With the feature `async`, the template `async_conformance` does the same
//! for an [`AsyncSubject`]: every check above through the async API, the
//! checks of owned buffers, and cancellation checks that drop futures at
//! seeded points on current-thread and multi-thread runtimes:
//!
//! ```
//! # #[cfg(feature = "async")]
//! # mod with_async {
//! use pagebackup_core::MemoryBackend;
//! use pagebackup_testkit::{AsyncCheck, AsyncSubject, Subject, async_conformance};
//! use rstest::rstest;
//! use rstest_reuse::apply;
//!
//! #[apply(async_conformance)]
//! fn memory_adapted(#[case] check: AsyncCheck) {
//!     let subject = Subject::new("memory", || Box::new(MemoryBackend::new()));
//!     check.run(&AsyncSubject::adapted(subject, None));
//! }
//! # }
//! # fn main() {}
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "async")]
mod async_subject;
#[cfg(feature = "async")]
mod async_suite;
#[cfg(feature = "async")]
mod cancellation;
mod concurrent;
mod failing;
mod failure_rules;
mod fork;
mod generator;
mod model;
mod race;
mod rng;
mod subject;
mod suite;
#[cfg(feature = "async")]
mod sync_view;

#[cfg(feature = "async")]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub use async_subject::AsyncSubject;
#[cfg(feature = "async")]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub use async_suite::{AsyncCheck, buffers_come_back, failed_backups_give_pages_back};
#[cfg(feature = "async")]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub use cancellation::{
    CancelConfig, CancelReport, Flavor, check_cancellation, check_drop_after_shutdown, check_drop_with_cancelled_ops,
    check_flush_after_cancel, check_page_array_cancellation, check_page_array_dropped_with_runtime,
    check_shutdown_in_flight, dropped_restore_interrupts, within_polls,
};
pub use concurrent::{ConcurrentConfig, ConcurrentReport, check_concurrent};
pub use failing::{DeviceOp, FailingDevice, FaultPlan};
pub use failure_rules::{MakeFailing, check_failure_rules};
pub use fork::in_forked_child;
pub use generator::{Mismatch, PageClass, PageSpec};
pub use model::{Divergence, ModelConfig, ModelReport, check_model};
pub use race::{RaceConfig, RaceReport, check_racing_restores};
pub use rng::SplitMix64;
pub use subject::{Capabilities, Subject};
#[cfg(feature = "async")]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub use suite::async_conformance;
pub use suite::{
    Check, LIMIT_PAGES, batch_matches_single, batch_stops_at_failure, caller_page_reusable, conformance,
    drop_releases_storage, dropped_handles_invalid, errors_name_backend_and_operation, exact_bytes,
    foreign_handles_invalid, forged_handles_invalid, idx_never_aliases, interrupt_and_resume, model_sequence, no_space,
    racing_restores, run_all, threads, upkeep_keeps_every_page, writeback_and_flush,
};
#[cfg(feature = "async")]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub use sync_view::SyncView;
