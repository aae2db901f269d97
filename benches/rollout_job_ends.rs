//! What a 100,000-device rollout costs its state machine, apart from the jobs themselves: every
//! step (what may start), and every job's end (finding its device, the abort rule), as the
//! rollout task runs them on the async thread that also sends every chunk. A step starts up to
//! 64 devices and 64 jobs end between steps, as in a rollout with the default cap.
//!
//! Run with `cargo bench --bench rollout_job_ends`: whole rollouts repeated for at least 3 s,
//! with and without an abort rule; medians printed with the spread.

use std::time::{Duration, Instant};

use rocky::engine::{JobId, JobState};
use rocky::protocol::DeviceId;
use rocky::rollout::{AbortRule, Action, Rollout, RolloutId, RolloutPlan, RolloutState};
use rocky::snapshot::ImageInfo;

const DEVICES: usize = 100_000;
const ROUND: Duration = Duration::from_secs(3);

/// One whole rollout: the time spent in steps and in job ends.
fn run(abort: bool) -> (Duration, Duration) {
    let image = ImageInfo { name: "fw.bin".into(), size: 16 << 10, sha256: "ab".repeat(32).into() };
    let devices = (0..DEVICES)
        .map(|i| DeviceId::parse(&format!("dev-{i:06}")).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let mut plan = RolloutPlan::new("bench", image, devices);
    if abort {
        plan.abort = Some(AbortRule {
            failure_share: 0.5,
            min_finished: 10,
            count_rejected: true,
            cancel_active: false,
        });
    }
    let mut rollout = Rollout::new(RolloutId::new(1), plan, 0);
    let (mut stepping, mut ending) = (Duration::ZERO, Duration::ZERO);
    let mut running = std::collections::VecDeque::new();
    let mut next_job = 1;
    loop {
        let started = Instant::now();
        let actions = rollout.step(0, &|_| false);
        let _ = rollout.next_wakeup();
        stepping += started.elapsed();
        for action in actions {
            if let Action::Start(index) = action {
                rollout.job_started(index, JobId::new(next_job), 0);
                running.push_back(JobId::new(next_job));
                next_job += 1;
            }
        }
        if running.is_empty() {
            break;
        }
        let started = Instant::now();
        for job in running.drain(..running.len().min(64)) {
            rollout.job_finished(job, JobState::Succeeded, None, None, 0);
        }
        ending += started.elapsed();
    }
    assert_eq!(rollout.head().state, RolloutState::Succeeded, "every device updated");
    (stepping, ending)
}

fn main() {
    for abort in [false, true] {
        let mut rounds = Vec::new();
        let began = Instant::now();
        while began.elapsed() < ROUND || rounds.len() < 3 {
            rounds.push(run(abort));
        }
        let median = |mut values: Vec<Duration>| {
            values.sort();
            (values[values.len() / 2], values[0], values[values.len() - 1])
        };
        let (step, step_lo, step_hi) = median(rounds.iter().map(|r| r.0).collect());
        let (end, end_lo, end_hi) = median(rounds.iter().map(|r| r.1).collect());
        println!(
            "{DEVICES} devices{}: steps {:.1} ms ({:.1}–{:.1}), job ends {:.1} ms ({:.1}–{:.1}); {} rollouts",
            if abort { ", abort rule" } else { "" },
            step.as_secs_f64() * 1e3,
            step_lo.as_secs_f64() * 1e3,
            step_hi.as_secs_f64() * 1e3,
            end.as_secs_f64() * 1e3,
            end_lo.as_secs_f64() * 1e3,
            end_hi.as_secs_f64() * 1e3,
            rounds.len()
        );
    }
}
