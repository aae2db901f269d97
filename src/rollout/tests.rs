//! The rollout's rules, one test each, on explicit time.

use super::*;
use crate::engine::{JobId, JobState};

fn plan(devices: usize, waves: &[usize]) -> RolloutPlan {
    let mut plan = RolloutPlan::example_of(devices, |n| format!("d{n:02}"));
    if !waves.is_empty() {
        plan.wave_ends = waves.to_vec();
    }
    plan
}

fn never(_: &str) -> bool {
    false
}

/// Steps, gives every started device a job numbered after its position, returns the positions.
fn step(rollout: &mut Rollout, now: u64) -> Vec<usize> {
    let actions = rollout.step(now, &never);
    let mut started = Vec::new();
    for action in actions {
        if let Action::Start(index) = action {
            // As the runtime checks before creating the job (a retry too: its old job is gone).
            assert!(rollout.still_starting(index), "device {index} was asked for but is not starting");
            let id = job(rollout, index);
            assert!(rollout.job_started(index, id, now).is_empty());
            started.push(index);
        }
    }
    started
}

/// Job ids: position × 100 + attempt, so a retry has an id of its own.
fn job(rollout: &Rollout, index: usize) -> JobId {
    JobId::new(index as u32 * 100 + rollout.devices.slot(index).unwrap().attempts)
}

fn finish(
    rollout: &mut Rollout,
    index: usize,
    state: JobState,
    error: Option<&str>,
    now: u64,
) -> Vec<Action> {
    let id = rollout.devices.slot(index).unwrap().job_id.expect("started");
    rollout.job_finished(id, state, error, None, now)
}

/// The device's job ended with a coded reason (its meaning as the error, as the engine has it).
fn finish_coded(rollout: &mut Rollout, index: usize, state: JobState, code: u64, now: u64) -> Vec<Action> {
    let id = rollout.devices.slot(index).unwrap().job_id.expect("started");
    rollout.job_finished(id, state, Reason::meaning(code), Some(code), now)
}

#[test]
fn waves_run_in_order_and_the_rollout_succeeds() {
    let mut r = Rollout::new(RolloutId::new(1), plan(4, &[1, 4]), 0);
    assert_eq!(r.state, RolloutState::Scheduled);
    assert_eq!(step(&mut r, 0), [0], "only the first wave");
    assert_eq!(r.state, RolloutState::Running);
    assert!(step(&mut r, 1).is_empty(), "the second waits for the first");
    finish(&mut r, 0, JobState::Succeeded, None, 2);
    assert_eq!(step(&mut r, 2), [1, 2, 3]);
    for i in 1..4 {
        finish(&mut r, i, JobState::Succeeded, None, 3);
    }
    step(&mut r, 3);
    assert_eq!(r.state, RolloutState::Succeeded);
    assert_eq!(r.reason.as_deref(), Some("all 4 devices are up to date"));
    let states: Vec<_> = r.changes.iter().map(|c| c.to).collect();
    assert_eq!(states, [RolloutState::Running, RolloutState::Succeeded]);
}

#[test]
fn a_wave_under_the_success_threshold_pauses_with_the_reason_and_resume_goes_on() {
    let mut p = plan(4, &[2, 4]);
    p.success_threshold = 0.9;
    let mut r = Rollout::new(RolloutId::new(1), p, 0);
    step(&mut r, 0);
    finish(&mut r, 0, JobState::Succeeded, None, 1);
    finish(&mut r, 1, JobState::Failed, Some("writing to flash failed"), 1);
    assert!(step(&mut r, 1).is_empty());
    assert_eq!(r.state, RolloutState::Paused);
    let reason = r.reason.clone().unwrap();
    assert!(
        reason.starts_with("wave 1 of 2: 1 of 2 devices succeeded (50%), under the success threshold of 90%"),
        "{reason}"
    );
    assert_eq!(r.devices.slot(1).unwrap().detail.as_deref(), Some("writing to flash failed"));
    r.resume(2).unwrap();
    assert_eq!(step(&mut r, 2), [2, 3]);
    finish(&mut r, 2, JobState::Succeeded, None, 3);
    finish(&mut r, 3, JobState::Succeeded, None, 3);
    step(&mut r, 3);
    assert_eq!(r.state, RolloutState::Completed);
    assert_eq!(r.reason.as_deref(), Some("1 of 4 devices did not update"));
}

