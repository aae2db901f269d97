//! Flow control on the engine's explicit clock: one test per rule of `PROTOCOL.md`'s
//! "Flow control" section. Images are 64-byte chunks (the harness's chunk size).

use std::time::Duration;

use super::tests::{ACK, Harness, dev, image, kinds, settings};
use super::*;
use crate::protocol::{CommandType, ResponseBody};

fn ack(next: u32, window: u32) -> ResponseBody {
    ResponseBody::RequestAck { next_chunk: Some(next), window: Some(window) }
}

fn progress(next: u32) -> ResponseBody {
    ResponseBody::Progress { next_chunk: next, window: None }
}

/// The chunk ids in a batch of publishes (commands show as 0).
fn chunk_ids(out: &[Publish]) -> Vec<u32> {
    out.iter()
        .map(|p| match p.kind {
            PublishKind::Chunk { id, .. } => id,
            PublishKind::Command(_) | PublishKind::AwsExecution | PublishKind::AwsBlock { .. } => 0,
        })
        .collect()
}

/// A job of `chunks` chunks for device "d", accepted with `window`; returns its id and the
/// chunks sent at once.
fn paced(h: &mut Harness, chunks: usize, window: u32) -> (JobId, Vec<u32>) {
    let id = h.submit("d", chunks * 64);
    h.drain();
    h.respond("d", id, ack(1, window));
    let first = chunk_ids(&h.drain());
    (id, first)
}

