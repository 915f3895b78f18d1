//! Sealing: pages encrypted and authenticated before they reach a device.
//!
//! A backend whose bytes leave process memory (a file, a server, a memfd
//! that others can map) offers `seal=on`: each page is sealed with an AEAD
//! whose associated data is the page's identity, so that what comes back
//! is this page's bytes or [`Corrupt`](crate::BackupError::Corrupt), and
//! nobody reading the storage learns the bytes.
//!
//! This module is always there, so that a backend's config and parameters
//! do not change with the build: [`SealKeySource`] (where the key comes
//! from), the spec parameters [`SEAL_PARAM`] and [`SEAL_KEY_PARAM`], and
//! [`MaybeSealed`], the device a backend's store holds. The cipher itself
//! — [`SealKey`], [`Sealer`], [`SealedDevice`] — needs the crate's `seal`
//! feature; without it, `seal=on` is a [`Config`](crate::BackupError::Config)
//! error at open that says which feature to enable.
//!
//! # Cipher
//!
//! AES-256-GCM where the CPU has AES and carry-less multiply instructions
//! (x86-64 AES-NI and PCLMULQDQ, AArch64 AES and PMULL), ChaCha20-Poly1305
//! otherwise (where AES without them is slow and not constant-time), both
//! from `aws-lc-rs`, whose assembly has AVX-512 VAES/VPCLMULQDQ paths and,
//! above all, seals and opens *out of place*: a page is encrypted from the
//! caller's page straight into the device's buffer, and decrypted from
//! where the device holds it (a file's page-cache mapping) straight into
//! the caller's page — one pass over the bytes, where `ring` (which only
//! works in place) needs a copy and then a cipher pass. On 4 KiB pages on
//! one core of a loaded AVX-512 VAES machine (best of 40 batches of 8 MiB,
//! three runs): out of place 7.6–8.0 GB/s (`aws-lc-rs`) against a copy
//! then in place 6.8–6.9 GB/s (`ring`); the portable RustCrypto `aes-gcm`
//! reached 0.6 GB/s.
//!
//! # Keys and nonces
//!
//! The *key* is 256 bits: by default drawn at random when the backend is
//! opened, held only in memory and zeroed on drop, never written anywhere,
//! so sealed pages die with the backend as unsealed ones do; or supplied by
//! the caller ([`SealKeySource::File`], [`SealKeySource::Env`]), never in
//! the spec string itself.
//!
//! A (key, nonce) pair never seals two values, for any sequence of
//! operations, including slot reuse, counter exhaustion and restarts with
//! a supplied key:
//!
//! 1. Each [`Sealer`] (one per device, that is per shard, of each backend
//!    opened) draws a random 128-bit *instance salt* and seals under the
//!    subkey HKDF-SHA256(key, salt, cipher name). Two sealers share a
//!    subkey only if they draw the same salt: for 2^32 sealers under one
//!    key, a chance below 2^-64. A restart with a supplied key therefore
//!    seals under a fresh subkey, whatever it did before.
//! 2. Under one subkey the 96-bit nonce is the pair (slot: 32 bits, write
//!    counter: 64 bits). [`SealedDevice`] keeps one counter per slot that
//!    only grows: every write of a slot takes the next value, a dropped
//!    slot keeps its counter for its next use, and a slot whose counter is
//!    spent refuses the write (it is *worn*) rather than wrap. At 64 bits a
//!    slot rewritten every microsecond lasts half a million years.
//!
//! The associated data is the instance salt, the slot and the counter: a
//! value moved to another slot, replayed (an older value of the same
//! slot), taken from another instance or changed fails authentication. The
//! 16-byte tag of each slot is held in memory (counted in the store's
//! `metadata_bytes`), beside the counter, so the device stores exactly a
//! page per slot and nothing read back from it can carry its own tag.
//!
//! # What it does not protect
//!
//! The pages in process memory: anyone who can read the process (root,
//! a debugger, a core dump) reads them and the key (the key bytes this
//! module holds are zeroed on drop, and `aws-lc` zeroes its expanded key
//! schedule when it frees it). Sealing hides the bytes and detects changes;
//! it does not hide which slots are in use, when, or how often they are
//! written. A page opened from a shared mapping of a file (the file
//! backend without `direct`) is read where another process with write
//! access to the file could change it during the open: what is returned is
//! what was authenticated only as far as the cipher reads each byte once
//! (AES-GCM's stitched assembly does); such a process can as well destroy
//! every page, or truncate the file under the mapping (`SIGBUS`).
// The cipher's items, linked above, exist with the `seal` feature only.
#![cfg_attr(not(feature = "seal"), allow(rustdoc::broken_intra_doc_links))]