#[test]
fn manual_gates_wait_for_a_resume_before_every_wave() {
    let mut p = plan(2, &[1, 2]);
    p.gates = Gates::Manual;
    let mut r = Rollout::new(RolloutId::new(1), p, 0);
    assert!(step(&mut r, 0).is_empty());
    assert_eq!(r.state, RolloutState::Paused);
    assert_eq!(r.reason.as_deref(), Some("manual gates: resume to start wave 1 of 2"));
    r.resume(1).unwrap();
    assert_eq!(step(&mut r, 1), [0]);
    finish(&mut r, 0, JobState::Succeeded, None, 2);
    assert!(step(&mut r, 2).is_empty());
    assert_eq!(r.state, RolloutState::Paused);
    assert!(r.reason.as_deref().unwrap().contains("manual gates: resume to start wave 2"));
    r.resume(3).unwrap();
    assert_eq!(step(&mut r, 3), [1]);
}

#[test]
fn max_per_minute_spreads_starts_evenly() {
    let mut p = plan(4, &[]);
    p.max_per_minute = Some(2); // one start every 30 s
    let mut r = Rollout::new(RolloutId::new(1), p, 0);
    assert_eq!(step(&mut r, 0), [0]);
    assert_eq!(r.next_wakeup(), Some(30_000));
    assert!(step(&mut r, 29_999).is_empty());
    assert_eq!(step(&mut r, 30_000), [1]);
    assert_eq!(step(&mut r, 60_000), [2]);
}

#[test]
fn max_concurrent_caps_active_jobs() {
    let mut p = plan(3, &[]);
    p.max_concurrent = Some(2);
    let mut r = Rollout::new(RolloutId::new(1), p, 0);
    assert_eq!(step(&mut r, 0), [0, 1]);
    assert!(step(&mut r, 1).is_empty());
    finish(&mut r, 0, JobState::Succeeded, None, 2);
    assert_eq!(step(&mut r, 2), [2]);
}

#[test]
fn failures_over_the_share_abort_cancel_what_waits_and_let_active_jobs_finish() {
    let mut p = plan(6, &[]);
    p.max_concurrent = Some(3);
    p.abort =
        Some(AbortRule { failure_share: 0.5, min_finished: 2, count_rejected: true, cancel_active: false });
    let mut r = Rollout::new(RolloutId::new(1), p, 0);
    step(&mut r, 0);
    assert!(finish(&mut r, 0, JobState::Failed, None, 1).is_empty(), "one finished is under min_finished");
    assert_eq!(r.state, RolloutState::Running);
    let actions = finish(&mut r, 1, JobState::TimedOut, None, 2);
    let third = r.devices.slot(2).unwrap().job_id.unwrap();
    assert_eq!(
        actions,
        [Action::CancelIfQueued(third)],
        "an active job is cancelled only while it still waits in the queue"
    );
    assert_eq!(r.state, RolloutState::Aborted);
    assert_eq!(
        r.reason.as_deref(),
        Some("2 of 2 finished devices failed (100%), at or over the abort share of 50%")
    );
    assert_eq!(r.devices.slot(2).unwrap().outcome, Outcome::Active);
    assert!(r.devices.outcomes().skip(3).all(|o| o == Outcome::Cancelled));
    assert!(step(&mut r, 3).is_empty(), "nothing more starts");
    finish(&mut r, 2, JobState::Succeeded, None, 4);
    assert_eq!(r.devices.slot(2).unwrap().outcome, Outcome::Succeeded);
    assert_eq!(r.state, RolloutState::Aborted);
}

