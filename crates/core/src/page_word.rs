//! [`PageWord`]: one machine word that holds either a resident page's address
//! or a backup handle, as the kernel's `ttm_backup_handle_to_page_ptr` does.

use std::fmt;
use std::ptr::NonNull;

use crate::{Handle, Page};

#[cfg(not(target_pointer_width = "64"))]
compile_error!("pagebackup needs a 64-bit target: a tagged page word holds a 63-bit handle in one pointer-sized word");

/// A tagged page word: a resident page's address (aligned, low bit 0), a
/// handle (`raw << 1 | 1`), or empty (0).
///
/// Every value is one of the three, so reading any word, whatever it came
/// from, never fails. The one odd word that carries no handle, 1 (the handle
/// bits are 0, and 0 is never a handle, as in the kernel's `swp_entry_t`
/// convention), is a second spelling of empty: it views as
/// [`PageState::Empty`] and [`is_empty`](Self::is_empty) says so, though it
/// is not equal to [`PageWord::EMPTY`] as a number. Only
/// [`from_raw`](Self::from_raw) can make it.
///
/// The word itself owns nothing: it is a number. Whoever stores resident
/// addresses in it (such as a page array) owns those pages and decides when
/// the pointer may be dereferenced; reading the word is always safe, through
/// [`PageWord::view`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct PageWord(usize);

/// What a [`PageWord`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageState {
    /// The page is in memory at this address.
    Resident(NonNull<Page>),
    /// The page is backed up under this handle.
    Backed(Handle),
    /// Neither: no page (never populated, or purged).
    Empty,
}

impl PageWord {
    /// The empty word (0).
    pub const EMPTY: PageWord = PageWord(0);

    /// The word for a resident page. Pages are 4096-aligned, so the low bit
    /// of the address is 0.
    pub fn resident(page: NonNull<Page>) -> PageWord {
        PageWord(page.as_ptr() as usize)
    }

    /// The word for a backed-up page: `raw << 1 | 1`.
    pub const fn backed(handle: Handle) -> PageWord {
        // Handles are below 2^63, so the shift loses nothing on 64-bit targets.
        PageWord(((handle.to_raw() << 1) | 1) as usize)
    }

    /// The word's raw value, for FFI or for storing in a plain integer array.
    pub const fn to_raw(self) -> usize {
        self.0
    }

    /// The word with this raw value. Any value is accepted; an odd value
    /// above 1 is a handle (possibly one no backend issued: the backend will
    /// reject it), and 1 is empty.
    pub const fn from_raw(raw: usize) -> PageWord {
        PageWord(raw)
    }

    /// What the word holds: never fails, for any value.
    pub fn view(self) -> PageState {
        if self.0 & 1 == 1 {
            // An odd word shifted right is below 2^63: a handle, or 0 for the word 1.
            match Handle::from_raw((self.0 >> 1) as u64) {
                Some(handle) => PageState::Backed(handle),
                None => PageState::Empty,
            }
        } else {
            match NonNull::new(self.0 as *mut Page) {
                Some(page) => PageState::Resident(page),
                None => PageState::Empty,
            }
        }
    }

    /// Whether the word is empty: 0, or the handle-less odd word 1.
    pub const fn is_empty(self) -> bool {
        self.0 <= 1
    }
}

impl From<Handle> for PageWord {
    fn from(handle: Handle) -> Self {
        PageWord::backed(handle)
    }
}

impl fmt::Debug for PageWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.view() {
            PageState::Resident(p) => write!(f, "PageWord::Resident({:p})", p.as_ptr()),
            PageState::Backed(h) => write!(f, "PageWord::Backed({h})"),
            PageState::Empty => f.write_str("PageWord::Empty"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn every_handle_round_trips(raw in 1..=Handle::MAX_RAW) {
            let h = Handle::from_raw(raw).unwrap();
            let word = PageWord::backed(h);
            prop_assert_eq!(word.view(), PageState::Backed(h));
            prop_assert_eq!(PageWord::from_raw(word.to_raw()), word);
            prop_assert!(!word.is_empty());
        }

        #[test]
        fn every_word_has_a_view_and_a_debug_form(raw in any::<u64>()) {
            let word = PageWord::from_raw(raw as usize);
            let expected = match raw {
                0 | 1 => PageState::Empty,
                odd if odd & 1 == 1 => PageState::Backed(Handle::from_raw(odd >> 1).unwrap()),
                even => PageState::Resident(NonNull::new(even as usize as *mut Page).unwrap()),
            };
            prop_assert_eq!(word.view(), expected);
            prop_assert_eq!(word.is_empty(), expected == PageState::Empty);
            let shown = format!("{word:?}");
            let expected_shown = match expected {
                PageState::Empty => "PageWord::Empty".to_string(),
                PageState::Backed(h) => format!("PageWord::Backed({:#x})", h.to_raw()),
                PageState::Resident(_) => format!("PageWord::Resident({raw:#x})"),
            };
            prop_assert_eq!(shown, expected_shown);
        }

        #[test]
        fn every_aligned_pointer_round_trips(frame in 1usize..(usize::MAX >> 12)) {
            let addr = frame << 12;
            let ptr = NonNull::new(addr as *mut Page).unwrap();
            let word = PageWord::resident(ptr);
            prop_assert_eq!(word.view(), PageState::Resident(ptr));
            prop_assert_eq!(word.to_raw(), addr);
        }
    }

    #[test]
    fn extremes_round_trip() {
        for raw in [1, 2, Handle::MAX_RAW - 1, Handle::MAX_RAW] {
            let h = Handle::from_raw(raw).unwrap();
            assert_eq!(PageWord::backed(h).view(), PageState::Backed(h));
        }
        let top = NonNull::new((usize::MAX & !4095) as *mut Page).unwrap();
        assert_eq!(PageWord::resident(top).view(), PageState::Resident(top));
        assert_eq!(PageWord::EMPTY.view(), PageState::Empty);
        assert_eq!(PageWord::from_raw(0).view(), PageState::Empty);
        // The handle-less odd word: empty, and shown as such, not a panic.
        assert_eq!(PageWord::from_raw(1).view(), PageState::Empty);
        assert!(PageWord::from_raw(1).is_empty());
        assert_eq!(format!("{:?}", PageWord::from_raw(1)), "PageWord::Empty");
        for raw in [2, 3, usize::MAX - 1, usize::MAX] {
            assert!(!PageWord::from_raw(raw).is_empty());
            let _ = format!("{:?}", PageWord::from_raw(raw));
        }
        assert_eq!(PageWord::default(), PageWord::EMPTY);
    }

    #[test]
    fn a_real_page_round_trips() {
        let page = Box::into_raw(Page::new_boxed());
        let ptr = NonNull::new(page).unwrap();
        assert_eq!(PageWord::resident(ptr).view(), PageState::Resident(ptr));
        // SAFETY: `page` came from Box::into_raw just above and is freed once.
        drop(unsafe { Box::from_raw(page) });
    }
}