use std::path::PathBuf;

use super::device::{Device, DeviceLayer};
use super::params::{ParamDoc, ParamError, Params};
use crate::error::{Origin, Result};

#[cfg(feature = "seal")]
mod kit;
#[cfg(feature = "seal")]
pub use kit::{Identity, SealKey, SealedDevice, Sealer, Tag};

/// The spec parameter `seal`: `on` seals every page.
pub const SEAL_PARAM: ParamDoc = ParamDoc {
    key: "seal",
    syntax: "on|off",
    default: "off",
    meaning: "encrypt and authenticate every page (AES-256-GCM or ChaCha20-Poly1305; feature `seal`)",
};

/// The spec parameter `seal_key`: where a supplied key comes from.
pub const SEAL_KEY_PARAM: ParamDoc = ParamDoc {
    key: "seal_key",
    syntax: "file:PATH|env:NAME",
    default: "random, in memory",
    meaning: "the sealing key: 32 bytes, raw or as 64 hex digits, from a file or an environment variable",
};

/// Where a backend's sealing key comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SealKeySource {
    /// A key drawn at random when the backend is opened, held only in
    /// memory: the pages cannot be read by anything but this backend.
    #[default]
    Random,
    /// A file holding the key: 32 bytes, or 64 hex digits (surrounding
    /// white space ignored).
    File(PathBuf),
    /// An environment variable holding the key as 64 hex digits.
    Env(String),
}

impl SealKeySource {
    /// The sealing a spec's `seal` and `seal_key` parameters ask for:
    /// `None` for `seal=off` (the default). A `seal_key` without `seal=on`,
    /// or not of the form `file:PATH` or `env:NAME`, is an error.
    pub fn from_params(params: &Params<'_>) -> Result<Option<Self>, ParamError> {
        let on = params.flag(SEAL_PARAM.key)?.unwrap_or(false);
        let Some(value) = params.get(SEAL_KEY_PARAM.key) else {
            return Ok(on.then_some(SealKeySource::Random));
        };
        let bad = || params.bad(SEAL_KEY_PARAM.key, "file:PATH or env:NAME, with seal=on");
        let source = match value.split_once(':') {
            Some(("file", path)) if !path.is_empty() => SealKeySource::File(PathBuf::from(path)),
            Some(("env", name)) if !name.is_empty() => SealKeySource::Env(name.to_string()),
            _ => return Err(bad()),
        };
        if on { Ok(Some(source)) } else { Err(bad()) }
    }
}

/// The error of `seal=on` asked of a build without the `seal` feature, at
/// `origin`: which feature to enable.
pub fn not_compiled_in(origin: Origin) -> crate::BackupError {
    crate::BackupError::Config {
        origin,
        detail: format!(
            "seal=on needs sealing compiled in: enable the `seal` feature of the {} backend's crate (or of the \
             pagebackup facade)",
            origin.backend
        ),
    }
}

/// A device with pages sealed or not, as the backend's config says: what
/// a store of a backend that offers `seal=on` holds.
#[derive(Debug)]
#[non_exhaustive]
pub enum MaybeSealed<D> {
    /// Pages stored as they are.
    Plain(D),
    /// Pages sealed.
    #[cfg(feature = "seal")]
    Sealed(Box<SealedDevice<D>>),
}