#[test]
fn rejected_devices_count_as_failed_unless_the_rule_says_otherwise_and_abort_can_cancel_active_jobs() {
    let mut p = plan(3, &[]);
    p.abort =
        Some(AbortRule { failure_share: 0.5, min_finished: 1, count_rejected: false, cancel_active: true });
    let mut r = Rollout::new(RolloutId::new(1), p, 0);
    step(&mut r, 0);
    assert!(finish(&mut r, 0, JobState::Rejected, Some("battery too low"), 1).is_empty());
    assert_eq!(r.state, RolloutState::Running);
    let actions = finish(&mut r, 1, JobState::Failed, None, 2);
    assert_eq!(r.state, RolloutState::Aborted);
    assert_eq!(actions, [Action::Cancel(r.devices.slot(2).unwrap().job_id.unwrap())]);
}

#[test]
fn failed_devices_are_retried_with_backoff_and_other_refusals_are_not() {
    let mut p = plan(2, &[]);
    p.retries = 2;
    let mut r = Rollout::new(RolloutId::new(1), p, 0);
    step(&mut r, 0);
    finish(&mut r, 0, JobState::Failed, Some("writing to flash failed"), 10);
    assert_eq!(r.devices.slot(0).unwrap().outcome, Outcome::Retrying);
    assert_eq!(r.devices.slot(0).unwrap().retry_at, Some(30_010));
    assert_eq!(r.next_wakeup(), Some(30_010));
    finish(&mut r, 1, JobState::Rejected, Some("battery too low"), 10);
    assert_eq!(r.devices.slot(1).unwrap().outcome, Outcome::Rejected, "a refusal other than busy is final");
    assert!(step(&mut r, 30_009).is_empty());
    assert_eq!(step(&mut r, 30_010), [0]);
    assert_eq!(r.devices.slot(0).unwrap().attempts, 2);
    finish(&mut r, 0, JobState::TimedOut, None, 40_000);
    assert_eq!(r.devices.slot(0).unwrap().retry_at, Some(100_000), "the second retry waits twice as long");
    step(&mut r, 100_000);
    finish(&mut r, 0, JobState::Failed, None, 100_001);
    assert_eq!(r.devices.slot(0).unwrap().outcome, Outcome::Failed, "three tries with retries = 2");
    step(&mut r, 100_001);
    assert_eq!(r.state, RolloutState::Completed);
}

#[test]
fn a_busy_device_is_tried_again_later_even_without_retries() {
    let mut r = Rollout::new(RolloutId::new(1), plan(2, &[]), 0);
    step(&mut r, 0);
    finish_coded(&mut r, 0, JobState::Rejected, 6, 5);
    assert_eq!(r.devices.slot(0).unwrap().outcome, Outcome::Retrying);
    // The same words as text, without the code, are a device's own refusal: final.
    finish(&mut r, 1, JobState::Rejected, Reason::meaning(6), 5);
    assert_eq!(r.devices.slot(1).unwrap().outcome, Outcome::Rejected);
    assert_eq!(step(&mut r, 30_005), [0]);
    finish(&mut r, 0, JobState::Succeeded, None, 30_006);
    step(&mut r, 30_006);
    assert_eq!(r.state, RolloutState::Completed, "the one that refused did not update");
}

use crate::protocol::Reason;

#[test]
fn devices_already_on_the_image_are_reported_and_not_updated() {
    let mut p = plan(3, &[]);
    p.skip_up_to_date = true;
    let mut r = Rollout::new(RolloutId::new(1), p, 0);
    let current = |d: &str| d == "d02";
    let actions = r.step(0, &current);
    assert_eq!(actions, [Action::Start(0), Action::Start(2)]);
    assert_eq!(r.devices.slot(1).unwrap().outcome, Outcome::UpToDate);
    assert_eq!(r.devices.slot(1).unwrap().detail.as_deref(), Some("already up to date"));
}

#[test]
fn pause_stops_starts_and_cancel_cancels_active_jobs() {
    let mut p = plan(3, &[]);
    p.max_concurrent = Some(1);
    let mut r = Rollout::new(RolloutId::new(1), p, 0);
    step(&mut r, 0);
    r.pause(1).unwrap();
    finish(&mut r, 0, JobState::Succeeded, None, 2);
    assert!(step(&mut r, 2).is_empty(), "paused: nothing starts");
    r.resume(3).unwrap();
    assert_eq!(step(&mut r, 3), [1]);
    let actions = r.cancel(4).unwrap();
    assert_eq!(actions, [Action::Cancel(r.devices.slot(1).unwrap().job_id.unwrap())]);
    assert_eq!(r.state, RolloutState::Cancelled);
    assert_eq!(r.devices.slot(2).unwrap().outcome, Outcome::Cancelled);
    assert!(r.pause(5).unwrap_err().contains("has ended (cancelled)"));
    assert!(r.resume(5).is_err());
}

