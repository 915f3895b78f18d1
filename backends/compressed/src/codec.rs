//! The codecs: lz4 (lz4_flex's block format, its hash table reused per
//! thread) and zstd (bulk API, frame header trimmed; encoders kept per
//! thread, one per level and dictionary identity; decoders made with the
//! backend, so that a restore never allocates, and an object stored in two
//! pieces joined in the decoder's own buffer).

use std::fmt;

use pagebackup_core::{PAGE_SIZE, Page};

#[cfg(feature = "zstd")]
use crate::Dictionary;

/// A compression algorithm and its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// LZ4: the fastest, zram's usual choice. Encoded and decoded by the C
    /// library with feature `lz4-c`, else by lz4_flex (safe Rust).
    #[cfg(feature = "lz4")]
    #[cfg_attr(docsrs, doc(cfg(feature = "lz4")))]
    Lz4,
    /// Zstandard at `level` (negative levels are faster, up to 22 smaller).
    #[cfg(feature = "zstd")]
    #[cfg_attr(docsrs, doc(cfg(feature = "zstd")))]
    Zstd {
        /// The compression level.
        level: i32,
    },
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            #[cfg(feature = "lz4")]
            Algorithm::Lz4 => f.write_str("lz4"),
            #[cfg(feature = "zstd")]
            Algorithm::Zstd { level } => write!(f, "zstd-{level}"),
        }
    }
}

/// Bytes of the per-thread buffer pages are compressed into: room for
/// lz4's worst case (`lz4_flex::block::get_maximum_output_size(4096)`).
pub(crate) const SCRATCH_LEN: usize = 2 * PAGE_SIZE;

/// An algorithm with its dictionary: what encodes and decodes one backend's
/// pages (with zstd, its decoders).
#[derive(Debug)]
pub(crate) struct Codec {
    algorithm: Algorithm,
    #[cfg(feature = "zstd")]
    dictionary: Option<Dictionary>,
    #[cfg(feature = "zstd")]
    decoders: Option<zstd_codec::Decoders>,
}

impl Codec {
    /// The codec of `algorithm`; for zstd, with its decoders made now
    /// (libzstd failing to make one is the error).
    #[cfg(feature = "zstd")]
    pub(crate) fn new(algorithm: Algorithm, dictionary: Option<Dictionary>) -> std::io::Result<Self> {
        #[allow(irrefutable_let_patterns, reason = "zstd is the only algorithm when lz4 is left out")]
        let decoders = if let Algorithm::Zstd { .. } = algorithm {
            Some(zstd_codec::Decoders::new(dictionary.as_ref())?)
        } else {
            None
        };
        Ok(Codec {
            algorithm,
            dictionary,
            decoders,
        })
    }

    #[cfg(not(feature = "zstd"))]
    pub(crate) fn new(algorithm: Algorithm) -> std::io::Result<Self> {
        Ok(Codec { algorithm })
    }

    pub(crate) fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Compresses `page` into `out`; `None` if the result is longer than
    /// `max_len` (the page is then stored raw) or the codec fails.
    pub(crate) fn compress(&self, page: &Page, out: &mut [u8; SCRATCH_LEN], max_len: usize) -> Option<usize> {
        let len = match self.algorithm {
            // lz4_flex wants room for its worst case, and stops only at the
            // end; the C encoder gives up as soon as `max_len` is exceeded.
            #[cfg(all(feature = "lz4", not(feature = "lz4-c")))]
            Algorithm::Lz4 => lz4::compress(page, out),
            #[cfg(feature = "lz4-c")]
            Algorithm::Lz4 => lz4::compress(page, &mut out[..max_len.min(SCRATCH_LEN)]),
            // zstd gives up as soon as `max_len` is exceeded.
            #[cfg(feature = "zstd")]
            Algorithm::Zstd { level } => {
                zstd_codec::compress(level, self.dictionary.as_ref(), page, &mut out[..max_len])
            }
        }?;
        (len <= max_len).then_some(len)
    }

