//! [`Arena`]: a packed, log-structured store of objects. Each object is
//! appended, behind a 4-byte header, at the byte where the last one ended,
//! in chunks of [`CHUNK`] bytes; one that does not fit runs on into the
//! next chunk. So a 1.1 KiB object takes 1.1 KiB and 4 bytes, whatever its
//! neighbours. Each chunk counts its live bytes and is freed when none are
//! left; the shard's compaction ([`Shard`](crate::shard::Shard)) re-appends
//! the live objects of a sparse chunk, so that it can be freed.
//!
//! A header is the object's slot while the object is live, and [`DEAD`]
//! with the object's length once it is freed, so a chunk can be walked
//! object by object. With checksums on, a CRC-32 of the object follows its
//! header.

use crate::budget::Budget;
use crate::entry::{Location, MAX_CHUNKS};

/// Bytes of a chunk.
pub(crate) const CHUNK: usize = 64 << 10;
/// Chunks the directory grows by at least (and by an eighth of its size
/// beyond that, so that growing stays linear in time and leaves at most an
/// eighth unused).
const DIRECTORY_STEP: usize = 16;
/// Bytes of the directory per chunk: its slot and its place on the vacant list.
const DIRECTORY_BYTES_PER_CHUNK: usize = std::mem::size_of::<Option<Chunk>>() + std::mem::size_of::<u32>();
/// Bytes charged for the directory's first step.
pub(crate) const DIRECTORY_STEP_BYTES: u64 = (DIRECTORY_STEP * DIRECTORY_BYTES_PER_CHUNK) as u64;
/// Bytes of an object's header.
pub(crate) const HEADER: usize = 4;
/// Bytes of an object's checksum, when kept.
const CHECKSUM: usize = 4;
/// The header of a freed object: this bit and its length.
const DEAD: u32 = 1 << 31;
/// No chunk.
const NONE: u32 = u32::MAX;
/// Chunks one scan of the directory keeps as compaction victims
/// ([`Arena::sparse_victim`]).
const CANDIDATES: usize = 16;

struct Chunk {
    data: Box<[u8; CHUNK]>,
    /// Bytes of live objects (headers included) in this chunk.
    live: u32,
    /// Offset of the last header that starts here, or [`NONE`].
    last: u32,
    /// Packed, from the low bits: the chunk whose last object runs on into
    /// this one and the chunk this one's last object runs on into (21 bits
    /// each, [`NO_LINK`] for none), then the offset of the first header
    /// that starts here (the bits above: the bytes before it are the end
    /// of the last object of the previous chunk, less than a chunk). The directory's entry for a
    /// chunk is 24 bytes.
    links: u64,
}

const LINK_BITS: u32 = 21;
/// A link to no chunk.
const NO_LINK: u64 = (1 << LINK_BITS) - 1;
const FIRST_SHIFT: u32 = 2 * LINK_BITS;
const _: () = assert!(MAX_CHUNKS as u64 <= NO_LINK && std::mem::size_of::<Option<Chunk>>() == 24);

impl Chunk {
    fn new() -> Self {
        Chunk {
            data: vec![0; CHUNK].into_boxed_slice().try_into().expect("CHUNK bytes"),
            live: 0,
            last: NONE,
            links: NO_LINK | NO_LINK << LINK_BITS,
        }
    }

    fn link(&self, shift: u32) -> u32 {
        match self.links >> shift & NO_LINK {
            NO_LINK => NONE,
            id => id as u32,
        }
    }

    fn set_link(&mut self, shift: u32, id: u32) {
        let bits = if id == NONE { NO_LINK } else { u64::from(id) };
        self.links = self.links & !(NO_LINK << shift) | bits << shift;
    }

    /// The chunk whose last object runs on into this one, or [`NONE`].
    fn prev(&self) -> u32 {
        self.link(0)
    }

    fn set_prev(&mut self, id: u32) {
        self.set_link(0, id);
    }

    /// The chunk this one's last object runs on into, or [`NONE`].
    fn next(&self) -> u32 {
        self.link(LINK_BITS)
    }

    fn set_next(&mut self, id: u32) {
        self.set_link(LINK_BITS, id);
    }

