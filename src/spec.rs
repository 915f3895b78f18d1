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
            spec: spec.to_string(),
            detail,
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
        for item in rest.into_iter().flat_map(split_top_level(',')) {
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

/// Splits at `separator` where it is outside brackets, so that a value
/// may be a bracketed list of nested specs (`tiers=[a:x=1,y=2 | b]`).
pub(crate) fn split_top_level(separator: char) -> impl Fn(&str) -> Vec<&str> {
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
    fn bracketed_values_keep_their_commas() {
        assert_eq!(
            Spec::parse("tiered:tiers=[compressed:algo=lz4,limit=1MiB | file],high=90%")
                .unwrap()
                .params,
            [("tiers", "[compressed:algo=lz4,limit=1MiB | file]"), ("high", "90%")]
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