    /// Decompresses `src`, stored in one piece or in two (`src.1` empty
    /// when in one), into `dst`, which it must fill exactly. lz4 decodes two
    /// pieces where they lie without `lz4-c`, and with it joins them in a
    /// per-thread buffer for the C decoder; zstd joins them in its decoder's
    /// buffer (a copy of less than a page, cheaper than decoding piecewise).
    /// Allocates nothing: restores run in a region's `SIGBUS` handler.
    pub(crate) fn decompress(&self, src: (&[u8], &[u8]), dst: &mut Page) -> Result<(), DecodeError> {
        let len = match self.algorithm {
            #[cfg(feature = "lz4")]
            Algorithm::Lz4 => {
                if src.1.is_empty() {
                    lz4::decompress(src.0, dst)
                } else {
                    lz4::decompress_pieces(src, dst)
                }
            }
            #[cfg(feature = "zstd")]
            Algorithm::Zstd { .. } => match &self.decoders {
                Some(decoders) => decoders.decompress(src, dst),
                None => unreachable!("a zstd codec is made with its decoders"),
            },
        }?;
        if len != PAGE_SIZE {
            return Err(DecodeError::Length(len));
        }
        Ok(())
    }
}

/// Why a stored object did not decode to a page: the codec's own error,
/// kept as the source, or a length that is not a page's.
#[derive(Debug)]
pub(crate) enum DecodeError {
    /// lz4_flex's safe decoder refused the object.
    #[cfg(all(feature = "lz4", not(feature = "lz4-c")))]
    Lz4(lz4_flex::block::DecompressError),
    /// The C library's `LZ4_decompress_safe` refused the object.
    #[cfg(feature = "lz4-c")]
    Lz4C(std::io::Error),
    /// The object, stored in two pieces, is not a valid lz4 block (what is
    /// wrong with it).
    #[cfg(feature = "lz4")]
    Lz4Block(String),
    /// zstd refused the object (its error name as an `io::Error`).
    #[cfg(feature = "zstd")]
    Zstd(std::io::Error),
    /// The object decoded to this many bytes, not to a page (for zstd, a
    /// frame that ends early; one that decodes to more than a page is
    /// zstd's own error).
    Length(usize),
    /// A zstd object in two pieces longer than any page encodes to.
    #[cfg(feature = "zstd")]
    Overlong,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            #[cfg(all(feature = "lz4", not(feature = "lz4-c")))]
            DecodeError::Lz4(_) => f.write_str("lz4 cannot decode the object"),
            #[cfg(feature = "lz4-c")]
            DecodeError::Lz4C(_) => f.write_str("lz4 cannot decode the object"),
            #[cfg(feature = "lz4")]
            DecodeError::Lz4Block(what) => write!(f, "lz4 cannot decode the object: {what}"),
            #[cfg(feature = "zstd")]
            DecodeError::Zstd(_) => f.write_str("zstd cannot decode the object"),
            DecodeError::Length(len) => write!(f, "the object decoded to {len} bytes instead of a page"),
            #[cfg(feature = "zstd")]
            DecodeError::Overlong => f.write_str("the zstd object is longer than any page encodes to"),
        }
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            #[cfg(all(feature = "lz4", not(feature = "lz4-c")))]
            DecodeError::Lz4(e) => Some(e),
            #[cfg(feature = "lz4-c")]
            DecodeError::Lz4C(e) => Some(e),
            #[cfg(feature = "zstd")]
            DecodeError::Zstd(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(feature = "lz4")]
mod lz4 {
    use std::cell::RefCell;

    #[cfg(not(feature = "lz4-c"))]
    use lz4_flex::block::{CompressTable, compress_into_with_table};
    use pagebackup_core::Page;

    #[cfg(not(feature = "lz4-c"))]
    thread_local! {
        static TABLE: RefCell<CompressTable> = RefCell::new(CompressTable::small());
    }

    /// Encodes with lz4_flex's safe encoder, its hash table kept per
    /// thread; `out` must hold the worst case.
    #[cfg(not(feature = "lz4-c"))]
    pub(super) fn compress(page: &Page, out: &mut [u8]) -> Option<usize> {
        TABLE.with(|t| compress_into_with_table(page.as_bytes(), out, &mut t.borrow_mut()).ok())
    }

    /// Encodes with the C library's `LZ4_compress_default` (feature
    /// `lz4-c`), through the `lz4` crate's safe wrapper: the same block
    /// format, a ratio as good as lz4_flex's, and faster on process memory.
    /// `None` once the block would pass `out.len()`: the encoder stops
    /// there rather than finish a block that would be stored raw.
    #[cfg(feature = "lz4-c")]
    pub(super) fn compress(page: &Page, out: &mut [u8]) -> Option<usize> {
        ::lz4::block::compress_to_buffer(
            page.as_bytes(),
            Some(::lz4::block::CompressionMode::DEFAULT),
            false,
            out,
        )
        .ok()
    }

