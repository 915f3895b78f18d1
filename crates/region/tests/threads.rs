//! Many threads faulting at once, on the same pages and on different ones,
//! in both fault modes; system calls on evicted memory; backend calls given
//! region pages; drop while the region's threads are busy.

mod support;

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use pagebackup_core::{BackupBackend, BackupFlags, MemoryBackend, PAGE_SIZE, Page};
use pagebackup_region::{FaultMode, RegionConfig};
use support::{LEN, MODES, Rng, WORDS_PER_PAGE, fill, memory_region, region};

#[test]
fn eight_threads_on_different_pages_keep_their_own_words() {
    for mode in MODES {
        let Some(r) = memory_region(mode) else {
            return;
        };
        let words = r.words();
        let pages = LEN / PAGE_SIZE;
        std::thread::scope(|s| {
            for t in 0..8usize {
                s.spawn(move || {
                    let mut rng = Rng(t as u64 + 1);
                    // Thread t owns the pages p with p % 8 == t.
                    for i in 0..4000u64 {
                        let page = rng.below(pages / 8) * 8 + t;
                        let w = page * WORDS_PER_PAGE + rng.below(WORDS_PER_PAGE);
                        words[w].store((t as u64) << 56 | w as u64, Ordering::Relaxed);
                        if i % 4 == 0 {
                            let v = words[w].load(Ordering::Relaxed);
                            assert_eq!(v, (t as u64) << 56 | w as u64, "{mode}: thread {t} word {w}");
                        }
                    }
                });
            }
        });
        for (w, word) in words.iter().enumerate() {
            let v = word.load(Ordering::Relaxed);
            assert!(
                v == 0 || v == ((w / WORDS_PER_PAGE % 8) as u64) << 56 | w as u64,
                "{mode}: word {w} is {v:#x}"
            );
        }
        let s = r.stats();
        assert!(s.evicted_pages > 0 && s.restored_pages > 0, "{mode}: {s:?}");
        assert!(r.last_error().is_none());
    }
}

#[test]
fn eight_threads_writing_their_own_pages_read_back_every_word_exactly() {
    for mode in MODES {
        let Some(r) = memory_region(mode) else {
            return;
        };
        let words = r.words();
        let pages = LEN / PAGE_SIZE;
        let models: Vec<Vec<u64>> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..8usize)
                .map(|t| {
                    s.spawn(move || {
                        // Thread t owns the pages p with p % 8 == t and
                        // keeps a model of their words.
                        let mut model = vec![0u64; pages / 8 * WORDS_PER_PAGE];
                        let mut rng = Rng(t as u64 + 101);
                        for i in 0..6000u64 {
                            let k = rng.below(pages / 8);
                            let off = rng.below(WORDS_PER_PAGE);
                            let w = (k * 8 + t) * WORDS_PER_PAGE + off;
                            if i % 3 == 0 {
                                let v = words[w].load(Ordering::Relaxed);
                                assert_eq!(v, model[k * WORDS_PER_PAGE + off], "{mode}: thread {t} word {w}");
                            } else {
                                let v = rng.next();
                                words[w].store(v, Ordering::Relaxed);
                                model[k * WORDS_PER_PAGE + off] = v;
                            }
                        }
                        model
                    })
                })
                .collect();
            threads.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for p in 0..pages {
            let (t, k) = (p % 8, p / 8);
            for off in 0..WORDS_PER_PAGE {
                let v = words[p * WORDS_PER_PAGE + off].load(Ordering::Relaxed);
                assert_eq!(v, models[t][k * WORDS_PER_PAGE + off], "{mode}: page {p} word {off}");
            }
        }
        let s = r.stats();
        assert!(s.evicted_pages > 0 && s.restored_pages > 0, "{mode}: {s:?}");
        // Victims are picked in address order, so one write-protect call
        // covers a span of them: fewer calls than pages written back (one a
        // page before). How many a span holds depends on how the eight
        // threads' faults interleave with the evictor, so the bound is loose.
        assert!(s.protect_calls * 3 <= s.written_back * 2, "{mode}: {s:?}");
        assert_eq!(r.last_error().map(|e| e.to_string()), None);
    }
}

