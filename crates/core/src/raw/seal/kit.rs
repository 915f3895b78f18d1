//! The cipher side of sealing (feature `seal`): [`SealKey`], [`Sealer`] and
//! [`SealedDevice`]. The argument for why nonces never repeat is in the
//! [module docs](super).

use std::cell::Cell;
use std::fmt;
use std::io;
use std::sync::{Mutex, MutexGuard, PoisonError};

use aws_lc_rs::aead::{AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::hkdf;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use super::{SealKeySource, Unauthentic};
use crate::Page;
use crate::error::{BackupError, Origin, Result};
use crate::raw::{Device, DeviceLayer, ReadRun, RunError, WriteRun};

/// A 256-bit sealing key, zeroed when dropped; its `Debug` shows no byte.
pub struct SealKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey(<redacted>)")
    }
}

impl SealKey {
    /// A key from the system's random source, or why none could be had.
    pub fn random() -> io::Result<Self> {
        let mut key = Zeroizing::new([0; 32]);
        SystemRandom::new()
            .fill(&mut key[..])
            .map_err(|_| io::Error::other("the system's random source failed"))?;
        Ok(SealKey(key))
    }

    /// The key `bytes`.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SealKey(Zeroizing::new(bytes))
    }

    /// A key from `text`: 32 bytes as they are, or 64 hex digits, white
    /// space around either ignored.
    fn parse(text: &[u8]) -> Option<Self> {
        let trimmed = text.trim_ascii();
        let mut key = Zeroizing::new([0; 32]);
        match trimmed.len() {
            64 => {
                for (byte, pair) in key.iter_mut().zip(trimmed.chunks_exact(2)) {
                    let digit = |c: u8| (c as char).to_digit(16);
                    *byte = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
                }
            }
            // Raw bytes are taken whole: white space may be key bytes.
            _ if text.len() == 32 => key.copy_from_slice(text),
            _ => return None,
        }
        Some(SealKey(key))
    }

    /// The key `source` names: drawn, read from the file, or read from the
    /// environment variable. A failure says which, at `origin`, and never
    /// shows the key's bytes.
    pub fn load(source: &SealKeySource, origin: Origin) -> Result<Self> {
        let config = |detail: String| BackupError::Config { origin, detail };
        const FORM: &str = "32 bytes, or 64 hex digits";
        match source {
            SealKeySource::Random => SealKey::random().map_err(|source| BackupError::Io { origin, source }),
            SealKeySource::File(path) => {
                let text = Zeroizing::new(
                    std::fs::read(path)
                        .map_err(|e| config(format!("seal_key: cannot read the key file {}: {e}", path.display())))?,
                );
                SealKey::parse(&text).ok_or_else(|| {
                    config(format!(
                        "seal_key: the key file {} does not hold a key ({FORM})",
                        path.display()
                    ))
                })
            }
            SealKeySource::Env(name) => {
                let text = Zeroizing::new(
                    std::env::var_os(name)
                        .ok_or_else(|| config(format!("seal_key: the environment variable {name} is not set")))?
                        .into_encoded_bytes(),
                );
                SealKey::parse(&text).ok_or_else(|| {
                    config(format!(
                        "seal_key: the environment variable {name} does not hold a key ({FORM})"
                    ))
                })
            }
        }
    }
}

/// What a sealed value is bound to: its slot and the slot's write counter
/// (its generation, for stores that count writes per key). Under one
/// [`Sealer`], an identity must seal at most one value: it is the nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The slot (or key number) the value is stored under.
    pub slot: u32,
    /// The slot's write counter for this value.
    pub generation: u64,
}

impl Identity {
    /// The 96-bit nonce: the slot, then the counter, big-endian.
    pub fn nonce(self) -> [u8; 12] {
        let mut nonce = [0; 12];
        nonce[..4].copy_from_slice(&self.slot.to_be_bytes());
        nonce[4..].copy_from_slice(&self.generation.to_be_bytes());
        nonce
    }
}

/// The 16-byte authentication tag of a sealed value.
pub type Tag = [u8; 16];

/// Domain separation of the associated data and the key derivation.
const CONTEXT: &[u8] = b"pagebackup seal v1";