#[test]
fn a_job_that_could_not_be_created_fails_its_device() {
    let mut r = Rollout::new(RolloutId::new(1), plan(1, &[]), 0);
    let actions = r.step(0, &never);
    assert_eq!(actions, [Action::Start(0)]);
    r.start_failed(0, "the image is gone".into(), 1);
    step(&mut r, 1);
    assert_eq!(r.state, RolloutState::Completed);
    assert_eq!(
        r.devices.slot(0).unwrap().detail.as_deref(),
        Some("no job could be created: the image is gone")
    );
}

#[test]
fn wave_counts_sum_up_outcomes() {
    let mut r = Rollout::new(RolloutId::new(1), plan(3, &[1, 3]), 0);
    step(&mut r, 0);
    finish(&mut r, 0, JobState::Succeeded, None, 1);
    step(&mut r, 1);
    let counts = r.wave_counts();
    assert_eq!(counts[0], WaveCounts { devices: 1, succeeded: 1, ..Default::default() });
    assert_eq!(counts[1], WaveCounts { devices: 2, active: 2, ..Default::default() });
}

#[test]
fn with_the_concurrency_cap_full_the_clock_does_not_wake_the_rollout() {
    let mut p = plan(3, &[]);
    p.max_per_minute = Some(60);
    p.max_concurrent = Some(1);
    let mut r = Rollout::new(RolloutId::new(1), p, 0);
    assert_eq!(step(&mut r, 0), [0]);
    assert!(step(&mut r, 10_000).is_empty());
    assert_eq!(r.next_wakeup(), None, "only the job's end frees a start");
    finish(&mut r, 0, JobState::Succeeded, None, 10_001);
    assert_eq!(step(&mut r, 10_001), [1]);
    assert_eq!(r.next_wakeup(), None);
}

#[test]
fn an_abort_cancels_jobs_still_queued_and_one_created_after_a_cancel() {
    let mut p = plan(4, &[]);
    p.abort =
        Some(AbortRule { failure_share: 0.5, min_finished: 1, count_rejected: true, cancel_active: false });
    let mut r = Rollout::new(RolloutId::new(1), p, 0);
    step(&mut r, 0);
    let actions = finish(&mut r, 0, JobState::Failed, None, 1);
    let queued: Vec<Action> =
        (1..4).map(|i| Action::CancelIfQueued(r.devices.slot(i).unwrap().job_id.unwrap())).collect();
    assert_eq!(actions, queued, "active jobs still waiting in the queue send nothing more");
    // A job created while the rollout was being cancelled is cancelled at once.
    let mut r = Rollout::new(RolloutId::new(2), plan(2, &[]), 0);
    assert_eq!(r.step(0, &never), [Action::Start(0), Action::Start(1)]);
    assert!(r.still_starting(1));
    r.cancel(1).unwrap();
    assert!(!r.still_starting(1));
    assert_eq!(r.job_started(1, JobId::new(77), 2), [Action::Cancel(JobId::new(77))]);
}

#[test]
fn a_passing_store_problem_defers_a_start_and_a_removed_job_fails_its_device() {
    let mut r = Rollout::new(RolloutId::new(1), plan(2, &[]), 0);
    assert_eq!(r.step(0, &never), [Action::Start(0), Action::Start(1)]);
    r.start_deferred(0, "the job store is busy".into(), 5_000, 10);
    assert_eq!(r.devices.slot(0).unwrap().outcome, Outcome::Retrying);
    assert_eq!(r.devices.slot(0).unwrap().attempts, 0, "not counted as a try");
    assert_eq!(r.next_wakeup(), Some(5_010));
    r.job_started(1, JobId::new(9), 10);
    r.job_lost(JobId::new(9), 11);
    assert_eq!(r.devices.slot(1).unwrap().outcome, Outcome::Failed);
    assert_eq!(
        r.devices.slot(1).unwrap().detail.as_deref(),
        Some("job 9 was removed before its end was seen")
    );
    assert_eq!(r.step(5_010, &never), [Action::Start(0)]);
}

