//! Backend parameters from a spec: `NAME` or `NAME:key=value,key=value`.
//!
//! A backend crate declares its parameters once, as a table of
//! [`ParamDoc`]s, and parses them once, from [`Params`], into its typed
//! config. The table feeds the unknown-key error ("valid: ..."), and
//! [`ParamDoc::markdown`] renders it for the docs. Parsing is linear in the
//! length of the spec.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::BackupError;

/// One parameter a backend takes, as its docs show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamDoc {
    /// The key.
    pub key: &'static str,
    /// The value's syntax (`SIZE`, `N`, `PATH`, `on|off`, `lz4|zstd`).
    pub syntax: &'static str,
    /// The default, in words.
    pub default: &'static str,
    /// What it does.
    pub meaning: &'static str,
}

impl ParamDoc {
    /// `table` as markdown table rows, one per parameter:
    /// `` | `key=syntax` | default | meaning | ``, with `|` escaped.
    pub fn markdown(table: &[ParamDoc]) -> String {
        let cell = |text: &str| text.replace('|', "\\|");
        table
            .iter()
            .map(|p| {
                format!(
                    "| `{}={}` | {} | {} |\n",
                    p.key,
                    cell(p.syntax),
                    cell(p.default),
                    cell(p.meaning)
                )
            })
            .collect()
    }
}

/// A parsed spec: the backend's name and its `key=value` parameters, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec<'a> {
    /// The backend's name.
    pub name: &'a str,
    /// The parameters, in the order given; [`Spec::parse`] makes keys unique.
    pub params: Vec<(&'a str, &'a str)>,
}

impl<'a> Spec<'a> {
    /// Parses `NAME` or `NAME:key=value,key=value`. Whitespace around names,
    /// keys and values is ignored; empty names, keys or values, and repeated
    /// keys, are [`ParamError::Syntax`]. Linear in the spec's length.
    pub fn parse(spec: &'a str) -> Result<Self, ParamError> {
        let syntax = |detail: String| ParamError::Syntax {
            spec: redact_passwords(spec),
            detail: redact_passwords(&detail),
        };
        let (name, rest) = match spec.split_once(':') {
            Some((name, rest)) => (name.trim(), Some(rest)),
            None => (spec.trim(), None),
        };
        if name.is_empty() {
            return Err(syntax(
                "the backend name is missing; write NAME or NAME:key=value,...".into(),
            ));
        }
        let mut params = Vec::new();
        let mut seen = HashSet::new();
        for item in rest.into_iter().flat_map(split_top_level(',')) {
            let Some((key, value)) = item.split_once('=') else {
                return Err(syntax(format!("'{}' is not key=value", item.trim())));
            };
            let (key, value) = (key.trim(), value.trim());
            if key.is_empty() || value.is_empty() {
                return Err(syntax(format!("'{}' needs both a key and a value", item.trim())));
            }
            if !seen.insert(key) {
                return Err(syntax(format!("key '{key}' is given twice")));
            }
            params.push((key, value));
        }
        Ok(Spec { name, params })
    }
}

/// Why a spec's parameters cannot configure a backend. Every message says
/// what is valid.
#[derive(Debug)]
#[non_exhaustive]
pub enum ParamError {
    /// The spec does not follow `NAME` or `NAME:key=value,...`.
    Syntax {
        /// The spec as given.
        spec: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The backend takes no parameter of this name.
    UnknownKey {
        /// The backend.
        backend: &'static str,
        /// The key given.
        key: String,
        /// The parameters it takes.
        valid: &'static [ParamDoc],
    },
    /// A parameter's value is not valid.
    BadValue {
        /// The backend.
        backend: &'static str,
        /// The parameter.
        key: &'static str,
        /// The value given.
        value: String,
        /// What it should be.
        expected: String,
    },
    /// A parameter names something that could not be loaded (a file).
    Load {
        /// The backend.
        backend: &'static str,
        /// The parameter.
        key: &'static str,
        /// Why loading failed.
        error: Box<BackupError>,
    },
}

impl ParamError {
    /// The backend the error is about; `None` for a syntax error.
    pub fn backend(&self) -> Option<&'static str> {
        match self {
            Self::Syntax { .. } => None,
            Self::UnknownKey { backend, .. } | Self::BadValue { backend, .. } | Self::Load { backend, .. } => {
                Some(backend)
            }
        }
    }
}