    /// Decodes a block stored in one piece: with the C library's
    /// `LZ4_decompress_safe` (feature `lz4-c`), which never writes past
    /// `dst` nor reads past `src`, whatever `src` holds.
    #[cfg(feature = "lz4-c")]
    pub(super) fn decompress(src: &[u8], dst: &mut Page) -> Result<usize, super::DecodeError> {
        let out = dst.as_bytes_mut();
        ::lz4::block::decompress_to_buffer(src, Some(out.len() as i32), out).map_err(super::DecodeError::Lz4C)
    }

    /// Decodes a block stored in one piece, with lz4_flex's safe decoder.
    #[cfg(not(feature = "lz4-c"))]
    pub(super) fn decompress(src: &[u8], dst: &mut Page) -> Result<usize, super::DecodeError> {
        lz4_flex::block::decompress_into(src, dst.as_bytes_mut()).map_err(super::DecodeError::Lz4)
    }

    #[cfg(feature = "lz4-c")]
    thread_local! {
        /// Where a block stored in two pieces is joined for the C decoder:
        /// room for the longest block a page encodes to. Const-initialised
        /// in place, never allocated: restores run in a region's SIGBUS
        /// handler, where a first use allocating could deadlock on a lock
        /// malloc holds in the interrupted code.
        static JOINED: RefCell<[u8; super::SCRATCH_LEN]> = const { RefCell::new([0; super::SCRATCH_LEN]) };
    }

    /// Decodes a block stored in two pieces: joined in a buffer of the
    /// thread's (a stored object is shorter than a page) and decoded by
    /// the C library, which wants its input in one piece. The copy costs
    /// far less than decoding the pieces where they lie in Rust (see
    /// `decompress_pieces` without `lz4-c`).
    #[cfg(feature = "lz4-c")]
    pub(super) fn decompress_pieces(src: (&[u8], &[u8]), dst: &mut Page) -> Result<usize, super::DecodeError> {
        let len = src.0.len() + src.1.len();
        JOINED.with(|joined| {
            let mut joined = joined.borrow_mut();
            let joined = joined.get_mut(..len).ok_or_else(|| {
                super::DecodeError::Lz4Block(format!("an object of {len} bytes, longer than any page encodes to"))
            })?;
            let (a, b) = joined.split_at_mut(src.0.len());
            a.copy_from_slice(src.0);
            b.copy_from_slice(src.1);
            decompress(joined, dst)
        })
    }

    /// A block's bytes, stored in two pieces, read in order.
    #[cfg(not(feature = "lz4-c"))]
    struct Pieces<'a> {
        /// What is left of the piece being read, and the piece after it.
        now: &'a [u8],
        next: &'a [u8],
    }

    #[cfg(not(feature = "lz4-c"))]
    impl Pieces<'_> {
        fn is_empty(&self) -> bool {
            self.now.is_empty() && self.next.is_empty()
        }

        fn byte(&mut self) -> Result<u8, super::DecodeError> {
            let mut b = [0];
            self.copy_to(&mut b)?;
            Ok(b[0])
        }

        /// Copies the next `out.len()` bytes into `out`.
        fn copy_to(&mut self, out: &mut [u8]) -> Result<(), super::DecodeError> {
            let n = out.len().min(self.now.len());
            let (head, tail) = out.split_at_mut(n);
            head.copy_from_slice(&self.now[..n]);
            self.now = &self.now[n..];
            if !tail.is_empty() {
                if tail.len() > self.next.len() {
                    return Err(super::DecodeError::Lz4Block(TRUNCATED.into()));
                }
                self.now = std::mem::take(&mut self.next);
                tail.copy_from_slice(&self.now[..tail.len()]);
                self.now = &self.now[tail.len()..];
            }
            Ok(())
        }

        /// A length: `nibble`, continued by bytes while they are 255.
        fn length(&mut self, nibble: u8) -> Result<usize, super::DecodeError> {
            let mut len = usize::from(nibble);
            if nibble == 15 {
                loop {
                    let b = self.byte()?;
                    len += usize::from(b);
                    if b != 255 {
                        break;
                    }
                    // A page's block never needs a length this long.
                    if len > 2 * PAGE_SIZE {
                        return Err(super::DecodeError::Lz4Block(format!(
                            "a length over {} bytes",
                            2 * PAGE_SIZE
                        )));
                    }
                }
            }
            Ok(len)
        }
    }

    #[cfg(not(feature = "lz4-c"))]
    const TRUNCATED: &str = "the block ends early";

    #[cfg(not(feature = "lz4-c"))]
    use pagebackup_core::PAGE_SIZE;

    /// Decodes a block stored in two pieces straight into `dst`, reading
    /// each piece where it lies (safe Rust; the block format's sequences:
    /// literals, then a match in the bytes already decoded).
    #[cfg(not(feature = "lz4-c"))]
    pub(super) fn decompress_pieces(src: (&[u8], &[u8]), dst: &mut Page) -> Result<usize, super::DecodeError> {
        let out = dst.as_bytes_mut();
        let mut input = Pieces {
            now: src.0,
            next: src.1,
        };
        let mut o = 0;
        loop {
            let token = input.byte()?;
            let literals = input.length(token >> 4)?;
            let end = o + literals;
            input.copy_to(
                out.get_mut(o..end)
                    .ok_or_else(|| super::DecodeError::Lz4Block("literals past the end of a page".into()))?,
            )?;
            o = end;
            if input.is_empty() {
                return Ok(o);
            }
            let offset = usize::from(u16::from_le_bytes([input.byte()?, input.byte()?]));
            if offset == 0 || offset > o {
                return Err(super::DecodeError::Lz4Block(format!(
                    "a match {offset} bytes back at byte {o}"
                )));
            }
            let len = input.length(token & 15)? + 4;
            if o + len > out.len() {
                return Err(super::DecodeError::Lz4Block("a match past the end of a page".into()));
            }
            // The match may overlap what it writes: copy the pattern in
            // doubling steps, each from bytes already written.
            let from = o - offset;
            let mut done = 0;
            while done < len {
                let n = (len - done).min(o + done - from);
                out.copy_within(from..from + n, o + done);
                done += n;
            }
            o += len;
        }
    }
}

