//! Deterministic page contents: a seed and an index give a page of a chosen
//! class, so a restored page can be checked without keeping a copy.

use std::cell::RefCell;
use std::fmt;

use pagebackup_core::{PAGE_SIZE, Page};

use crate::SplitMix64;

/// The kinds of page content backends meet, from trivially compressible to
/// incompressible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageClass {
    /// All zero bytes.
    Zero,
    /// One non-zero 8-byte word repeated (zram's "same-filled" page).
    SameFilled,
    /// ASCII text: words, spaces, punctuation and newlines.
    Text,
    /// A process heap: pointers into a few regions, small integers, lengths
    /// and zero padding.
    Heap,
    /// Arrays of 32-bit integers and floats that change slowly.
    Numeric,
    /// Uniformly random bytes.
    Random,
}

impl PageClass {
    /// Every class, in the order above.
    pub const ALL: [PageClass; 6] = [
        PageClass::Zero,
        PageClass::SameFilled,
        PageClass::Text,
        PageClass::Heap,
        PageClass::Numeric,
        PageClass::Random,
    ];
}

/// Names one generated page: its stream `seed`, its `index` in the stream
/// and its class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageSpec {
    /// The stream's seed.
    pub seed: u64,
    /// The page's index within the stream.
    pub index: u64,
    /// The content class.
    pub class: PageClass,
}

/// A restored page that differs from the page it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The page that was expected.
    pub spec: PageSpec,
    /// The first differing byte offset.
    pub offset: usize,
    /// The expected byte there.
    pub expected: u8,
    /// The byte found.
    pub found: u8,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "page {:?} differs at byte {}: expected {:#04x}, found {:#04x}",
            self.spec, self.offset, self.expected, self.found
        )
    }
}

impl std::error::Error for Mismatch {}

const WORDS: &[&str] = &[
    "the", "page", "backup", "memory", "handle", "restore", "swap", "kernel", "buffer", "of", "and", "to", "a", "in",
    "is", "for", "driver", "pool", "shrink", "file", "zram", "compress", "data", "with", "that", "on", "error",
    "return", "struct", "index",
];

impl PageSpec {
    /// Page `index` of stream `seed`, of class `class`.
    pub const fn new(seed: u64, index: u64, class: PageClass) -> Self {
        PageSpec { seed, index, class }
    }

    /// Page `index` of stream `seed`, with a class drawn from both (about
    /// one page in six of each class).
    pub fn mixed(seed: u64, index: u64) -> Self {
        let class = PageClass::ALL[SplitMix64::for_index(seed ^ 0xc1a5, index).index(PageClass::ALL.len())];
        PageSpec { seed, index, class }
    }

    /// A freshly allocated copy of the page.
    pub fn page(&self) -> Box<Page> {
        let mut page = Page::new_boxed();
        self.fill(&mut page);
        page
    }

    /// Writes the page's contents into `page`.
    pub fn fill(&self, page: &mut Page) {
        let mut rng = SplitMix64::for_index(self.seed, self.index);
        let bytes = page.as_bytes_mut();
        match self.class {
            PageClass::Zero => bytes.fill(0),
            PageClass::SameFilled => {
                let word = rng.next_u64() | 1;
                fill_words(bytes, |_| word);
            }
            PageClass::Text => fill_text(bytes, &mut rng),
            PageClass::Heap => fill_heap(bytes, &mut rng),
            PageClass::Numeric => fill_numeric(bytes, &mut rng),
            PageClass::Random => fill_words(bytes, |_| rng.next_u64()),
        }
    }

    /// Checks that `page` holds exactly this page's contents.
    pub fn verify(&self, page: &Page) -> Result<(), Mismatch> {
        thread_local! {
            static EXPECTED: RefCell<Box<Page>> = RefCell::new(Page::new_boxed());
        }
        EXPECTED.with(|expected| {
            let mut expected = expected.borrow_mut();
            self.fill(&mut expected);
            if expected.0 == page.0 {
                return Ok(());
            }
            let offset = (0..PAGE_SIZE)
                .find(|&i| expected.0[i] != page.0[i])
                .expect("pages differ");
            Err(Mismatch {
                spec: *self,
                offset,
                expected: expected.0[offset],
                found: page.0[offset],
            })
        })
    }
}

