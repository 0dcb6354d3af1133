//! Transparent huge pages (2 MiB) under the tables a query probes at a random
//! place: the cache's hash table and the blocklists' tables.
//!
//! With 4 KiB pages such a table spans thousands of pages, far more than the
//! TLB holds, so nearly every probe pays a page-table walk as well as the
//! cache miss. moka's table is 8-16 MiB of slots (the byte budget's worth,
//! sized at start: `cache::initial_entries`); 70 % of an insert's samples sat
//! on its one random read of a slot, about 3 % of a forwarded miss
//! (benches/README.md, *Thirteenth round*).
//!
//! The blocklists' tables are advised before their first write
//! ([`advise_unwritten`]), since `policy::lists` allocates them. moka
//! allocates its table itself, as 64 segments, and zeroes each at once, so no
//! advice can come before the first write. So the global allocator
//! ([`Recording`]) notes the large blocks a thread allocates inside
//! [`backing`], and once the table is built their span is advised
//! `MADV_HUGEPAGE` and collapsed into huge pages (`MADV_COLLAPSE`, Linux 6.1;
//! older kernels leave the collapse to `khugepaged`). The table is zeroed,
//! hence resident, from the start, so this adds no memory. Advice only: with
//! huge pages off (`never`) nothing changes.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;

/// Blocks this large or larger are noted: each of moka's 64 segments is
/// 128 KiB for the default 256 MiB budget, 256 KiB for 512 MiB.
const LARGE: usize = 64 << 10;

/// A transparent huge page.
const HUGE: usize = 2 << 20;

/// Blocks further apart than this are not one table: the span between them
/// is not advised. (Segments allocated one after the other sit side by side
/// or a chunk header apart, in the heap or in adjacent mappings.)
const SAME_TABLE_GAP: usize = 64 << 10;

/// Most blocks noted inside one [`backing`]; more are not noted.
const MAX_BLOCKS: usize = 256;

/// The global allocator: `A`, noting the large blocks allocated inside
/// [`backing`] on the calling thread. Outside it, the cost is one
/// comparison of sizes per allocation.
pub struct Recording<A>(pub A);

/// The blocks noted so far: (start, end) addresses.
struct Blocks {
    spans: [(usize, usize); MAX_BLOCKS],
    len: usize,
}

thread_local! {
    /// This thread's [`Blocks`] while it runs [`backing`], else null. A
    /// `const` thread-local without a destructor: reading it never allocates,
    /// which the allocator relies on.
    static NOTING: Cell<*mut Blocks> = const { Cell::new(std::ptr::null_mut()) };
}

/// Notes the block of `size` bytes at `ptr` if it is large and this thread is inside [`backing`].
fn note(ptr: *mut u8, size: usize) {
    if ptr.is_null() || size < LARGE {
        return;
    }
    let _ = NOTING.try_with(|noting| {
        let blocks = noting.get();
        // SAFETY: non-null only while `backing`'s frame, which owns the
        // `Blocks`, is live on this thread (its guard resets it on the way
        // out, unwinding included); nothing else borrows it meanwhile.
        if let Some(blocks) = unsafe { blocks.as_mut() } {
            if blocks.len < MAX_BLOCKS {
                blocks.spans[blocks.len] = (ptr as usize, ptr as usize + size);
                blocks.len += 1;
            }
        }
    });
}

// SAFETY: every call is passed to `A` unchanged; noting reads the pointer
// returned, never the memory.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Recording<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { self.0.alloc(layout) };
        note(ptr, layout.size());
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { self.0.alloc_zeroed(layout) };
        note(ptr, layout.size());
        ptr
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let ptr = unsafe { self.0.realloc(ptr, layout, new_size) };
        note(ptr, new_size);
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { self.0.dealloc(ptr, layout) }
    }
}

/// Resets [`NOTING`] when [`backing`] returns or unwinds.
struct Noting(*mut Blocks);

impl Drop for Noting {
    fn drop(&mut self) {
        NOTING.set(self.0);
    }
}

/// Runs `build`, then asks for huge pages under the large blocks it
/// allocated on this thread (in a binary whose global allocator is a
/// [`Recording`]; elsewhere, as in the library's own tests, nothing is
/// noted and this only runs `build`). Returns the bytes advised with it.
pub fn backing<R>(build: impl FnOnce() -> R) -> (R, usize) {
    let mut blocks = Blocks {
        spans: [(0, 0); MAX_BLOCKS],
        len: 0,
    };
    let built = {
        let _noting = Noting(NOTING.replace(&mut blocks));
        build()
    };
    let mut advised = 0;
    for (from, to) in huge_ranges(&mut blocks.spans[..blocks.len]) {
        advise(from, to, Collapse::Yes);
        advised += to - from;
    }
    (built, advised)
}