/// One instance's AEAD: a subkey derived from a [`SealKey`] and a random
/// 128-bit instance salt, sealing values of any length bound to an
/// [`Identity`] and to the instance.
///
/// It is the kit for any store: [`SealedDevice`] uses it per slot; a
/// store keyed otherwise (a server's keys) uses it with its own slot
/// numbers and per-slot counters, which must only grow.
pub struct Sealer {
    key: LessSafeKey,
    instance: [u8; 16],
    cipher: &'static str,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("cipher", &self.cipher)
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Whether the CPU runs AES-GCM in hardware (AES rounds and carry-less
/// multiplication).
fn aes_in_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes") && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

impl Sealer {
    /// A sealer under `key` with a fresh random instance salt: its subkey is
    /// never another sealer's (see the [module docs](super)).
    pub fn new(key: &SealKey) -> io::Result<Self> {
        let mut instance = [0; 16];
        SystemRandom::new()
            .fill(&mut instance)
            .map_err(|_| io::Error::other("the system's random source failed"))?;
        Ok(Self::with_instance(key, instance))
    }

    /// A sealer under `key` for the instance salt `instance`. The caller
    /// must never seal two values under one identity with the same key
    /// and salt: a salt is for one instance's lifetime, never reused.
    pub fn with_instance(key: &SealKey, instance: [u8; 16]) -> Self {
        let (algorithm, cipher) = if aes_in_hardware() {
            (&AES_256_GCM, "AES-256-GCM")
        } else {
            (&CHACHA20_POLY1305, "ChaCha20-Poly1305")
        };
        let info = [CONTEXT, cipher.as_bytes()];
        let mut subkey = Zeroizing::new([0; 32]);
        hkdf::Salt::new(hkdf::HKDF_SHA256, &instance)
            .extract(&key.0[..])
            .expand(&info, algorithm)
            .and_then(|okm| okm.fill(&mut subkey[..]))
            .expect("HKDF-SHA256 gives 32 bytes");
        let key = UnboundKey::new(algorithm, &subkey[..]).expect("a 32-byte key fits either cipher");
        Sealer {
            key: LessSafeKey::new(key),
            instance,
            cipher,
        }
    }

    /// The instance salt.
    pub fn instance(&self) -> [u8; 16] {
        self.instance
    }

    /// The cipher in use: `"AES-256-GCM"` or `"ChaCha20-Poly1305"`.
    pub fn cipher(&self) -> &'static str {
        self.cipher
    }

    fn aad(&self, id: Identity) -> [u8; CONTEXT.len() + 28] {
        let mut aad = [0; CONTEXT.len() + 28];
        aad[..CONTEXT.len()].copy_from_slice(CONTEXT);
        aad[CONTEXT.len()..CONTEXT.len() + 16].copy_from_slice(&self.instance);
        aad[CONTEXT.len() + 16..].copy_from_slice(&id.nonce());
        aad
    }

    /// Encrypts `value` in place, bound to `id`; returns its tag.
    pub fn seal(&self, id: Identity, value: &mut [u8]) -> Tag {
        let tag = self
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(id.nonce()), Aad::from(self.aad(id)), value)
            .expect("a page is far below the cipher's length limit");
        let mut out = [0; 16];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Encrypts `value` into `sealed` (of the same length: a shorter or
    /// longer one panics), bound to `id`, leaving `value` as it is; returns
    /// its tag. One pass over the bytes, where copying then sealing in place
    /// takes two.
    pub fn seal_into(&self, id: Identity, value: &[u8], sealed: &mut [u8]) -> Tag {
        assert_eq!(value.len(), sealed.len(), "a value is sealed into as many bytes");
        let mut tag = [0; 16];
        self.key
            .seal_out_of_place_scatter(
                Nonce::assume_unique_for_key(id.nonce()),
                Aad::from(self.aad(id)),
                value,
                sealed,
                &[],
                &mut tag,
            )
            .expect("lengths checked, and a page is far below the cipher's length limit");
        tag
    }

    /// Decrypts `value` in place if it is the value sealed as `id` with
    /// `tag`, under this instance; otherwise zeroes it and returns `false`.
    #[must_use = "a value that fails authentication must not be used"]
    pub fn open(&self, id: Identity, value: &mut [u8], tag: &Tag) -> bool {
        let nonce = Nonce::assume_unique_for_key(id.nonce());
        let ok = self
            .key
            .open_in_place_separate_tag(nonce, Aad::from(self.aad(id)), tag, value)
            .is_ok();
        if !ok {
            value.fill(0);
        }
        ok
    }

    /// Decrypts `sealed` into `value` (of the same length) if it is the
    /// value sealed as `id` with `tag`, under this instance; otherwise
    /// zeroes `value` and returns `false`. `sealed` is not changed.
    #[must_use = "a value that fails authentication must not be used"]
    pub fn open_into(&self, id: Identity, sealed: &[u8], value: &mut [u8], tag: &Tag) -> bool {
        let ok = sealed.len() == value.len()
            && self
                .key
                .open_separate_gather(
                    Nonce::assume_unique_for_key(id.nonce()),
                    Aad::from(self.aad(id)),
                    sealed,
                    tag,
                    value,
                )
                .is_ok();
        if !ok {
            value.fill(0);
        }
        ok
    }
}

/// Pages of bounce buffer a thread keeps between writes (a batch of 64):
/// allocating them per write cost as much as sealing them (the allocator
/// maps and faults them in afresh above 128 KiB). A larger write
/// allocates its own. They only ever hold ciphertext once a write returns.
const BOUNCE_KEPT: usize = 64;

thread_local! {
    static BOUNCE: Cell<Box<[Page]>> = Cell::new(Box::default());
}

/// A slot's sealing state: the counter of its last write (0: never
/// written) and the tag of the value written then.
#[derive(Debug, Clone, Copy, Default)]
struct SlotSeal {
    counter: u64,
    tag: Tag,
}

/// A [`Device`] whose pages are sealed: each write encrypts the pages into
/// a bounce buffer under the slot's next counter and keeps the tag; each
/// read decrypts and verifies in the caller's pages. A page that fails
/// (moved, replayed, from another instance, changed) is zeroed and the
/// read fails with an [`io::Error`] of kind
/// [`InvalidData`](io::ErrorKind::InvalidData) carrying [`Unauthentic`],
/// which the store reports as [`Corrupt`](BackupError::Corrupt).
pub struct SealedDevice<D> {
    inner: D,
    sealer: Sealer,
    slots: Mutex<Vec<SlotSeal>>,
    /// The last counter a slot may use; a slot past it is worn.
    max_counter: u64,
}

impl<D: fmt::Debug> fmt::Debug for SealedDevice<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedDevice")
            .field("inner", &self.inner)
            .field("sealer", &self.sealer)
            .finish_non_exhaustive()
    }
}