impl<D: Device> MaybeSealed<D> {
    /// `devices` (one per shard), each sealed under its own instance salt
    /// if `seal` asks for it, with one key for all. A key that cannot be
    /// loaded, or sealing asked of a build without the `seal` feature, is
    /// [`BackupError::Config`](crate::BackupError::Config) at `origin`.
    pub fn wrap(devices: Vec<D>, seal: Option<&SealKeySource>, origin: Origin) -> Result<Vec<Self>> {
        let Some(source) = seal else {
            return Ok(devices.into_iter().map(MaybeSealed::Plain).collect());
        };
        #[cfg(feature = "seal")]
        {
            let key = SealKey::load(source, origin)?;
            devices
                .into_iter()
                .map(|d| SealedDevice::new(d, &key, origin).map(|s| MaybeSealed::Sealed(Box::new(s))))
                .collect()
        }
        #[cfg(not(feature = "seal"))]
        {
            let _ = source;
            Err(not_compiled_in(origin))
        }
    }

    /// The backend's own device, under the sealing if any.
    pub fn base(&self) -> &D {
        match self {
            MaybeSealed::Plain(d) => d,
            #[cfg(feature = "seal")]
            MaybeSealed::Sealed(s) => s.inner(),
        }
    }

    /// Whether pages are sealed.
    pub fn is_sealed(&self) -> bool {
        !matches!(self, MaybeSealed::Plain(_))
    }
}

// SAFETY: the one device inside is owned, and every call goes to it
// unchanged: the caller's promises pass through.
unsafe impl<D: Device + 'static> DeviceLayer for MaybeSealed<D> {
    type Inner = dyn Device + 'static;

    /// The device pages go to: the sealing device, or the plain one.
    fn inner(&self) -> &(dyn Device + 'static) {
        match self {
            MaybeSealed::Plain(d) => d,
            #[cfg(feature = "seal")]
            MaybeSealed::Sealed(s) => &**s,
        }
    }

    /// Passed on: the device inside writes (sealing first, if it seals).
    unsafe fn write_overlapped(
        &self,
        runs: &[super::WriteRun<'_>],
        meanwhile: &mut dyn FnMut(),
    ) -> Result<(), super::RunError> {
        // SAFETY: the caller's runs, under the caller's promise, passed on unchanged.
        unsafe { self.inner().write_overlapped(runs, meanwhile) }
    }

    /// A plain device's storage as it lies; a sealed one's is ciphertext,
    /// so it lends nothing.
    unsafe fn lend(
        &self,
        slot: u32,
        count: usize,
        visit: &mut dyn FnMut(usize, &crate::Page),
    ) -> std::io::Result<bool> {
        match self {
            // SAFETY: the caller's slots, under the caller's promise, passed on unchanged.
            MaybeSealed::Plain(d) => unsafe { d.lend(slot, count, visit) },
            #[cfg(feature = "seal")]
            MaybeSealed::Sealed(_) => Ok(false),
        }
    }

    /// A plain device's reads part by part as they arrive; a sealed one's
    /// whole, opened, then handed over.
    unsafe fn read_arriving(
        &self,
        runs: &mut [super::ReadRun<'_, '_>],
        arrived: &mut super::Arrived<'_>,
    ) -> Result<(), super::RunError> {
        match self {
            // SAFETY: the caller's runs, under the caller's promise, passed on unchanged.
            MaybeSealed::Plain(d) => unsafe { d.read_arriving(runs, arrived) },
            #[cfg(feature = "seal")]
            MaybeSealed::Sealed(s) => {
                // SAFETY: as above, to the sealing device, whose reads open the pages.
                let result = unsafe { Device::read(&**s, runs) };
                super::hand_over(runs, result, arrived)
            }
        }
    }
}

/// The error a device read gives for a page that fails authentication
/// (inside an [`std::io::Error`] of kind
/// [`InvalidData`](std::io::ErrorKind::InvalidData)): which page of the
/// failed run it was, so the store names that page's handle in its
/// [`Corrupt`](crate::BackupError::Corrupt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unauthentic {
    /// The page's position in its run.
    pub page: usize,
    /// The device's slot.
    pub slot: u32,
}

impl std::fmt::Display for Unauthentic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the sealed page in slot {} fails authentication: its storage was changed, or holds another slot's, \
             an older or another instance's value; the backup is unusable, drop it",
            self.slot
        )
    }
}

impl std::error::Error for Unauthentic {}

impl Unauthentic {
    /// The page of its run that a device read error names, if it is a
    /// failed authentication.
    pub fn of(error: &std::io::Error) -> Option<Self> {
        error.get_ref()?.downcast_ref::<Unauthentic>().copied()
    }
}
