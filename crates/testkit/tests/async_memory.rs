//! The async conformance suite on the reference backend behind the adapter,
//! run inline (as the memory backend declares) and on the blocking pool.
#![cfg(feature = "async")]

use pagebackup_async::Execution;
use pagebackup_core::MemoryBackend;
use pagebackup_testkit::{AsyncCheck, AsyncSubject, Subject, async_conformance};
use rstest::rstest;
use rstest_reuse::apply;

fn memory() -> Subject {
    Subject::new("memory", || Box::new(MemoryBackend::new()))
        .with_limit(|bytes| Box::new(MemoryBackend::with_limit(bytes)), true)
}

#[apply(async_conformance)]
fn memory_inline(#[case] check: AsyncCheck) {
    check.run(&AsyncSubject::adapted(memory(), None));
}

#[apply(async_conformance)]
fn memory_blocking(#[case] check: AsyncCheck) {
    check.run(&AsyncSubject::adapted(memory(), Some(Execution::Blocking)));
}
