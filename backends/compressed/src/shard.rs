//! [`Shard`]: one handle table and the arena its objects live in, with the
//! compaction that keeps the arena dense.

use pagebackup_core::PAGE_SIZE;

use crate::arena::{Arena, CHUNK};
use crate::budget::Budget;
use crate::entry::{self, Location, Stored};
use crate::seal::ObjectSeal;
use crate::table::{Refused, Table};

/// Chunks with fewer live bytes than this are worth moving when
/// [`compact`](Shard::compact) is asked for: each frees at least a
/// sixteenth of a chunk for the bytes it copies (an eighth left a tiered
/// stack's lower tier 7% over its live bytes after pages moved up out of it).
pub(crate) const WORTH_MOVING: usize = CHUNK * 15 / 16;

/// Most objects the compaction of a backup or drop moves
/// ([`Shard::tidy`]): a chunk is moved out over several operations, so
/// that none holds the shard's lock for long. Moving a whole chunk at once
/// (some 45 objects of a process heap) held it 20 µs and more, and every
/// restore of the shard waited; 8 objects are a few microseconds.
pub(crate) const TIDY_STEP: usize = 8;

/// Compaction starts when the garbage passes this share of the live
/// bytes (and a chunk): 1/64. Under a region's churn (every dirty page
/// evicted is a store and a drop) the arena ran 6 % over its live bytes at
/// 1/16 and kept 2.19x a captured Python heap where zram kept 2.21x; at
/// 1/64 it keeps 2.29x, for 4-6 % fewer random accesses a second. The
/// denser victims cost moves: the churn test (`tests/churn.rs`) moves 2.2x
/// the objects, and a backup under churn takes 10.6 µs of CPU at the median
/// instead of 7.7, for memory at most 1.043x the live bytes instead of
/// 1.075x.
pub(crate) const GARBAGE_SHARE: u64 = 64;

/// The garbage steps in idle time ([`Shard::tidy_idle`]) leave: 1/256 of
/// the live bytes (and a chunk). Under a region's hot workload the arena
/// stays near [`GARBAGE_SHARE`] (1.7 % of its bytes on a captured Python
/// heap); at 1/256 its ratio is 1 % higher. As the share every operation
/// keeps it cost a sixth of a random workload's accesses a second
/// (compaction moving 3.6x the objects); in the time an evictor has to
/// spare it costs none.
pub(crate) const IDLE_GARBAGE_SHARE: u64 = 256;

/// Bytes new pages leave unused under the limit, for compaction: moving a
/// chunk out may need a new chunk before the old one is freed.
pub(crate) const COMPACTION_RESERVE: u64 = CHUNK as u64;

/// Whether restores wait for the shard while a backup or drop holds it
/// ([`Shards::readers_waiting`](pagebackup_core::raw::Shards::readers_waiting)).
/// While they do, the operation leaves its compaction step
/// ([`Shard::tidy`]) to a later one, unless the garbage is past twice its
/// share. Under a region's churn one drop in 13 held the shard over 8 µs
/// (12 µs on average), nearly all of it the step, and the restores that
/// waited through such holds were most of a fault's slowest percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Readers {
    /// None waits: the step is taken now.
    Away,
    /// Some wait: the step waits for a later operation.
    Waiting,
}

impl Readers {
    pub(crate) fn of(waiting: bool) -> Self {
        if waiting { Readers::Waiting } else { Readers::Away }
    }
}

/// What a backup stores, worked out before the shard is locked.
#[derive(Debug)]
pub(crate) enum Prepared<'a> {
    /// A same-filled page's word: kept in the table entry if it can hold
    /// it, else as an 8-byte object.
    Same(u64),
    /// Compressed bytes, or the page itself (`raw`), with their checksum.
    Object {
        /// The bytes.
        bytes: &'a [u8],
        /// Whether they are the page itself.
        raw: bool,
        /// Their CRC-32, if the arena keeps checksums (else 0).
        sum: u32,
    },
    /// Compressed bytes, or the page itself (`raw`), followed by room for
    /// the tag, to be sealed once the slot is known (`seal=on`).
    Sealed {
        /// The payload, then the tag's room.
        object: &'a mut [u8],
        /// Whether the payload is the page itself.
        raw: bool,
    },
}