#[cfg(feature = "zstd")]
mod zstd_codec {
    use std::cell::{Cell, RefCell};
    use std::fmt;
    use std::io;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Mutex, TryLockError};

    use pagebackup_core::Page;
    use zstd::bulk::Compressor;
    use zstd::zstd_safe::{CParameter, DCtx};

    use super::{DecodeError, SCRATCH_LEN};
    use crate::Dictionary;

    /// Encoders kept per thread; a few, for the few level and dictionary
    /// combinations one program uses.
    const KEPT: usize = 8;

    thread_local! {
        static COMPRESSORS: RefCell<Vec<((i32, u64), Compressor<'static>)>> = const { RefCell::new(Vec::new()) };
    }

    fn compressor(level: i32, dict: Option<&Dictionary>) -> io::Result<Compressor<'static>> {
        let mut c = match dict {
            Some(d) => Compressor::with_dictionary(level, d.bytes())?,
            None => Compressor::new(level)?,
        };
        // The backend knows every page's size and dictionary: leave them,
        // and the frame checksum, out of the frame header.
        c.set_parameter(CParameter::ContentSizeFlag(false))?;
        c.set_parameter(CParameter::ChecksumFlag(false))?;
        c.set_parameter(CParameter::DictIdFlag(false))?;
        Ok(c)
    }

    pub(super) fn compress(level: i32, dict: Option<&Dictionary>, page: &Page, out: &mut [u8]) -> Option<usize> {
        COMPRESSORS.with_borrow_mut(|list| {
            let key = (level, dict.map_or(0, Dictionary::id));
            let pos = match list.iter().position(|(k, _)| *k == key) {
                Some(pos) => pos,
                None => {
                    if list.len() == KEPT {
                        list.remove(0);
                    }
                    list.push((key, compressor(level, dict).ok()?));
                    list.len() - 1
                }
            };
            list[pos].1.compress_to_buffer(page.as_bytes().as_slice(), out).ok()
        })
    }

    /// A decoding context with its dictionary loaded, and a buffer to join
    /// an object stored in two pieces.
    struct Decoder {
        context: DCtx<'static>,
        joined: Box<[u8; SCRATCH_LEN]>,
    }

    /// A backend's zstd decoders, all made with the backend: a restore
    /// takes one that no other thread holds, without blocking, and
    /// allocates nothing, not even on a thread's first restore. Restores
    /// run in a region's `SIGBUS` handler, where allocating (libzstd makes
    /// a context with `malloc`) could deadlock on a lock the interrupted
    /// code holds. One decoder per CPU (2 to 16): more threads than that
    /// restoring at once wait for one in turn, a page's decode each.
    pub(super) struct Decoders {
        slots: Box<[Slot]>,
    }

    /// A decoder on a cache line of its own, so that threads taking
    /// neighbouring decoders do not contend for one line.
    #[repr(align(64))]
    struct Slot(Mutex<Decoder>);

    /// The decoder a thread tries first: threads numbered in the order of
    /// their first restore, so that as many threads as decoders start on
    /// different ones. Const-initialised, without a destructor: reading it
    /// in a `SIGBUS` handler allocates nothing.
    fn thread_start() -> usize {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static START: Cell<usize> = const { Cell::new(usize::MAX) };
        }
        START.with(|start| {
            if start.get() == usize::MAX {
                start.set(NEXT.fetch_add(1, Ordering::Relaxed) % (usize::MAX / 2));
            }
            start.get()
        })
    }

    impl fmt::Debug for Decoders {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Decoders").field("slots", &self.slots.len()).finish()
        }
    }

    impl Decoders {
        pub(super) fn new(dict: Option<&Dictionary>) -> io::Result<Decoders> {
            let count = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 16);
            let slots = (0..count)
                .map(|_| {
                    let mut context =
                        DCtx::try_create().ok_or_else(|| io::Error::other("zstd cannot make a decoding context"))?;
                    if let Some(dict) = dict {
                        context.load_dictionary(dict.bytes()).map_err(zstd_error)?;
                    }
                    Ok(Slot(Mutex::new(Decoder {
                        context,
                        joined: Box::new([0; SCRATCH_LEN]),
                    })))
                })
                .collect::<io::Result<_>>()?;
            Ok(Decoders { slots })
        }

        /// Runs `f` with a decoder no other thread holds, trying each in
        /// turn from the thread's own starting place, and again, after
        /// yielding the CPU (a holder may have been preempted), while all
        /// are held. A holder only decodes one page, waiting on nothing.
        fn with<R>(&self, f: impl FnOnce(&mut Decoder) -> R) -> R {
            let start = thread_start();
            let n = self.slots.len();
            loop {
                for k in 0..n {
                    match self.slots[(start + k) % n].0.try_lock() {
                        Ok(mut d) => return f(&mut d),
                        Err(TryLockError::Poisoned(p)) => return f(&mut p.into_inner()),
                        Err(TryLockError::WouldBlock) => {}
                    }
                }
                std::thread::yield_now();
            }
        }

        /// Decodes a frame stored in one piece (`src.1` empty) or two.
        pub(super) fn decompress(&self, src: (&[u8], &[u8]), dst: &mut Page) -> Result<usize, DecodeError> {
            self.with(|d| {
                let out = dst.as_bytes_mut().as_mut_slice();
                let frame = if src.1.is_empty() {
                    src.0
                } else {
                    let len = src.0.len() + src.1.len();
                    let joined = d.joined.get_mut(..len).ok_or(DecodeError::Overlong)?;
                    let (a, b) = joined.split_at_mut(src.0.len());
                    a.copy_from_slice(src.0);
                    b.copy_from_slice(src.1);
                    joined
                };
                d.context
                    .decompress(out, frame)
                    .map_err(|e| DecodeError::Zstd(zstd_error(e)))
            })
        }
    }

    fn zstd_error(code: usize) -> io::Error {
        io::Error::other(zstd::zstd_safe::get_error_name(code))
    }
}

