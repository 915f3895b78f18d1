//! [`Page`]: the 4 KiB, 4 KiB-aligned unit every backend stores.

use std::fmt;

/// Size in bytes of one [`Page`]: 4096, the x86-64 and arm64 base page size.
pub const PAGE_SIZE: usize = 4096;

/// One page of memory: 4096 bytes, aligned to 4096.
///
/// The alignment lets a page go to `O_DIRECT` I/O and registered io_uring
/// buffers without a bounce copy. A `Page` is plain bytes: every bit pattern is
/// valid, so it can be zeroed, cloned and compared freely.
///
/// Pages are large: allocate them on the heap with [`Page::new_boxed`] or
/// [`Page::new_boxed_slice`] rather than on the stack.
#[derive(Clone, PartialEq, Eq)]
#[repr(C, align(4096))]
pub struct Page(pub [u8; PAGE_SIZE]);

const _: () = assert!(std::mem::size_of::<Page>() == PAGE_SIZE);
const _: () = assert!(std::mem::align_of::<Page>() == PAGE_SIZE);

/// Why a byte slice could not be viewed as a [`Page`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageCastError {
    /// The slice is not exactly [`PAGE_SIZE`] bytes long.
    WrongLength {
        /// The slice's length.
        len: usize,
    },
    /// The slice does not start on a 4096-byte boundary.
    Misaligned {
        /// The slice's start address.
        addr: usize,
    },
}

impl fmt::Display for PageCastError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongLength { len } => write!(
                f,
                "a page is {PAGE_SIZE} bytes but the slice has {len}; pass exactly one page"
            ),
            Self::Misaligned { addr } => write!(
                f,
                "a page must start on a {PAGE_SIZE}-byte boundary but the slice starts at {addr:#x}; \
                 allocate it with Page::new_boxed or an aligned allocator"
            ),
        }
    }
}

impl std::error::Error for PageCastError {}

impl Page {
    /// A page of zero bytes.
    pub const fn zeroed() -> Self {
        Page([0; PAGE_SIZE])
    }

    /// A zeroed page on the heap, allocated zeroed (no 4 KiB stack temporary).
    pub fn new_boxed() -> Box<Page> {
        let page = Box::<Page>::new_zeroed();
        // SAFETY: `Page` is a byte array; all-zero bytes are a valid value.
        unsafe { page.assume_init() }
    }

    /// `n` zeroed pages in one contiguous, page-aligned heap allocation.
    pub fn new_boxed_slice(n: usize) -> Box<[Page]> {
        let pages = Box::<[Page]>::new_zeroed_slice(n);
        // SAFETY: `Page` is a byte array; all-zero bytes are a valid value.
        unsafe { pages.assume_init() }
    }

    /// Views an aligned slice of exactly [`PAGE_SIZE`] bytes as a page.
    pub fn from_bytes(bytes: &[u8]) -> Result<&Page, PageCastError> {
        check_cast(bytes)?;
        // `Page` is repr(C) over a byte array, so any initialised bytes are a
        // valid `Page`; the returned reference borrows the slice.
        // SAFETY: `check_cast` verified the length (one `Page`) and the 4096-alignment.
        Ok(unsafe { &*bytes.as_ptr().cast::<Page>() })
    }

    /// Views an aligned, mutable slice of exactly [`PAGE_SIZE`] bytes as a page.
    pub fn from_bytes_mut(bytes: &mut [u8]) -> Result<&mut Page, PageCastError> {
        check_cast(bytes)?;
        // The exclusive borrow of the slice carries over to the returned reference.
        // SAFETY: as in `from_bytes`: length and alignment checked, any bytes are valid.
        Ok(unsafe { &mut *bytes.as_mut_ptr().cast::<Page>() })
    }

    /// The page's bytes.
    pub fn as_bytes(&self) -> &[u8; PAGE_SIZE] {
        &self.0
    }

    /// The page's bytes, mutable.
    pub fn as_bytes_mut(&mut self) -> &mut [u8; PAGE_SIZE] {
        &mut self.0
    }

    /// The page as 512 native-endian 64-bit words.
    pub fn words(&self) -> impl Iterator<Item = u64> + '_ {
        self.0
            .chunks_exact(8)
            .map(|w| u64::from_ne_bytes(w.try_into().expect("chunks of 8")))
    }
}

fn check_cast(bytes: &[u8]) -> Result<(), PageCastError> {
    if bytes.len() != PAGE_SIZE {
        return Err(PageCastError::WrongLength { len: bytes.len() });
    }
    let addr = bytes.as_ptr() as usize;
    if !addr.is_multiple_of(PAGE_SIZE) {
        return Err(PageCastError::Misaligned { addr });
    }
    Ok(())
}

impl Default for Page {
    fn default() -> Self {
        Self::zeroed()
    }
}

impl AsRef<[u8]> for Page {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl AsMut<[u8]> for Page {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl fmt::Debug for Page {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = &self.0[..16];
        let nonzero = self.0.iter().filter(|&&b| b != 0).count();
        write!(f, "Page {{ head: {head:02x?}, nonzero_bytes: {nonzero} }}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxed_pages_are_zeroed_and_aligned() {
        let page = Page::new_boxed();
        assert!(page.0.iter().all(|&b| b == 0));
        assert_eq!((&*page as *const Page as usize) % PAGE_SIZE, 0);
        let pages = Page::new_boxed_slice(3);
        assert_eq!(pages.len(), 3);
        for p in pages.iter() {
            assert_eq!((p as *const Page as usize) % PAGE_SIZE, 0);
            assert!(p.0.iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn cast_checks_length_and_alignment() {
        let mut pages = Page::new_boxed_slice(2);
        pages[0].0[7] = 42;
        let bytes = pages[0].as_bytes().as_slice();
        assert_eq!(Page::from_bytes(bytes).unwrap().0[7], 42);

        let whole: &mut [u8] = {
            let ptr = pages.as_mut_ptr().cast::<u8>();
            // SAFETY: two pages are 2 * PAGE_SIZE initialised, exclusively borrowed bytes.
            unsafe { std::slice::from_raw_parts_mut(ptr, 2 * PAGE_SIZE) }
        };
        assert_eq!(
            Page::from_bytes(&whole[..PAGE_SIZE - 1]),
            Err(PageCastError::WrongLength { len: PAGE_SIZE - 1 })
        );
        let misaligned = &whole[1..PAGE_SIZE + 1];
        assert_eq!(
            Page::from_bytes(misaligned),
            Err(PageCastError::Misaligned {
                addr: misaligned.as_ptr() as usize
            })
        );
        let second = Page::from_bytes_mut(&mut whole[PAGE_SIZE..]).unwrap();
        second.0[0] = 9;
        assert_eq!(pages[1].0[0], 9);
    }

    #[test]
    fn cast_error_messages_say_what_to_do() {
        let msg = PageCastError::Misaligned { addr: 0x1001 }.to_string();
        assert!(msg.contains("0x1001") && msg.contains("Page::new_boxed"), "{msg}");
    }
}