/// The whole huge pages inside the runs of `spans` that lie side by side
/// (within [`SAME_TABLE_GAP`]), as (from, to) addresses.
fn huge_ranges(spans: &mut [(usize, usize)]) -> Vec<(usize, usize)> {
    spans.sort_unstable();
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &(start, end) in spans.iter() {
        match runs.last_mut() {
            Some(run) if start <= run.1.saturating_add(SAME_TABLE_GAP) => run.1 = run.1.max(end),
            _ => runs.push((start, end)),
        }
    }
    runs.into_iter()
        .filter_map(|(start, end)| whole_pages(start, end))
        .collect()
}

/// The whole huge pages between the addresses `start` and `end`, if any.
fn whole_pages(start: usize, end: usize) -> Option<(usize, usize)> {
    let (from, to) = (start.next_multiple_of(HUGE), end / HUGE * HUGE);
    (from < to).then_some((from, to))
}

/// Asks for huge pages under `table`, where it covers whole ones, before it is first written:
/// a large `vec![0; n]` is fresh zero memory, so its pages fault in huge from the first write
/// (the blocklists' tables, which their owner allocates). Advice only, as [`backing`]'s.
pub fn advise_unwritten<T>(table: &[T]) {
    let start = table.as_ptr() as usize;
    if let Some((from, to)) = whole_pages(start, start + std::mem::size_of_val(table)) {
        advise(from, to, Collapse::No);
    }
}

/// Whether [`advise`] also collapses the pages already there.
#[derive(PartialEq)]
enum Collapse {
    Yes,
    No,
}

#[cfg(target_os = "linux")]
fn advise(from: usize, to: usize, collapse: Collapse) {
    let (addr, len) = (from as *mut libc::c_void, to - from);
    // SAFETY: the range lies inside allocations of the caller's (in `backing`,
    // blocks the build just made, or between two of them within one mapping);
    // neither advice changes what any page holds, only how it is backed.
    unsafe {
        if libc::madvise(addr, len, libc::MADV_HUGEPAGE) == 0 && collapse == Collapse::Yes {
            // Failing (a kernel before 6.1, no huge page free): khugepaged
            // collapses the range later, as the first advice asked.
            libc::madvise(addr, len, libc::MADV_COLLAPSE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise(_: usize, _: usize, _: Collapse) {}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn blocks_side_by_side_are_one_run_and_only_its_whole_huge_pages_are_advised() {
        // 64 segments of 256 KiB, each a chunk header past the last, from
        // 1 MiB into a huge page: 16 MiB + 64 headers.
        let base = 100 * HUGE + MIB;
        let mut spans: Vec<(usize, usize)> = (0..64)
            .rev()
            .map(|i| {
                let start = base + i * (256 * 1024 + 16);
                (start, start + 256 * 1024)
            })
            .collect();
        assert_eq!(
            huge_ranges(&mut spans),
            vec![(101 * HUGE, 108 * HUGE)],
            "the run starts 1 MiB into page 100 and ends 1 MiB into page 108"
        );
    }

    #[test]
    fn blocks_far_apart_are_separate_runs_and_small_runs_get_nothing() {
        let mut spans = vec![
            (10 * HUGE, 13 * HUGE),                          // three whole pages
            (40 * HUGE + MIB, 40 * HUGE + MIB + 512 * 1024), // inside one page
            (13 * HUGE + SAME_TABLE_GAP + 1, 16 * HUGE),     // too far from the first
        ];
        assert_eq!(
            huge_ranges(&mut spans),
            vec![(10 * HUGE, 13 * HUGE), (14 * HUGE, 16 * HUGE)]
        );
    }

    #[test]
    fn only_large_blocks_noted_inside_backing_are_advised() {
        let noted = |size: usize| {
            let (_, advised) = backing(|| note((64 * HUGE) as *mut u8, size));
            advised
        };
        // The pointer is never touched: madvise on an address with nothing
        // mapped fails, harmlessly, and the range is still counted.
        assert_eq!(noted(4 * HUGE), 4 * HUGE);
        assert_eq!(noted(LARGE - 1), 0, "small blocks are not noted");
        note((64 * HUGE) as *mut u8, 4 * HUGE);
        let (_, advised) = backing(|| ());
        assert_eq!(advised, 0, "a block outside backing is not noted");
    }
}
