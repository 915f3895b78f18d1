//! [`Staging`]: pages held in memory until they are written together:
//! the sync backend's single pages, and the native backend's backups
//! written behind.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use pagebackup_core::Page;

/// Staged pages gathered before they are written together: 64 pages, 256 KiB.
pub(crate) const STAGE_FLUSH: usize = 64;

/// Pages backed up, by slot, until they are written: single pages of the
/// sync backend (until 64 gather), and every backup of the native backend
/// that writes behind (until its writer takes them).
///
/// A page stays here until its write has completed, so a restore that
/// finds no staged copy finds the page on the file. One flush runs at a
/// time (the flush lock), and a slot being flushed is released only after
/// its write has completed, so an old write never lands on a reused slot.
#[derive(Debug)]
pub(crate) struct Staging {
    pages: Mutex<HashMap<u32, Staged>>,
    /// Pages staged: a cheap check that restores need not look here.
    count: AtomicUsize,
    flushing: Mutex<()>,
    /// Buffers of written pages kept for the next pages staged, so that
    /// staging costs a copy, not an allocation and fresh memory's faults
    /// (the native backend's backups measured 0.7–1.0x the sync backend
    /// with 256 spares against 1.0–1.2x with as many as it stages).
    spare: Mutex<Vec<Arc<Page>>>,
    /// The most spare buffers kept: as many as are staged before a flush
    /// ([`STAGE_FLUSH`]) unless raised ([`keep_spares`](Self::keep_spares)).
    spare_limit: AtomicUsize,
}

impl Default for Staging {
    fn default() -> Self {
        Staging {
            pages: Mutex::default(),
            count: AtomicUsize::new(0),
            flushing: Mutex::new(()),
            spare: Mutex::default(),
            spare_limit: AtomicUsize::new(STAGE_FLUSH),
        }
    }
}

#[derive(Debug)]
struct Staged {
    page: Arc<Page>,
    in_flight: bool,
}

impl Staging {
    fn lock(&self) -> MutexGuard<'_, HashMap<u32, Staged>> {
        // Every update is one map call: a poisoned lock is still consistent.
        self.pages.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Pages staged (written or not).
    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Stages a copy of `page` for `slot`; returns how many pages wait for a write.
    pub(crate) fn stage(&self, slot: u32, page: &Page) -> usize {
        let copy = self.copies(&[page]).pop().expect("one copy");
        let mut pages = self.lock();
        pages.insert(
            slot,
            Staged {
                page: copy,
                in_flight: false,
            },
        );
        self.count.store(pages.len(), Ordering::Relaxed);
        pages.values().filter(|s| !s.in_flight).count()
    }

    /// Stages copies of `pages` for the slots from `slot` on, under one
    /// lock.
    #[cfg(feature = "async")]
    pub(crate) fn stage_run(&self, slot: u32, pages: &[&Page]) {
        let copies = self.copies(pages);
        let mut staged = self.lock();
        for (slot, page) in (slot..).zip(copies) {
            staged.insert(slot, Staged { page, in_flight: false });
        }
        self.count.store(staged.len(), Ordering::Relaxed);
    }

    /// Copies of `pages` in spare buffers, or new ones where none is spare.
    fn copies(&self, pages: &[&Page]) -> Vec<Arc<Page>> {
        let mut copies: Vec<Arc<Page>> = {
            let mut spare = self.spare.lock().unwrap_or_else(PoisonError::into_inner);
            let keep = spare.len().saturating_sub(pages.len());
            spare.split_off(keep)
        };
        for (k, &page) in pages.iter().enumerate() {
            match copies.get_mut(k) {
                // A spare buffer is held here alone (see `recycle`).
                Some(copy) => Arc::get_mut(copy)
                    .expect("a spare buffer is not shared")
                    .clone_from(page),
                None => copies.push(Arc::new(page.clone())),
            }
        }
        copies
    }

    /// The staged page of `slot`, if one is staged.
    pub(crate) fn staged(&self, slot: u32) -> Option<Arc<Page>> {
        if self.len() == 0 {
            return None;
        }
        self.lock().get(&slot).map(|staged| Arc::clone(&staged.page))
    }

    /// Copies the staged page of `slot` into `dst`; `false` if none is staged.
    pub(crate) fn copy_out(&self, slot: u32, dst: &mut Page) -> bool {
        self.staged(slot).map(|page| dst.clone_from(&page)).is_some()
    }

    /// Forgets the staged pages of `slots`; returns whether any of them
    /// was staged. Waits for a flush writing one of them to complete.
    pub(crate) fn discard(&self, slots: std::ops::Range<u32>) -> bool {
        if self.len() == 0 {
            return false;
        }
        let mut flushing = None;
        loop {
            let mut pages = self.lock();
            // A flush may have taken a slot since the last look: a slot in
            // flight leaves only once its write is done, under the flush
            // lock (with it held, no flush runs, so none is in flight).
            if flushing.is_none() && slots.clone().any(|s| pages.get(&s).is_some_and(|p| p.in_flight)) {
                drop(pages);
                flushing = Some(self.flushing.lock().unwrap_or_else(PoisonError::into_inner));
                continue;
            }
            let mut any = false;
            for slot in slots {
                any |= pages.remove(&slot).is_some();
            }
            self.count.store(pages.len(), Ordering::Relaxed);
            return any;
        }
    }

