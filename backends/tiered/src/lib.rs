//! The tiered backend of pagebackup: any backend in front of any other,
//! pages moving down by policy — zram's writeback and recompression, to any
//! backend, without a sysfs trigger.
//!
//! [`Tiered`] keeps its own handle table over its [`Tier`]s; the policies
//! are fields of [`TieredConfig`] and each tier's budget. The policy runs by
//! itself on a background thread ([`TieredConfig::auto`]) or, with the
//! `async` feature, as a task on the caller's tokio runtime
//! (`Tiered::spawn_policy`, with the thread turned off); a caller that
//! wants it elsewhere — its own timer — turns the thread off and calls
//! [`Tiered::run_policy_step`]. [`Tiered::tier_stats`] and
//! [`Tiered::policy_state`] say what each tier holds and what moved.
//!
//! ```
//! use std::time::Duration;
//!
//! use pagebackup_core::{BackupBackend, BackupFlags, MemoryBackend, Page};
//! use pagebackup_tiered::{Tier, Tiered, TieredConfig, WritebackFilter};
//!
//! let tiered = Tiered::new(
//!     vec![
//!         Tier::new(MemoryBackend::new()).with_budget(64 * 4096),
//!         Tier::new(MemoryBackend::new()),
//!     ],
//!     TieredConfig::new().with_auto(None),
//! )?;
//! let mut page = Page::new_boxed();
//! page.0[0] = 7;
//! let handle = tiered.backup_page(&page, 0, BackupFlags::NONE)?;
//! assert_eq!(tiered.tier_stats()[0].pages, 1);
//! // Move every page idle for at least zero seconds down: this one.
//! assert_eq!(tiered.writeback(WritebackFilter::Idle(Duration::ZERO)).moved_pages, 1);
//! assert_eq!(tiered.tier_stats()[1].pages, 1);
//! page.0[0] = 0;
//! tiered.copy_page(&mut page, handle, None)?; // the same handle, from the lower tier
//! assert_eq!(page.0[0], 7);
//! tiered.drop_handle(handle)?;
//! # Ok::<(), pagebackup_core::BackupError>(())
//! ```

#![forbid(unsafe_code)]

mod backend;
mod batch;
mod config;
mod policy;
mod rate;
mod shared;
mod stats;
mod table;
mod tier;
mod worker;

pub use backend::Tiered;
pub use config::{HugePolicy, Policy, RateLimit, TieredConfig, WritebackFilter};
pub use stats::{PolicyReport, PolicyState, Stop, TierStats};
pub use tier::Tier;