/// One shard's pages.
pub(crate) struct Shard {
    pub(crate) table: Table,
    pub(crate) arena: Arena,
    /// Bytes of stored objects, headers left out (zram's `compr_data_size`).
    pub(crate) object_bytes: u64,
    pub(crate) same_filled: u64,
    pub(crate) raw: u64,
    pub(crate) compacted: u64,
    /// The sealing of the shard's objects, with `seal=on`.
    pub(crate) seal: Option<ObjectSeal>,
    /// The chunk [`tidy`](Self::tidy) is moving out, if any.
    tidying: Option<u32>,
}

impl Shard {
    /// An empty shard of at most `max_slots` pages, its objects sealed by
    /// `seal` if given.
    pub(crate) fn new(max_slots: u32, checksums: bool, seal: Option<ObjectSeal>) -> Self {
        Shard {
            table: Table::new(max_slots),
            arena: Arena::new(checksums),
            object_bytes: 0,
            same_filled: 0,
            raw: 0,
            compacted: 0,
            seal,
            tidying: None,
        }
    }

    /// Bytes of an object holding a raw page: the page, and its tag if sealed.
    pub(crate) fn raw_len(&self) -> usize {
        PAGE_SIZE + self.seal.as_ref().map_or(0, ObjectSeal::tag_len)
    }

    /// Stores a page: its slot and generation. On `Refused`, nothing is
    /// stored and nothing is charged that was not charged before.
    pub(crate) fn store(
        &mut self,
        prepared: Prepared<'_>,
        budget: &Budget,
        readers: Readers,
    ) -> Result<(u32, u32), Refused> {
        let word_bytes;
        let (object, raw, sum, word) = match prepared {
            Prepared::Same(word) if entry::holds_word(word) => {
                let done = self.table.alloc(Stored::Same(word), budget, COMPACTION_RESERVE)?;
                self.same_filled += 1;
                return Ok(done);
            }
            Prepared::Same(word) => {
                word_bytes = word.to_ne_bytes();
                let sum = if self.arena.keeps_checksums() {
                    crc32fast::hash(&word_bytes)
                } else {
                    0
                };
                (Err(&word_bytes[..]), false, sum, true)
            }
            Prepared::Object { bytes, raw, sum } => (Err(bytes), raw, sum, false),
            Prepared::Sealed { object, raw } => (Ok(object), raw, 0, false),
        };
        // No header names the slot until the object is appended, so no
        // compaction meanwhile looks at where the placeholder points.
        let nowhere = Location {
            chunk: 0,
            offset: 0,
            len: 0,
        };
        let placeholder = if word {
            Stored::Word(nowhere)
        } else {
            Stored::Object(nowhere)
        };
        let (slot, generation) = self.table.alloc(placeholder, budget, COMPACTION_RESERVE)?;
        let bytes: &[u8] = match (object, &mut self.seal) {
            (Err(bytes), _) => bytes,
            (Ok(object), Some(seal)) => match seal.seal(slot, object, budget, COMPACTION_RESERVE) {
                Ok(()) => object,
                Err(refused) => {
                    self.table.release(slot, budget);
                    return Err(refused);
                }
            },
            (Ok(_), None) => unreachable!("a sealed object is prepared only for a shard that seals"),
        };
        let loc = match self.arena.append(bytes, slot, sum, budget, COMPACTION_RESERVE) {
            Some(loc) => loc,
            None => {
                self.make_room(self.arena.overhead() + bytes.len(), budget);
                match self.arena.append(bytes, slot, sum, budget, COMPACTION_RESERVE) {
                    Some(loc) => loc,
                    None => {
                        self.table.release(slot, budget);
                        return Err(if self.arena.free_numbers() <= 1 {
                            Refused::Chunks
                        } else {
                            Refused::Limit
                        });
                    }
                }
            }
        };
        self.table.moved(slot, loc);
        self.object_bytes += bytes.len() as u64;
        self.raw += u64::from(raw);
        self.same_filled += u64::from(word);
        self.tidy(budget, readers);
        Ok((slot, generation))
    }

    /// Drops a live slot's page. `false` if the slot is not live.
    pub(crate) fn drop_slot(&mut self, slot: u32, budget: &Budget, readers: Readers) -> bool {
        match self.table.release(slot, budget) {
            None => return false,
            Some(Stored::Same(_)) => self.same_filled -= 1,
            Some(Stored::Object(loc)) => {
                self.arena.free(loc, budget);
                self.object_bytes -= u64::from(loc.len);
                self.raw -= u64::from(usize::from(loc.len) == self.raw_len());
                self.tidy(budget, readers);
            }
            Some(Stored::Word(loc)) => {
                self.arena.free(loc, budget);
                self.object_bytes -= u64::from(loc.len);
                self.same_filled -= 1;
                self.tidy(budget, readers);
            }
        }
        true
    }