/// A device that rolled back failed its update: retried (the detail says so), counted against
/// the wave; one that was up to date counts as done without being updated.
#[test]
fn rolled_back_devices_are_failures_that_retry_and_up_to_date_ones_succeed() {
    let mut p = plan(3, &[]);
    p.retries = 1;
    let mut r = Rollout::new(RolloutId::new(1), p, 0);
    step(&mut r, 0);
    finish(&mut r, 0, JobState::RolledBack, Some("rolled back to 1.0"), 1);
    finish(&mut r, 1, JobState::UpToDate, None, 1);
    finish(&mut r, 2, JobState::Succeeded, None, 1);
    let slot = r.devices.slot(0).unwrap();
    assert_eq!(slot.outcome, Outcome::Retrying);
    assert!(
        slot.detail.as_deref().is_some_and(|d| d.starts_with("rolled back to 1.0; try 2 of 2")),
        "{slot:?}"
    );
    assert_eq!(r.devices.slot(1).unwrap().outcome, Outcome::UpToDate);
    let wave = r.wave_counts()[0].clone();
    assert_eq!((wave.succeeded, wave.up_to_date, wave.pending), (2, 1, 1));
    // The retry rolls back again: a failure, counted as rolled back.
    step(&mut r, 60_000);
    finish(&mut r, 0, JobState::RolledBack, Some("rolled back to 1.0"), 60_001);
    let wave = r.wave_counts()[0].clone();
    assert_eq!((wave.failed, wave.rolled_back), (1, 1));
    assert_eq!(r.devices.slot(0).unwrap().outcome.label(), "rolled back");
}

#[tokio::test]
async fn targets_can_leave_out_devices_that_run_a_version() {
    use crate::inventory::{Inventory, Labels, Running};
    let inventory = Inventory::in_memory();
    let ids = ["a", "b", "c"].map(|d| crate::protocol::DeviceId::parse(d).unwrap());
    inventory.register(ids.iter().map(|id| (id.clone(), Labels::new())).collect()).await.unwrap();
    let status = |version: &str| crate::protocol::DeviceStatus {
        image: [1; 32],
        version: Some(version.to_owned()),
        boot: Some(1),
        seq: None,
        caps: Vec::new(),
        kids: Vec::new(),
    };
    inventory.report_status(&ids[0], Some(Running::new(&status("2.1.0"), 1)));
    inventory.report_status(&ids[1], Some(Running::new(&status("2.0.3"), 1)));
    let targets = Targets { glob: Some("*".into()), version_not: Some("2.1.0".into()), ..Targets::default() };
    assert_eq!(targets.resolve(&inventory).unwrap(), [ids[1].clone(), ids[2].clone()]);
    let only_a =
        Targets { devices: Some(vec!["a".into()]), version_not: Some("2.1.0".into()), ..Targets::default() };
    assert!(only_a.resolve(&inventory).unwrap_err().contains("runs version \"2.1.0\" already"));
    let bad = Targets { version_not: Some("v".repeat(65)), ..only_a };
    assert!(bad.resolve(&inventory).unwrap_err().contains("targets.version_not"));
}

#[test]
fn a_device_waiting_for_its_confirmation_is_in_progress_and_counted() {
    let mut r = Rollout::new(RolloutId::new(1), plan(2, &[]), 0);
    step(&mut r, 0);
    let id = r.devices.slot(0).unwrap().job_id.unwrap();
    r.job_confirming(id, 1);
    assert_eq!(r.devices.slot(0).unwrap().outcome, Outcome::Confirming);
    let wave = r.wave_counts()[0].clone();
    assert_eq!((wave.active, wave.confirming), (2, 1));
    // Its end is heard as any other, and the confirmation shows.
    finish(&mut r, 0, JobState::Succeeded, None, 2);
    assert_eq!(r.devices.slot(0).unwrap().outcome, Outcome::Succeeded);
    r.job_confirmed(id);
    assert_eq!(r.devices.slot(0).unwrap().outcome, Outcome::Confirmed);
    let wave = r.wave_counts()[0].clone();
    assert_eq!((wave.confirming, wave.succeeded, wave.confirmed), (0, 1, 1));
}

