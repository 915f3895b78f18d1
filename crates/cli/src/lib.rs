//! The `pagebackup` command's library: the adapters that put backends and
//! baselines behind one interface, the built-in corpus, the measurement
//! loop, the report model every bench mode measures into and its renderings,
//! and capture of a process's memory.
//!
//! It is not an API: it is a library only so that the command's binary
//! and the criterion benches (`benches/`, the `pagebackup-benches` crate)
//! share the same adapters and corpus. The modules they use are public but
//! hidden from the docs, and may change with any release; the others are
//! private. Embed backends through the `pagebackup` crate instead.

mod async_baseline;
mod input;

#[doc(hidden)]
pub mod adapters;
#[doc(hidden)]
pub mod async_bench;
#[doc(hidden)]
pub mod capture;
#[doc(hidden)]
pub mod chart;
#[doc(hidden)]
pub mod corpus;
#[doc(hidden)]
pub mod glossary;
#[doc(hidden)]
pub mod measure;
#[doc(hidden)]
pub mod output;
#[doc(hidden)]
pub mod redis_bench;
#[doc(hidden)]
pub mod region_bench;
#[doc(hidden)]
pub mod render;
#[doc(hidden)]
pub mod report;
#[doc(hidden)]
pub mod skewed;
#[doc(hidden)]
pub mod stop;
#[doc(hidden)]
pub mod table;
#[doc(hidden)]
pub mod zram;