fn fill_words(bytes: &mut [u8; PAGE_SIZE], mut word: impl FnMut(usize) -> u64) {
    for (i, chunk) in bytes.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&word(i).to_le_bytes());
    }
}

fn fill_text(bytes: &mut [u8; PAGE_SIZE], rng: &mut SplitMix64) {
    let mut pos = 0;
    let mut line = 0;
    while pos < PAGE_SIZE {
        let word = WORDS[rng.index(WORDS.len())].as_bytes();
        let sep: &[u8] = if line > 60 {
            line = 0;
            b".\n"
        } else if rng.percent(8) {
            b", "
        } else {
            b" "
        };
        for &b in word.iter().chain(sep) {
            if pos == PAGE_SIZE {
                break;
            }
            bytes[pos] = b;
            pos += 1;
            line += 1;
        }
    }
}

fn fill_heap(bytes: &mut [u8; PAGE_SIZE], rng: &mut SplitMix64) {
    const REGIONS: [u64; 3] = [0x5555_5555_0000, 0x7f3a_1c00_0000, 0x7ffd_e000_0000];
    let mut state = 0u64;
    fill_words(bytes, |i| {
        if i % 4 == 0 {
            state = rng.next_u64();
        }
        match (state >> ((i % 4) * 8)) % 8 {
            0..=2 => REGIONS[(state % 3) as usize] + ((state >> 20) & 0xf_fff0),
            3 | 4 => (state >> 40) % 1024,
            5 => 0x21 + (i as u64 % 4) * 0x10,
            _ => 0,
        }
    });
}

fn fill_numeric(bytes: &mut [u8; PAGE_SIZE], rng: &mut SplitMix64) {
    let floats = rng.percent(50);
    let start = rng.below(1 << 20) as i64;
    let step = 1 + rng.below(16) as i64;
    for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
        let v = start + step * i as i64 + (rng.below(3) as i64 - 1);
        let word = if floats { (v as f32 / 16.0).to_bits() } else { v as u32 };
        chunk.copy_from_slice(&word.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_deterministic_and_distinct() {
        for class in PageClass::ALL {
            let a = PageSpec::new(7, 3, class);
            assert_eq!(a.page().0, a.page().0, "{class:?} is not deterministic");
            a.verify(&a.page()).unwrap();
            if class != PageClass::Zero {
                let b = PageSpec::new(7, 4, class);
                assert_ne!(a.page().0, b.page().0, "{class:?} repeats across indices");
                let err = b.verify(&a.page()).unwrap_err();
                assert_eq!(err.spec, b);
            }
        }
    }

    #[test]
    fn classes_have_their_shape() {
        let zero = PageSpec::new(1, 1, PageClass::Zero).page();
        assert!(zero.0.iter().all(|&b| b == 0));
        let same = PageSpec::new(1, 1, PageClass::SameFilled).page();
        let first = same.words().next().unwrap();
        assert!(first != 0 && same.words().all(|w| w == first));
        let text = PageSpec::new(1, 1, PageClass::Text).page();
        assert!(text.0.iter().all(|b| b.is_ascii_graphic() || b" \n".contains(b)));
        let random = PageSpec::new(1, 1, PageClass::Random).page();
        let distinct: std::collections::HashSet<u8> = random.0.iter().copied().collect();
        assert!(distinct.len() > 200);
    }

    #[test]
    fn mixed_streams_cover_every_class() {
        let seen: std::collections::HashSet<PageClass> = (0..200).map(|i| PageSpec::mixed(5, i).class).collect();
        assert_eq!(seen.len(), PageClass::ALL.len());
    }
}