    /// Writes every staged page not in flight with `write` (given the slots
    /// sorted and their pages), one flush at a time; written pages leave,
    /// failed ones stay for the next flush.
    pub(crate) fn flush<E>(&self, write: impl FnOnce(&[u32], &[&Page]) -> Result<(), E>) -> Result<(), E> {
        let _flushing = self.flushing.lock().unwrap_or_else(PoisonError::into_inner);
        let mut batch: Vec<(u32, Arc<Page>)> = {
            let mut pages = self.lock();
            pages
                .iter_mut()
                .filter(|(_, s)| !s.in_flight)
                .map(|(&slot, s)| {
                    s.in_flight = true;
                    (slot, Arc::clone(&s.page))
                })
                .collect()
        };
        if batch.is_empty() {
            return Ok(());
        }
        batch.sort_unstable_by_key(|&(slot, _)| slot);
        let slots: Vec<u32> = batch.iter().map(|&(slot, _)| slot).collect();
        let pages: Vec<&Page> = batch.iter().map(|(_, p)| &**p).collect();
        let written = write(&slots, &pages);
        let mut freed = Vec::new();
        let mut map = self.lock();
        for (slot, page) in &batch {
            // A slot staged again while its page was written keeps its
            // newer page, for the next flush.
            let Some(staged) = map.get_mut(slot).filter(|s| Arc::ptr_eq(&s.page, page)) else {
                continue;
            };
            if written.is_ok() {
                map.remove(slot);
                freed.push(Arc::clone(page));
            } else {
                staged.in_flight = false;
            }
        }
        self.count.store(map.len(), Ordering::Relaxed);
        drop(map);
        drop(batch);
        self.recycle(freed);
        written
    }

    /// Keeps up to `pages` spare buffers from now on.
    #[cfg(feature = "async")]
    pub(crate) fn keep_spares(&self, pages: usize) {
        self.spare_limit.store(pages, Ordering::Relaxed);
    }

    /// Keeps the buffers of `freed` that nothing else holds (a lent page
    /// may be) as spares, up to the limit.
    fn recycle(&self, freed: Vec<Arc<Page>>) {
        let mut spare = self.spare.lock().unwrap_or_else(PoisonError::into_inner);
        let room = self.spare_limit.load(Ordering::Relaxed).saturating_sub(spare.len());
        spare.extend(freed.into_iter().filter(|p| Arc::strong_count(p) == 1).take(room));
    }

    /// Bytes of memory the staged pages take.
    pub(crate) fn bytes(&self) -> u64 {
        (self.len() * std::mem::size_of::<Page>()) as u64
    }

    /// Bytes of memory the spare buffers take.
    pub(crate) fn spare_bytes(&self) -> u64 {
        let spare = self.spare.lock().unwrap_or_else(PoisonError::into_inner);
        (spare.len() * std::mem::size_of::<Page>()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(byte: u8) -> Page {
        let mut p = Page::zeroed();
        p.0.fill(byte);
        p
    }

    /// A slot staged again while a flush writes its older page keeps the
    /// newer one, for the next flush; the written one leaves.
    #[test]
    fn a_page_staged_during_its_flush_stays_for_the_next() {
        let staging = Staging::default();
        staging.stage(1, &page(0xa));
        staging.stage(2, &page(0xb));
        staging
            .flush(|slots, pages| {
                assert_eq!(slots, &[1, 2]);
                assert_eq!(pages[0].0[0], 0xa);
                staging.stage(1, &page(0xc));
                Ok::<(), ()>(())
            })
            .unwrap();
        let mut out = page(0);
        assert!(staging.copy_out(1, &mut out));
        assert_eq!(out.0[0], 0xc, "the newer page stays staged");
        assert!(!staging.copy_out(2, &mut out), "the written page left");
        let mut seen = Vec::new();
        staging
            .flush(|slots, pages| {
                seen.extend(slots.iter().zip(pages).map(|(&s, p)| (s, p.0[0])));
                Ok::<(), ()>(())
            })
            .unwrap();
        assert_eq!(seen, [(1, 0xc)]);
        assert_eq!(staging.len(), 0);
    }

    /// A discard of a slot whose page a flush is writing returns only once
    /// that write is done: the slot is then free to reuse with no old
    /// write left to land on it.
    #[test]
    fn a_discard_waits_for_the_write_of_its_slot_in_flight() {
        use std::sync::atomic::AtomicBool;
        use std::sync::{Barrier, mpsc};

        for round in 0..200 {
            let staging = Arc::new(Staging::default());
            staging.stage(7, &page(0xa));
            let written = Arc::new(AtomicBool::new(false));
            let started = Arc::new(Barrier::new(2));
            let (go, wait) = mpsc::channel::<()>();
            let flusher = {
                let (staging, written, started) = (Arc::clone(&staging), Arc::clone(&written), Arc::clone(&started));
                std::thread::spawn(move || {
                    staging
                        .flush(|slots, _| {
                            assert_eq!(slots, &[7]);
                            started.wait();
                            wait.recv().unwrap();
                            written.store(true, Ordering::SeqCst);
                            Ok::<(), ()>(())
                        })
                        .unwrap();
                })
            };
            started.wait();
            let discarder = {
                let (staging, written) = (Arc::clone(&staging), Arc::clone(&written));
                std::thread::spawn(move || {
                    assert!(staging.discard(7..8) || written.load(Ordering::SeqCst));
                    assert!(
                        written.load(Ordering::SeqCst),
                        "round {round}: discarded under its write"
                    );
                })
            };
            if round % 2 == 1 {
                std::thread::yield_now();
            }
            go.send(()).unwrap();
            flusher.join().unwrap();
            discarder.join().unwrap();
            assert_eq!(staging.len(), 0);
        }
    }
}