impl ParamError {
    /// The message without the backend's name, for a context that names it
    /// already (an error whose origin is that backend): "no parameter
    /// 'size'; valid: limit". A syntax error names no backend and reads
    /// the same as its `Display`.
    pub fn detail(&self) -> String {
        match self {
            Self::Syntax { spec, detail } => format!("bad backend spec '{spec}': {detail}"),
            Self::UnknownKey { key, valid: [], .. } => format!("takes no parameters, but '{key}' was given"),
            Self::UnknownKey { key, valid, .. } => {
                let keys: Vec<&str> = valid.iter().map(|p| p.key).collect();
                format!("no parameter '{key}'; valid: {}", keys.join(", "))
            }
            Self::BadValue {
                key, value, expected, ..
            } => format!("bad value '{value}' for '{key}': expected {expected}"),
            Self::Load { key, .. } => format!("cannot use '{key}'"),
        }
    }
}

impl fmt::Display for ParamError {
    /// The backend's name, then [`ParamError::detail`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.backend() {
            Some(backend) => write!(f, "backend '{backend}': {}", self.detail()),
            None => f.write_str(&self.detail()),
        }
    }
}

impl std::error::Error for ParamError {
    /// A load error's cause, the backend's error.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Load { error, .. } => Some(&**error),
            _ => None,
        }
    }
}

/// The expected form of a size, in [`ParamError::BadValue`].
const SIZE_SYNTAX: &str = "a size in bytes, optionally with a suffix B, KiB, MiB, GiB or TiB (such as 64MiB)";

/// A backend's parameters from a spec, checked against its [`ParamDoc`]
/// table, with typed getters. A getter gives `Ok(None)` for a key not given,
/// and [`ParamError::BadValue`] for a value it cannot take.
#[derive(Debug, Clone)]
pub struct Params<'a> {
    backend: &'static str,
    given: Vec<(&'a str, &'a str)>,
}

impl<'a> Params<'a> {
    /// `given` (a [`Spec`]'s `params`) for `backend`, whose parameters are
    /// `table`; the first key not in `table` is [`ParamError::UnknownKey`].
    pub fn new(
        backend: &'static str,
        table: &'static [ParamDoc],
        given: &[(&'a str, &'a str)],
    ) -> Result<Self, ParamError> {
        if let Some(&(key, _)) = given.iter().find(|(k, _)| !table.iter().any(|p| p.key == *k)) {
            return Err(ParamError::UnknownKey {
                backend,
                key: key.to_string(),
                valid: table,
            });
        }
        Ok(Params {
            backend,
            given: given.to_vec(),
        })
    }

    /// The raw value of `key`, if given.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.given.iter().find(|&&(k, _)| k == key).map(|&(_, v)| v)
    }

    /// The error for a bad value of `key`: `expected` says what is valid.
    pub fn bad(&self, key: &'static str, expected: impl Into<String>) -> ParamError {
        ParamError::BadValue {
            backend: self.backend,
            key,
            value: self.get(key).unwrap_or("").to_string(),
            expected: expected.into(),
        }
    }

    /// The error for `key`, whose value could not be loaded.
    pub fn unusable(&self, key: &'static str, error: BackupError) -> ParamError {
        ParamError::Load {
            backend: self.backend,
            key,
            error: Box::new(error),
        }
    }

    /// `key` parsed by `parse`, or `expected` in the error.
    fn parsed<T>(
        &self,
        key: &'static str,
        expected: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<T>, ParamError> {
        self.get(key)
            .map(|v| parse(v).ok_or_else(|| self.bad(key, expected)))
            .transpose()
    }

    /// `key` as a size ([`parse_size`]: `64MiB`).
    pub fn size(&self, key: &'static str) -> Result<Option<u64>, ParamError> {
        self.parsed(key, SIZE_SYNTAX, parse_size)
    }

    /// `key` as a size of at least `min` bytes.
    pub fn size_at_least(&self, key: &'static str, min: u64) -> Result<Option<u64>, ParamError> {
        match self.size(key)? {
            Some(size) if size < min => Err(self.bad(key, format!("a size of at least {min} bytes"))),
            size => Ok(size),
        }
    }

    /// `key` as a whole number of type `T` (`-3`, `19`).
    pub fn number<T: FromStr>(&self, key: &'static str) -> Result<Option<T>, ParamError> {
        self.parsed(key, "a whole number", |v| v.parse().ok())
    }

    /// `key` as a count: a whole number of at least 1.
    pub fn count(&self, key: &'static str) -> Result<Option<usize>, ParamError> {
        self.parsed(key, "a whole number of at least 1", |v| {
            v.parse().ok().filter(|&n: &usize| n >= 1)
        })
    }

    /// `key` as a flag: `on` or `off`, nothing else.
    pub fn flag(&self, key: &'static str) -> Result<Option<bool>, ParamError> {
        self.parsed(key, "on or off", |v| match v {
            "on" => Some(true),
            "off" => Some(false),
            _ => None,
        })
    }

    /// `key`, which must be one of `options`.
    pub fn choice(&self, key: &'static str, options: &[&'static str]) -> Result<Option<&'static str>, ParamError> {
        let expected = match options {
            [] => String::from("nothing"),
            [only] => (*only).to_string(),
            [init @ .., last] => format!("{} or {last}", init.join(", ")),
        };
        self.parsed(key, &expected, |v| options.iter().find(|&&o| o == v).copied())
    }

    /// `key` as a duration ([`parse_duration`]: `500ms`, `5s`, `2m`), not zero.
    pub fn duration(&self, key: &'static str) -> Result<Option<Duration>, ParamError> {
        self.parsed(key, "a duration such as 500ms, 5s or 1m", |v| {
            parse_duration(v).filter(|d| !d.is_zero())
        })
    }

    /// `key` as a path (any value is one).
    pub fn path(&self, key: &str) -> Option<PathBuf> {
        self.get(key).map(PathBuf::from)
    }
}

