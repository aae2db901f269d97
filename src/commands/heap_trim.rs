//! Gives the heap's freed pages back to the system while `rocky serve` runs.
//!
//! glibc's allocator returns freed memory to the system only from the top of its heap. A fleet's
//! rollout frees small blocks all through it (each job's snapshot is replaced as it progresses,
//! the inventory's refresh replaces devices), and those pages stay resident until
//! `malloc_trim` is asked to release them. Asked every few seconds, it took the peak RSS of
//! `rocky bench --fleet 100000 --per-connection 10` from 155.3 and 155.3 MiB to 149.0 and
//! 147.8 MiB (two alternating pairs of runs, docs/scale.md). A call walks the free blocks
//! holding each arena's lock: 7.6 ms for a heap of 100 MB with 175,000 blocks free here, so an
//! allocation may wait that long once every few seconds.

use std::time::Duration;

/// How often freed pages are given back.
pub const EVERY: Duration = Duration::from_secs(5);

/// Starts a thread that gives freed pages back every [`EVERY`]; it ends with the process.
pub fn start() {
    let started = std::thread::Builder::new().name("rocky-heap-trim".into()).spawn(|| {
        loop {
            std::thread::sleep(EVERY);
            give_back();
        }
    });
    if let Err(error) = started {
        tracing::warn!(%error, "cannot start the thread that gives freed memory back; memory stays as the allocator keeps it");
    }
}

/// Releases the heap's wholly free pages to the system, wherever they lie in the heap.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn give_back() {
    // SAFETY: malloc_trim takes no pointer and may run on any thread at any time; glibc
    // takes each arena's lock while it walks it.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators give memory back on their own terms.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn give_back() {}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    /// Resident bytes of this process (`/proc/self/statm` counts pages).
    fn resident() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        // SAFETY: sysconf reads a constant of the system; no pointer is involved.
        let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap();
        statm.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * page
    }

    /// 64 MiB freed below a block still held stays resident until it is given back.
    #[test]
    fn memory_freed_in_the_middle_of_the_heap_is_given_back() {
        let blocks: Vec<Vec<u8>> = (0..65_536).map(|n| vec![(n % 251) as u8; 1024]).collect();
        // Above the others, so the heap's top is not free (kept from the optimiser's reach).
        let kept = std::hint::black_box(vec![1u8; 1024]);
        drop(std::hint::black_box(blocks));
        let before = resident();
        super::give_back();
        let after = resident();
        assert!(
            before.saturating_sub(after) >= 32 << 20,
            "at least half of the 64 MiB freed goes back: {before} B resident before, {after} B after"
        );
        assert_eq!(kept[0], 1);
    }
}