fn notes(h: &Harness) -> Vec<String> {
    h.events
        .iter()
        .filter_map(|e| match e {
            Event::Note { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

/// What the device was said to hold, event by event.
fn progress_events(h: &Harness) -> Vec<u32> {
    h.events
        .iter()
        .filter_map(|e| match e {
            Event::Progress { confirmed, .. } => Some(*confirmed),
            _ => None,
        })
        .collect()
}

#[test]
fn every_change_of_what_the_device_holds_is_an_event_even_with_nothing_left_to_send() {
    let mut h = Harness::new(settings());
    let (id, _) = paced(&mut h, 6, 8);
    assert_eq!(h.engine.job(id).unwrap().chunks_done, 6, "every chunk out at once");
    h.respond("d", id, progress(3));
    h.drain();
    h.respond("d", id, progress(3)); // a repeat changes nothing
    h.drain();
    h.respond("d", id, progress(5)); // nothing more to send: only the event tells
    h.drain();
    h.respond("d", id, progress(2)); // a rewind, then another one
    h.respond("d", id, progress(4));
    h.respond("d", id, progress(1));
    h.drain();
    assert_eq!(progress_events(&h), vec![2, 4, 1, 3, 0]);
    assert!(h.events.iter().all(|e| e.job() == Some(id) || e.job().is_none()));
}

#[test]
fn a_window_bounds_what_is_beyond_the_confirmed_and_done_waits_for_every_chunk() {
    let mut h = Harness::new(settings());
    let (id, first) = paced(&mut h, 12, 4);
    assert_eq!(first, vec![1, 2, 3, 4], "never more than the window beyond what is confirmed");
    assert!(h.drain().is_empty());
    h.respond("d", id, progress(3)); // holds 1..2
    assert_eq!(chunk_ids(&h.drain()), vec![5, 6]);
    h.respond("d", id, progress(7));
    assert_eq!(chunk_ids(&h.drain()), vec![7, 8, 9, 10]);
    h.respond("d", id, progress(11));
    assert_eq!(chunk_ids(&h.drain()), vec![11, 12]);
    assert_eq!(h.state(id), JobState::Transferring, "every chunk sent, not every chunk confirmed");
    let view = h.engine.job(id).unwrap();
    assert_eq!((view.chunks_done, view.chunks_confirmed, view.window), (12, Some(10), Some(4)));
    h.respond("d", id, progress(13));
    assert_eq!(kinds(&h.drain()), vec![PublishKind::Command(CommandType::Done)]);
    assert_eq!(h.state(id), JobState::Finishing);
    h.respond("d", id, ResponseBody::DoneSuccess);
    assert_eq!(h.state(id), JobState::Succeeded);
}

#[test]
fn a_three_item_ack_or_a_window_of_zero_is_a_push_as_before() {
    for ack_body in [ACK, ResponseBody::RequestAck { next_chunk: Some(1), window: Some(0) }] {
        let mut h = Harness::new(settings());
        let id = h.submit("d", 3 * 64);
        h.drain();
        h.respond("d", id, ack_body);
        let out = h.drain();
        assert_eq!(chunk_ids(&out), vec![1, 2, 3, 0], "all chunks, then FOTA_DONE");
        assert_eq!(h.engine.job(id).unwrap().window, None);
        // (Pushed, every chunk is out at once: a FOTA_PROGRESS now changes nothing.)
        h.respond("d", id, progress(2));
        assert!(h.ignored().iter().any(|r| r.contains("FOTA_PROGRESS")), "{:?}", h.ignored());
        assert_eq!(h.state(id), JobState::Finishing);
    }
}

#[test]
fn a_window_of_one_sends_chunk_by_chunk() {
    let mut h = Harness::new(settings());
    let (id, first) = paced(&mut h, 3, 1);
    assert_eq!(first, vec![1]);
    for next in 2..=3 {
        h.respond("d", id, progress(next));
        assert_eq!(chunk_ids(&h.drain()), vec![next]);
    }
    h.respond("d", id, progress(4));
    assert_eq!(kinds(&h.drain()), vec![PublishKind::Command(CommandType::Done)]);
}

#[test]
fn a_lost_progress_is_repaired_by_the_next_and_duplicates_change_nothing() {
    let mut h = Harness::new(settings());
    let (id, _) = paced(&mut h, 10, 4);
    // The device's FOTA_PROGRESS for 3 is lost; the next one (cumulative) says 5.
    h.respond("d", id, progress(5));
    assert_eq!(chunk_ids(&h.drain()), vec![5, 6, 7, 8]);
    h.respond("d", id, progress(5));
    h.respond("d", id, progress(5));
    assert!(h.drain().is_empty(), "a repeat opens nothing new");
    assert_eq!(h.engine.job(id).unwrap().chunks_confirmed, Some(4));
    assert!(h.ignored().is_empty(), "repeats are not errors");
}

#[test]
fn a_window_of_zero_pauses_until_the_next_progress_reopens_it() {
    let mut h = Harness::new(settings());
    let (id, _) = paced(&mut h, 10, 4);
    h.respond("d", id, ResponseBody::Progress { next_chunk: 5, window: Some(0) });
    assert!(h.drain().is_empty(), "paused");
    assert_eq!(h.engine.job(id).unwrap().window, Some(0));
    h.respond("d", id, ResponseBody::Progress { next_chunk: 5, window: Some(2) });
    assert_eq!(chunk_ids(&h.drain()), vec![5, 6]);
}

#[test]
fn a_rewind_sends_again_from_where_the_device_says_even_chunk_one() {
    let mut h = Harness::new(settings());
    let (id, _) = paced(&mut h, 10, 4);
    h.respond("d", id, progress(5));
    h.drain();
    h.respond("d", id, progress(1)); // it lost everything (e.g. a chunk-size change)
    assert_eq!(chunk_ids(&h.drain()), vec![1, 2, 3, 4]);
    assert!(notes(&h).iter().any(|n| n.contains("rewound to chunk 1")), "{:?}", notes(&h));
    assert_eq!(h.engine.job(id).unwrap().chunks_confirmed, Some(0));
}

#[test]
fn progress_beyond_what_was_sent_is_a_reported_protocol_error() {
    let mut h = Harness::new(settings());
    let (id, _) = paced(&mut h, 10, 4);
    h.respond("d", id, progress(9));
    assert!(h.drain().is_empty());
    let ignored = h.ignored();
    assert!(ignored.iter().any(|r| r.contains("protocol error") && r.contains("1 to 4")), "{ignored:?}");
    assert_eq!(h.engine.job(id).unwrap().chunks_confirmed, Some(0), "nothing changed");
    // FOTA_PROGRESS outside the transfer phase is ignored like any late answer.
    h.respond("d", id, progress(5));
    h.drain();
    let other = h.submit("e", 64);
    h.drain();
    h.respond("e", other, progress(1));
    assert!(h.ignored().iter().any(|r| r.contains("does not fit a job that is requesting")));
}

#[test]
fn a_stall_goes_back_to_the_confirmed_chunk_and_enough_stalls_time_the_job_out() {
    let mut h = Harness::new(settings());
    let (id, _) = paced(&mut h, 10, 4);
    h.respond("d", id, progress(3));
    assert_eq!(chunk_ids(&h.drain()), vec![5, 6]);
    h.advance(Duration::from_millis(9_999));
    assert!(h.drain().is_empty(), "not yet");
    h.advance(Duration::from_millis(1));
    assert_eq!(chunk_ids(&h.drain()), vec![3, 4, 5, 6], "go back N from the confirmed chunk");
    assert!(
        notes(&h).iter().any(|n| n.contains("sending again from chunk 3 (stall 1 of 5)")),
        "{:?}",
        notes(&h)
    );
    // Progress resets the count of stalls.
    h.respond("d", id, progress(5));
    h.drain();
    for stall in 1..5 {
        h.advance(Duration::from_secs(10));
        h.drain();
        assert_eq!(h.state(id), JobState::Transferring, "stall {stall}");
    }
    h.advance(Duration::from_secs(10));
    h.drain();
    let view = h.engine.job(id).unwrap();
    assert_eq!(view.state, JobState::TimedOut);
    assert_eq!(view.error.as_deref(), Some("the device stopped confirming chunks at 4 of 10"));
}

#[test]
fn cancel_mid_window_sends_nothing_more() {
    let mut h = Harness::new(settings());
    let (id, _) = paced(&mut h, 10, 4);
    h.engine.cancel(id, h.now).unwrap();
    h.respond("d", id, progress(5));
    h.advance(Duration::from_secs(60));
    assert!(h.drain().is_empty(), "no chunk and no go-back after a cancel");
    assert_eq!(h.state(id), JobState::Cancelled);
}

#[test]
fn a_broker_reconnect_mid_window_asks_the_device_where_to_resume() {
    let mut h = Harness::new(settings());
    let (id, _) = paced(&mut h, 10, 4);
    h.respond("d", id, progress(3));
    h.drain();
    h.engine.set_connected(false, h.now);
    h.advance(Duration::from_secs(30));
    assert!(h.drain().is_empty(), "nothing while down, and no stall counted");
    h.engine.set_connected(true, h.now);
    assert_eq!(kinds(&h.drain()), vec![PublishKind::Command(CommandType::Request)]);
    h.respond("d", id, ack(3, 2)); // it still holds 1..2; a smaller window now
    assert_eq!(chunk_ids(&h.drain()), vec![3, 4]);
    assert_eq!(h.engine.job(id).unwrap().window, Some(2));
}

#[test]
fn a_device_holding_the_whole_image_goes_straight_to_done() {
    let mut h = Harness::new(settings());
    let id = h.submit("d", 4 * 64);
    h.drain();
    h.respond("d", id, ack(5, 8));
    assert_eq!(kinds(&h.drain()), vec![PublishKind::Command(CommandType::Done)]);
    // An impossible resume point is the device's protocol error: start from chunk 1.
    let other = h.submit("e", 4 * 64);
    h.drain();
    h.respond("e", other, ack(9, 8));
    assert_eq!(chunk_ids(&h.drain()), vec![1, 2, 3, 4]);
    let said = h.events.iter().any(|e| {
        matches!(e, Event::StateChanged { job, detail: Some(d), .. } if *job == other && d.contains("protocol error"))
    });
    assert!(said, "the bad resume point is in the timeline");
}

#[test]
fn a_progress_for_a_pushed_job_mid_transfer_is_ignored() {
    let mut h = Harness::new(settings());
    let spec =
        JobSpec { chunk_interval: Some(Duration::from_secs(1)), ..JobSpec::new(dev("d"), image(3 * 64)) };
    let id = h.engine.submit(spec, h.now).unwrap();
    h.drain();
    h.respond("d", id, ACK);
    assert_eq!(chunk_ids(&h.drain()), vec![1]);
    h.respond("d", id, progress(2));
    assert!(h.ignored().iter().any(|r| r.contains("without flow control")));
    assert_eq!(h.state(id), JobState::Transferring);
}

#[test]
fn a_finished_device_paced_job_reads_the_same_after_a_restart() {
    let mut h = Harness::new(settings());
    let (id, _) = paced(&mut h, 4, 8);
    h.respond("d", id, progress(5));
    h.drain();
    h.respond("d", id, ResponseBody::DoneSuccess);
    let before = h.engine.job(id).unwrap();
    let mut restarted = Harness::new(settings());
    restarted.engine.restore(before.clone(), restarted.now);
    let after = restarted.engine.job(id).unwrap();
    assert_eq!(
        (after.chunks_done, after.chunks_confirmed, after.window),
        (before.chunks_done, before.chunks_confirmed, before.window)
    );
    assert_eq!((after.chunks_done, after.chunks_confirmed), (4, Some(4)));
}

/// A device that confirms a few chunks and then rewinds to 1, over and over (issue 20, A3).
fn rewind_loop(h: &mut Harness, id: JobId, device: &str, rounds: usize) {
    for _ in 0..rounds {
        if h.state(id).is_final() {
            return;
        }
        h.respond(device, id, progress(3));
        h.drain();
        h.respond(device, id, progress(1));
        h.drain();
    }
}

#[test]
fn a_device_that_keeps_rewinding_ends_failed_after_max_rewinds_said_once() {
    let mut s = settings();
    s.max_rewinds = 4;
    s.max_send_factor = 1000;
    let mut h = Harness::new(s);
    let (id, _) = paced(&mut h, 10, 4);
    rewind_loop(&mut h, id, "d", 50);
    assert_eq!(h.state(id), JobState::Failed);
    let error = h.engine.job(id).unwrap().error.unwrap();
    assert!(error.contains("rewound 4 times") && error.contains("jobs.max_rewinds"), "{error}");
    let rewind_notes = notes(&h).iter().filter(|n| n.contains("rewound")).count();
    assert_eq!(rewind_notes, 1, "the first rewind is said, the rest counted: {:?}", notes(&h));
}

#[test]
fn a_job_sent_more_than_max_send_factor_times_its_image_ends_failed() {
    let mut s = settings();
    s.max_send_factor = 3;
    s.max_rewinds = 1000;
    let mut h = Harness::new(s);
    let (id, _) = paced(&mut h, 10, 4);
    rewind_loop(&mut h, id, "d", 1000);
    assert_eq!(h.state(id), JobState::Failed);
    let view = h.engine.job(id).unwrap();
    assert!(view.bytes_sent <= 3 * 10 * 64, "never more than 3× the image: {}", view.bytes_sent);
    assert!(view.bytes_sent > 2 * 10 * 64, "the budget was used before giving up: {}", view.bytes_sent);
    let error = view.error.unwrap();
    assert!(error.contains("3× the 640-byte image") && error.contains("jobs.max_send_factor"), "{error}");
}

#[test]
fn what_a_reconnect_sends_again_does_not_count_against_the_budget() {
    // The broker, not the device, made Rocky send it again: a flapping broker must not fail
    // a device's update as if the device had asked for its image over and over.
    let mut s = settings();
    s.max_send_factor = 2;
    let mut h = Harness::new(s);
    let id = h.submit("d", 10 * 64);
    h.drain();
    for _ in 0..10 {
        h.respond("d", id, ACK);
        for _ in 0..6 {
            h.engine.poll_publish(h.now);
        }
        // The broker drops and returns mid-transfer: the device asks from chunk 1 again.
        h.engine.set_connected(false, h.now);
        h.engine.set_connected(true, h.now);
        h.drain();
    }
    assert_eq!(h.state(id), JobState::Requesting, "{:?}", h.engine.job(id).unwrap().error);
    assert!(
        h.engine.job(id).unwrap().bytes_sent > 2 * 10 * 64,
        "sent more than the budget, all of it resends"
    );
    h.respond("d", id, ACK);
    h.drain();
    h.respond("d", id, ResponseBody::DoneSuccess);
    assert_eq!(h.state(id), JobState::Succeeded);
}

#[test]
fn a_job_whose_last_chunks_were_not_acknowledged_asks_the_device_after_a_reconnect() {
    let mut h = Harness::new(settings());
    let id = h.submit("d", 3 * 64);
    h.drain();
    h.respond("d", id, ACK);
    h.drain_unacked(); // every chunk out, none acknowledged: FOTA_DONE waits
    assert_eq!(h.state(id), JobState::Finishing);
    h.engine.set_connected(false, h.now);
    h.engine.set_connected(true, h.now);
    let out = kinds(&h.drain());
    assert_eq!(out, vec![PublishKind::Command(CommandType::Request)], "not FOTA_DONE: chunks may be lost");
    assert_eq!(h.state(id), JobState::Requesting);
}

#[test]
fn a_rewinding_job_gives_its_slot_to_a_waiting_one() {
    let mut s = settings();
    s.max_active = 1;
    let mut h = Harness::new(s);
    let (bad, _) = paced(&mut h, 10, 4);
    let good = h.submit("good", 2 * 64);
    h.drain();
    h.respond("good", good, ack(1, 4));
    assert!(chunk_ids(&h.drain()).is_empty(), "the only slot is the rewinding job's");
    assert_eq!(h.state(good), JobState::Requesting);
    h.respond("d", bad, progress(3));
    h.drain();
    h.respond("d", bad, progress(1));
    assert_eq!(chunk_ids(&h.drain()), vec![1, 2], "the waiting job starts at once");
    assert_eq!(h.state(good), JobState::Transferring);
    assert_eq!(h.state(bad), JobState::Requesting, "the rewinder waits for a slot again");
    h.respond("good", good, progress(3));
    h.drain();
    h.respond("good", good, ResponseBody::DoneSuccess);
    assert_eq!(h.state(good), JobState::Succeeded);
    // Then the rewinder resumes from where the device said it is.
    let resumed = chunk_ids(&h.drain());
    assert_eq!(resumed, vec![1, 2, 3, 4], "{resumed:?}");
    assert_eq!(h.state(bad), JobState::Transferring);
}

#[test]
fn a_patch_sent_more_than_max_send_factor_times_says_the_patch_was_its_budget() {
    let mut s = settings();
    s.max_send_factor = 3;
    s.max_rewinds = 1000;
    let mut h = Harness::new(s);
    let base = image(4000);
    // The base with 2,000 unrelated bytes appended: a patch of some 2 KiB.
    let mut grown = base.bytes().to_vec();
    grown.extend_from_slice(&crate::sim::sample_image(2000, 77));
    let target = crate::firmware::Image::new("fw.bin", grown.into());
    let bytes = crate::firmware::build_patch(base.bytes(), target.bytes()).unwrap();
    let patch = crate::firmware::Patch {
        base: *base.sha256(),
        target: *target.sha256(),
        bytes: crate::firmware::Image::new("patch", bytes.into()),
    };
    let size = patch.size();
    assert!(size >= 10 * 64 && size < target.size(), "a patch of enough chunks to rewind over: {size}");
    let on_base = Reported {
        image: *base.sha256(),
        version: None,
        boot: None,
        confirm: false,
        manifest: false,
        seq: None,
        kids: Vec::new(),
        delta: true,
    };
    let spec =
        JobSpec { delta: Some(patch), reported: Some(on_base), ..JobSpec::new(dev("d"), target.clone()) };
    let id = h.engine.submit(spec, h.now).unwrap();
    h.drain();
    h.respond("d", id, ack(1, 4));
    h.drain();
    rewind_loop(&mut h, id, "d", 1000);
    assert_eq!(h.state(id), JobState::Failed);
    let view = h.engine.job(id).unwrap();
    assert!(view.bytes_sent <= 3 * size, "the patch's budget, not the image's: {}", view.bytes_sent);
    let error = view.error.unwrap();
    assert!(error.contains(&format!("3× the {size}-byte patch")), "{error}");
}
