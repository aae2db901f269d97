//! The memory a rollout holds per device, counted by the allocator: a 100,000-device rollout
//! made, one that has run (most devices updated, some failed or waiting for a retry with the
//! same few reasons, some active), the same read back from a SQLite store as after a restart,
//! and 30 such rollouts at once. Beside each, what the same devices take as whole [`Slot`]s
//! (the form the API answers, and the form Rocky held them in before), for the ratio.
//!
//! Run with `cargo bench --bench rollout_memory`. The target is ≤ 64 bytes a device (issue 20,
//! A5); the run exits 1 when a figure is over it. Allocation counts do not depend on the
//! machine's speed, so one run is exact.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use rocky::engine::JobId;
use rocky::protocol::DeviceId;
use rocky::rollout::{Outcome, Rollout, RolloutId, RolloutPlan};
use rocky::snapshot::ImageInfo;
use rocky::store::{RolloutRow, Store};

/// Counts the bytes live on the heap.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only the sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's layout, as the system allocator requires.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as for `alloc` and `dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const DEVICES: usize = 100_000;
const ROLLOUTS: usize = 30;
const TARGET: f64 = 64.0;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// The bytes `make` leaves on the heap in what it returns.
fn held<T>(make: impl FnOnce() -> T) -> (T, isize) {
    let before = live();
    let value = make();
    (value, live() - before)
}

fn plan(n: usize) -> RolloutPlan {
    let image = ImageInfo { name: "fw-2.4.1.bin".into(), size: 1 << 20, sha256: "ab".repeat(32).into() };
    let devices =
        (0..n).map(|i| DeviceId::parse(&format!("dev-{i:06}")).unwrap_or_else(|e| panic!("{e}"))).collect();
    let mut plan = RolloutPlan::new("fleet update", image, devices);
    plan.retries = 2;
    plan
}

/// What a rollout looks like after running a while: 80% updated, 8% failed with one of three
/// reasons, 5% waiting for a retry, 5% active, the rest not started.
fn run_a_while(rollout: &mut Rollout) {
    const REASONS: [&str; 3] = [
        "timed out: no answer within 90 s",
        "the device refused the image: hash mismatch",
        "the device failed: writing to flash failed",
    ];
    for i in 0..rollout.devices.len() {
        let devices = &mut rollout.devices;
        let job = JobId::new(1_000_000 + i as u32);
        match i % 100 {
            0..80 => {
                devices.set_outcome(i, Outcome::Succeeded);
                devices.set_job(i, Some(job));
                devices.set_attempts(i, 1);
            }
            80..88 => {
                devices.set_outcome(i, Outcome::Failed);
                devices.set_job(i, Some(job));
                devices.set_attempts(i, 3);
                devices.set_detail(i, Some(REASONS[i % 3]));
            }
            88..93 => {
                devices.set_outcome(i, Outcome::Retrying);
                devices.set_job(i, Some(job));
                devices.set_attempts(i, 1);
                devices.set_retry_at(i, Some(1_700_000_030_000 + i as u64));
                devices.set_detail(i, Some(&format!("{}; try 2 of 3 in 30 s", REASONS[i % 3])));
            }
            93..98 => {
                devices.set_outcome(i, Outcome::Active);
                devices.set_job(i, Some(job));
                devices.set_attempts(i, 1);
            }
            _ => {}
        }
    }
}

/// The bytes `value` held: what dropping it gives back.
fn freed<T>(value: T) -> isize {
    let before = live();
    drop(value);
    before - live()
}

fn per_device(bytes: isize, devices: usize) -> f64 {
    bytes as f64 / devices as f64
}

fn main() {
    let mut over = Vec::new();
    let mut report = |what: &str, bytes: isize, devices: usize, whole: Option<isize>| {
        let each = per_device(bytes, devices);
        let ratio = whole.map_or(String::new(), |w| {
            format!(
                "   (as whole slots: {:.1} B a device, {:.1}× more)",
                per_device(w, devices),
                w as f64 / bytes as f64
            )
        });
        println!("{what:<44} {:>8.1} MiB  {each:>6.1} B a device{ratio}", bytes as f64 / (1 << 20) as f64);
        if each > TARGET {
            over.push(format!("{what}: {each:.1} B a device"));
        }
    };

    let plan = plan(DEVICES);
    let (made, bytes) = held(|| Rollout::new(RolloutId::new(1), plan.clone(), 1_700_000_000_000));
    let (whole, whole_bytes) = held(|| made.devices.slots());
    drop(whole);
    report("100,000 devices, just made", bytes, DEVICES, Some(whole_bytes));

    let mut ran = made;
    let before = live();
    run_a_while(&mut ran);
    let run_bytes = bytes + (live() - before);
    let (whole, whole_bytes) = held(|| ran.devices.slots());
    drop(whole);
    report("100,000 devices, after running a while", run_bytes, DEVICES, Some(whole_bytes));

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap_or_else(|e| panic!("{e}"));
    let loaded = runtime.block_on(async {
        let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        store.save_rollouts(vec![RolloutRow::of(&mut ran)]).await.unwrap_or_else(|e| panic!("{e}"));
        let mut rollouts = store.load_rollouts().await.unwrap_or_else(|e| panic!("{e}"));
        rollouts.pop().unwrap_or_else(|| panic!("the rollout was not stored"))
    });
    assert_eq!(loaded.devices, ran.devices, "the store gave back other devices");
    report("the same, read back from the store", freed(loaded), DEVICES, None);
    drop(ran);

    let before = live();
    let mut all: Vec<Rollout> = Vec::with_capacity(ROLLOUTS);
    for id in 0..ROLLOUTS {
        let mut rollout = Rollout::new(RolloutId::new(id as u64 + 1), plan.clone(), 1_700_000_000_000);
        run_a_while(&mut rollout);
        all.push(rollout);
    }
    report("30 rollouts of 100,000 devices, run a while", live() - before, ROLLOUTS * DEVICES, None);
    drop(all);

    if over.is_empty() {
        println!("every figure is within the target of {TARGET} B a device");
    } else {
        println!("over the target of {TARGET} B a device: {}", over.join("; "));
        std::process::exit(1);
    }
}
