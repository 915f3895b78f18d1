//! What the `SIGBUS` handler asks of a region, and what it does after: the
//! boundary between the signal machinery ([`crate::sys`]) and the region
//! ([`crate::region`]), below both, so that neither names the other's types.

/// What the signal handler should do after a region looked at a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Served: return and let the access run again.
    Served,
    /// Not served (the page could not be restored): chain to the previous handler.
    Failed,
}

/// A region as the `SIGBUS` handler sees it.
pub(crate) trait SignalFaults: Send + Sync + std::fmt::Debug {
    /// Serves a fault at `addr`, inside the region, on the faulting thread;
    /// `write` tells whether the access was a write, where the architecture
    /// says. Runs in a signal handler: no allocation, no lock the
    /// interrupted code may hold.
    fn on_signal(&self, addr: usize, write: Option<bool>) -> Fault;
}
