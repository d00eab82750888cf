//! The modules' allocator: small blocks from one free list per size class, everything else
//! from the system allocator (wasi-libc's dlmalloc in a wasm module).
//!
//! A request allocates and frees dozens of small values (the header map, a token, keys,
//! identity fields). dlmalloc spends about 250 wasm instructions on each malloc and free
//! pair of 64 bytes (host-test: the cost fixture's `allocs`); a free list pops and pushes.
//! Blocks are powers of two from 16 to 2048 bytes, 16-aligned, carved from 64 KiB slabs;
//! a freed block goes back to its class's list and is never returned to the system. A wasm
//! module's memory never shrinks anyway; what this costs is that memory freed in one class
//! serves only that class, and up to half a block is unused.
//!
//! A wasm module here is single-threaded: [`SingleThreaded`] is the module's global
//! allocator only on a wasm target without threads.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::ptr;

/// Size classes: 16, 32, … 2048 bytes.
const CLASSES: usize = 8;
const MIN_BLOCK: usize = 16;
const MAX_BLOCK: usize = MIN_BLOCK << (CLASSES - 1);
const SLAB: usize = 64 * 1024;

/// Small blocks by size class over `backing`, which serves the rest and the slabs. Not
/// `Sync`: one thread only.
pub struct SizeClasses<B> {
    backing: B,
    state: UnsafeCell<State>,
}

struct State {
    /// Each class's free blocks, linked through their first word.
    free: [*mut u8; CLASSES],
    /// The unused rest of the current slab.
    next: *mut u8,
    end: *mut u8,
}

impl<B> SizeClasses<B> {
    pub const fn new(backing: B) -> SizeClasses<B> {
        SizeClasses {
            backing,
            state: UnsafeCell::new(State {
                free: [ptr::null_mut(); CLASSES],
                next: ptr::null_mut(),
                end: ptr::null_mut(),
            }),
        }
    }
}

/// The class of a layout served from the free lists, or `None` for the backing allocator.
fn class(layout: Layout) -> Option<usize> {
    let size = layout.size().max(1);
    if size > MAX_BLOCK || layout.align() > MIN_BLOCK {
        return None;
    }
    if size <= MIN_BLOCK {
        return Some(0);
    }
    // The bits of size - 1 give the next power of two; 16 is class 0.
    Some((usize::BITS - (size - 1).leading_zeros()) as usize - 4)
}

fn block_size(class: usize) -> usize {
    MIN_BLOCK << class
}

impl<B: GlobalAlloc> SizeClasses<B> {
    /// A block of `class`: a free one, else the slab's next, else a new slab's first.
    unsafe fn take(&self, class: usize) -> *mut u8 {
        // SAFETY: one thread, and no reference to the state outlives this call.
        let state = unsafe { &mut *self.state.get() };
        let head = state.free[class];
        if !head.is_null() {
            // SAFETY: a free block holds the next free block's address in its first word,
            // written by `give`; blocks are 16-aligned.
            state.free[class] = unsafe { head.cast::<*mut u8>().read() };
            return head;
        }
        let size = block_size(class);
        if (state.end as usize) - (state.next as usize) < size {
            // SAFETY: a non-zero size and a valid alignment.
            let slab = unsafe {
                self.backing
                    .alloc(Layout::from_size_align_unchecked(SLAB, MIN_BLOCK))
            };
            if slab.is_null() {
                return slab;
            }
            state.next = slab;
            // SAFETY: the end of the slab just allocated.
            state.end = unsafe { slab.add(SLAB) };
        }
        let block = state.next;
        // SAFETY: at most the slab's end, checked above.
        state.next = unsafe { block.add(size) };
        block
    }

    /// Puts a block back on its class's free list.
    unsafe fn give(&self, block: *mut u8, class: usize) {
        // SAFETY: one thread; the block was taken from this class and is no longer used.
        let state = unsafe { &mut *self.state.get() };
        unsafe { block.cast::<*mut u8>().write(state.free[class]) };
        state.free[class] = block;
    }
}

