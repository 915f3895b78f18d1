//! Reading a mapping's swap usage from `/proc/self/smaps`.

use std::io::{self, BufRead, BufReader};

/// Bytes swapped out of the mapping that starts at `start`, from its `Swap:`
/// line in `/proc/self/smaps`.
pub(crate) fn swap_bytes(start: usize) -> io::Result<u64> {
    let smaps = BufReader::new(std::fs::File::open("/proc/self/smaps")?);
    let mut in_mapping = false;
    for line in smaps.lines() {
        let line = line?;
        if let Some(range_start) = mapping_start(&line) {
            in_mapping = range_start == start;
        } else if in_mapping && let Some(kb) = line.strip_prefix("Swap:") {
            let kb = kb.trim().trim_end_matches("kB").trim();
            return kb
                .parse::<u64>()
                .map(|kb| kb * 1024)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("no mapping at {start:#x} in /proc/self/smaps"),
    ))
}

/// The start address of a mapping's header line (`start-end perms ...`), or
/// `None` for a field line (`Name: value`).
fn mapping_start(line: &str) -> Option<usize> {
    let (start, end) = line.split_whitespace().next()?.split_once('-')?;
    usize::from_str_radix(end, 16).ok()?;
    usize::from_str_radix(start, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_fields_are_told_apart() {
        assert_eq!(
            mapping_start("7f3a00000000-7f3a00400000 rw-s 00000000 00:01 42  /memfd:x (deleted)"),
            Some(0x7f3a_0000_0000)
        );
        assert_eq!(mapping_start("Swap:                  0 kB"), None);
        assert_eq!(mapping_start("VmFlags: rd wr sh mr mw me ms sd"), None);
    }
}