    /// Offset of the first header that starts here.
    fn first(&self) -> usize {
        (self.links >> FIRST_SHIFT) as usize
    }

    fn set_first(&mut self, offset: usize) {
        debug_assert!(offset < CHUNK, "an object is shorter than a chunk");
        self.links = self.links & ((1 << FIRST_SHIFT) - 1) | (offset as u64) << FIRST_SHIFT;
    }
}

/// One shard's objects.
pub(crate) struct Arena {
    chunks: Vec<Option<Chunk>>,
    /// Ids of freed chunks, for reuse (capacity kept equal to `chunks`').
    vacant: Vec<u32>,
    /// The chunk objects are appended to, or [`NONE`].
    head: u32,
    /// Bytes of the head chunk in use.
    head_end: usize,
    checksums: bool,
    /// Chunk numbers an entry can address.
    max_chunks: usize,
    /// Bytes charged: chunks and directory.
    bytes: u64,
    /// Bytes of live objects, headers included.
    live: u64,
    chunk_count: u64,
    /// Victims for compaction from the last scan, `(chunk, live bytes
    /// then)`, the sparsest last; the first `candidate_count` are valid.
    candidates: [(u32, u32); CANDIDATES],
    candidate_count: usize,
}

impl Arena {
    /// An empty arena; with `checksums`, each object carries a CRC-32.
    pub(crate) fn new(checksums: bool) -> Self {
        Arena {
            chunks: Vec::new(),
            vacant: Vec::new(),
            head: NONE,
            head_end: 0,
            checksums,
            max_chunks: MAX_CHUNKS as usize,
            bytes: 0,
            live: 0,
            chunk_count: 0,
            candidates: [(NONE, 0); CANDIDATES],
            candidate_count: 0,
        }
    }

    /// Whether each object carries a CRC-32.
    pub(crate) fn keeps_checksums(&self) -> bool {
        self.checksums
    }

    /// Bytes in front of each object: header, and checksum when kept.
    pub(crate) fn overhead(&self) -> usize {
        HEADER + if self.checksums { CHECKSUM } else { 0 }
    }

    /// Bytes charged for chunks and directory.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Bytes of live objects, headers included.
    pub(crate) fn live(&self) -> u64 {
        self.live
    }

    /// Chunks allocated.
    pub(crate) fn chunks(&self) -> u64 {
        self.chunk_count
    }

    /// Bytes of chunks that hold neither live objects nor the head's free
    /// room: what compaction can give back.
    pub(crate) fn garbage(&self) -> u64 {
        (self.chunk_count * CHUNK as u64).saturating_sub(self.live + self.head_room() as u64)
    }

    /// Bytes the head chunk has left.
    pub(crate) fn head_room(&self) -> usize {
        if self.head == NONE { 0 } else { CHUNK - self.head_end }
    }

    /// Chunk numbers not in use: an entry addresses [`MAX_CHUNKS`] (fewer
    /// when a test caps them).
    pub(crate) fn free_numbers(&self) -> usize {
        self.vacant.len() + self.max_chunks - self.chunks.len()
    }

    /// Caps the chunk numbers, so that a test reaches the cap.
    #[cfg(test)]
    pub(crate) fn cap_numbers(&mut self, max_chunks: usize) {
        self.max_chunks = max_chunks;
    }

    /// Live bytes of chunk `id`, if it is allocated and not the head.
    pub(crate) fn live_in(&self, id: u32) -> Option<usize> {
        if id == self.head {
            return None;
        }
        Some(self.chunks.get(id as usize)?.as_ref()?.live as usize)
    }

    fn chunk(&self, id: u32) -> &Chunk {
        self.chunks[id as usize].as_ref().expect("a live chunk")
    }

    fn chunk_mut(&mut self, id: u32) -> &mut Chunk {
        self.chunks[id as usize].as_mut().expect("a live chunk")
    }