#[test]
fn a_rollout_with_start_at_starts_nothing_before_its_time_and_wakes_for_it() {
    let start_at = 1_800_000_000_000; // 2027-01-15 08:00:00 UTC
    let mut p = plan(3, &[]);
    p.start_at = Some(start_at);
    let mut r = Rollout::new(RolloutId::new(1), p, start_at - 10_000);
    assert!(step(&mut r, start_at - 10_000).is_empty(), "10 s ahead: nothing");
    assert_eq!(r.state, RolloutState::Scheduled);
    assert_eq!(r.reason.as_deref(), Some("scheduled: starts at 2027-01-15 08:00:00 UTC"));
    assert_eq!(r.next_wakeup(), Some(start_at), "the task wakes for it");
    assert!(step(&mut r, start_at - 1).is_empty(), "a millisecond before: nothing");
    assert!(r.changes.is_empty(), "waiting is not a change of state");
    assert_eq!(step(&mut r, start_at), [0, 1, 2], "at its time: the whole wave");
    assert_eq!(r.state, RolloutState::Running);
}

#[test]
fn start_at_is_read_as_rfc_3339_or_unix_ms_and_refused_in_words_otherwise() {
    use super::request::StartAt;
    assert_eq!(StartAt::Text("2027-01-15T09:00:00+01:00".into()).unix_ms(), Ok(1_800_000_000_000));
    assert_eq!(StartAt::Ms(1_800_000_000_000).unix_ms(), Ok(1_800_000_000_000));
    assert!(StartAt::Ms(1_800_000_000).unix_ms().unwrap_err().contains("looks like seconds"));
    let error = StartAt::Text("tomorrow".into()).unix_ms().unwrap_err();
    assert!(error.contains("start_at \"tomorrow\" is not an RFC 3339 time"), "{error}");
    let inventory = crate::inventory::Inventory::new(Vec::new(), 10, None);
    let image = crate::snapshot::ImageInfo { name: "fw.bin".into(), size: 1, sha256: "00".repeat(32).into() };
    let mut request: RolloutRequest = serde_json::from_value(serde_json::json!({
        "name": "later", "targets": {"devices": ["d1"]}, "start_at": "2027-01-15T09:00:00+01:00"
    }))
    .unwrap();
    let chunk = crate::firmware::ChunkSize::new(1024).unwrap();
    let now = 1_800_000_000_000 - 3_600_000;
    assert_eq!(
        request.plan(image.clone(), &inventory, chunk, now).unwrap().start_at,
        Some(1_800_000_000_000)
    );
    // A time gone by starts at once; more than 366 days ahead is refused.
    assert_eq!(request.plan(image.clone(), &inventory, chunk, now + 7_200_000).unwrap().start_at, None);
    request.start_at = Some(StartAt::Ms(now + 400 * 24 * 3_600_000));
    assert_eq!(
        request.plan(image, &inventory, chunk, now).unwrap_err(),
        "start_at is at most 366 days ahead"
    );
}

#[test]
fn pausing_and_resuming_a_scheduled_rollout_keeps_its_start_time() {
    let start_at = 1_800_000_000_000;
    let mut p = plan(2, &[]);
    p.start_at = Some(start_at);
    let mut r = Rollout::new(RolloutId::new(1), p, start_at - 60_000);
    assert!(step(&mut r, start_at - 60_000).is_empty());
    r.pause(start_at - 50_000).unwrap();
    assert_eq!(r.state, RolloutState::Paused);
    r.resume(start_at - 40_000).unwrap();
    assert_eq!(r.state, RolloutState::Scheduled, "the resume keeps the schedule");
    assert!(step(&mut r, start_at - 30_000).is_empty(), "still nothing before its time");
    assert_eq!(step(&mut r, start_at), [0, 1]);
}

