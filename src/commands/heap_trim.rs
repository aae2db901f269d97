//! Gives the heap's freed pages back to the system while `rocky serve` runs.
//!
//! glibc's allocator returns freed memory to the system only from the top of its heap. A fleet's
//! rollout frees small blocks all through it (each job's snapshot is replaced as it progresses,
//! the inventory's refresh replaces devices), and those pages stay resident until
//! `malloc_trim` is asked to release them. Asked every few seconds, it took the peak RSS of
//! `rocky bench --fleet 100000 --per-connection 10` from 155.3 and 155.3 MiB to 149.0 and
//! 147.8 MiB (alternating runs, docs/scale.md), for no CPU the runs could tell apart.

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
    /// Resident bytes of this process (`/proc/self/statm`, in pages of 4 KiB).
    fn resident() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        statm.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 4096
    }

    /// 64 MiB freed below a block still held stays resident until it is given back.
    #[test]
    fn memory_freed_in_the_middle_of_the_heap_is_given_back() {
        let mut blocks: Vec<Vec<u8>> = (0..65_536).map(|n| vec![(n % 251) as u8; 1024]).collect();
        let kept = vec![1u8; 1024]; // above the others: the heap's top is not free
        blocks.iter_mut().for_each(|b| b[0] = b[1].wrapping_add(1));
        drop(blocks);
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