    /// A new chunk, charged to `budget` (with directory room when it must
    /// grow) with `keep` bytes to spare; `None` if the limit refuses. One
    /// that keeps bytes to spare (for compaction) also keeps a directory
    /// slot free for the chunk compaction takes, so that moving a chunk out
    /// never needs the directory to grow beyond what the limit has left.
    fn new_chunk(&mut self, budget: &Budget, keep: u64) -> Option<u32> {
        // Like the bytes, one chunk number is kept for compaction.
        if self.free_numbers() <= usize::from(keep > 0) {
            return None;
        }
        let free_slots = self.vacant.len() + (self.chunks.capacity() - self.chunks.len());
        let grow = free_slots <= usize::from(keep > 0);
        let step = if grow {
            DIRECTORY_STEP.max(self.chunks.len() / 8)
        } else {
            0
        };
        let directory = (step * DIRECTORY_BYTES_PER_CHUNK) as u64;
        if !budget.reserve(CHUNK as u64 + directory, keep) {
            return None;
        }
        if grow {
            self.chunks
                .reserve_exact(self.chunks.capacity() - self.chunks.len() + step);
            self.vacant.reserve_exact(self.chunks.capacity() - self.vacant.len());
            self.bytes += directory;
        }
        self.bytes += CHUNK as u64;
        self.chunk_count += 1;
        let chunk = Chunk::new();
        Some(match self.vacant.pop() {
            Some(id) => {
                self.chunks[id as usize] = Some(chunk);
                id
            }
            None => {
                self.chunks.push(Some(chunk));
                (self.chunks.len() - 1) as u32
            }
        })
    }

    /// Frees chunk `id` if nothing in it is live and it is not the head
    /// (the head too once the arena is empty). Returns the bytes released.
    fn free_if_empty(&mut self, id: u32, budget: &Budget) -> u64 {
        if id == NONE || self.chunk(id).live != 0 || (id == self.head && self.live != 0) {
            return 0;
        }
        let chunk = self.chunks[id as usize].take().expect("a live chunk");
        if chunk.prev() != NONE {
            self.chunk_mut(chunk.prev()).set_next(NONE);
        }
        if chunk.next() != NONE {
            self.chunk_mut(chunk.next()).set_prev(NONE);
        }
        if id == self.head {
            self.head = NONE;
        }
        self.vacant.push(id);
        self.chunk_count -= 1;
        self.bytes -= CHUNK as u64;
        budget.release(CHUNK as u64);
        CHUNK as u64
    }

    /// `len` bytes from `offset` of chunk `id` (an offset past the chunk's
    /// end is in the next one): in one piece, or in two where they run on.
    fn span(&self, id: u32, offset: usize, len: usize) -> (&[u8], &[u8]) {
        let chunk = self.chunk(id);
        if offset >= CHUNK {
            let next = self.chunk(chunk.next());
            return (&next.data[offset - CHUNK..offset - CHUNK + len], &[]);
        }
        let here = len.min(CHUNK - offset);
        let rest = match len - here {
            0 => &[][..],
            more => &self.chunk(chunk.next()).data[..more],
        };
        (&chunk.data[offset..offset + here], rest)
    }

    fn put(&mut self, id: u32, offset: usize, bytes: &[u8]) {
        let (id, offset) = if offset >= CHUNK {
            (self.chunk(id).next(), offset - CHUNK)
        } else {
            (id, offset)
        };
        let here = bytes.len().min(CHUNK - offset);
        let chunk = self.chunk_mut(id);
        chunk.data[offset..offset + here].copy_from_slice(&bytes[..here]);
        if here < bytes.len() {
            let next = chunk.next();
            self.chunk_mut(next).data[..bytes.len() - here].copy_from_slice(&bytes[here..]);
        }
    }

    /// The 4 bytes at `offset` of chunk `id`, running on into the next
    /// chunk if need be; `None` if they would run on into a chunk that was
    /// freed (they are then the header of a dead object).
    fn word(&self, id: u32, offset: usize) -> Option<u32> {
        if offset + 4 > CHUNK && self.chunk(id).next() == NONE {
            return None;
        }
        let (a, b) = self.span(id, offset, 4);
        let mut word = [0; 4];
        word[..a.len()].copy_from_slice(a);
        word[a.len()..].copy_from_slice(b);
        Some(u32::from_le_bytes(word))
    }

