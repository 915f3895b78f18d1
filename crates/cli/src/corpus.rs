//! The pages a benchmark runs on: the built-in corpus, made at run time from
//! real data where it can be, or a page file (such as a capture).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use pagebackup::{PAGE_SIZE, Page};
use pagebackup_testkit::{PageClass, PageSpec};

use crate::capture::capture;
use crate::input::read_regular;

/// Pages and where they came from.
pub struct Corpus {
    /// The pages.
    pub pages: Box<[Page]>,
    /// Where they came from: `built-in` or the file's path.
    pub source: String,
    /// How many pages of each kind, for the report.
    pub classes: Vec<(String, usize)>,
}

/// Shares of the built-in corpus, in percent, with their descriptions.
pub const BUILT_IN_MIX: [(&str, usize); 6] = [
    ("code", 20),
    ("heap", 35),
    ("text", 15),
    ("zero", 15),
    ("same-filled", 5),
    ("random", 10),
];

impl Corpus {
    /// A page file: a regular file whose size is a whole number of pages.
    pub fn from_file(path: &Path) -> Result<Corpus, String> {
        let bytes = read_regular(path, "the corpus")?;
        if bytes.is_empty() || !bytes.len().is_multiple_of(PAGE_SIZE) {
            return Err(format!(
                "the corpus {} is {} bytes, not a whole number of {PAGE_SIZE}-byte pages",
                path.display(),
                bytes.len()
            ));
        }
        let mut pages = Page::new_boxed_slice(bytes.len() / PAGE_SIZE);
        for (page, chunk) in pages.iter_mut().zip(bytes.chunks_exact(PAGE_SIZE)) {
            page.as_bytes_mut().copy_from_slice(chunk);
        }
        let classes = classify(&pages);
        Ok(Corpus {
            pages,
            source: path.display().to_string(),
            classes,
        })
    }

    /// The built-in corpus of `n` pages: pages of this executable (code),
    /// of a heap this process builds from real data structures and reads back
    /// from its own memory, of text files on the machine (generated text where
    /// there are none), and zero, same-filled and random pages, in the shares
    /// of [`BUILT_IN_MIX`].
    pub fn built_in(n: usize) -> Corpus {
        let share = |kind: &str| {
            BUILT_IN_MIX
                .iter()
                .find(|(k, _)| *k == kind)
                .map_or(0, |&(_, pct)| n * pct / 100)
        };
        let mut parts: Vec<(String, Vec<Box<Page>>)> = vec![
            ("code".into(), file_pages(&code_files(), share("code"))),
            ("heap".into(), heap_pages(share("heap"))),
            ("text".into(), text_pages(share("text"))),
            (
                "same-filled".into(),
                (0..share("same-filled"))
                    .map(|i| spec(PageClass::SameFilled, i))
                    .collect(),
            ),
            (
                "random".into(),
                (0..share("random")).map(|i| spec(PageClass::Random, i)).collect(),
            ),
        ];
        let held: usize = parts.iter().map(|(_, p)| p.len()).sum();
        parts.push((
            "zero".into(),
            (0..n.saturating_sub(held)).map(|_| Page::new_boxed()).collect(),
        ));
        let mut pages = Page::new_boxed_slice(n);
        let mut at = 0;
        let mut classes = Vec::new();
        for (kind, part) in parts {
            classes.push((kind, part.len()));
            for page in part {
                pages[at].clone_from(&page);
                at += 1;
            }
        }
        Corpus {
            pages,
            source: "built-in".into(),
            classes,
        }
    }
}

fn spec(class: PageClass, i: usize) -> Box<Page> {
    PageSpec::new(0x0b5e_55ed, i as u64, class).page()
}

/// Up to `n` pages of the given files, read in full pages.
fn file_pages(paths: &[std::path::PathBuf], n: usize) -> Vec<Box<Page>> {
    let mut pages = Vec::with_capacity(n);
    for path in paths {
        let Ok(bytes) = std::fs::read(path) else { continue };
        for chunk in bytes.chunks_exact(PAGE_SIZE).take(n - pages.len()) {
            let mut page = Page::new_boxed();
            page.as_bytes_mut().copy_from_slice(chunk);
            pages.push(page);
        }
        if pages.len() == n {
            break;
        }
    }
    pages
}