// SAFETY: blocks of a class are at least as large as any layout mapped to it and 16-aligned
// (slabs are 16-aligned and carved in multiples of 16), and a block is on a free list only
// after its dealloc; layouts not mapped to a class are the backing allocator's.
unsafe impl<B: GlobalAlloc> GlobalAlloc for SizeClasses<B> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match class(layout) {
            Some(class) => unsafe { self.take(class) },
            None => unsafe { self.backing.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match class(layout) {
            Some(class) => {
                let block = unsafe { self.take(class) };
                if !block.is_null() {
                    // A block may have been used before: zero what the caller asked for.
                    unsafe { block.write_bytes(0, layout.size()) };
                }
                block
            }
            None => unsafe { self.backing.alloc_zeroed(layout) },
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        match class(layout) {
            Some(class) => unsafe { self.give(block, class) },
            None => unsafe { self.backing.dealloc(block, layout) },
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees new_size, rounded up to the alignment, fits a Layout.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class(layout), class(new)) {
            (Some(old), Some(new)) if old == new => block,
            (None, None) => unsafe { self.backing.realloc(block, layout, new_size) },
            _ => {
                let moved = unsafe { self.alloc(new) };
                if !moved.is_null() {
                    unsafe {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                }
                moved
            }
        }
    }
}

/// [`SizeClasses`] over the system allocator, as a wasm module's global allocator.
pub struct SingleThreaded(SizeClasses<std::alloc::System>);

impl SingleThreaded {
    pub const fn new() -> SingleThreaded {
        SingleThreaded(SizeClasses::new(std::alloc::System))
    }
}

impl Default for SingleThreaded {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: only a module without threads (a wasm target without the atomics feature) has it
// as its global allocator; there, no two calls ever run at once.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
unsafe impl Sync for SingleThreaded {}

// SAFETY: delegates to SizeClasses. Out of line: inlined at every allocation of a module,
// the free lists cost 140 KB of jwt's wasm.
unsafe impl GlobalAlloc for SingleThreaded {
    #[inline(never)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { self.0.alloc(layout) }
    }
    #[inline(never)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe { self.0.alloc_zeroed(layout) }
    }
    #[inline(never)]
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        unsafe { self.0.dealloc(block, layout) }
    }
    #[inline(never)]
    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe { self.0.realloc(block, layout, new_size) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn sizes_map_to_the_next_power_of_two_from_16_to_2048() {
        let of = |size| class(layout(size, 1));
        assert_eq!(
            [1, 16, 17, 32, 33, 64, 65, 1024, 1025, 2048].map(of),
            [0, 0, 1, 1, 2, 2, 3, 6, 7, 7].map(Some)
        );
        assert_eq!(of(2049), None);
        assert_eq!(class(layout(8, 16)), Some(0));
        assert_eq!(
            class(layout(8, 32)),
            None,
            "wider alignment: the backing allocator's"
        );
    }

    #[test]
    fn a_freed_block_serves_the_next_request_of_its_class() {
        let a = SizeClasses::new(System);
        unsafe {
            let first = a.alloc(layout(24, 8));
            a.dealloc(first, layout(24, 8));
            assert_eq!(a.alloc(layout(32, 1)), first);
            let other = a.alloc(layout(20, 4));
            assert_ne!(other, first);
            assert_eq!(other as usize % MIN_BLOCK, 0);
        }
    }

    #[test]
    fn blocks_in_use_never_overlap_and_keep_their_bytes() {
        // Many sizes, freed in a scrambled order and taken again, past several slabs: each
        // live block keeps its own fill.
        let a = SizeClasses::new(System);
        let mut live: Vec<(*mut u8, Layout, u8)> = Vec::new();
        let mut seed = 0x2545_f491_u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for round in 0..20_000u32 {
            let r = next();
            if r % 3 == 0 && !live.is_empty() {
                let (block, l, fill) = live.swap_remove(r as usize % live.len());
                let bytes = unsafe { std::slice::from_raw_parts(block, l.size()) };
                assert!(bytes.iter().all(|b| *b == fill), "round {round}");
                unsafe { a.dealloc(block, l) };
            } else {
                let l = layout(1 + (r as usize >> 3) % 3000, 1 << ((r >> 20) % 5));
                let block = unsafe { a.alloc(l) };
                assert!(!block.is_null());
                assert_eq!(block as usize % l.align(), 0);
                let fill = (round % 251) as u8;
                unsafe { block.write_bytes(fill, l.size()) };
                live.push((block, l, fill));
            }
        }
        for (block, l, fill) in live {
            let bytes = unsafe { std::slice::from_raw_parts(block, l.size()) };
            assert!(bytes.iter().all(|b| *b == fill));
            unsafe { a.dealloc(block, l) };
        }
    }

    #[test]
    fn realloc_keeps_the_contents_within_a_class_across_classes_and_to_the_backing() {
        let a = SizeClasses::new(System);
        unsafe {
            let l = layout(20, 1);
            let block = a.alloc(l);
            for i in 0..20 {
                block.add(i).write(i as u8);
            }
            // Same class (32): the same block.
            assert_eq!(a.realloc(block, l, 30), block);
            let mut l = layout(30, 1);
            let mut block = block;
            for size in [100, 1500, 5000, 64] {
                block = a.realloc(block, l, size);
                assert!(!block.is_null());
                let kept = std::slice::from_raw_parts(block, 20);
                assert!(
                    kept.iter().enumerate().all(|(i, b)| *b == i as u8),
                    "{size}"
                );
                l = layout(size, 1);
            }
            a.dealloc(block, l);
        }
    }

    #[test]
    fn zeroed_blocks_are_zero_even_when_reused() {
        let a = SizeClasses::new(System);
        unsafe {
            let l = layout(48, 8);
            let block = a.alloc(l);
            block.write_bytes(0xAB, 48);
            a.dealloc(block, l);
            let zeroed = a.alloc_zeroed(l);
            assert_eq!(zeroed, block);
            assert!(std::slice::from_raw_parts(zeroed, 48)
                .iter()
                .all(|b| *b == 0));
            let big = a.alloc_zeroed(layout(4096, 8));
            assert!(std::slice::from_raw_parts(big, 4096)
                .iter()
                .all(|b| *b == 0));
            a.dealloc(big, layout(4096, 8));
        }
    }
}