    /// Appends `object` for `slot` (with its checksum `sum` when the arena
    /// keeps them). `None`, changing nothing, if a new chunk is needed and
    /// `budget` refuses it with `keep` bytes to spare.
    pub(crate) fn append(
        &mut self,
        object: &[u8],
        slot: u32,
        sum: u32,
        budget: &Budget,
        keep: u64,
    ) -> Option<Location> {
        debug_assert!(slot < DEAD && !object.is_empty() && object.len() <= usize::from(u16::MAX));
        let total = self.overhead() + object.len();
        if self.head == NONE || self.head_end == CHUNK {
            let id = self.new_chunk(budget, keep)?;
            self.head = id;
            self.head_end = 0;
        } else if self.head_end + total > CHUNK {
            let next = self.new_chunk(budget, keep)?;
            let head = self.head;
            self.chunk_mut(head).set_next(next);
            let run_on = self.head_end + total - CHUNK;
            let chunk = self.chunk_mut(next);
            chunk.set_prev(head);
            chunk.set_first(run_on);
        }
        let (id, offset) = (self.head, self.head_end);
        self.put(id, offset, &slot.to_le_bytes());
        if self.checksums {
            self.put(id, offset + HEADER, &sum.to_le_bytes());
        }
        self.put(id, offset + self.overhead(), object);
        self.count(id, offset, total, true);
        self.chunk_mut(id).last = offset as u32;
        if offset + total > CHUNK {
            self.head = self.chunk(id).next();
            self.head_end = offset + total - CHUNK;
        } else {
            self.head_end = offset + total;
        }
        self.live += total as u64;
        Some(Location {
            chunk: id,
            offset: offset as u16,
            len: object.len() as u16,
        })
    }

    /// Adds or takes away `total` bytes from `offset` of chunk `id` to its
    /// live count and, where they run on, the next chunk's.
    fn count(&mut self, id: u32, offset: usize, total: usize, add: bool) {
        let here = total.min(CHUNK - offset);
        let next = self.chunk(id).next();
        for (id, bytes) in [(id, here), (next, total - here)] {
            if bytes > 0 {
                let live = &mut self.chunk_mut(id).live;
                *live = if add {
                    *live + bytes as u32
                } else {
                    *live - bytes as u32
                };
            }
        }
    }

    /// The object's bytes, in one piece or two.
    pub(crate) fn object(&self, loc: Location) -> (&[u8], &[u8]) {
        self.span(
            loc.chunk,
            usize::from(loc.offset) + self.overhead(),
            usize::from(loc.len),
        )
    }

    /// Flips byte `pos` of an object, to test what damage does.
    #[cfg(test)]
    pub(crate) fn flip(&mut self, loc: Location, pos: usize) {
        self.xor(loc, pos, 0x5a);
    }

    /// XORs byte `pos` of an object with `mask`, to test what damage does.
    #[cfg(test)]
    pub(crate) fn xor(&mut self, loc: Location, pos: usize, mask: u8) {
        let offset = usize::from(loc.offset) + self.overhead() + pos;
        let (id, offset) = if offset >= CHUNK {
            (self.chunk(loc.chunk).next(), offset - CHUNK)
        } else {
            (loc.chunk, offset)
        };
        self.chunk_mut(id).data[offset] ^= mask;
    }

    /// The object's checksum, if the arena keeps them.
    pub(crate) fn checksum(&self, loc: Location) -> Option<u32> {
        self.checksums
            .then(|| self.word(loc.chunk, usize::from(loc.offset) + HEADER))
            .flatten()
    }

    /// Frees an object: its header becomes [`DEAD`], and chunks left with
    /// nothing live are freed. Returns the bytes of chunk memory released.
    pub(crate) fn free(&mut self, loc: Location, budget: &Budget) -> u64 {
        let (id, offset) = (loc.chunk, usize::from(loc.offset));
        let total = self.overhead() + usize::from(loc.len);
        self.put(id, offset, &(DEAD | u32::from(loc.len)).to_le_bytes());
        let next = if offset + total > CHUNK {
            self.chunk(id).next()
        } else {
            NONE
        };
        self.count(id, offset, total, false);
        self.live -= total as u64;
        let released = self.free_if_empty(id, budget) + self.free_if_empty(next, budget);
        let head = self.head;
        released
            + if self.live == 0 {
                self.free_if_empty(head, budget)
            } else {
                0
            }
    }