    /// The compaction every backup and drop does: when more than a chunk
    /// and more than 1/[`GARBAGE_SHARE`] of the live bytes could be given back, up to
    /// [`TIDY_STEP`] objects of one of the sparsest chunks
    /// ([`Arena::sparse_victim`], with no scan per call) move to the head;
    /// the next operations go on with the same chunk until it is free
    /// (whatever the garbage left by then: a chunk half moved out holds the
    /// room of the objects gone as well as those left). A
    /// step takes a new chunk only if the [`COMPACTION_RESERVE`] stays
    /// free: at the limit, moving a chunk out is the backup's
    /// ([`make_room`](Self::make_room)), which frees it in one go. While
    /// restores wait for the shard ([`Readers::Waiting`]), no step is taken
    /// until the garbage passes twice that share.
    fn tidy(&mut self, budget: &Budget, readers: Readers) {
        let share = self.garbage_share(GARBAGE_SHARE);
        if readers == Readers::Waiting && self.arena.garbage() <= 2 * share {
            return;
        }
        self.tidy_to(share, budget);
    }

    /// One step of [`tidy`](Self::tidy)'s compaction toward
    /// 1/[`IDLE_GARBAGE_SHARE`] of the live bytes, for time to spare.
    /// Returns whether objects moved (`false` once the garbage is down to
    /// that share, or nothing could move).
    pub(crate) fn tidy_idle(&mut self, budget: &Budget) -> bool {
        self.tidy_to(self.garbage_share(IDLE_GARBAGE_SHARE), budget)
    }

    /// Moves up to [`TIDY_STEP`] objects of the chunk under way, or of a
    /// new victim if the garbage is over `share`. Returns whether any moved.
    fn tidy_to(&mut self, share: u64, budget: &Budget) -> bool {
        // The chunk under way, unless it was freed (its id may have been
        // given to a new chunk since, which is full or the head); else a
        // new one if there is garbage enough.
        let victim = match self
            .tidying
            .filter(|&v| self.arena.live_in(v).is_some_and(|l| l < WORTH_MOVING))
        {
            Some(victim) => victim,
            None if self.arena.garbage() <= share => return false,
            None => match self.arena.sparse_victim() {
                Some(victim) => victim,
                None => return false,
            },
        };
        let objects = self.live_objects(victim);
        let moved = self.move_out(&objects, TIDY_STEP, COMPACTION_RESERVE, budget);
        self.tidying = (moved < objects.len()).then_some(victim);
        moved > 0
    }

    /// The garbage compaction leaves: 1/`share` of the live bytes, and at
    /// least a chunk.
    fn garbage_share(&self, share: u64) -> u64 {
        (self.arena.live() / share).max(CHUNK as u64)
    }

    /// At the limit, makes room for `need` bytes by moving the sparsest
    /// chunk out, if what it frees leaves that room: its objects go to the
    /// head (into a new chunk from [`COMPACTION_RESERVE`] where they do not
    /// fit), and once it is freed the head or a new chunk has the room.
    fn make_room(&mut self, need: usize, budget: &Budget) {
        if let Some((victim, _)) = self.arena.sparsest() {
            self.evacuate(victim, need, budget);
        }
    }

    /// Moves every live object with bytes in chunk `victim` to the head of
    /// the arena, which frees the chunk, if they fit in the head's room and
    /// one new chunk (the [`COMPACTION_RESERVE`]) with `spare` bytes left
    /// over; else moves nothing. A move that needed a second chunk would
    /// stop half-way with the reserve taken and the victim still held, and
    /// from then on no move could free a chunk: the arena would stay full
    /// whatever was dropped. Stops early only if the limit refuses the new
    /// chunk (every moved object is whole in its new place). Returns the
    /// objects moved.
    pub(crate) fn evacuate(&mut self, victim: u32, spare: usize, budget: &Budget) -> u64 {
        let objects = self.live_objects(victim);
        let bytes: usize = objects
            .iter()
            .map(|(_, loc)| self.arena.overhead() + usize::from(loc.len))
            .sum();
        if bytes + spare > self.arena.head_room() + CHUNK {
            return 0;
        }
        self.move_out(&objects, usize::MAX, 0, budget) as u64
    }