/// Executables and libraries: this program, the libraries it has mapped,
/// then the programs in `/usr/bin`.
fn code_files() -> Vec<std::path::PathBuf> {
    let mut files: Vec<std::path::PathBuf> = std::env::current_exe().into_iter().collect();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    for region in maps.lines().filter_map(crate::capture::Region::parse) {
        if region.perms.contains('x') && region.path.starts_with('/') && !files.iter().any(|f| *f == *region.path) {
            files.push(region.path.into());
        }
    }
    let mut bin: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/bin")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    bin.sort();
    files.extend(bin);
    files
}

/// `n` pages of text: the machine's license and documentation files where
/// they exist, generated text for the rest.
fn text_pages(n: usize) -> Vec<Box<Page>> {
    let mut paths: Vec<std::path::PathBuf> = ["/usr/share/common-licenses", "/usr/share/dict"]
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    paths.sort();
    let mut pages = file_pages(&paths, n);
    let generated = n - pages.len();
    pages.extend((0..generated).map(|i| spec(PageClass::Text, i)));
    pages
}

/// `n` pages of a real heap: this process builds maps, strings and vectors
/// of records, then reads its own anonymous memory back.
fn heap_pages(n: usize) -> Vec<Box<Page>> {
    let mut names: Vec<String> = Vec::new();
    let mut index: BTreeMap<u64, (String, f64)> = BTreeMap::new();
    let mut groups: HashMap<String, Vec<u32>> = HashMap::new();
    let records = n * 24;
    for i in 0..records as u64 {
        let name = format!("user-{:06}@host-{}.example", i * 7919 % 1_000_003, i % 97);
        index.insert(i * 2_654_435_761 % 1_000_000_007, (name.clone(), i as f64 / 7.0));
        groups.entry(format!("group-{}", i % 512)).or_default().push(i as u32);
        names.push(name);
    }
    let mut out = Vec::new();
    let captured = capture(std::process::id(), &mut out, Some(n as u64 * 4))
        .map(|_| out)
        .unwrap_or_default();
    std::hint::black_box((&names, &index, &groups));
    // The most recently mapped regions hold the structures just built: take
    // the last non-zero pages of the capture.
    let mut pages: Vec<Box<Page>> = captured
        .chunks_exact(PAGE_SIZE)
        .rev()
        .filter(|c| c.iter().any(|&b| b != 0))
        .take(n)
        .map(|c| {
            let mut page = Page::new_boxed();
            page.as_bytes_mut().copy_from_slice(c);
            page
        })
        .collect();
    let missing = n - pages.len();
    pages.extend((0..missing).map(|i| spec(PageClass::Heap, i)));
    pages
}

/// Counts pages by kind: zero, same-filled, and the rest by how well lz4
/// compresses them.
pub fn classify(pages: &[Page]) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut out = vec![0u8; 2 * PAGE_SIZE];
    for page in pages {
        let first = page.words().next().unwrap_or(0);
        let kind = if page.words().all(|w| w == first) {
            if first == 0 { "zero" } else { "same-filled" }
        } else {
            match lz4_flex::block::compress_into(page.as_bytes(), &mut out).unwrap_or(PAGE_SIZE) {
                0..1024 => "compressible (lz4 < 1 KiB)",
                1024..3072 => "compressible (lz4 1-3 KiB)",
                _ => "incompressible (lz4 >= 3 KiB)",
            }
        };
        *counts.entry(kind).or_default() += 1;
    }
    counts.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_corpus_has_its_mix() {
        let corpus = Corpus::built_in(1000);
        assert_eq!(corpus.pages.len(), 1000);
        let count = |kind: &str| corpus.classes.iter().find(|(k, _)| k == kind).map_or(0, |&(_, n)| n);
        assert_eq!((count("code"), count("heap"), count("text")), (200, 350, 150));
        assert_eq!((count("same-filled"), count("random"), count("zero")), (50, 100, 150));
        let kinds = classify(&corpus.pages);
        assert!(kinds.iter().any(|(k, _)| k.starts_with("compressible")), "{kinds:?}");
    }

    #[test]
    fn a_file_must_be_whole_pages() {
        let path = std::env::temp_dir().join(format!("pagebackup-corpus-test-{}", std::process::id()));
        std::fs::write(&path, vec![7u8; PAGE_SIZE + 1]).unwrap();
        let err = Corpus::from_file(&path).err().unwrap();
        assert!(err.contains("not a whole number of 4096-byte pages"), "{err}");
        std::fs::write(&path, vec![7u8; 2 * PAGE_SIZE]).unwrap();
        let corpus = Corpus::from_file(&path).unwrap();
        assert_eq!(corpus.pages.len(), 2);
        assert_eq!(corpus.classes, [("same-filled".to_string(), 2)]);
        std::fs::remove_file(&path).unwrap();
    }
}
