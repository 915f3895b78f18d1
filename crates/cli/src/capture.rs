//! Capturing a live process's private anonymous memory as a page file.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

use pagebackup::{PAGE_SIZE, Page};

use crate::adapters::Error;

/// A region of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Permissions, as `rw-p`.
    pub perms: String,
    /// The mapped file or pseudo-name (`[heap]`, `[stack]`), empty for anonymous memory.
    pub path: String,
}

impl Region {
    /// Parses one line of `/proc/PID/maps`.
    pub fn parse(line: &str) -> Option<Region> {
        let mut fields = line.split_whitespace();
        let (start, end) = fields.next()?.split_once('-')?;
        let perms = fields.next()?.to_string();
        let (_offset, _dev, _inode) = (fields.next()?, fields.next()?, fields.next()?);
        let path = fields.collect::<Vec<_>>().join(" ");
        Some(Region {
            start: u64::from_str_radix(start, 16).ok()?,
            end: u64::from_str_radix(end, 16).ok()?,
            perms,
            path,
        })
    }

    /// Why the region is not captured, or `None` if it is private,
    /// anonymous and readable.
    pub fn skip_reason(&self) -> Option<&'static str> {
        if !self.perms.starts_with('r') {
            Some("not readable")
        } else if !self.perms.ends_with('p') {
            Some("shared, not private")
        } else if matches!(self.path.as_str(), "[vvar]" | "[vvar_vclock]" | "[vsyscall]" | "[vdso]") {
            Some("kernel-provided")
        } else if !(self.path.is_empty()
            || self.path.starts_with("[heap]")
            || self.path.starts_with("[stack")
            || self.path.starts_with("[anon"))
        {
            Some("file-backed")
        } else {
            None
        }
    }
}

/// What a capture did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CaptureReport {
    /// Pages written.
    pub pages: u64,
    /// Regions captured.
    pub regions: usize,
    /// Regions left out, with the reason: (`start-end path`, reason, pages).
    pub skipped: Vec<(String, String, u64)>,
}

/// Writes the private anonymous memory of process `pid` to `out`, a page
/// after another, up to `max_pages` pages. Regions that are not private,
/// anonymous and readable are skipped, and so are pages the kernel will not
/// read (guard pages): the report says which and why. Stops with an error
/// when asked to by a signal ([`crate::stop`]).
pub fn capture(pid: u32, out: &mut dyn Write, max_pages: Option<u64>) -> Result<CaptureReport, Error> {
    let maps_path = format!("/proc/{pid}/maps");
    let maps = std::fs::read_to_string(&maps_path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => format!("no process {pid}"),
        _ => format!("cannot read {maps_path}: {e}"),
    })?;
    let mem = File::open(format!("/proc/{pid}/mem")).map_err(|e| {
        format!("cannot open /proc/{pid}/mem: {e} (reading another process's memory needs ptrace access, such as root)")
    })?;
    let mut report = CaptureReport::default();
    let limit = max_pages.unwrap_or(u64::MAX);
    let mut page = Page::new_boxed();
    for region in maps.lines().filter_map(Region::parse) {
        let label = format!(
            "{:x}-{:x} {}",
            region.start,
            region.end,
            if region.path.is_empty() { "[anon]" } else { &region.path }
        );
        let pages = (region.end - region.start) / PAGE_SIZE as u64;
        if let Some(reason) = region.skip_reason() {
            report.skipped.push((label, reason.into(), pages));
            continue;
        }
        if report.pages >= limit {
            report.skipped.push((label, "the page limit was reached".into(), pages));
            continue;
        }
        let mut unreadable = 0;
        for addr in (region.start..region.end).step_by(PAGE_SIZE) {
            if report.pages >= limit {
                break;
            }
            crate::stop::check()?;
            match mem.read_exact_at(page.as_bytes_mut(), addr) {
                Ok(()) => {
                    out.write_all(page.as_bytes())
                        .map_err(|e| format!("cannot write the capture: {e}"))?;
                    report.pages += 1;
                }
                Err(_) => unreadable += 1,
            }
        }
        if unreadable > 0 {
            report.skipped.push((
                label,
                "pages the kernel would not read (guard pages, unmapped)".into(),
                unreadable,
            ));
        }
        report.regions += 1;
    }
    if report.pages == 0 {
        return Err(format!("process {pid} has no readable private anonymous memory").into());
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_classified() {
        let heap =
            Region::parse("55d0c1a00000-55d0c1a21000 rw-p 00000000 00:00 0                          [heap]").unwrap();
        assert_eq!(
            (heap.start, heap.end, heap.skip_reason()),
            (0x55d0_c1a0_0000, 0x55d0_c1a2_1000, None)
        );
        let anon = Region::parse("7f0000000000-7f0000100000 rw-p 00000000 00:00 0 ").unwrap();
        assert_eq!(anon.skip_reason(), None);
        let lib = Region::parse("7f1000000000-7f1000020000 r-xp 00000000 fd:00 1234 /usr/lib/libc.so.6").unwrap();
        assert_eq!(lib.skip_reason(), Some("file-backed"));
        let guard = Region::parse("7f2000000000-7f2000001000 ---p 00000000 00:00 0").unwrap();
        assert_eq!(guard.skip_reason(), Some("not readable"));
        let shared = Region::parse("7f3000000000-7f3000001000 rw-s 00000000 00:01 77 /memfd:x (deleted)").unwrap();
        assert_eq!(shared.skip_reason(), Some("shared, not private"));
        let vdso = Region::parse("7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0 [vdso]").unwrap();
        assert_eq!(vdso.skip_reason(), Some("kernel-provided"));
        assert_eq!(Region::parse("garbage"), None);
    }

    #[test]
    fn this_process_can_be_captured() {
        let data: Vec<u64> = (0..100_000).collect();
        let mut out = Vec::new();
        let report = capture(std::process::id(), &mut out, Some(64)).unwrap();
        assert_eq!(report.pages, 64);
        assert_eq!(out.len(), 64 * PAGE_SIZE);
        assert!(report.skipped.iter().any(|(_, reason, _)| reason == "file-backed"));
        assert_eq!(data[99_999], 99_999);
    }
}
