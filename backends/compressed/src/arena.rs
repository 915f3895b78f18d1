//! [`Arena`]: a size-class allocator in the spirit of zsmalloc. Objects of
//! similar size share slabs of one to eight pages, so a 1.1 KiB object takes
//! 1.1 KiB (rounded up to 32 bytes), not a page; compaction moves objects
//! out of sparse slabs and frees them.

use pagebackup_core::PAGE_SIZE;

use crate::entry::{Entry, Location, Stored};

/// Size classes are multiples of this.
const CLASS_STEP: usize = 32;
/// The largest compressed object: larger ones are stored raw.
pub(crate) const MAX_COMPRESSED: usize = 3072;
/// Classes of compressed objects (32, 64, ..., 3072 bytes), then the raw class.
const COMPRESSED_CLASSES: usize = MAX_COMPRESSED / CLASS_STEP;
/// The class of raw (incompressible) pages.
pub(crate) const RAW_CLASS: u8 = COMPRESSED_CLASSES as u8;
/// Most pages a slab spans, as zsmalloc's default chain size: at most 4.8%
/// of a slab is left over in any class (1% on average).
const MAX_SLAB_PAGES: usize = 8;

/// The class an object of `len` bytes goes in (`len == PAGE_SIZE`: raw).
pub(crate) fn class_for(len: usize) -> u8 {
    if len > MAX_COMPRESSED {
        RAW_CLASS
    } else {
        (len.max(1).div_ceil(CLASS_STEP) - 1) as u8
    }
}

/// Object size, objects per slab and slab size of one class.
#[derive(Debug, Clone, Copy)]
struct Shape {
    size: usize,
    per_slab: usize,
    slab_bytes: usize,
}

impl Shape {
    /// The slab of 1 to 8 pages that wastes the least (fewer pages on a
    /// tie), among those holding at least [`MIN_PER_SLAB`] objects where any
    /// does: as zsmalloc picks its zspage size, with the per-slab bookkeeping
    /// spread over several objects even for raw pages.
    fn of(class: u8) -> Shape {
        let size = if class == RAW_CLASS {
            PAGE_SIZE
        } else {
            (usize::from(class) + 1) * CLASS_STEP
        };
        let shapes = (1..=MAX_SLAB_PAGES).map(|pages| Shape {
            size,
            per_slab: pages * PAGE_SIZE / size,
            slab_bytes: pages * PAGE_SIZE,
        });
        let enough = shapes.clone().filter(|s| s.per_slab >= MIN_PER_SLAB).count() > 0;
        shapes
            .filter(|s| !enough || s.per_slab >= MIN_PER_SLAB)
            .min_by_key(|s| (s.slab_bytes - s.per_slab * s.size, s.slab_bytes))
            .expect("at least one slab size")
    }

    /// What one slab of this shape costs: its bytes and its bookkeeping.
    fn cost(self, checksums: bool) -> u64 {
        let bookkeeping = std::mem::size_of::<Option<Slab>>()
            + self.per_slab.div_ceil(64) * 8
            + if checksums { self.per_slab * 4 } else { 0 };
        (self.slab_bytes + bookkeeping) as u64
    }
}

/// Objects a slab holds at least, where its class allows.
const MIN_PER_SLAB: usize = 4;

struct Slab {
    data: Box<[u8]>,
    /// One bit per object, set while the object is free.
    free: Box<[u64]>,
    /// Per-object checksums, when the arena keeps them.
    sums: Box<[u32]>,
    used: usize,
    /// Whether the slab's id is on its class's `partial` list.
    listed: bool,
}

impl Slab {
    fn new(shape: Shape, checksums: bool) -> Slab {
        let mut free = vec![0u64; shape.per_slab.div_ceil(64)].into_boxed_slice();
        for obj in 0..shape.per_slab {
            free[obj / 64] |= 1 << (obj % 64);
        }
        let sums = if checksums {
            vec![0; shape.per_slab].into_boxed_slice()
        } else {
            Box::default()
        };
        Slab {
            data: vec![0; shape.slab_bytes].into_boxed_slice(),
            free,
            sums,
            used: 0,
            listed: true,
        }
    }

