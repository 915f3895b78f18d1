//! The backend spec grammar: `NAME` or `NAME:key=value,key=value`.

use crate::OpenError;

/// A parsed spec: the backend's name and its `key=value` parameters, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec<'a> {
    /// The backend's name.
    pub name: &'a str,
    /// The parameters, in the order given; keys are unique.
    pub params: Vec<(&'a str, &'a str)>,
}

impl<'a> Spec<'a> {
    /// Parses `NAME` or `NAME:key=value,key=value`. Whitespace around names,
    /// keys and values is ignored; empty names, keys or values, and repeated
    /// keys, are errors.
    pub fn parse(spec: &'a str) -> Result<Self, OpenError> {
        let syntax = |detail: String| OpenError::Syntax {
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
        let mut params: Vec<(&str, &str)> = Vec::new();
        for item in rest.into_iter().flat_map(|r| r.split(',')) {
            let Some((key, value)) = item.split_once('=') else {
                return Err(syntax(format!("'{}' is not key=value", item.trim())));
            };
            let (key, value) = (key.trim(), value.trim());
            if key.is_empty() || value.is_empty() {
                return Err(syntax(format!("'{}' needs both a key and a value", item.trim())));
            }
            if params.iter().any(|&(k, _)| k == key) {
                return Err(syntax(format!("key '{key}' is given twice")));
            }
            params.push((key, value));
        }
        Ok(Spec { name, params })
    }
}

/// `text` with the password of every `scheme://user:password@` in it
/// replaced by `***`, so that errors quoting a spec never show one.
fn redact_passwords(text: &str) -> String {
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

/// Parses a duration: a whole number with a unit `ms`, `s` or `m`
/// (`500ms`, `5s`, `2m`). `None` for anything else, or on overflow.
pub(crate) fn parse_duration(text: &str) -> Option<std::time::Duration> {
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
    number.checked_mul(millis).map(std::time::Duration::from_millis)
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
                matches!(Spec::parse(bad), Err(OpenError::Syntax { .. })),
                "{bad:?} parsed"
            );
        }
    }

    #[test]
    fn syntax_errors_hide_passwords() {
        let err = Spec::parse("redis:url=redis://bob:pw1@h:1/0,bogus")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "bad backend spec 'redis:url=redis://bob:***@h:1/0,bogus': 'bogus' is not key=value"
        );
        assert_eq!(redact_passwords("a://:p@h b://h c://u@h"), "a://:***@h b://h c://u@h");
    }

    #[test]
    fn parses_durations() {
        use std::time::Duration;
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration(" 2 m"), Some(Duration::from_secs(120)));
        for bad in ["", "5", "s", "1.5s", "-1s", "5h", "99999999999999999999s"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
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
