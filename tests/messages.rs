//! The exact text of the errors a user meets first, so that a change to
//! any of them is a decision: each names what failed and where once, and
//! says what is valid.

use pagebackup::{BackupBackend, BackupFlags, Handle, MemoryBackend, Page, open};

fn open_error(spec: &str) -> String {
    match open(spec) {
        Ok(b) => panic!("{spec:?} opened {b:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn an_unknown_backend() {
    let msg = open_error("tape");
    let names = pagebackup::available_backends().join(", ");
    assert_eq!(msg, format!("unknown backend 'tape'; this build has: {names}"));
}

#[test]
fn a_bad_value() {
    assert_eq!(
        open_error("memory:limit=lots"),
        "backend 'memory': bad value 'lots' for 'limit': expected a size in bytes, \
         optionally with a suffix B, KiB, MiB, GiB or TiB (such as 64MiB)"
    );
}

#[test]
fn an_unknown_key() {
    assert_eq!(
        open_error("memory:size=1MiB"),
        "backend 'memory': no parameter 'size'; valid: limit"
    );
}

#[test]
fn an_invalid_handle() {
    let backend = MemoryBackend::new();
    let handle = backend.backup_page(&Page::new_boxed(), 0, BackupFlags::NONE).unwrap();
    backend.drop_handle(handle).unwrap();
    let err = backend.copy_page(&mut Page::new_boxed(), handle, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "memory backend: copy_page: invalid handle {handle}: \
             dropped already, issued by another backend instance, or never issued"
        )
    );
    let forged = Handle::from_raw(12345).unwrap();
    assert_eq!(
        backend.drop_handle(forged).unwrap_err().to_string(),
        format!(
            "memory backend: drop_handle: invalid handle {forged}: \
             dropped already, issued by another backend instance, or never issued"
        )
    );
}

#[test]
fn no_space() {
    let backend = MemoryBackend::with_limit(4096);
    let _held = backend.backup_page(&Page::new_boxed(), 0, BackupFlags::NONE).unwrap();
    let err = backend
        .backup_page(&Page::new_boxed(), 1, BackupFlags::NONE)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "memory backend: backup_page: no space left (limit of 4096 bytes reached); \
         drop handles, flush, or give the backend more space"
    );
}

#[test]
fn an_open_error_through_question_mark_names_the_backend_once() {
    fn open_backend(spec: &str) -> pagebackup::Result<Box<dyn BackupBackend>> {
        Ok(open(spec)?)
    }
    let report = |spec: &str| {
        let e = open_backend(spec).unwrap_err();
        let chain: Vec<String> = std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |e| e.source())
            .map(ToString::to_string)
            .collect();
        chain.join(": ")
    };
    assert_eq!(
        report("memory:limit=lots"),
        "memory backend: open: invalid configuration: bad value 'lots' for 'limit': expected a size in bytes, \
         optionally with a suffix B, KiB, MiB, GiB or TiB (such as 64MiB)"
    );
    assert_eq!(
        report("memory:size=1MiB"),
        "memory backend: open: invalid configuration: no parameter 'size'; valid: limit"
    );
    let names = pagebackup::available_backends().join(", ");
    assert_eq!(
        report("tape"),
        format!("pagebackup backend: open: cannot open the spec: unknown backend 'tape'; this build has: {names}")
    );
}