/// Splits at `separator` where it is outside brackets, so that a value
/// may be a bracketed list of nested specs (`tiers=[a:x=1,y=2 | b]`).
pub fn split_top_level(separator: char) -> impl Fn(&str) -> Vec<&str> {
    move |text| {
        let (mut depth, mut start, mut items) = (0i32, 0, Vec::new());
        for (at, c) in text.char_indices() {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                c if c == separator && depth == 0 => {
                    items.push(&text[start..at]);
                    start = at + c.len_utf8();
                }
                _ => {}
            }
        }
        items.push(&text[start..]);
        items
    }
}

/// Parses a duration: a whole number with a unit `ms`, `s` or `m`
/// (`500ms`, `5s`, `2m`). `None` for anything else, or on overflow.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().ok()?;
    let millis = match unit.trim() {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        _ => return None,
    };
    number.checked_mul(millis).map(Duration::from_millis)
}

/// `text` with the password of every `scheme://user:password@` in it
/// replaced by `***`, so that errors quoting a spec or a value never show
/// one.
pub fn redact_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let authority = &tail[..tail.find(['/', ',']).unwrap_or(tail.len())];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&tail[..=colon]);
                out.push_str("***");
                rest = &tail[at..];
            }
            _ => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// Parses a size: a whole number of bytes with an optional binary suffix
