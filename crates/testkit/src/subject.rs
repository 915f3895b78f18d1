//! [`Subject`]: how the conformance suite builds the backend under test, and
//! [`Capabilities`]: which of its cases apply.

use std::fmt;

use pagebackup_core::BackupBackend;

/// What the backend under test can be asked to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// [`Subject::limited`] builds a backend that runs out of space.
    pub space_limit: bool,
    /// A backend limited to `n * 4096` bytes holds exactly `n` pages of any
    /// content, and its `bytes_avail` is the limit minus what it holds (no
    /// compression, no other bound such as free swap).
    pub exact_page_accounting: bool,
}

impl Capabilities {
    /// No optional case applies.
    pub const NONE: Capabilities = Capabilities {
        space_limit: false,
        exact_page_accounting: false,
    };

    /// These capabilities with `space_limit` set.
    pub const fn with_space_limit(self, on: bool) -> Self {
        Capabilities {
            space_limit: on,
            ..self
        }
    }

    /// These capabilities with `exact_page_accounting` set.
    pub const fn with_exact_page_accounting(self, on: bool) -> Self {
        Capabilities {
            exact_page_accounting: on,
            ..self
        }
    }
}

type Create = Box<dyn Fn() -> Box<dyn BackupBackend> + Send + Sync>;
type CreateLimited = Box<dyn Fn(u64) -> Box<dyn BackupBackend> + Send + Sync>;

/// A backend configuration under test: how to build fresh instances of it.
pub struct Subject {
    name: String,
    create: Create,
    limited: Option<CreateLimited>,
    capabilities: Capabilities,
}

impl Subject {
    /// A subject named `name` whose instances `create` builds.
    pub fn new(name: impl Into<String>, create: impl Fn() -> Box<dyn BackupBackend> + Send + Sync + 'static) -> Self {
        Subject {
            name: name.into(),
            create: Box::new(create),
            limited: None,
            capabilities: Capabilities::NONE,
        }
    }

    /// Adds a constructor for instances limited to about `bytes` of pages,
    /// and sets [`Capabilities::space_limit`].
    pub fn with_limit(
        mut self,
        limited: impl Fn(u64) -> Box<dyn BackupBackend> + Send + Sync + 'static,
        exact_page_accounting: bool,
    ) -> Self {
        self.limited = Some(Box::new(limited));
        self.capabilities = self
            .capabilities
            .with_space_limit(true)
            .with_exact_page_accounting(exact_page_accounting);
        self
    }

    /// The subject's name, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A fresh instance.
    pub fn create(&self) -> Box<dyn BackupBackend> {
        (self.create)()
    }

    /// A fresh instance limited to about `bytes`, if the subject has a limit.
    pub fn limited(&self, bytes: u64) -> Option<Box<dyn BackupBackend>> {
        self.limited.as_ref().map(|f| f(bytes))
    }

    /// What the subject supports.
    pub fn capabilities(&self) -> Capabilities {
        self.capabilities
    }
}

impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subject")
            .field("name", &self.name)
            .field("capabilities", &self.capabilities)
            .finish_non_exhaustive()
    }
}