#[cfg(all(test, feature = "lz4"))]
mod tests {
    use pagebackup_testkit::{PageClass, PageSpec};
    use proptest::prelude::*;

    use super::*;

    fn encoded(page: &Page) -> Vec<u8> {
        let mut out = Box::new([0u8; SCRATCH_LEN]);
        let len = Codec::lz4()
            .compress(page, &mut out, SCRATCH_LEN)
            .expect("lz4 encodes any page");
        out[..len].to_vec()
    }

    impl Codec {
        fn lz4() -> Self {
            Codec {
                algorithm: Algorithm::Lz4,
                #[cfg(feature = "zstd")]
                dictionary: None,
                #[cfg(feature = "zstd")]
                decoders: None,
            }
        }
    }

    /// Every class of page, its block cut at every byte, decodes to the
    /// page exactly, as it does in one piece.
    #[test]
    fn an_lz4_block_in_two_pieces_decodes_exactly_wherever_it_is_cut() {
        for (i, class) in PageClass::ALL.into_iter().enumerate() {
            let page = PageSpec::new(11, i as u64, class).page();
            let block = encoded(&page);
            let mut back = Page::new_boxed();
            Codec::lz4().decompress((&block, &[]), &mut back).unwrap();
            assert_eq!(back, page, "{class:?} in one piece");
            for cut in 0..=block.len() {
                let mut back = Page::new_boxed();
                let (a, b) = block.split_at(cut);
                assert_eq!(
                    lz4::decompress_pieces((a, b), &mut back).ok(),
                    Some(PAGE_SIZE),
                    "{class:?} cut at {cut}"
                );
                assert_eq!(back, page, "{class:?} cut at {cut}");
            }
        }
    }