#[test]
fn a_start_asked_for_when_the_rollout_has_ended_leaves_its_device_cancelled_not_pending() {
    let mut r = Rollout::new(RolloutId::new(1), plan(3, &[]), 0);
    let actions = r.step(0, &never);
    assert_eq!(actions.len(), 3, "every device asked for");
    // Cancelled before the runtime got to creating their jobs.
    r.cancel(1).unwrap();
    for index in 0..3 {
        assert!(!r.still_starting(index));
        r.start_abandoned(index, 2);
    }
    let counts = r.wave_counts();
    assert_eq!((counts[0].pending, counts[0].cancelled), (0, 3), "{counts:?}");
}

#[test]
fn a_closed_window_holds_every_start_and_its_opening_starts_them() {
    let closed_now = 1_800_000_000_000; // Friday 2027-01-15 08:00 UTC
    let mut p = plan(3, &[]);
    p.windows = vec![super::window::Window {
        days: vec!["fri".into()],
        start: "09:00".into(),
        end: "10:00".into(),
        tz: "UTC".into(),
    }];
    let mut r = Rollout::new(RolloutId::new(1), p, closed_now);
    assert!(step(&mut r, closed_now).is_empty(), "closed: nothing starts");
    assert_eq!(r.state, RolloutState::Running, "waiting is part of running");
    let reason = r.reason.clone().unwrap();
    assert_eq!(
        reason,
        "waiting for the window that opens Fri 2027-01-15 09:00 UTC (2027-01-15 09:00:00 UTC)"
    );
    let opens = closed_now + 3_600_000;
    assert_eq!(r.next_wakeup(), Some(opens), "the task wakes when it opens");
    assert!(step(&mut r, opens - 1).is_empty());
    assert_eq!(step(&mut r, opens), [0, 1, 2], "open: every start");
    assert_eq!(r.reason.as_deref(), Some("its window is open"));
    assert_eq!(r.next_wakeup(), None);
    // Jobs under way when it closes finish, and the rollout ends outside its window.
    let closed_again = opens + 2 * 3_600_000;
    assert!(step(&mut r, closed_again).is_empty());
    for index in 0..3 {
        finish(&mut r, index, JobState::Succeeded, None, closed_again);
    }
    assert!(step(&mut r, closed_again + 1).is_empty());
    assert_eq!(r.state, RolloutState::Succeeded);
}

#[test]
fn a_window_in_a_zone_this_instance_does_not_know_starts_nothing_and_says_why() {
    // Checked at creation; a stored rollout can still name one (written by an instance with a
    // newer zone database, or by hand).
    let now = 1_800_000_000_000;
    let mut p = plan(2, &[]);
    p.windows = vec![super::window::Window {
        days: vec![
            "mon".into(),
            "tue".into(),
            "wed".into(),
            "thu".into(),
            "fri".into(),
            "sat".into(),
            "sun".into(),
        ],
        start: "00:00".into(),
        end: "23:59".into(),
        tz: "Mars/Olympus_Mons".into(),
    }];
    let mut r = Rollout::new(RolloutId::new(1), p, now);
    assert!(step(&mut r, now).is_empty(), "nothing starts");
    let reason = r.reason.clone().unwrap();
    assert!(
        reason.starts_with("its windows cannot be judged on this instance (")
            && reason.contains("Mars/Olympus_Mons"),
        "{reason}"
    );
    assert_eq!(r.state, RolloutState::Running);
    assert_eq!(r.next_wakeup(), Some(now + 60_000), "looked at again in a minute");
    assert!(step(&mut r, now + 59_999).is_empty());
    assert!(step(&mut r, now + 60_000).is_empty(), "still not judged a minute on");
}

#[test]
fn a_rollout_without_a_cap_holds_at_most_uncapped_at_once_jobs_and_an_end_makes_room() {
    let mut r = Rollout::new(RolloutId::new(1), plan(UNCAPPED_AT_ONCE + 10, &[]), 0);
    let started = step(&mut r, 0);
    assert_eq!(started.len(), UNCAPPED_AT_ONCE, "made ahead of the engine only so far");
    assert!(step(&mut r, 1).is_empty(), "no room until a job ends");
    finish(&mut r, 0, JobState::Succeeded, None, 2);
    assert_eq!(step(&mut r, 3), [UNCAPPED_AT_ONCE], "one ended, one more");
}