/// `B`, `KiB`, `MiB`, `GiB` or `TiB` (case-insensitive, space allowed before
/// it). `None` for anything else, or on overflow.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let number: u64 = digits.parse().ok()?;
    let shift = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "kib" => 10,
        "mib" => 20,
        "gib" => 30,
        "tib" => 40,
        _ => return None,
    };
    number.checked_mul(1 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &[ParamDoc] = &[
        ParamDoc {
            key: "limit",
            syntax: "SIZE",
            default: "none",
            meaning: "most bytes",
        },
        ParamDoc {
            key: "io",
            syntax: "a|b|c",
            default: "a",
            meaning: "the path",
        },
        ParamDoc {
            key: "check",
            syntax: "on|off",
            default: "off",
            meaning: "checksums",
        },
        ParamDoc {
            key: "shards",
            syntax: "N",
            default: "CPUs",
            meaning: "shards",
        },
    ];

    fn params(spec: &str) -> Result<Params<'_>, ParamError> {
        Params::new("test", TABLE, &Spec::parse(spec)?.params)
    }

    fn bad(spec: &str, key: &str) -> String {
        let params = params(spec).unwrap();
        let err = match key {
            "limit" => params.size_at_least("limit", 4096).unwrap_err(),
            "io" => params.choice("io", &["a", "b", "c"]).unwrap_err(),
            "check" => params.flag("check").unwrap_err(),
            _ => params.count("shards").unwrap_err(),
        };
        err.to_string()
    }

    #[test]
    fn parses_names_and_parameters() {
        assert_eq!(
            Spec::parse("memory").unwrap(),
            Spec {
                name: "memory",
                params: vec![]
            }
        );
        assert_eq!(
            Spec::parse(" file : dir = /tmp , max_size=1GiB").unwrap(),
            Spec {
                name: "file",
                params: vec![("dir", "/tmp"), ("max_size", "1GiB")]
            }
        );
        assert_eq!(
            Spec::parse("memory:").unwrap_err().to_string(),
            "bad backend spec 'memory:': '' is not key=value"
        );
        for bad in [
            "",
            ":limit=1",
            "memory:limit",
            "memory:limit=",
            "memory:=4",
            "memory:limit=1,limit=2",
            "m:a=1,,b=2",
        ] {
            assert!(
                matches!(Spec::parse(bad), Err(ParamError::Syntax { .. })),
                "{bad:?} parsed"
            );
        }
    }

    #[test]
    fn typed_getters_take_their_syntax_and_nothing_else() {
        let p = params("t:limit=8KiB,io=b,check=on,shards=3").unwrap();
        assert_eq!(p.size_at_least("limit", 4096).unwrap(), Some(8192));
        assert_eq!(p.choice("io", &["a", "b", "c"]).unwrap(), Some("b"));
        assert_eq!(p.flag("check").unwrap(), Some(true));
        assert_eq!(p.count("shards").unwrap(), Some(3));
        assert_eq!(p.number::<i32>("shards").unwrap(), Some(3));
        assert_eq!(p.path("io"), Some(PathBuf::from("b")));
        let none = params("t").unwrap();
        assert_eq!((none.size("limit").unwrap(), none.flag("check").unwrap()), (None, None));
        assert_eq!(
            bad("t:limit=4095", "limit"),
            "backend 'test': bad value '4095' for 'limit': expected a size of at least 4096 bytes"
        );
        assert!(
            bad("t:limit=lots", "limit").ends_with(
                "expected a size in bytes, optionally with a suffix B, KiB, MiB, GiB or TiB (such as 64MiB)"
            )
        );
        assert!(bad("t:io=d", "io").ends_with("expected a, b or c"));
        for flag in ["yes", "true", "1", "no", "ON"] {
            assert!(
                bad(&format!("t:check={flag}"), "check").ends_with("expected on or off"),
                "{flag}"
            );
        }
        assert!(bad("t:shards=0", "shards").ends_with("expected a whole number of at least 1"));
    }

    #[test]
    fn an_unknown_key_lists_the_table() {
        let e = params("t:limit=1,size=2").unwrap_err();
        assert_eq!(e.backend(), Some("test"));
        assert_eq!(e.detail(), "no parameter 'size'; valid: limit, io, check, shards");
        assert_eq!(
            e.to_string(),
            "backend 'test': no parameter 'size'; valid: limit, io, check, shards"
        );
        let none = Params::new("bare", &[], &[("x", "1")]).unwrap_err();
        assert_eq!(
            none.to_string(),
            "backend 'bare': takes no parameters, but 'x' was given"
        );
    }

    #[test]
    fn many_distinct_keys_are_parsed_and_refused_and_a_repeat_named() {
        let spec = format!(
            "t:{}",
            (0..100_000).map(|i| format!("k{i}=1")).collect::<Vec<_>>().join(",")
        );
        assert_eq!(Spec::parse(&spec).unwrap().params.len(), 100_000);
        let e = params(&spec).unwrap_err();
        assert!(matches!(&e, ParamError::UnknownKey { key, .. } if key == "k0"), "{e}");
        let repeated = format!("{spec},k99999=2");
        assert!(
            Spec::parse(&repeated)
                .unwrap_err()
                .to_string()
                .ends_with("key 'k99999' is given twice")
        );
    }

    #[test]
    fn a_table_renders_as_markdown_rows() {
        assert_eq!(
            ParamDoc::markdown(&TABLE[..2]),
            "| `limit=SIZE` | none | most bytes |\n| `io=a\\|b\\|c` | a | the path |\n"
        );
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("16KiB"), Some(16 << 10));
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size("2 gib"), Some(2 << 30));
        assert_eq!(parse_size("1TiB"), Some(1 << 40));
        assert_eq!(parse_size("12B"), Some(12));
        for bad in [
            "",
            "MiB",
            "1.5GiB",
            "-1",
            "1MB",
            "1 M",
            "99999999999999999999",
            "20000000TiB",
        ] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }
}