    /// A match that overlaps what it writes (a pattern repeated at a short
    /// distance) copies the pattern, not stale bytes.
    #[test]
    fn overlapping_matches_repeat_their_pattern() {
        let mut page = Page::new_boxed();
        for (i, b) in page.as_bytes_mut().iter_mut().enumerate() {
            *b = b"abc"[i % 3] ^ (i / 1000) as u8;
        }
        let block = encoded(&page);
        let mut back = Page::new_boxed();
        let (a, b) = block.split_at(block.len() / 2);
        lz4::decompress_pieces((a, b), &mut back).unwrap();
        assert_eq!(back, page);
    }

    #[test]
    fn a_cut_short_block_is_an_error_in_either_decoder() {
        let page = PageSpec::new(12, 0, PageClass::Text).page();
        let block = encoded(&page);
        let short = &block[..block.len() - 7];
        let mut back = Page::new_boxed();
        assert!(Codec::lz4().decompress((short, &[]), &mut back).is_err());
        let (a, b) = short.split_at(10);
        assert!(Codec::lz4().decompress((a, b), &mut back).is_err());
    }

    /// The C encoder writes lz4's block format: lz4_flex decodes its blocks
    /// to the page exactly, and they are no longer than lz4_flex's own
    /// (the effective ratio is kept).
    #[cfg(feature = "lz4-c")]
    #[test]
    fn c_encoded_blocks_decode_with_lz4_flex_and_are_no_longer_than_its_own() {
        let (mut c_total, mut flex_total) = (0, 0);
        for (i, class) in PageClass::ALL.into_iter().enumerate() {
            for seed in 0..8 {
                let page = PageSpec::new(seed, i as u64, class).page();
                let block = encoded(&page);
                let mut back = Page::new_boxed();
                assert_eq!(
                    lz4_flex::block::decompress_into(&block, back.as_bytes_mut()).ok(),
                    Some(PAGE_SIZE),
                    "{class:?} seed {seed}"
                );
                assert_eq!(back, page, "{class:?} seed {seed}");
                c_total += block.len();
                flex_total += lz4_flex::block::compress(page.as_bytes()).len();
            }
        }
        assert!(
            c_total * 100 <= flex_total * 101,
            "C blocks {c_total} bytes, lz4_flex's {flex_total}"
        );
    }

    /// Blocks lz4_flex encoded decode through the codec (the C decoder) too.
    #[cfg(feature = "lz4-c")]
    #[test]
    fn lz4_flex_blocks_decode_through_the_codec() {
        for (i, class) in PageClass::ALL.into_iter().enumerate() {
            let page = PageSpec::new(13, i as u64, class).page();
            let block = lz4_flex::block::compress(page.as_bytes());
            let mut back = Page::new_boxed();
            Codec::lz4().decompress((&block, &[]), &mut back).unwrap();
            assert_eq!(back, page, "{class:?}");
        }
    }

    /// A page that does not compress below `max_len` gives `None` (stored
    /// raw), and the same page with room for lz4's worst case a block.
    #[test]
    fn a_page_that_does_not_compress_below_max_len_gives_none() {
        let page = PageSpec::new(14, 0, PageClass::Random).page();
        let mut out = Box::new([0u8; SCRATCH_LEN]);
        assert_eq!(Codec::lz4().compress(&page, &mut out, 3072), None);
        let len = Codec::lz4().compress(&page, &mut out, SCRATCH_LEN).unwrap();
        assert!(len > PAGE_SIZE, "random bytes grow: {len}");
    }

    proptest! {
        /// Any bytes, in one piece or two: an error or a page, never a
        /// panic, and both decoders agree on what a page decodes to.
        #[test]
        fn any_bytes_decode_to_an_error_or_the_same_page(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            cut in 0usize..600,
        ) {
            let cut = cut.min(bytes.len());
            let mut one = Page::new_boxed();
            let mut two = Page::new_boxed();
            let a = Codec::lz4().decompress((&bytes, &[]), &mut one);
            let b = Codec::lz4().decompress(bytes.split_at(cut), &mut two);
            if a.is_ok() && b.is_ok() {
                prop_assert_eq!(one, two);
            }
        }
    }
}