    /// The chunk with the fewest live bytes, the head left out, and its
    /// live bytes.
    pub(crate) fn sparsest(&self) -> Option<(u32, usize)> {
        self.chunks
            .iter()
            .enumerate()
            .filter(|&(id, _)| id as u32 != self.head)
            .filter_map(|(id, c)| c.as_ref().map(|c| (id as u32, c.live as usize)))
            .min_by_key(|&(_, live)| live)
    }

    /// One of the sparsest chunks but the head, for the compaction every
    /// backup and drop may do: amortised, so that it costs no scan of the
    /// directory per call. One scan keeps the [`CANDIDATES`] sparsest
    /// chunks, and later calls take them in turn, sparsest first, while
    /// they hold no more live bytes than when they were found: a chunk other
    /// than the head only loses live bytes, unless it is freed and its id
    /// reused. A chunk that became sparser since the scan waits for the
    /// next one.
    pub(crate) fn sparse_victim(&mut self) -> Option<u32> {
        for scanned in [false, true] {
            while self.candidate_count > 0 {
                self.candidate_count -= 1;
                let (id, then) = self.candidates[self.candidate_count];
                if self.live_in(id).is_some_and(|now| now <= then as usize) {
                    return Some(id);
                }
            }
            if !scanned {
                self.scan_candidates();
            }
        }
        None
    }

    /// Keeps the [`CANDIDATES`] sparsest chunks but the head, the sparsest last.
    fn scan_candidates(&mut self) {
        let mut kept = [(NONE, 0u32); CANDIDATES];
        let mut count = 0;
        for (id, chunk) in self.chunks.iter().enumerate() {
            let Some(chunk) = chunk.as_ref().filter(|_| id as u32 != self.head) else {
                continue;
            };
            // `kept[..count]` is ordered from the fullest to the sparsest.
            if count == CANDIDATES && chunk.live >= kept[0].1 {
                continue;
            }
            let at = kept[..count].partition_point(|&(_, live)| live > chunk.live);
            if count == CANDIDATES {
                kept.copy_within(1..at, 0);
                kept[at - 1] = (id as u32, chunk.live);
            } else {
                kept.copy_within(at..count, at + 1);
                kept[at] = (id as u32, chunk.live);
                count += 1;
            }
        }
        self.candidates = kept;
        self.candidate_count = count;
    }

    /// Every chunk but the head with fewer than `below` live bytes.
    pub(crate) fn sparse(&self, below: usize) -> Vec<u32> {
        let mut ids: Vec<(u32, u32)> = self
            .chunks
            .iter()
            .enumerate()
            .filter(|&(id, _)| id as u32 != self.head)
            .filter_map(|(id, c)| c.as_ref().map(|c| (c.live, id as u32)))
            .filter(|&(live, _)| (live as usize) < below)
            .map(|(live, id)| (id, live))
            .collect();
        ids.sort_unstable_by_key(|&(_, live)| live);
        ids.into_iter().map(|(id, _)| id).collect()
    }