    fn take(&mut self) -> Option<u16> {
        let (word, bits) = self.free.iter_mut().enumerate().find(|(_, w)| **w != 0)?;
        let bit = bits.trailing_zeros() as usize;
        *bits &= !(1 << bit);
        self.used += 1;
        Some((word * 64 + bit) as u16)
    }

    fn put(&mut self, obj: u16) {
        self.free[usize::from(obj) / 64] |= 1 << (obj % 64);
        self.used -= 1;
    }
}

struct Class {
    shape: Shape,
    slabs: Vec<Option<Slab>>,
    /// Ids of freed slabs, for reuse.
    vacant: Vec<u32>,
    /// Ids of slabs that may have free objects (stale ids are skipped).
    partial: Vec<u32>,
}

/// One shard's objects, by size class.
pub(crate) struct Arena {
    classes: Vec<Class>,
    /// The class each size class's objects go in: the largest class with the
    /// same slab shape, as zsmalloc merges classes. Fewer classes in use
    /// means fewer partly filled slabs, at no cost in slab space.
    merged: Vec<u8>,
    checksums: bool,
    /// What the live slabs cost, bookkeeping included.
    bytes: u64,
}

impl Arena {
    /// An empty arena; with `checksums`, each object has a 32-bit checksum slot.
    pub(crate) fn new(checksums: bool) -> Self {
        let classes: Vec<Class> = (0..=RAW_CLASS)
            .map(|c| Class {
                shape: Shape::of(c),
                slabs: Vec::new(),
                vacant: Vec::new(),
                partial: Vec::new(),
            })
            .collect();
        let mut merged: Vec<u8> = (0..=RAW_CLASS).collect();
        for class in (0..RAW_CLASS - 1).rev() {
            let (this, next) = (classes[usize::from(class)].shape, classes[usize::from(class) + 1].shape);
            if (this.slab_bytes, this.per_slab) == (next.slab_bytes, next.per_slab) {
                merged[usize::from(class)] = merged[usize::from(class) + 1];
            }
        }
        Arena {
            classes,
            merged,
            checksums,
            bytes: 0,
        }
    }

    /// Bytes the live slabs take: their memory and their bookkeeping
    /// (header, free bitmap, checksums).
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Bytes of the class tables, whatever the arena holds: the backend's
    /// fixed cost, plus list capacity that grows with the slab count.
    pub(crate) fn class_bytes(&self) -> u64 {
        let lists = self.classes.iter().map(|c| {
            (c.vacant.capacity() + c.partial.capacity()) * 4
                + (c.slabs.capacity() - c.slabs.iter().flatten().count()) * std::mem::size_of::<Option<Slab>>()
        });
        (lists.sum::<usize>() + self.classes.capacity() * std::mem::size_of::<Class>() + self.merged.capacity()) as u64
    }

    /// Allocates an object of `len` bytes. `reserve` is asked before a new
    /// slab is made, with the slab's size, and may refuse (a memory limit).
    pub(crate) fn alloc(&mut self, len: usize, reserve: impl FnOnce(u64) -> bool) -> Option<Location> {
        let class = self.merged[usize::from(class_for(len))];
        let checksums = self.checksums;
        let c = &mut self.classes[usize::from(class)];
        let (slab, obj) = loop {
            let Some(&id) = c.partial.last() else {
                let cost = c.shape.cost(checksums);
                if !reserve(cost) {
                    return None;
                }
                self.bytes += cost;
                let mut slab = Slab::new(c.shape, checksums);
                let obj = slab.take().expect("a new slab has room");
                let id = match c.vacant.pop() {
                    Some(id) => {
                        c.slabs[id as usize] = Some(slab);
                        id
                    }
                    None => {
                        c.slabs.push(Some(slab));
                        (c.slabs.len() - 1) as u32
                    }
                };
                c.partial.push(id);
                break (id, obj);
            };
            match c.slabs[id as usize].as_mut().and_then(Slab::take) {
                Some(obj) => break (id, obj),
                None => {
                    c.partial.pop();
                    if let Some(s) = c.slabs[id as usize].as_mut() {
                        s.listed = false;
                    }
                }
            }
        };
        Some(Location {
            class,
            slab,
            obj,
            len: len as u16,
        })
    }

