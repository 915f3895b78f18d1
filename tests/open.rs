//! `pagebackup::open`: specs that work, and the errors bad ones give.

mod support;

use pagebackup::raw::params::ParamError;
use pagebackup::{BackupBackend, BackupError, ErrorKind, OpenError, available_backends, open};

fn err(spec: &str) -> OpenError {
    match open(spec) {
        Ok(b) => panic!("{spec:?} opened {b:?}"),
        Err(e) => e,
    }
}

#[test]
fn memory_is_always_available() {
    assert!(available_backends().contains(&"memory"));
    let b = open("memory").unwrap();
    assert_eq!(b.name(), "memory");
    assert!(b.bytes_avail() > 0);
    let limited = open("memory:limit=64MiB").unwrap();
    assert_eq!(limited.bytes_avail(), 64 << 20);
    assert_eq!(open(" memory : limit = 8KiB ").unwrap().bytes_avail(), 8192);
}

#[test]
fn every_available_backend_opens_by_name() {
    for spec in support::default_specs() {
        let b = open(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
        assert_eq!(Some(b.name()), spec.split(':').next());
    }
}

#[test]
fn an_unknown_backend_lists_the_available_ones() {
    let e = err("tape");
    assert!(matches!(&e, OpenError::UnknownBackend { name, .. } if name == "tape"));
    let msg = e.to_string();
    assert!(msg.starts_with("unknown backend 'tape'; this build has: "), "{msg}");
    for name in available_backends() {
        assert!(msg.contains(name), "{msg}");
    }
}

#[test]
fn an_unknown_key_lists_the_valid_ones() {
    let e = err("memory:size=1MiB");
    assert!(matches!(&e, OpenError::Param(ParamError::UnknownKey { backend: "memory", key, .. }) if key == "size"));
    assert_eq!(e.to_string(), "backend 'memory': no parameter 'size'; valid: limit");
}

#[test]
fn a_bad_value_says_what_is_expected() {
    for value in ["lots", "1.5GiB", "-1", "64MB", "99999999999TiB"] {
        let e = err(&format!("memory:limit={value}"));
        assert!(
            matches!(
                &e,
                OpenError::Param(ParamError::BadValue {
                    backend: "memory",
                    key: "limit",
                    ..
                })
            ),
            "{value}: {e}"
        );
        let msg = e.to_string();
        assert!(msg.contains(value) && msg.contains("KiB, MiB, GiB"), "{msg}");
    }
}

#[test]
fn malformed_specs_are_syntax_errors() {
    for spec in [
        "",
        "   ",
        ":limit=1",
        "memory:limit",
        "memory:limit=",
        "memory:limit=1,limit=2",
        "memory:,",
    ] {
        assert!(
            matches!(err(spec), OpenError::Param(ParamError::Syntax { .. })),
            "{spec:?}"
        );
    }
    assert_eq!(
        err("memory:limit=1,limit=2").to_string(),
        "bad backend spec 'memory:limit=1,limit=2': key 'limit' is given twice"
    );
}

#[test]
fn a_hundred_thousand_distinct_keys_are_refused_at_the_first() {
    let keys: Vec<String> = (0..100_000).map(|i| format!("k{i}=1")).collect();
    let spec = format!("memory:{}", keys.join(","));
    let e = err(&spec);
    assert!(
        matches!(&e, OpenError::Param(ParamError::UnknownKey { key, .. }) if key == "k0"),
        "{e}"
    );
}

#[cfg(feature = "shmem")]
#[test]
fn shmem_takes_a_capacity() {
    let b = open("shmem:capacity=1MiB").unwrap();
    assert_eq!(b.name(), "shmem");
    assert!(b.bytes_avail() <= 1 << 20);
    let e = err("shmem:capacity=100");
    assert!(
        matches!(&e, OpenError::Backend(inner) if inner.kind() == ErrorKind::Config),
        "{e}"
    );
    assert!(e.to_string().contains("capacity 100 is less than one page"), "{e}");
    assert_eq!(
        err("shmem:limit=1MiB").to_string(),
        "backend 'shmem': no parameter 'limit'; valid: capacity, checksum, reuse, reserve, shards, seal, seal_key"
    );
    let e = err("shmem:capacity=100TiB");
    assert!(e.to_string().contains("above the most a backend can address"), "{e}");
    assert!(err("shmem:shards=0").to_string().contains("at least 1"));
    assert!(open("shmem:capacity=1MiB,checksum=on,reuse=0,shards=2").is_ok());
}

#[cfg(not(feature = "shmem"))]
#[test]
fn shmem_without_its_feature_names_the_feature() {
    let e = err("shmem");
    assert!(
        matches!(
            e,
            OpenError::NotCompiled {
                name: "shmem",
                feature: "shmem"
            }
        ),
        "{e}"
    );
}

#[cfg(feature = "compressed")]
#[test]
fn compressed_takes_algo_level_limit_dict_checksum_and_huge() {
    assert_eq!(open("compressed").unwrap().name(), "compressed");
    assert_eq!(open("compressed:huge=64").unwrap().name(), "compressed");
    assert!(
        open("compressed:algo=zstd,level=19,limit=1MiB,checksum=on")
            .unwrap()
            .bytes_avail()
            <= 1 << 20
    );
    let cases = [
        (
            "compressed:algo=brotli",
            "bad value 'brotli' for 'algo': expected lz4 or zstd",
        ),
        (
            "compressed:algo=lz4,level=3",
            "bad value '3' for 'level': expected no level: algo=lz4 takes none, only algo=zstd does",
        ),
        (
            "compressed:algo=zstd,level=high",
            "bad value 'high' for 'level': expected a whole number",
        ),
        ("compressed:algo=zstd,level=40", "zstd level 40 is outside"),
        (
            "compressed:checksum=maybe",
            "bad value 'maybe' for 'checksum': expected on or off",
        ),
        (
            "compressed:algo=zstd,dict=/nonexistent/d",
            "cannot read dictionary /nonexistent/d",
        ),
        ("compressed:dict=/nonexistent/d", "cannot read dictionary"),
        (
            "compressed:algo=zstd,dict=/dev/zero",
            "cannot read dictionary /dev/zero: a device",
        ),
        ("compressed:huge=5000", "huge threshold 5000 is outside 64..=4095"),
        ("compressed:limit=1KiB", "limit 1024 is below the minimum of"),
    ];
    for (spec, expected) in cases {
        let msg = report(&err(spec));
        assert!(msg.contains(expected), "{spec}: {msg}");
    }
}

#[cfg(feature = "file")]
#[test]
fn file_takes_dir_path_max_size_and_io() {
    let b = open("file:io=sync,max_size=1MiB").unwrap();
    assert_eq!(b.name(), "file");
    assert_eq!(b.stats().io_path, Some("pwritev"));
    assert!(b.bytes_avail() <= 1 << 20);
    let cases = [
        ("file:io=aio", "bad value 'aio' for 'io': expected auto, uring or sync"),
        (
            "file:dir=/nonexistent/x",
            "cannot create a temporary file in /nonexistent/x",
        ),
        ("file:max_size=big", "bad value 'big' for 'max_size'"),
    ];
    for (spec, expected) in cases {
        let msg = report(&err(spec));
        assert!(msg.contains(expected), "{spec}: {msg}");
    }
}

/// `spec` is refused as a value that can never work: a configuration
/// error whose message holds `bound`.
fn refused(spec: &str, bound: &str) {
    let e = err(spec);
    let msg = e.to_string();
    assert!(msg.contains(bound), "{spec}: {msg}");
    let e: BackupError = e.into();
    assert_eq!(
        (e.kind(), e.origin().op),
        (ErrorKind::Config, pagebackup::Operation::Open),
        "{spec}: {e}"
    );
}

#[test]
fn memory_refuses_a_limit_below_one_page() {
    for limit in ["0", "1", "4095"] {
        refused(
            &format!("memory:limit={limit}"),
            "expected a size of at least 4096 bytes",
        );
    }
    assert_eq!(open("memory:limit=4096").unwrap().bytes_avail(), 4096);
}

#[cfg(feature = "shmem")]
#[test]
fn shmem_refuses_capacities_out_of_range_and_flags_but_on_off() {
    refused("shmem:capacity=0", "capacity 0 is less than one page (4096 bytes)");
    refused(
        "shmem:capacity=100TiB",
        "is above the most a backend can address, 8796093022208 bytes",
    );
    refused(
        "shmem:checksum=yes",
        "bad value 'yes' for 'checksum': expected on or off",
    );
}

#[cfg(feature = "file")]
#[test]
fn file_refuses_a_max_size_below_one_page_and_flags_but_on_off() {
    for size in ["0", "1"] {
        refused(
            &format!("file:max_size={size}"),
            &format!("max_size {size} is less than one page (4096 bytes)"),
        );
    }
    refused(
        "file:checksum=yes",
        "bad value 'yes' for 'checksum': expected on or off",
    );
    refused("file:direct=1", "bad value '1' for 'direct': expected on or off");
}

#[cfg(feature = "compressed")]
#[test]
fn compressed_refuses_a_limit_below_its_minimum_and_flags_but_on_off() {
    let min = pagebackup::compressed::CompressedBackend::min_limit();
    for limit in [0, 64 << 10, min - 1] {
        refused(
            &format!("compressed:limit={limit}"),
            &format!("limit {limit} is below the minimum of {min} bytes"),
        );
    }
    assert!(open(&format!("compressed:limit={min}")).is_ok());
    refused(
        "compressed:checksum=yes",
        "bad value 'yes' for 'checksum': expected on or off",
    );
    let unreadable: BackupError = err("compressed:algo=zstd,dict=/nonexistent/d").into();
    assert_eq!(unreadable.kind(), ErrorKind::Io, "{unreadable}");
}

/// `open_async` takes the same specs and gives the same errors as `open`.
#[cfg(feature = "async")]
#[test]
fn open_async_shares_the_grammar_and_errors_of_open() {
    for spec in ["tape", "memory:limit=lots", "memory:size=1MiB", "memory:limit"] {
        let sync = err(spec).to_string();
        let e = pagebackup::open_async(spec).expect_err(spec);
        assert_eq!(e.to_string(), sync, "{spec}");
    }
    for spec in support::default_specs() {
        let b = pagebackup::open_async(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
        assert_eq!(Some(b.name()), spec.split(':').next());
    }
    let limited = pagebackup::open_async("memory:limit=64MiB").unwrap();
    assert_eq!(limited.bytes_avail(), 64 << 20);
}

/// Every message of an error's chain, outermost first.
fn chain(e: &dyn std::error::Error) -> Vec<String> {
    std::iter::successors(Some(e), |e| e.source())
        .map(|e| e.to_string())
        .collect()
}

/// The chain on one line, as `anyhow`'s `{:#}` prints it.
fn report(e: &dyn std::error::Error) -> String {
    chain(e).join(": ")
}

#[test]
fn open_errors_compose_into_backup_errors_with_question_mark() {
    fn open_and_back_up(spec: &str) -> pagebackup::Result<pagebackup::Handle> {
        let backend = open(spec)?;
        backend.backup_page(&pagebackup::Page::new_boxed(), 0, pagebackup::BackupFlags::NONE)
    }
    assert!(open_and_back_up("memory").is_ok());
    let e = open_and_back_up("memory:size=1MiB").unwrap_err();
    assert_eq!(e.kind(), pagebackup::ErrorKind::Config);
    assert_eq!(
        e.origin(),
        pagebackup::Origin::new("memory", pagebackup::Operation::Open)
    );
    // The origin names the backend; the message, once, what is wrong.
    assert_eq!(
        chain(&e),
        ["memory backend: open: invalid configuration: no parameter 'size'; valid: limit"]
    );
    let unnamed = open_and_back_up("tape").unwrap_err();
    assert_eq!(unnamed.origin().backend, "pagebackup");
    assert_eq!(unnamed.kind(), pagebackup::ErrorKind::Config);
    let cause = unnamed.cause().and_then(|c| c.downcast_ref::<OpenError>());
    assert!(
        matches!(cause, Some(OpenError::UnknownBackend { name, .. }) if name == "tape"),
        "{cause:?}"
    );
}

#[cfg(feature = "file")]
#[test]
fn a_backend_that_fails_to_start_appears_once_in_the_chain() {
    let e = err("file:dir=/nonexistent/x");
    assert!(matches!(&e, OpenError::Backend(_)), "{e:?}");
    let messages = chain(&e);
    assert_eq!(
        messages,
        [
            "file backend: open: I/O error",
            "cannot create a temporary file in /nonexistent/x",
            &std::io::Error::from_raw_os_error(2).to_string()
        ]
    );
    let backup: pagebackup::BackupError = e.into();
    assert_eq!(chain(&backup), messages);
    assert_eq!(backup.origin().op, pagebackup::Operation::Open);
}

#[cfg(feature = "redis")]
#[test]
fn redis_specs_are_checked_before_connecting_and_hide_passwords() {
    let e = err("redis:timeout=5s");
    assert!(
        matches!(
            &e,
            OpenError::Param(ParamError::BadValue {
                backend: "redis",
                key: "url",
                ..
            })
        ),
        "{e}"
    );
    let e = err("redis:url=redis://127.0.0.1:1,timeout=5");
    assert!(
        matches!(&e, OpenError::Param(ParamError::BadValue { key: "timeout", .. })),
        "{e}"
    );
    let e = err("redis:url=redis://127.0.0.1:1,cluster=maybe");
    assert!(
        matches!(&e, OpenError::Param(ParamError::BadValue { key: "cluster", .. })),
        "{e}"
    );
    let e = err("redis:url=redis://:hunter2@127.0.0.1:1,timeout=200ms");
    let shown = format!("{e} {e:?}");
    assert!(
        matches!(&e, OpenError::Backend(b) if b.kind() == pagebackup::ErrorKind::Io),
        "{shown}"
    );
    assert!(!shown.contains("hunter2") && shown.contains(":***@"), "{shown}");
    let e = err("redis:url=redis://:hunter2@h:1,oops");
    assert!(!e.to_string().contains("hunter2"), "{e}");
}
