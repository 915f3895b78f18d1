//! [`AsyncSubject`]: how the async suite builds the async backend under test.

use std::fmt;
use std::sync::Arc;

use pagebackup_async::{AsyncBackupBackend, Execution, SyncAdapter};

use crate::{Capabilities, Subject, SyncView};

type Create = Arc<dyn Fn() -> Arc<dyn AsyncBackupBackend> + Send + Sync>;
type CreateLimited = Arc<dyn Fn(u64) -> Arc<dyn AsyncBackupBackend> + Send + Sync>;

/// An async backend configuration under test: a native async backend, or a
/// sync [`Subject`] behind the [`SyncAdapter`].
#[derive(Clone)]
pub struct AsyncSubject {
    name: String,
    create: Create,
    limited: Option<CreateLimited>,
    capabilities: Capabilities,
}

impl AsyncSubject {
    /// A subject named `name` whose instances `create` builds.
    pub fn new(
        name: impl Into<String>,
        create: impl Fn() -> Arc<dyn AsyncBackupBackend> + Send + Sync + 'static,
    ) -> Self {
        AsyncSubject {
            name: name.into(),
            create: Arc::new(create),
            limited: None,
            capabilities: Capabilities::NONE,
        }
    }

    /// Adds a constructor for instances limited to about `bytes` of pages,
    /// as [`Subject::with_limit`] does.
    pub fn with_limit(
        mut self,
        limited: impl Fn(u64) -> Arc<dyn AsyncBackupBackend> + Send + Sync + 'static,
        exact_page_accounting: bool,
    ) -> Self {
        self.limited = Some(Arc::new(limited));
        self.capabilities = self
            .capabilities
            .with_space_limit(true)
            .with_exact_page_accounting(exact_page_accounting);
        self
    }

    /// The sync `subject`'s instances behind a [`SyncAdapter`] running as
    /// `execution` says, or as the backend declares (`None`).
    pub fn adapted(subject: Subject, execution: Option<Execution>) -> Self {
        let subject = Arc::new(subject);
        let adapt = move |backend: Box<dyn pagebackup_core::BackupBackend>| -> Arc<dyn AsyncBackupBackend> {
            let backend: Arc<dyn pagebackup_core::BackupBackend> = Arc::from(backend);
            Arc::new(match execution {
                Some(execution) => SyncAdapter::with_execution(backend, execution),
                None => SyncAdapter::new(backend),
            })
        };
        let name = match execution {
            Some(execution) => format!("{} adapted ({execution:?})", subject.name()),
            None => format!("{} adapted", subject.name()),
        };
        let created = Arc::clone(&subject);
        let mut adapted = AsyncSubject::new(name, move || adapt(created.create()));
        adapted.capabilities = subject.capabilities();
        if subject.capabilities().space_limit {
            adapted.limited = Some(Arc::new(move |bytes| {
                adapt(subject.limited(bytes).expect("the subject has a limit"))
            }));
        }
        adapted
    }

    /// The subject's name, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A fresh instance.
    pub fn create(&self) -> Arc<dyn AsyncBackupBackend> {
        (self.create)()
    }

    /// A fresh instance limited to about `bytes`, if the subject has a limit.
    pub fn limited(&self, bytes: u64) -> Option<Arc<dyn AsyncBackupBackend>> {
        self.limited.as_ref().map(|f| f(bytes))
    }

    /// What the subject supports.
    pub fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    /// The same subject seen through the sync trait ([`SyncView`]), with
    /// its calls awaited on `runtime`.
    pub fn sync_view(&self, runtime: tokio::runtime::Handle) -> Subject {
        let name = format!("{} (sync view)", self.name);
        let (create, rt) = (Arc::clone(&self.create), runtime.clone());
        let mut subject = Subject::new(name, move || Box::new(SyncView::new(create(), rt.clone())));
        if let Some(limited) = self.limited.clone() {
            subject = subject.with_limit(
                move |bytes| Box::new(SyncView::new(limited(bytes), runtime.clone())),
                self.capabilities.exact_page_accounting,
            );
        }
        subject
    }
}

impl fmt::Debug for AsyncSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncSubject")
            .field("name", &self.name)
            .field("capabilities", &self.capabilities)
            .finish_non_exhaustive()
    }
}