    /// The live objects with bytes in chunk `victim`: also those running
    /// on into it or out of it, whose other bytes lie in its neighbours.
    fn live_objects(&self, victim: u32) -> Vec<(u32, Location)> {
        let table = &self.table;
        self.arena
            .live_objects(victim, |slot| table.get(slot).and_then(|(_, stored)| stored.location()))
    }

    /// Moves up to `most` of `objects` (a chunk's [`live_objects`](Self::live_objects))
    /// to the head, whole, taking new chunks only while `keep` bytes stay
    /// under the limit. Stops early where the limit refuses. Returns the
    /// objects moved.
    fn move_out(&mut self, objects: &[(u32, Location)], most: usize, keep: u64, budget: &Budget) -> usize {
        let mut moved = 0;
        let mut buf = [0u8; 2 * PAGE_SIZE];
        for &(slot, from) in objects.iter().take(most) {
            let len = usize::from(from.len);
            let (a, b) = self.arena.object(from);
            buf[..a.len()].copy_from_slice(a);
            buf[a.len()..len].copy_from_slice(b);
            let sum = self.arena.checksum(from).unwrap_or(0);
            let Some(to) = self.arena.append(&buf[..len], slot, sum, budget, keep) else {
                break;
            };
            self.table.moved(slot, to);
            self.arena.free(from, budget);
            moved += 1;
        }
        self.compacted += moved as u64;
        moved
    }