    fn slab(&self, loc: Location) -> &Slab {
        self.classes[usize::from(loc.class)].slabs[loc.slab as usize]
            .as_ref()
            .expect("live object in a live slab")
    }

    fn slab_mut(&mut self, loc: Location) -> &mut Slab {
        self.classes[usize::from(loc.class)].slabs[loc.slab as usize]
            .as_mut()
            .expect("live object in a live slab")
    }

    fn range(&self, loc: Location) -> std::ops::Range<usize> {
        let start = usize::from(loc.obj) * self.classes[usize::from(loc.class)].shape.size;
        start..start + usize::from(loc.len)
    }

    /// The object's bytes.
    pub(crate) fn object(&self, loc: Location) -> &[u8] {
        &self.slab(loc).data[self.range(loc)]
    }

    /// The object's bytes, mutable.
    pub(crate) fn object_mut(&mut self, loc: Location) -> &mut [u8] {
        let range = self.range(loc);
        &mut self.slab_mut(loc).data[range]
    }

    /// The object's checksum, if the arena keeps them.
    pub(crate) fn checksum(&self, loc: Location) -> Option<u32> {
        self.slab(loc).sums.get(usize::from(loc.obj)).copied()
    }

    /// Sets the object's checksum (ignored if the arena keeps none).
    pub(crate) fn set_checksum(&mut self, loc: Location, sum: u32) {
        if let Some(slot) = self.slab_mut(loc).sums.get_mut(usize::from(loc.obj)) {
            *slot = sum;
        }
    }

    /// Frees an object; an emptied slab is freed at once. Returns the bytes
    /// released (the slab's cost, as [`bytes`](Self::bytes) counts it).
    pub(crate) fn free(&mut self, loc: Location) -> u64 {
        let c = &mut self.classes[usize::from(loc.class)];
        let slab = c.slabs[loc.slab as usize].as_mut().expect("live object in a live slab");
        slab.put(loc.obj);
        if slab.used == 0 {
            c.slabs[loc.slab as usize] = None;
            c.vacant.push(loc.slab);
            let cost = c.shape.cost(self.checksums);
            self.bytes -= cost;
            return cost;
        }
        if !slab.listed {
            slab.listed = true;
            c.partial.push(loc.slab);
        }
        0
    }

