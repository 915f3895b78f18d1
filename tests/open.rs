//! `pagebackup::open`: specs that work, and the errors bad ones give.

use pagebackup::{BackupBackend, OpenError, available_backends, open};

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
    for name in available_backends() {
        let b = open(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(b.name(), name);
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
    assert!(matches!(&e, OpenError::UnknownKey { backend: "memory", key, .. } if key == "size"));
    assert_eq!(e.to_string(), "backend 'memory' has no parameter 'size'; valid: limit");
}

#[test]
fn a_bad_value_says_what_is_expected() {
    for value in ["lots", "1.5GiB", "-1", "64MB", "99999999999TiB"] {
        let e = err(&format!("memory:limit={value}"));
        assert!(
            matches!(
                &e,
                OpenError::BadValue {
                    backend: "memory",
                    key: "limit",
                    ..
                }
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
        assert!(matches!(err(spec), OpenError::Syntax { .. }), "{spec:?}");
    }
    assert_eq!(
        err("memory:limit=1,limit=2").to_string(),
        "bad backend spec 'memory:limit=1,limit=2': key 'limit' is given twice"
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
        matches!(&e, OpenError::Backend(inner) if inner.kind() == pagebackup::ErrorKind::InvalidInput),
        "{e}"
    );
    assert!(e.to_string().contains("capacity 100 is less than one page"), "{e}");
    assert_eq!(
        err("shmem:limit=1MiB").to_string(),
        "backend 'shmem' has no parameter 'limit'; valid: capacity, checksum, reuse, shards"
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
fn compressed_takes_algo_level_limit_dict_and_checksum() {
    assert_eq!(open("compressed").unwrap().name(), "compressed");
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
            "bad value '3' for 'level': expected no level with algo=lz4",
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
    ];
    for (spec, expected) in cases {
        let msg = err(spec).to_string();
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
        let msg = err(spec).to_string();
        assert!(msg.contains(expected), "{spec}: {msg}");
    }
}