    /// Moves out every chunk worth moving ([`WORTH_MOVING`]), sparsest
    /// first. Returns (objects moved, bytes of memory released).
    pub(crate) fn compact(&mut self, budget: &Budget) -> (u64, u64) {
        let (before, mut moved) = (self.arena.bytes(), 0);
        // Moving a chunk out moves the objects running on into or out of
        // it too, which can leave a neighbour sparse: passes go on while
        // they give memory back.
        loop {
            let (start, mut pass) = (self.arena.bytes(), 0);
            for victim in self.arena.sparse(WORTH_MOVING) {
                // An earlier move may have freed it, or reused its id for a
                // full chunk or for the head.
                if self.arena.live_in(victim).is_some_and(|live| live < WORTH_MOVING) {
                    pass += self.evacuate(victim, 0, budget);
                }
            }
            moved += pass;
            if pass == 0 || self.arena.bytes() >= start {
                break;
            }
        }
        (moved, before.saturating_sub(self.arena.bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arena::{DIRECTORY_STEP_BYTES, HEADER};
    use crate::table::{DIRECTORY_STEP_BYTES as TABLE_DIRECTORY_STEP_BYTES, SEGMENT_BYTES};

    /// What stops a shard from taking more.
    #[derive(Clone, Copy, PartialEq)]
    enum Cap {
        /// The memory limit.
        Bytes,
        /// The chunk numbers an entry can address.
        Numbers,
    }

    /// Fills a shard until `cap` stops it with objects of `len(i)` bytes,
    /// drops every other one and fills again, round after round: every
    /// round takes as many bytes again as the last one freed (within a
    /// chunk), and after every store and drop the compaction reserve (a
    /// chunk's bytes, and a chunk number) is left free.
    fn refills_to(cap: Cap, mut len: impl FnMut(usize) -> usize) {
        let chunks = 6;
        let bound = SEGMENT_BYTES + TABLE_DIRECTORY_STEP_BYTES + DIRECTORY_STEP_BYTES + chunks * CHUNK as u64;
        let limit = if cap == Cap::Bytes { bound } else { u64::MAX };
        let budget = Budget::new((cap == Cap::Bytes).then_some(limit), 0);
        let mut shard = Shard::new(1 << 20, false, None);
        if cap == Cap::Numbers {
            shard.arena.cap_numbers(chunks as usize);
        }
        let expected = if cap == Cap::Bytes {
            Refused::Limit
        } else {
            Refused::Chunks
        };
        let reserve_free = |shard: &Shard, budget: &Budget| match cap {
            Cap::Bytes => budget.used() + COMPACTION_RESERVE <= limit,
            Cap::Numbers => shard.arena.free_numbers() >= 1,
        };
        let mut live: Vec<(u32, usize)> = Vec::new();
        let mut i = 0;
        for round in 0..6 {
            loop {
                let object: Vec<u8> = (0..len(i)).map(|k| (i * 7 + k) as u8).collect();
                i += 1;
                let prepared = Prepared::Object {
                    bytes: &object,
                    raw: object.len() == PAGE_SIZE,
                    sum: 0,
                };
                match shard.store(prepared, &budget, Readers::Away) {
                    Ok((slot, _)) => live.push((slot, object.len())),
                    Err(refused) => {
                        assert_eq!(refused, expected);
                        break;
                    }
                }
                assert!(
                    reserve_free(&shard, &budget),
                    "round {round}: the compaction reserve is taken ({} of {limit} used, {} numbers free)",
                    budget.used(),
                    shard.arena.free_numbers()
                );
            }
            let held: usize = live.iter().map(|&(_, len)| len + HEADER).sum();
            assert!(
                held as u64 > (chunks - 2) * CHUNK as u64,
                "round {round}: {held} bytes held in {chunks} chunks"
            );
            let mut k = 0;
            live.retain(|&(slot, _)| {
                k += 1;
                k % 2 == 0 || !shard.drop_slot(slot, &budget, Readers::Away)
            });
            assert!(reserve_free(&shard, &budget));
        }
        for (slot, len) in live {
            let Some((_, Stored::Object(loc))) = shard.table.get(slot) else {
                panic!("slot {slot} is not an object");
            };
            assert_eq!(usize::from(loc.len), len);
        }
    }

    #[test]
    fn a_full_shard_takes_objects_again_after_drops_whatever_their_sizes() {
        // Full by the memory limit, or by the chunk numbers an entry can
        // address: either way one chunk is kept for compaction.
        for cap in [Cap::Bytes, Cap::Numbers] {
            for seed in 1..=256u64 {
                let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                refills_to(cap, |_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    2100 + (x % 150) as usize
                });
            }
            // Objects of one size, raw pages among them.
            refills_to(cap, |_| 2171);
            refills_to(cap, |i| if i % 5 == 0 { PAGE_SIZE } else { 1500 });
        }
    }

    /// While restores wait for the shard, drops leave compaction for later
    /// until the garbage passes twice its share, and keep it within a few
    /// chunks of that bound; once none wait, drops take their steps again.
    #[test]
    fn while_readers_wait_compaction_waits_for_twice_the_garbage() {
        let budget = Budget::new(None, 0);
        let mut shard = Shard::new(1 << 20, false, None);
        let bytes = vec![7u8; 1500];
        let slots: Vec<u32> = (0..4000)
            .map(|_| {
                let prepared = Prepared::Object {
                    bytes: &bytes,
                    raw: false,
                    sum: 0,
                };
                shard.store(prepared, &budget, Readers::Waiting).unwrap().0
            })
            .collect();
        let share = |shard: &Shard| shard.garbage_share(GARBAGE_SHARE);
        let mut kept = Vec::new();
        for (i, &slot) in slots.iter().enumerate() {
            if i % 4 == 0 {
                kept.push(slot);
                continue;
            }
            let before = shard.compacted;
            assert!(shard.drop_slot(slot, &budget, Readers::Waiting));
            if shard.compacted > before {
                assert!(
                    shard.arena.garbage() + 2 * CHUNK as u64 > 2 * share(&shard),
                    "drop {i} moved objects at {} bytes of garbage, {} its share",
                    shard.arena.garbage(),
                    share(&shard)
                );
            }
            // A chunk under way holds the room of the objects moved out
            // too, until it is freed.
            assert!(
                shard.arena.garbage() <= 2 * share(&shard) + 4 * CHUNK as u64,
                "drop {i}: {} bytes of garbage, {} its share",
                shard.arena.garbage(),
                share(&shard)
            );
        }
        assert!(shard.compacted > 0, "past twice the share, the steps are taken");
        assert!(shard.arena.garbage() > share(&shard), "left at more than the share");
        // Nobody waits: drops take their steps until the garbage is
        // within its share again.
        let before = shard.compacted;
        for &slot in kept.iter().step_by(2) {
            assert!(shard.drop_slot(slot, &budget, Readers::Away));
        }
        assert!(shard.compacted > before);
        assert!(shard.arena.garbage() <= share(&shard) + 2 * CHUNK as u64);
    }

    /// Stores `object(i)` for `i` in `0..count` in `shard`: their slots.
    fn store_objects(shard: &mut Shard, budget: &Budget, count: usize, object: impl Fn(usize) -> Vec<u8>) -> Vec<u32> {
        (0..count)
            .map(|i| {
                let bytes = object(i);
                let prepared = Prepared::Object {
                    bytes: &bytes,
                    raw: false,
                    sum: 0,
                };
                shard.store(prepared, budget, Readers::Away).unwrap().0
            })
            .collect()
    }

    /// Checks that the slot of each `(i, slot)` holds `object(i)`.
    fn assert_objects<'a>(
        shard: &Shard,
        slots: impl Iterator<Item = (usize, &'a u32)>,
        object: impl Fn(usize) -> Vec<u8>,
    ) {
        for (i, &slot) in slots {
            let Some((_, Stored::Object(loc))) = shard.table.get(slot) else {
                panic!("slot {slot} is not an object");
            };
            let (a, b) = shard.arena.object(loc);
            assert_eq!([a, b].concat(), object(i), "object {i}");
        }
    }

    /// The garbage operations leave (1/[`GARBAGE_SHARE`] of the live
    /// bytes) goes down to 1/[`IDLE_GARBAGE_SHARE`] in idle steps of at
    /// most [`TIDY_STEP`] objects each, which then say there is nothing
    /// left to do; every kept object keeps its bytes.
    #[test]
    fn idle_steps_take_the_garbage_down_to_the_idle_share_and_then_stop() {
        let budget = Budget::new(None, 0);
        let mut shard = Shard::new(1 << 20, false, None);
        let object = |i: usize| -> Vec<u8> { (0..3000).map(|k| (i * 7 + k / 3) as u8).collect() };
        let slots = store_objects(&mut shard, &budget, 16_000, object);
        for (i, &slot) in slots.iter().enumerate() {
            if i % 8 == 3 {
                assert!(shard.drop_slot(slot, &budget, Readers::Away));
            }
        }
        let idle_share = |shard: &Shard| shard.arena.live() / IDLE_GARBAGE_SHARE;
        assert!(
            idle_share(&shard) > CHUNK as u64,
            "the test needs a share above the floor"
        );
        let busy = shard.arena.garbage();
        assert!(
            busy > 2 * idle_share(&shard),
            "operations leave {busy} bytes of garbage, share {}",
            idle_share(&shard)
        );
        let mut steps = 0;
        loop {
            let before = shard.compacted;
            if !shard.tidy_idle(&budget) {
                break;
            }
            assert!(shard.compacted - before <= TIDY_STEP as u64);
            steps += 1;
            assert!(steps < 100_000, "idle steps do not end");
        }
        assert!(
            shard.arena.garbage() <= idle_share(&shard) + CHUNK as u64,
            "{} bytes of garbage left after {steps} steps, against {busy}",
            shard.arena.garbage()
        );
        assert!(!shard.tidy_idle(&budget), "nothing is left to do");
        assert_objects(&shard, slots.iter().enumerate().filter(|(i, _)| i % 8 != 3), object);
    }

    /// Drops of three objects in four leave chunks sparse: each drop moves
    /// at most [`TIDY_STEP`] objects, yet over the drops the chunks are
    /// moved out until the garbage is within a chunk or two of the
    /// threshold, and every kept object keeps its bytes.
    #[test]
    fn compaction_moves_a_few_objects_per_operation_and_frees_chunks_over_many() {
        let budget = Budget::new(None, 0);
        let mut shard = Shard::new(1 << 20, false, None);
        let object = |i: usize| -> Vec<u8> { (0..1500).map(|k| (i * 13 + k) as u8).collect() };
        let slots = store_objects(&mut shard, &budget, 4000, object);
        let mut most = 0;
        for (i, &slot) in slots.iter().enumerate() {
            if i % 4 != 0 {
                let before = shard.compacted;
                assert!(shard.drop_slot(slot, &budget, Readers::Away));
                most = most.max(shard.compacted - before);
            }
        }
        assert!(shard.compacted > 0);
        assert!(most <= TIDY_STEP as u64, "one drop moved {most} objects");
        let live_chunks = shard.arena.live().div_ceil(CHUNK as u64);
        assert!(
            shard.arena.chunks() <= live_chunks + 3,
            "{} chunks for {live_chunks} chunks of live objects",
            shard.arena.chunks()
        );
        assert_objects(&shard, slots.iter().enumerate().step_by(4), object);
    }
}
