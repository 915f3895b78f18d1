//! The `pagebackup` command's library: the adapters that put backends and
//! baselines behind one interface, the built-in corpus, the measurement
//! loop, reports, and capture of a process's memory. The criterion benches
//! use the same adapters.

pub mod adapters;
pub mod capture;
pub mod corpus;
pub mod measure;
pub mod report;
pub mod skewed;
pub mod zram;
