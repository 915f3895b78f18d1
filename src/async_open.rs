//! [`open_async`]: the backends of [`open`](crate::open) behind the async API.

use std::sync::Arc;

use pagebackup_async::{AsyncBackupBackend, SyncAdapter};
use pagebackup_core::BackupBackend;

use crate::OpenError;

/// Builds a backend from a spec, as [`open`](crate::open) does (the same
/// grammar, parameters and errors), behind the async API.
///
/// The redis backend is natively async and comes as it is. Every other
/// backend of this build is wrapped in a [`SyncAdapter`]: one that
/// declares it never blocks (the memory backend) runs on the calling task,
/// the others run each call, single page or batch, as one
/// `spawn_blocking`. Calls must then be made within a tokio runtime.
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
    #[cfg(feature = "redis")]
    if let Some(native) = crate::registry::open_redis_async(spec)? {
        return Ok(native);
    }
    let backend: Arc<dyn BackupBackend> = Arc::from(crate::open(spec)?);
    Ok(Arc::new(SyncAdapter::new(backend)))
}