impl<D: Device> SealedDevice<D> {
    /// `inner` sealed under `key`, with a fresh instance salt; a failing
    /// random source is [`BackupError::Io`] at `origin`.
    pub fn new(inner: D, key: &SealKey, origin: Origin) -> Result<Self> {
        let sealer = Sealer::new(key).map_err(|source| BackupError::Io { origin, source })?;
        Ok(Self::with_sealer(inner, sealer, 64))
    }

    /// `inner` sealed by `sealer`, each slot's write counter `counter_bits`
    /// wide (at most 64; fewer makes slots wear out sooner, for tests).
    pub fn with_sealer(inner: D, sealer: Sealer, counter_bits: u32) -> Self {
        SealedDevice {
            inner,
            sealer,
            slots: Mutex::new(Vec::new()),
            max_counter: u64::MAX >> (64 - counter_bits.clamp(1, 64)),
        }
    }

    /// The sealer.
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    fn slots(&self) -> MutexGuard<'_, Vec<SlotSeal>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens the page of `slot` sealed as `seal` into `dst`: from `stored`,
    /// or in place where `stored` is `None`; `false`, with `dst` zeroed, if
    /// it fails authentication. A slot never written has counter 0, which
    /// no write uses.
    fn open_page(&self, slot: u32, seal: SlotSeal, stored: Option<&Page>, dst: &mut Page) -> bool {
        let id = Identity {
            slot,
            generation: seal.counter,
        };
        let ok = seal.counter != 0
            && match stored {
                Some(stored) => self
                    .sealer
                    .open_into(id, stored.as_bytes(), dst.as_bytes_mut(), &seal.tag),
                None => self.sealer.open(id, dst.as_bytes_mut(), &seal.tag),
            };
        if !ok {
            dst.as_bytes_mut().fill(0);
        }
        ok
    }