#[test]
fn eight_threads_on_the_same_pages_lose_no_increment() {
    for mode in MODES {
        let Some(r) = memory_region(mode) else {
            return;
        };
        let words = r.words();
        let pages = LEN / PAGE_SIZE;
        const PER_THREAD: u64 = 3000;
        std::thread::scope(|s| {
            for t in 0..8u64 {
                s.spawn(move || {
                    let mut rng = Rng(t + 11);
                    for _ in 0..PER_THREAD {
                        // Word 0 of every page is a counter all threads bump;
                        // the pages far outnumber the budget, so they keep
                        // being evicted and restored under the threads.
                        words[rng.below(pages) * WORDS_PER_PAGE].fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        let total: u64 = (0..pages)
            .map(|p| words[p * WORDS_PER_PAGE].load(Ordering::Relaxed))
            .sum();
        assert_eq!(total, 8 * PER_THREAD, "{mode}: {:?}", r.stats());
        assert!(r.stats().evicted_pages > 0);
    }
}

#[test]
fn a_system_call_on_evicted_memory_gets_efault_in_signal_mode_and_works_once_pinned() {
    for mode in MODES {
        let Some(mut r) = memory_region(mode) else {
            return;
        };
        fill(r.as_mut_slice());
        let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.write_all(&[0xAB; 100]).unwrap();
        // Page 0 was evicted long ago: the kernel writes into it.
        let result = b.read(&mut r.as_mut_slice()[..100]);
        match mode {
            FaultMode::Signal => {
                assert_eq!(result.unwrap_err().raw_os_error(), Some(libc_efault()), "{mode}");
                // Pinned, the same call works.
                a.write_all(&[0xCD; 100]).unwrap();
                let mut pinned = r.pin_mut(0..100).unwrap();
                assert_eq!(b.read(&mut pinned).unwrap(), 100);
                assert_eq!(&pinned[..], &[0xAB; 100][..], "the first bytes sent are read first");
                drop(pinned);
                assert_eq!(r.as_slice()[100], 1, "the rest of page 0 kept its contents");
            }
            FaultMode::HandlerThread => {
                assert_eq!(result.unwrap(), 100, "{mode}");
                assert_eq!(&r.as_slice()[..100], &[0xAB; 100][..]);
            }
            _ => unreachable!(),
        }
    }
}

/// `EFAULT`.
fn libc_efault() -> i32 {
    14
}

#[test]
fn backend_calls_given_region_pages_pin_them_instead_of_faulting_under_the_backend() {
    for mode in MODES {
        let Some(mut r) = memory_region(mode) else {
            return;
        };
        fill(r.as_mut_slice());
        // Page 1 is evicted: backing it up reads it inside the backend.
        let page = Page::from_bytes(&r.as_slice()[PAGE_SIZE..2 * PAGE_SIZE]).unwrap();
        let handle = r.backend().backup_page(page, 1, BackupFlags::NONE).unwrap();
        let mut out = Page::new_boxed();
        r.backend().copy_page(&mut out, handle, None).unwrap();
        assert!(out.0.iter().all(|&b| b == 1), "{mode}: page 1 holds 1s");
        r.backend().drop_handle(handle).unwrap();
    }
}

#[test]
fn drop_while_the_evictor_and_restores_are_busy_releases_every_backup() {
    for mode in MODES {
        for round in 0..10u64 {
            let backend = Arc::new(MemoryBackend::new());
            let config = RegionConfig::new().with_mode(mode);
            let Some(r) = region(LEN, support::BUDGET, Box::new(Arc::clone(&backend)), config) else {
                return;
            };
            let words = r.words();
            std::thread::scope(|s| {
                for t in 0..4u64 {
                    s.spawn(move || {
                        let mut rng = Rng(round * 8 + t + 1);
                        for _ in 0..500 {
                            words[rng.below(words.len())].fetch_add(1, Ordering::Relaxed);
                        }
                    });
                }
            });
            // The evictor is still working down to its low watermark.
            drop(r);
            assert_eq!(
                backend.stats().stored_pages,
                0,
                "{mode} round {round}: backups left behind"
            );
        }
    }
}