    /// Moves objects out of the sparsest slabs of each class into the
    /// fullest, until each class uses as few slabs as its objects need, and
    /// frees the emptied slabs. `entries` are the shard's entries (free slots
    /// hold the default entry); moved objects get their new location there.
    /// Returns (objects moved, bytes of slab memory released).
    pub(crate) fn compact(&mut self, entries: &mut [Entry]) -> (u64, u64) {
        let (mut moved, mut released) = (0, 0);
        for class in 0..=RAW_CLASS {
            let c = &self.classes[usize::from(class)];
            let mut live: Vec<(usize, u32)> = c
                .slabs
                .iter()
                .enumerate()
                .filter_map(|(id, s)| s.as_ref().map(|s| (s.used, id as u32)))
                .collect();
            let needed = live
                .iter()
                .map(|&(used, _)| used)
                .sum::<usize>()
                .div_ceil(c.shape.per_slab);
            if live.len() <= needed {
                continue;
            }
            live.sort_unstable_by(|a, b| b.cmp(a));
            let mut source = vec![false; c.slabs.len()];
            for &(_, id) in &live[needed..] {
                source[id as usize] = true;
            }
            let mut keep = live[..needed].iter().map(|&(_, id)| id).peekable();
            let mut buf = [0u8; PAGE_SIZE];
            for entry in entries.iter_mut() {
                let Some(Stored::Object(from)) = entry.unpack() else {
                    continue;
                };
                if from.class != class || !source[from.slab as usize] {
                    continue;
                }
                let (slab, obj) = loop {
                    let id = *keep.peek().expect("kept slabs have room for every moved object");
                    match self.classes[usize::from(class)].slabs[id as usize]
                        .as_mut()
                        .and_then(Slab::take)
                    {
                        Some(obj) => break (id, obj),
                        None => {
                            keep.next();
                        }
                    }
                };
                let to = Location { slab, obj, ..from };
                let len = usize::from(from.len);
                buf[..len].copy_from_slice(self.object(from));
                self.object_mut(to).copy_from_slice(&buf[..len]);
                if let Some(sum) = self.checksum(from) {
                    self.set_checksum(to, sum);
                }
                released += self.free(from);
                *entry = Entry::pack(Stored::Object(to));
                moved += 1;
            }
            let c = &mut self.classes[usize::from(class)];
            c.partial = c
                .slabs
                .iter_mut()
                .enumerate()
                .filter_map(|(id, s)| {
                    let s = s.as_mut()?;
                    s.listed = s.used < c.shape.per_slab;
                    s.listed.then_some(id as u32)
                })
                .collect();
        }
        (moved, released)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_fit_their_objects_and_waste_little() {
        assert_eq!(class_for(1), 0);
        assert_eq!(class_for(32), 0);
        assert_eq!(class_for(33), 1);
        assert_eq!(class_for(MAX_COMPRESSED), RAW_CLASS - 1);
        assert_eq!(class_for(PAGE_SIZE), RAW_CLASS);
        for class in 0..=RAW_CLASS {
            let s = Shape::of(class);
            assert!(s.per_slab >= MIN_PER_SLAB && s.per_slab <= 1024, "{s:?}");
            let waste = s.slab_bytes - s.per_slab * s.size;
            assert!(
                waste * 1000 / s.slab_bytes <= 48,
                "class {class} wastes {waste} of {}",
                s.slab_bytes
            );
        }
        // A 1.1 KiB object takes 1120 bytes of a slab, not a page.
        let s = Shape::of(class_for(1100));
        assert_eq!(s.size, 1120);
    }

    #[test]
    fn classes_of_the_same_shape_are_merged_upward() {
        let arena = Arena::new(false);
        let used: std::collections::BTreeSet<u8> = arena.merged.iter().copied().collect();
        assert!(
            used.len() < usize::from(RAW_CLASS) * 3 / 4,
            "{} classes in use",
            used.len()
        );
        for (class, &into) in arena.merged.iter().enumerate() {
            let (a, b) = (Shape::of(class as u8), Shape::of(into));
            assert!(into as usize >= class && (a.slab_bytes, a.per_slab) == (b.slab_bytes, b.per_slab));
        }
        assert_eq!(arena.merged[usize::from(RAW_CLASS)], RAW_CLASS);
    }

    #[test]
    fn objects_keep_their_bytes_and_empty_slabs_are_freed() {
        let mut arena = Arena::new(true);
        let locs: Vec<Location> = (0..10)
            .map(|i| {
                let loc = arena.alloc(1100, |_| true).unwrap();
                arena.object_mut(loc).fill(i);
                arena.set_checksum(loc, u32::from(i));
                loc
            })
            .collect();
        let slab_bytes = arena.bytes();
        assert!(slab_bytes > 0 && slab_bytes < 10 * PAGE_SIZE as u64, "{slab_bytes}");
        for (i, &loc) in locs.iter().enumerate() {
            assert!(arena.object(loc).iter().all(|&b| b == i as u8));
            assert_eq!(arena.checksum(loc), Some(i as u32));
        }
        let released: u64 = locs.iter().map(|&loc| arena.free(loc)).sum();
        assert_eq!(released, slab_bytes);
        assert_eq!(arena.bytes(), 0);
        assert!(
            arena.alloc(100, |_| false).is_none(),
            "a refused reservation allocates nothing"
        );
    }
}