    /// Reads `runs` (sealed as `seals`, page by page) into the caller's
    /// pages and opens them in place.
    ///
    /// # Safety
    ///
    /// As [`Device::read`].
    unsafe fn read_in_place(&self, runs: &mut [ReadRun<'_, '_>], seals: &[SlotSeal]) -> Result<(), RunError> {
        // SAFETY: the caller's runs, under the caller's promise.
        unsafe { self.inner.read(runs) }?;
        let mut seals = seals.iter();
        for (done, run) in runs.iter_mut().enumerate() {
            for (page, ((slot, dst), seal)) in (run.slot..).zip(run.pages.iter_mut()).zip(&mut seals).enumerate() {
                if !self.open_page(slot, *seal, None, dst) {
                    let error = io::Error::new(io::ErrorKind::InvalidData, Unauthentic { page, slot });
                    return Err(RunError { done, error });
                }
            }
        }
        Ok(())
    }

    /// Takes the next counter of every slot of `runs`, in order, or fails
    /// on the first run with a worn slot (taking none of it or later).
    fn take_counters(&self, runs: &[WriteRun<'_>]) -> (Vec<u64>, Option<RunError>) {
        let mut slots = self.slots();
        let mut counters = Vec::with_capacity(runs.iter().map(|r| r.pages.len()).sum());
        for (done, run) in runs.iter().enumerate() {
            let end = run.slot as usize + run.pages.len();
            if slots.len() < end {
                slots.resize(end, SlotSeal::default());
            }
            let span = &mut slots[run.slot as usize..end];
            if let Some(worn) = span.iter().position(|s| s.counter >= self.max_counter) {
                let slot = run.slot + worn as u32;
                let error = io::Error::other(format!(
                    "slot {slot} is worn: it was written {} times, as many as its nonce counter allows; \
                     sealing it again would repeat a nonce",
                    self.max_counter
                ));
                return (counters, Some(RunError { done, error }));
            }
            for s in span {
                s.counter += 1;
                counters.push(s.counter);
            }
        }
        (counters, None)
    }
}

// SAFETY: a sealed device owns its inner device, writes the same slots the
// caller gave, through its own bounce buffer, and fills the caller's pages
// only from what the inner device read into them or lent: it passes the
// caller's promises on unchanged. Its own state (counters, tags) is behind a lock.
unsafe impl<D: Device> DeviceLayer for SealedDevice<D> {
    type Inner = D;

    /// The device under the sealing.
    fn inner(&self) -> &D {
        &self.inner
    }