    /// The live objects with bytes in chunk `id`, with their slots: the
    /// one that runs on into it, then those whose headers are in it.
    /// `location` gives where a slot's object is.
    pub(crate) fn live_objects(&self, id: u32, location: impl Fn(u32) -> Option<Location>) -> Vec<(u32, Location)> {
        let mut found = Vec::new();
        let Some(chunk) = self.chunks.get(id as usize).and_then(Option::as_ref) else {
            return found;
        };
        // The bytes of the object whose header is at `offset`, if the
        // header is sound; a live object is added to `found`.
        let visit = |chunk_id: u32, offset: usize, found: &mut Vec<(u32, Location)>| -> Option<usize> {
            let header = self.word(chunk_id, offset)?;
            if header & DEAD != 0 {
                return Some(self.overhead() + (header & !DEAD) as usize);
            }
            let loc = location(header).filter(|l| (l.chunk, usize::from(l.offset)) == (chunk_id, offset))?;
            found.push((header, loc));
            Some(self.overhead() + usize::from(loc.len))
        };
        if chunk.prev() != NONE {
            let last = self.chunk(chunk.prev()).last;
            if last != NONE {
                visit(chunk.prev(), last as usize, &mut found);
            }
        }
        let end = if id == self.head { self.head_end } else { CHUNK };
        let mut offset = chunk.first();
        while offset < end {
            match visit(id, offset, &mut found) {
                Some(step) => offset += step,
                None => break,
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(i: usize, len: usize) -> Vec<u8> {
        (0..len).map(|k| (i * 31 + k) as u8).collect()
    }

    fn joined((a, b): (&[u8], &[u8])) -> Vec<u8> {
        [a, b].concat()
    }

    #[test]
    fn objects_are_packed_back_to_back_and_run_on_into_the_next_chunk() {
        for checksums in [false, true] {
            let budget = Budget::new(None, 0);
            let mut arena = Arena::new(checksums);
            let overhead = arena.overhead();
            let len = 1111;
            let locs: Vec<Location> = (0..200)
                .map(|i| {
                    arena
                        .append(&object(i, len), i as u32, i as u32 * 7, &budget, 0)
                        .unwrap()
                })
                .collect();
            let total = 200 * (len + overhead);
            assert_eq!(arena.live(), total as u64);
            assert_eq!(
                arena.chunks(),
                total.div_ceil(CHUNK) as u64,
                "no chunk is left part-filled"
            );
            assert_eq!(
                usize::from(locs[1].offset),
                len + overhead,
                "packed at byte granularity"
            );
            let mut runs_on = 0;
            for (i, &loc) in locs.iter().enumerate() {
                let parts = arena.object(loc);
                runs_on += usize::from(!parts.1.is_empty());
                assert_eq!(joined(parts), object(i, len));
                assert_eq!(arena.checksum(loc), checksums.then_some(i as u32 * 7));
            }
            assert!(runs_on >= 3, "{runs_on} objects run on");
            let released: u64 = locs.iter().map(|&loc| arena.free(loc, &budget)).sum();
            assert_eq!(released, total.div_ceil(CHUNK) as u64 * CHUNK as u64);
            assert_eq!((arena.live(), arena.chunks(), arena.garbage()), (0, 0, 0));
            assert_eq!(budget.used(), arena.bytes(), "only the directory is left");
        }
    }

    #[test]
    fn headers_that_run_on_and_objects_that_start_in_the_next_chunk() {
        let budget = Budget::new(None, 0);
        let mut arena = Arena::new(false);
        // Leave 2 bytes, then 0 bytes, at the end of a chunk.
        let first = arena.append(&object(0, CHUNK - HEADER - 2), 0, 0, &budget, 0).unwrap();
        let split_header = arena.append(&object(1, 100), 1, 0, &budget, 0).unwrap();
        assert_eq!(usize::from(split_header.offset), CHUNK - 2);
        let (a, b) = arena.object(split_header);
        assert_eq!((a.len(), b.len()), (100, 0), "the object is whole in the next chunk");
        assert_eq!(a, &object(1, 100)[..]);
        let fill = CHUNK - (HEADER + 100 - 2) - HEADER;
        let exact = arena.append(&object(2, fill), 2, 0, &budget, 0).unwrap();
        assert_eq!(arena.head_end, CHUNK);
        let after = arena.append(&object(3, 10), 3, 0, &budget, 0).unwrap();
        assert_eq!((after.chunk != exact.chunk, after.offset), (true, 0));
        assert_eq!(arena.live_in(after.chunk), None, "the head is never moved out");
        assert_eq!(arena.live_in(first.chunk), Some(CHUNK - 2 + 2));
        // Walking the middle chunk finds the object running on into it and its own.
        let entries = [first, split_header, exact, after];
        let found = arena.live_objects(split_header.chunk + 1, |slot| entries.get(slot as usize).copied());
        let slots: Vec<u32> = found.iter().map(|&(slot, _)| slot).collect();
        assert_eq!(slots, [1, 2]);
        for (i, loc) in entries.iter().enumerate() {
            assert_eq!(joined(arena.object(*loc)).len(), usize::from(loc.len), "object {i}");
        }
        arena.free(split_header, &budget);
        let found = arena.live_objects(split_header.chunk + 1, |slot| entries.get(slot as usize).copied());
        assert_eq!(
            found.iter().map(|&(slot, _)| slot).collect::<Vec<_>>(),
            [2],
            "a dead header is skipped"
        );
    }

    #[test]
    fn the_chunk_kept_for_compaction_has_its_directory_slot() {
        // Room for the directory's first step and as many chunks as it has
        // slots, plus one chunk kept for compaction; not for a second step.
        let limit = DIRECTORY_STEP_BYTES + (DIRECTORY_STEP as u64 + 1) * CHUNK as u64 + 100;
        let budget = Budget::new(Some(limit), 0);
        let mut arena = Arena::new(false);
        let mut i = 0;
        while arena
            .append(&object(i, 1000), i as u32, 0, &budget, CHUNK as u64)
            .is_some()
        {
            i += 1;
        }
        assert_eq!(arena.chunks(), DIRECTORY_STEP as u64 - 1, "a slot is left free");
        assert!(
            arena.new_chunk(&budget, 0).is_some(),
            "compaction gets its chunk without growing the directory"
        );
        assert!(budget.used() <= limit);
    }

    #[test]
    fn a_refused_chunk_changes_nothing() {
        let budget = Budget::new(Some(CHUNK as u64 + DIRECTORY_STEP_BYTES), 0);
        let mut arena = Arena::new(false);
        let loc = arena.append(&object(0, CHUNK - 100), 0, 0, &budget, 0).unwrap();
        assert_eq!(arena.append(&object(1, 200), 1, 0, &budget, 0), None);
        assert_eq!(arena.live(), (CHUNK - 100 + HEADER) as u64);
        assert!(
            arena.append(&object(2, 90), 2, 0, &budget, 0).is_some(),
            "what fits still goes in"
        );
        assert_eq!(joined(arena.object(loc)), object(0, CHUNK - 100));
    }

    /// Compaction victims come sparsest first, the head left out, as an
    /// exact scan would order them, until the kept candidates run out; a
    /// chunk freed since the scan is passed over.
    #[test]
    fn sparse_victims_come_sparsest_first_without_the_head() {
        let budget = Budget::new(None, 0);
        let mut arena = Arena::new(false);
        // 24 chunks of 1000-byte objects; chunk k keeps k + 1 of its objects.
        let locs: Vec<Location> = (0..24 * 65)
            .map(|i| arena.append(&object(i, 1000), i as u32, 0, &budget, 0).unwrap())
            .collect();
        let mut kept = vec![0usize; 64];
        let mut live = Vec::new();
        for loc in &locs {
            let whole = usize::from(loc.offset) + HEADER + 1000 <= CHUNK;
            if loc.chunk != arena.head && whole && kept[loc.chunk as usize] > loc.chunk as usize {
                arena.free(*loc, &budget);
            } else {
                kept[loc.chunk as usize] += usize::from(whole);
                live.push(*loc);
            }
        }
        let mut order: Vec<(usize, u32)> = (0..arena.chunks.len() as u32)
            .filter_map(|id| arena.live_in(id).map(|live| (live, id)))
            .collect();
        order.sort_unstable();
        let freed = order[3].1;
        let taken: Vec<u32> = (0..CANDIDATES).map(|_| arena.sparse_victim().unwrap()).collect();
        let expected: Vec<u32> = order.iter().take(CANDIDATES).map(|&(_, id)| id).collect();
        assert_eq!(taken, expected);
        assert!(!taken.contains(&arena.head));
        // A new scan; a chunk emptied since is passed over.
        let first = arena.sparse_victim().unwrap();
        assert_eq!(first, order[0].1);
        let runs_on = |l: &&Location| l.chunk + 1 == freed && usize::from(l.offset) + HEADER + 1000 > CHUNK;
        for loc in live.iter().filter(|l| l.chunk == freed || runs_on(l)) {
            arena.free(*loc, &budget);
        }
        assert_eq!(arena.live_in(freed), None, "chunk {freed} is freed");
        let next: Vec<u32> = (0..3).map(|_| arena.sparse_victim().unwrap()).collect();
        assert_eq!(next, [order[1].1, order[2].1, order[4].1]);
    }
}
