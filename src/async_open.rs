//! [`open_async`]: the backends of [`open`](crate::open) behind the async API.

use std::sync::Arc;

use pagebackup_async::{AsyncBackupBackend, SyncAdapter};
use pagebackup_core::BackupBackend;

use crate::{OpenError, registry};

/// Builds a backend from a spec, as [`open`](crate::open) does (the same
/// grammar, parameters and errors), behind the async API.
///
/// `file` is the native [`AsyncFileBackend`](pagebackup_file::AsyncFileBackend):
/// its reads and writes go through io_uring without a thread waiting on
/// each (its `io=` is ignored), unless `seal=on`, which the sync file
/// backend serves through the adapter; `redis` is natively async and comes
/// as it is. Every other backend is wrapped in a
/// [`SyncAdapter`]: one that declares it never blocks (the memory backend)
/// runs on the calling task, the others run each call, single page or
/// batch, as one `spawn_blocking` (awaited outside a tokio runtime, such a
/// call runs on the awaiting thread instead).
///
/// ```
/// use pagebackup::{BackupFlags, Page};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let backend = pagebackup::open_async("memory:limit=64MiB")?;
/// let (handle, page) = backend.backup_page(Page::new_boxed(), 0, BackupFlags::NONE).await;
/// let (restored, _page) = backend.copy_page(page, handle?, None).await;
/// restored?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub fn open_async(spec: &str) -> Result<Arc<dyn AsyncBackupBackend>, OpenError> {
    let (open, spec) = registry::parse_in(registry::BACKENDS, spec)?;
    #[cfg(feature = "file")]
    if spec.name == "file" {
        let config = pagebackup_file::FileConfig::from_params(&spec.params)?;
        // Sealed pages go through the sync backend's device (and the
        // adapter below); the native backend writes its own.
        if config.seal.is_none() {
            return Ok(Arc::new(pagebackup_file::AsyncFileBackend::new(config)?));
        }
    }
    #[cfg(feature = "redis")]
    if spec.name == "redis" {
        let config = pagebackup_redis::RedisConfig::from_params(&spec.params)?;
        return Ok(Arc::new(pagebackup_redis::RedisBackend::new(config)?));
    }
    let backend: Arc<dyn BackupBackend> = Arc::from(open(&spec.params)?);
    Ok(Arc::new(SyncAdapter::new(backend)))
}