    unsafe fn write(&self, runs: &[WriteRun<'_>]) -> Result<(), RunError> {
        let (counters, worn) = self.take_counters(runs);
        let runs = &runs[..worn.as_ref().map_or(runs.len(), |w| w.done)];
        let mut bounce = BOUNCE.take();
        if bounce.len() < counters.len() {
            bounce = Page::new_boxed_slice(counters.len().max(BOUNCE_KEPT));
        }
        let mut tags = Vec::with_capacity(counters.len());
        let ids = runs.iter().flat_map(|r| (r.slot..).take(r.pages.len()));
        let pages = runs.iter().flat_map(|r| r.pages.iter());
        for (((out, page), slot), &generation) in bounce.iter_mut().zip(pages).zip(ids).zip(&counters) {
            tags.push(
                self.sealer
                    .seal_into(Identity { slot, generation }, page.as_bytes(), out.as_bytes_mut()),
            );
        }
        let mut at = 0;
        let sealed: Vec<&Page> = bounce[..counters.len()].iter().collect();
        let sealed_runs: Vec<WriteRun<'_>> = runs
            .iter()
            .map(|r| {
                at += r.pages.len();
                WriteRun {
                    slot: r.slot,
                    pages: &sealed[at - r.pages.len()..at],
                    resident: r.resident,
                }
            })
            .collect();
        // SAFETY: the same slots as the caller's runs, under the caller's promise.
        let written = unsafe { self.inner.write(&sealed_runs) };
        drop(sealed_runs);
        drop(sealed);
        if bounce.len() <= BOUNCE_KEPT {
            BOUNCE.set(bounce);
        }
        // Tags of failed runs are kept too: those slots are not live, and
        // their next write takes a later counter.
        let mut slots = self.slots();
        let ids = runs.iter().flat_map(|r| (r.slot..).take(r.pages.len()));
        for (slot, tag) in ids.zip(tags) {
            slots[slot as usize].tag = tag;
        }
        drop(slots);
        written?;
        worn.map_or(Ok(()), Err)
    }

    /// Each page is decrypted from where the device holds it straight into
    /// the caller's page, where the device lends its storage
    /// ([`Device::lend`]); otherwise the device reads the runs into the
    /// caller's pages and they are decrypted in place.
    unsafe fn read(&self, runs: &mut [ReadRun<'_, '_>]) -> Result<(), RunError> {
        let all: Vec<SlotSeal> = {
            let slots = self.slots();
            runs.iter()
                .flat_map(|r| r.slot as usize..r.slot as usize + r.pages.len())
                .map(|s| slots.get(s).copied().unwrap_or_default())
                .collect()
        };
        let mut at = 0;
        for done in 0..runs.len() {
            let run = &mut runs[done];
            let seals = &all[at..at + run.pages.len()];
            at += run.pages.len();
            let mut failed = None;
            let mut visited = 0;
            let (slot, pages) = (run.slot, &mut *run.pages);
            let mut open = |page: usize, stored: &Page| {
                visited += 1;
                if failed.is_none() && !self.open_page(slot + page as u32, seals[page], Some(stored), pages[page]) {
                    failed = Some(page);
                }
            };
            // SAFETY: the caller's slots, under the caller's promise.
            match unsafe { self.inner.lend(slot, seals.len(), &mut open) } {
                Ok(true) if visited == seals.len() => {}
                Ok(true) => {
                    // A device that lent part of the run: the pages it did
                    // not lend must not keep what the caller's buffers held.
                    for page in pages.iter_mut() {
                        page.as_bytes_mut().fill(0);
                    }
                    let error = io::Error::other(format!(
                        "the device lent {visited} of the {} pages of the run at slot {slot}",
                        seals.len()
                    ));
                    return Err(RunError { done, error });
                }
                // A device that lends nothing: every run is read and opened
                // in place, in one call that the device may batch.
                Ok(false) if done == 0 => {
                    // SAFETY: the caller's runs, under the caller's promise.
                    return unsafe { self.read_in_place(runs, &all) };
                }
                Ok(false) => {
                    // SAFETY: as above, for this run.
                    unsafe { self.read_in_place(std::slice::from_mut(&mut runs[done]), seals) }
                        .map_err(|e| RunError { done, error: e.error })?;
                }
                Err(error) => return Err(RunError { done, error }),
            }
            if let Some(page) = failed {
                let slot = slot + page as u32;
                let error = io::Error::new(io::ErrorKind::InvalidData, Unauthentic { page, slot });
                return Err(RunError { done, error });
            }
        }
        Ok(())
    }

    unsafe fn release(&self, slot: u32, count: u32) -> io::Result<()> {
        // Counters stay: the slot's next write takes the next one. The tags
        // go, so that nothing of a dropped slot authenticates.
        let start = slot as usize;
        if let Some(span) = self.slots().get_mut(start..start + count as usize) {
            span.iter_mut().for_each(|s| s.tag = Tag::default());
        }
        // SAFETY: the caller's slots, under the caller's promise.
        unsafe { self.inner.release(slot, count) }
    }

    /// The inner device's buffers and the per-slot counters and tags.
    fn buffered_bytes(&self) -> u64 {
        let seals = self.slots().capacity() * std::mem::size_of::<SlotSeal>();
        self.inner.buffered_bytes() + seals as u64
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::raw::test_device::VecDevice;

    /// The device calls of these tests: one thread, slots the test owns,
    /// nothing written while it is read.
    trait TestCalls: Device {
        fn test_write(&self, runs: &[WriteRun<'_>]) -> Result<(), RunError> {
            // SAFETY: see the trait: the test owns the slots, one call at a time.
            unsafe { self.write(runs) }
        }
        fn test_read(&self, runs: &mut [ReadRun<'_, '_>]) -> Result<(), RunError> {
            // SAFETY: see the trait.
            unsafe { self.read(runs) }
        }
        fn test_release(&self, slot: u32, count: u32) -> io::Result<()> {
            // SAFETY: see the trait.
            unsafe { self.release(slot, count) }
        }
    }

    impl<D: Device> TestCalls for D {}

    /// Slots in memory; every page written is also kept in `log`. It lends
    /// its slots if `lends`, so that reads open from them out of place.
    #[derive(Debug, Default)]
    struct MemDevice {
        slots: VecDevice,
        log: Arc<Mutex<Vec<Page>>>,
        lends: bool,
        /// Lends all but the last page of a run, and says it lent them all.
        lends_short: bool,
    }

    impl MemDevice {
        fn with_log(log: &Arc<Mutex<Vec<Page>>>) -> Self {
            MemDevice {
                log: Arc::clone(log),
                ..MemDevice::default()
            }
        }
        fn stored(&self, slot: u32) -> Page {
            self.slots.stored(slot)
        }
        fn put(&self, slot: u32, page: &Page) {
            self.slots.put(slot, page);
        }
    }

    // SAFETY: it owns its inner device; what it adds (the log, lending)
    // reads the runs' pages and the inner device's slots behind its lock.
    unsafe impl DeviceLayer for MemDevice {
        type Inner = VecDevice;
        fn inner(&self) -> &VecDevice {
            &self.slots
        }
        unsafe fn write(&self, runs: &[WriteRun<'_>]) -> Result<(), RunError> {
            // SAFETY: the caller's promise for `runs` holds for the inner device.
            unsafe { self.slots.write(runs) }?;
            let pages = runs.iter().flat_map(|run| run.pages.iter().map(|&page| page.clone()));
            self.log.lock().unwrap().extend(pages);
            Ok(())
        }
        unsafe fn lend(&self, slot: u32, count: usize, visit: &mut dyn FnMut(usize, &Page)) -> io::Result<bool> {
            if !self.lends {
                return Ok(false);
            }
            let count = if self.lends_short { count - 1 } else { count };
            self.slots.visit(slot, count, visit);
            Ok(true)
        }
    }

    fn page(fill: u8) -> Page {
        let mut page = Page::zeroed();
        page.as_bytes_mut().fill(fill);
        page
    }

    fn sealed(key: &SealKey, bits: u32) -> SealedDevice<MemDevice> {
        SealedDevice::with_sealer(MemDevice::default(), Sealer::new(key).unwrap(), bits)
    }

    /// A sealed device whose reads open out of place from the lent storage
    /// if `lends`, or read then open in place.
    fn sealed_lending(key: &SealKey, lends: bool) -> SealedDevice<MemDevice> {
        let device = MemDevice {
            lends,
            ..MemDevice::default()
        };
        SealedDevice::with_sealer(device, Sealer::new(key).unwrap(), 64)
    }

    fn write(dev: &SealedDevice<impl Device>, slot: u32, page: &Page) -> Result<(), RunError> {
        dev.test_write(&[WriteRun {
            slot,
            pages: &[page],
            resident: false,
        }])
    }

    /// The page read from `slot`, or the read's error.
    fn read(dev: &SealedDevice<impl Device>, slot: u32) -> Result<Page, RunError> {
        let mut out = page(0xee);
        dev.test_read(&mut [ReadRun {
            slot,
            pages: &mut [&mut out],
        }])?;
        Ok(out)
    }

    /// The read of `slot` fails authentication, naming page 0 and the slot,
    /// and leaves zeroes in the destination.
    fn assert_unauthentic(dev: &SealedDevice<impl Device>, slot: u32) {
        let mut out = page(0xee);
        let error = dev
            .test_read(&mut [ReadRun {
                slot,
                pages: &mut [&mut out],
            }])
            .unwrap_err();
        assert_eq!(error.done, 0);
        assert_eq!(error.error.kind(), io::ErrorKind::InvalidData);
        assert_eq!(Unauthentic::of(&error.error), Some(Unauthentic { page: 0, slot }));
        assert_eq!(out, Page::zeroed());
    }

    #[test]
    fn round_trip_stores_no_plaintext() {
        for lends in [false, true] {
            let dev = sealed_lending(&SealKey::random().unwrap(), lends);
            write(&dev, 3, &page(0x5a)).unwrap();
            assert_ne!(dev.inner().stored(3), page(0x5a));
            assert_eq!(read(&dev, 3).unwrap(), page(0x5a));
        }
    }

    #[test]
    fn changed_moved_and_replayed_values_fail() {
        for lends in [false, true] {
            let dev = sealed_lending(&SealKey::random().unwrap(), lends);
            write(&dev, 0, &page(1)).unwrap();
            write(&dev, 1, &page(2)).unwrap();
            let old = dev.inner().stored(0);
            // Changed: one bit.
            let mut changed = old.clone();
            changed.as_bytes_mut()[100] ^= 1;
            dev.inner().put(0, &changed);
            assert_unauthentic(&dev, 0);
            // Replayed: slot 0 rewritten, its old value put back.
            write(&dev, 0, &page(3)).unwrap();
            assert_eq!(read(&dev, 0).unwrap(), page(3));
            dev.inner().put(0, &old);
            assert_unauthentic(&dev, 0);
            // Moved: slot 1's value in slot 0.
            dev.inner().put(0, &dev.inner().stored(1));
            assert_unauthentic(&dev, 0);
            assert_eq!(read(&dev, 1).unwrap(), page(2));
        }
    }

    #[test]
    fn another_instance_value_fails_under_the_same_key() {
        let key = SealKey::random().unwrap();
        let (a, b) = (sealed(&key, 64), sealed_lending(&key, true));
        write(&a, 0, &page(1)).unwrap();
        write(&b, 0, &page(2)).unwrap();
        b.inner().put(0, &a.inner().stored(0));
        assert_unauthentic(&b, 0);
    }

    #[test]
    fn released_slot_fails_and_a_multi_page_run_names_its_bad_page() {
        for lends in [false, true] {
            let dev = sealed_lending(&SealKey::random().unwrap(), lends);
            let pages = [page(1), page(2), page(3)];
            let refs: Vec<&Page> = pages.iter().collect();
            dev.test_write(&[WriteRun {
                slot: 4,
                pages: &refs,
                resident: false,
            }])
            .unwrap();
            let mut changed = dev.inner().stored(6);
            changed.as_bytes_mut()[0] ^= 0x80;
            dev.inner().put(6, &changed);
            let mut out = [page(0), page(0), page(0)];
            let [o0, o1, o2] = &mut out;
            let error = dev
                .test_read(&mut [ReadRun {
                    slot: 4,
                    pages: &mut [o0, o1, o2],
                }])
                .unwrap_err();
            assert_eq!(Unauthentic::of(&error.error), Some(Unauthentic { page: 2, slot: 6 }));
            assert_eq!(out[..2], pages[..2]);
            dev.test_release(4, 1).unwrap();
            assert_unauthentic(&dev, 4);
        }
    }

    #[test]
    fn a_device_that_lends_part_of_a_run_fails_it_and_leaves_none_of_the_old_bytes() {
        let dev = SealedDevice::with_sealer(
            MemDevice {
                lends: true,
                lends_short: true,
                ..MemDevice::default()
            },
            Sealer::new(&SealKey::random().unwrap()).unwrap(),
            64,
        );
        let pages = [page(1), page(2)];
        let refs: Vec<&Page> = pages.iter().collect();
        dev.test_write(&[WriteRun {
            slot: 0,
            pages: &refs,
            resident: false,
        }])
        .unwrap();
        let mut out = [page(0xee), page(0xee)];
        let [o0, o1] = &mut out;
        let error = dev
            .test_read(&mut [ReadRun {
                slot: 0,
                pages: &mut [o0, o1],
            }])
            .unwrap_err();
        assert_eq!(error.done, 0);
        assert!(
            error.error.to_string().contains("lent 1 of the 2 pages"),
            "{}",
            error.error
        );
        assert_eq!(out, [page(0), page(0)]);
    }

    /// A layer that changes what its device reads (as sealing and fault
    /// injection do) lends nothing unless it says so: its inner device's
    /// stored bytes are not what it reads.
    #[test]
    fn a_device_layer_lends_nothing_by_default() {
        #[derive(Debug)]
        struct Flipping(MemDevice);
        // SAFETY: every call goes to the one device inside, unchanged.
        unsafe impl DeviceLayer for Flipping {
            type Inner = MemDevice;
            fn inner(&self) -> &MemDevice {
                &self.0
            }
        }
        let layer = Flipping(MemDevice {
            lends: true,
            ..MemDevice::default()
        });
        layer
            .test_write(&[WriteRun {
                slot: 0,
                pages: &[&page(1)],
                resident: false,
            }])
            .unwrap();
        let mut visits = 0;
        // SAFETY: the slot was written and the test makes one call at a time.
        let lent = unsafe { Device::lend(&layer, 0, 1, &mut |_, _| visits += 1) }.unwrap();
        assert!(!lent && visits == 0, "the layer lent its inner device's bytes");
    }

    #[test]
    fn a_worn_slot_refuses_the_write_and_keeps_its_value() {
        let dev = sealed(&SealKey::random().unwrap(), 2);
        for fill in 1..=3 {
            write(&dev, 0, &page(fill)).unwrap();
        }
        let error = write(&dev, 0, &page(4)).unwrap_err();
        assert_eq!(error.done, 0);
        assert!(error.error.to_string().contains("slot 0 is worn"), "{}", error.error);
        assert_eq!(read(&dev, 0).unwrap(), page(3));
        dev.test_release(0, 1).unwrap();
        assert!(write(&dev, 0, &page(5)).is_err(), "a dropped slot keeps its counter");
        write(&dev, 1, &page(6)).unwrap();
    }

    #[test]
    fn keys_parse_from_hex_or_raw_bytes_and_never_show() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF\n";
        let key = SealKey::parse(hex.as_bytes()).unwrap();
        assert_eq!(key.0[..4], [0x00, 0x11, 0x22, 0x33]);
        assert_eq!(key.0[31], 0xff);
        assert_eq!(SealKey::parse(&[b' '; 32]).unwrap().0[..], [b' '; 32]);
        assert!(SealKey::parse(b"short").is_none());
        assert!(SealKey::parse(&[b'g'; 64]).is_none());
        assert_eq!(format!("{key:?}"), "SealKey(<redacted>)");
        assert!(!format!("{:?}", Sealer::new(&key).unwrap()).contains("0011"));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Write(u32),
        Release(u32),
        Restart,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            60 => (0u32..4).prop_map(Op::Write),
            15 => (0u32..4).prop_map(Op::Release),
            1 => Just(Op::Restart),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Slot reuse far past the counter's wrap-around (3-bit counters,
        /// hundreds of writes over 4 slots) and restarts under the same key
        /// never seal two values under one (key, nonce): a zero page's
        /// ciphertext is the keystream of its (subkey, nonce), so every
        /// sealed zero page written must differ from every other.
        #[test]
        fn no_key_nonce_pair_repeats(ops in proptest::collection::vec(op(), 100..600)) {
            // Every case starts by writing slot 0 twice as often as its
            // counter allows: past wrap-around whatever the ops are.
            let ops = std::iter::repeat_n(Op::Write(0), 16).chain(ops);
            let key = SealKey::from_bytes([7; 32]);
            let log = Arc::new(Mutex::new(Vec::new()));
            let open = || SealedDevice::with_sealer(MemDevice::with_log(&log), Sealer::new(&key).unwrap(), 3);
            let mut dev = open();
            let mut live = [false; 4];
            let mut refused = 0;
            for op in ops {
                match op {
                    Op::Write(slot) => match write(&dev, slot, &Page::zeroed()) {
                        Ok(()) => live[slot as usize] = true,
                        Err(e) => {
                            prop_assert!(e.error.to_string().contains("is worn"));
                            refused += 1;
                        }
                    },
                    Op::Release(slot) => {
                        dev.test_release(slot, 1).unwrap();
                        live[slot as usize] = false;
                    }
                    Op::Restart => {
                        dev = open();
                        live = [false; 4];
                    }
                }
                for slot in (0..4).filter(|&s| live[s as usize]) {
                    prop_assert_eq!(read(&dev, slot).unwrap(), Page::zeroed());
                }
            }
            let log = log.lock().unwrap();
            let distinct: HashSet<&[u8]> = log.iter().map(|p| &p.as_bytes()[..32]).collect();
            prop_assert!(refused >= 9, "{} refused", refused);
            prop_assert_eq!(distinct.len(), log.len());
        }
    }
}
