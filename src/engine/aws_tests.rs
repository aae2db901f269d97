//! Jobs for devices that run AWS's OTA agent, in the engine on explicit time, walked through
//! as `../shared/aws-iot-ota/transcripts.txt` shows them: the execution on notify-next, blocks
//! as the device asks for them, self test, success; a refused signature; and what a device
//! must not be able to do (another job's stream, blocks past the end, silence).

use std::time::Duration;

use super::tests::{Harness, dev, image, settings};
use super::*;
use crate::protocol::aws::{BlockRequest, ExecutionUpdate, decode_update};
use serde_json::Value;

const THING: &str = "awsota-smoke-thing-1";

fn aws() -> AwsJob {
    AwsJob::new(
        "certs/codesign.crt".into(),
        "received_firmware.bin".into(),
        "MEUCIEHOoCT+Sw1XrAMLWPagyCA39AINYtD3ImpDupp5psyZAiEAjzc+cYmMTr9hETYKfQJrzxda2JfLFo80Cvrnib0iNoY="
            .into(),
    )
}

fn request(bitmap: &[u8], count: u32) -> BlockRequest {
    BlockRequest {
        client_token: Some("rdy".into()),
        file_id: 0,
        block_size: 4096,
        offset: 0,
        bitmap: bitmap.to_vec(),
        count,
    }
}

fn update(json: &str) -> ExecutionUpdate {
    decode_update(json.as_bytes()).unwrap()
}

impl Harness {
    fn submit_aws(&mut self, len: usize) -> JobId {
        let spec = JobSpec { aws: Some(aws()), ..JobSpec::new(dev(THING), image(len)) };
        self.engine.submit(spec, self.now).unwrap()
    }
}

fn json(publish: &Publish) -> Value {
    serde_json::from_slice(&publish.payload).unwrap()
}

#[test]
fn a_job_goes_as_the_transcript_shows_through_self_test_to_succeeded() {
    let mut h = Harness::new(settings());
    let id = h.submit_aws(18000);
    let name = aws_job_name(id);
    // The execution goes out on notify-next, QUEUED, with the job document.
    let sent = h.drain();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].topic, format!("$aws/things/{THING}/jobs/notify-next"));
    assert_eq!(sent[0].kind, PublishKind::AwsExecution);
    let execution = json(&sent[0]);
    assert_eq!(execution["execution"]["jobId"], name.as_str());
    assert_eq!(execution["execution"]["status"], "QUEUED");
    let file = &execution["execution"]["jobDocument"]["afr_ota"]["files"][0];
    assert_eq!(file["filesize"], 18000);
    assert_eq!(file["certfile"], "certs/codesign.crt");
    assert_eq!(file["sig-sha256-ecdsa"], aws().signature.as_str());
    assert_eq!(execution["execution"]["jobDocument"]["afr_ota"]["streamname"], name.as_str());
    assert_eq!(h.state(id), JobState::Requesting);
    // Its $next/get gets it again at once.
    assert!(h.engine.aws_next_get(&dev(THING), h.now));
    assert_eq!(h.drain().len(), 1);

    // Blocks 0-4 of 5 asked for: five blocks, the last one short, on the stream's data topic.
    h.engine.aws_blocks(&dev(THING), &name, &request(&[0x1f], 8), h.now).unwrap();
    let blocks = h.drain();
    assert_eq!(h.state(id), JobState::Transferring);
    let indices: Vec<_> = blocks.iter().map(|p| p.kind).collect();
    assert_eq!(indices, (0..5).map(|index| PublishKind::AwsBlock { index, total: 5 }).collect::<Vec<_>>());
    assert!(blocks.iter().all(|p| p.topic == format!("$aws/things/{THING}/streams/{name}/data/cbor")));
    assert_eq!(blocks.iter().map(|p| p.payload.len()).collect::<Vec<_>>(), [4113, 4113, 4113, 4113, 1633]);
    let view = h.engine.job(id).unwrap();
    assert_eq!((view.chunks_done, view.chunks_total, view.bytes_sent), (5, 5, 18000));

    // Progress, then verified and rebooting: confirming, and its transfer slot is free.
    h.engine
        .aws_update(
            &dev(THING),
            &name,
            update(r#"{"status":"IN_PROGRESS","statusDetails":{"receive":"1/5"}}"#),
            h.now,
        )
        .unwrap();
    let ready = r#"{"status":"IN_PROGRESS","statusDetails":{"self_test":"ready","updatedBy":"0x00090002"}}"#;
    h.engine.aws_update(&dev(THING), &name, update(ready), h.now).unwrap();
    h.drain();
    assert_eq!(h.state(id), JobState::Confirming);
    // After its reboot it asks again and gets the job IN_PROGRESS with what it said last.
    h.advance(Duration::from_secs(5));
    assert!(h.engine.aws_next_get(&dev(THING), h.now));
    let again = json(&h.drain()[0]);
    assert_eq!(again["execution"]["status"], "IN_PROGRESS");
    assert_eq!(again["execution"]["statusDetails"]["self_test"], "ready");
    assert_eq!(again["execution"]["versionNumber"], 3, "one more at each update");
    let active =
        r#"{"status":"IN_PROGRESS","statusDetails":{"self_test":"active","updatedBy":"0x00090003"}}"#;
    h.engine.aws_update(&dev(THING), &name, update(active), h.now).unwrap();
    let done =
        r#"{"status":"SUCCEEDED","statusDetails":{"reason":"accepted  v0.9.3","updatedBy":"  v0.9.2"}}"#;
    h.engine.aws_update(&dev(THING), &name, update(done), h.now).unwrap();
    h.drain();
    assert_eq!(h.state(id), JobState::Succeeded);
    assert!(h.engine.job(id).unwrap().confirmed_at.is_some());
    // Nothing more for it: the runtime answers "no job".
    assert!(!h.engine.aws_next_get(&dev(THING), h.now));
}

#[test]
fn a_refused_signature_fails_the_job_with_the_agents_reason_in_words() {
    let mut h = Harness::new(settings());
    let id = h.submit_aws(18000);
    let name = aws_job_name(id);
    h.drain();
    h.engine.aws_blocks(&dev(THING), &name, &request(&[0x1f], 8), h.now).unwrap();
    h.drain();
    let failed = r#"{"status":"FAILED","statusDetails":{"reason":"0x000000e3: 0x00000000"}}"#;
    h.engine.aws_update(&dev(THING), &name, update(failed), h.now).unwrap();
    h.drain();
    let view = h.engine.job(id).unwrap();
    assert_eq!(view.state, JobState::Failed);
    assert_eq!(view.error.as_deref(), Some("the signature check failed (0x000000e3: 0x00000000)"));
}

#[test]
fn what_is_not_the_devices_current_job_changes_nothing() {
    let mut h = Harness::new(settings());
    let id = h.submit_aws(18000);
    let name = aws_job_name(id);
    h.drain();
    let other = dev("other-thing");
    let refused = h.engine.aws_blocks(&other, &name, &request(&[0x1f], 8), h.now).unwrap_err();
    assert!(refused.contains("belongs to device"), "{refused}");
    assert!(h.engine.aws_blocks(&dev(THING), "rocky-999999", &request(&[1], 1), h.now).is_err());
    assert!(h.engine.aws_blocks(&dev(THING), "someone-elses", &request(&[1], 1), h.now).is_err());
    let mut wrong_file = request(&[1], 1);
    wrong_file.file_id = 3;
    assert!(h.engine.aws_blocks(&dev(THING), &name, &wrong_file, h.now).unwrap_err().contains("file 3"));
    assert!(h.drain().is_empty(), "nothing sent for any of them");
    assert_eq!(h.state(id), JobState::Requesting);
    // Blocks past the end are said and not sent; the ones inside are.
    let said = h.engine.aws_blocks(&dev(THING), &name, &request(&[0xff, 0xff], 16), h.now).unwrap_err();
    assert!(said.contains("11 blocks asked for past the end of the 5-block file"), "{said}");
    assert_eq!(h.drain().len(), 5);
    // A job of Rocky's own protocol is not an AWS device's.
    let rocky = h.submit("plain-dev", 100);
    h.drain();
    let said = h
        .engine
        .aws_update(&dev("plain-dev"), &aws_job_name(rocky), update(r#"{"status":"SUCCEEDED"}"#), h.now)
        .unwrap_err();
    assert!(said.contains("not an AWS device's"), "{said}");
}

#[test]
fn a_silent_device_times_out_offers_and_a_stalled_transfer() {
    let mut s = settings();
    s.request_attempts = 2;
    s.aws_device_wait = Duration::ZERO; // no waiting for an offline device: as Rocky's own
    let mut h = Harness::new(s.clone());
    let id = h.submit_aws(18000);
    assert_eq!(h.drain().len(), 1);
    h.advance(s.request_timeout);
    assert_eq!(h.drain().len(), 1, "offered again after the request timeout");
    h.advance(s.request_timeout);
    h.drain();
    let view = h.engine.job(id).unwrap();
    assert_eq!(view.state, JobState::TimedOut);
    assert!(view.error.unwrap().contains("job offers (notify-next)"));

    let id = h.submit_aws(18000);
    let name = aws_job_name(id);
    h.drain();
    h.engine.aws_blocks(&dev(THING), &name, &request(&[0x03], 2), h.now).unwrap();
    assert_eq!(h.drain().len(), 2);
    // The agent asks again 10 s after its last block: silence is judged over 30 s at least.
    let silence = Duration::from_secs(30);
    h.advance(silence - Duration::from_millis(1));
    assert_eq!(h.state(id), JobState::Transferring);
    h.advance(Duration::from_millis(1));
    h.drain();
    let view = h.engine.job(id).unwrap();
    assert_eq!(view.state, JobState::TimedOut);
    assert!(view.error.unwrap().contains("asked for no block"), "{:?}", h.engine.job(id));
}

#[test]
fn a_device_that_asks_again_and_again_is_stopped_by_the_send_budget() {
    let mut h = Harness::new(settings()); // max_send_factor 3
    let id = h.submit_aws(18000);
    let name = aws_job_name(id);
    h.drain();
    for _ in 0..4 {
        let _ = h.engine.aws_blocks(&dev(THING), &name, &request(&[0x1f], 8), h.now);
        h.drain();
    }
    let view = h.engine.job(id).unwrap();
    assert_eq!(view.state, JobState::Failed);
    assert!(view.bytes_sent <= 3 * 18000, "{}", view.bytes_sent);
    assert!(view.error.unwrap().contains("max_send_factor"));
}

#[test]
fn a_job_without_a_signature_or_too_large_for_the_agent_is_refused_at_creation() {
    let mut h = Harness::new(settings());
    let unsigned = AwsJob { signature: String::new(), ..aws() };
    let spec = JobSpec { aws: Some(unsigned), ..JobSpec::new(dev(THING), image(100)) };
    let refused = h.engine.submit(spec, h.now).unwrap_err().to_string();
    assert!(refused.contains("no signature") && refused.contains(THING), "{refused}");
    let huge = AwsJob { cert_file: "c".repeat(6000), ..aws() };
    let spec = JobSpec { aws: Some(huge), ..JobSpec::new(dev(THING), image(100)) };
    assert!(h.engine.submit(spec, h.now).unwrap_err().to_string().contains("5626"));
}

#[test]
fn cancel_ends_it_and_the_device_then_hears_of_no_job() {
    let mut h = Harness::new(settings());
    let id = h.submit_aws(18000);
    h.drain();
    h.engine.cancel(id, h.now).unwrap();
    h.drain();
    assert_eq!(h.state(id), JobState::Cancelled);
    assert!(!h.engine.aws_next_get(&dev(THING), h.now));
    let late = h.engine.aws_blocks(&dev(THING), &aws_job_name(id), &request(&[1], 1), h.now).unwrap_err();
    assert!(late.contains("already cancelled"), "{late}");
}

#[test]
fn aws_transfers_wait_for_a_transfer_slot_like_any_other() {
    let mut s = settings();
    s.max_active = 1;
    let mut h = Harness::new(s);
    let first = h.submit_aws(18000);
    let spec = JobSpec { aws: Some(aws()), ..JobSpec::new(dev("thing-2"), image(9000)) };
    let second = h.engine.submit(spec, h.now).unwrap();
    assert_eq!(h.drain().len(), 2, "both offered");
    h.engine.aws_blocks(&dev(THING), &aws_job_name(first), &request(&[0x1f], 8), h.now).unwrap();
    h.engine.aws_blocks(&dev("thing-2"), &aws_job_name(second), &request(&[0x07], 8), h.now).unwrap();
    let sent = h.drain();
    assert!(sent.iter().all(|p| p.job == first), "one slot: the first job's blocks only");
    assert_eq!(h.state(second), JobState::Requesting);
    let ready = r#"{"status":"IN_PROGRESS","statusDetails":{"self_test":"ready"}}"#;
    h.engine.aws_update(&dev(THING), &aws_job_name(first), update(ready), h.now).unwrap();
    let sent = h.drain();
    assert_eq!(h.state(second), JobState::Transferring, "the slot went to the waiting job");
    assert_eq!(sent.iter().filter(|p| p.job == second).count(), 3, "the blocks it asked for");
    // Its transfer is watched from then on.
    h.advance(Duration::from_secs(30));
    h.drain();
    assert_eq!(h.state(second), JobState::TimedOut);
}

#[test]
fn a_restored_aws_job_is_offered_again_as_an_aws_job_keeping_its_queued_time() {
    let mut h = Harness::new(settings());
    let mut view = super::tests::restored(JobId::new(7), THING, JobState::Requesting, h.now);
    view.image = image(18000);
    view.aws = Some(AwsJob { queued_at: 1_796_281_009, ..aws() });
    h.engine.restore(view, h.now);
    let sent = h.drain();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].kind, PublishKind::AwsExecution);
    assert_eq!(json(&sent[0])["execution"]["jobId"], "rocky-7");
    assert_eq!(json(&sent[0])["execution"]["queuedAt"], 1_796_281_009u64, "the queued time it had");
    assert_eq!(h.engine.job(JobId::new(7)).unwrap().aws.unwrap().queued_at, 1_796_281_009);
    h.engine.aws_blocks(&dev(THING), "rocky-7", &request(&[0x1f], 8), h.now).unwrap();
    assert_eq!(h.drain().len(), 5);
}

/// The agent drops its download at any message on notify-next while it downloads (ota.c:
/// jobNotificationHandler): a job restored from a transfer lets the device ask for blocks
/// first, and is offered only if it does not.
#[test]
fn a_job_restored_from_a_transfer_waits_for_the_device_before_offering() {
    let s = settings();
    let mut h = Harness::new(s.clone());
    let mut view = super::tests::restored(JobId::new(7), THING, JobState::Transferring, h.now);
    view.image = image(18000);
    view.aws = Some(aws());
    h.engine.restore(view, h.now);
    assert!(h.drain().is_empty(), "no offer at once");
    h.advance(Duration::from_secs(10));
    // The agent asks again for what it misses: blocks 3 and 4.
    h.engine.aws_blocks(&dev(THING), "rocky-7", &request(&[0x18], 8), h.now).unwrap();
    let sent = h.drain();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent.iter().all(|p| matches!(p.kind, PublishKind::AwsBlock { .. })));
    assert_eq!(h.state(JobId::new(7)), JobState::Transferring);
    let view = h.engine.job(JobId::new(7)).unwrap();
    assert_eq!((view.chunks_done, view.chunks_total), (5, 5), "3 held by its word, 2 sent");
    // A device that begins its download again (it asks for every block) starts from none.
    h.engine.aws_blocks(&dev(THING), "rocky-7", &request(&[0x1f], 1), h.now).unwrap();
    h.drain();
    assert_eq!(h.engine.job(JobId::new(7)).unwrap().chunks_done, 1);

    // A device that does not ask is offered the job after one request timeout.
    let mut view = super::tests::restored(JobId::new(8), "thing-2", JobState::Transferring, h.now);
    view.image = image(18000);
    view.aws = Some(aws());
    h.engine.restore(view, h.now);
    assert!(h.drain().iter().all(|p| p.job != JobId::new(8)));
    h.advance(s.request_timeout);
    let sent = h.drain();
    assert_eq!(sent.iter().filter(|p| p.job == JobId::new(8)).count(), 1, "offered now");
}

#[test]
fn a_broker_reconnect_mid_transfer_sends_no_offer_until_the_device_has_had_time_to_ask() {
    let mut s = settings();
    s.request_timeout = Duration::from_secs(2); // below the agent's 10 s: the wait is 15 s still
    let mut h = Harness::new(s);
    let id = h.submit_aws(18000);
    let name = aws_job_name(id);
    h.drain();
    h.engine.aws_blocks(&dev(THING), &name, &request(&[0x1f], 2), h.now).unwrap();
    assert_eq!(h.drain().len(), 2);
    h.engine.set_connected(false, h.now);
    h.advance(Duration::from_secs(5));
    h.engine.set_connected(true, h.now);
    assert!(h.drain().is_empty(), "nothing on notify-next: the agent would start over");
    // A device whose connection held asks again for what it misses: the transfer goes on.
    h.advance(Duration::from_secs(10));
    assert!(h.drain().is_empty());
    h.engine.aws_blocks(&dev(THING), &name, &request(&[0x1c], 8), h.now).unwrap();
    assert_eq!(h.drain().len(), 3, "the blocks it still misses");
    assert_eq!(h.state(id), JobState::Transferring);

    // A device whose own connection dropped asked for its job before Rocky was back, and
    // waits: after the 15 s it is given, its job is offered again.
    h.engine.set_connected(false, h.now);
    h.engine.set_connected(true, h.now);
    h.advance(Duration::from_secs(14));
    assert!(h.drain().is_empty());
    h.advance(Duration::from_secs(1));
    let sent = h.drain();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].kind, PublishKind::AwsExecution);
    // Its ask after that is answered at once.
    assert!(h.engine.aws_next_get(&dev(THING), h.now));
    assert_eq!(h.drain().len(), 1);
}

#[test]
fn an_offline_device_s_job_waits_for_it_to_ask_without_holding_a_request_slot() {
    let mut s = settings();
    s.request_attempts = 2;
    s.max_requests = 1;
    s.aws_device_wait = Duration::from_secs(3600);
    let mut h = Harness::new(s.clone());
    let offline = h.submit_aws(18000);
    let spec = JobSpec { aws: Some(aws()), ..JobSpec::new(dev("thing-2"), image(9000)) };
    let second = h.engine.submit(spec, h.now).unwrap();
    assert_eq!(h.drain().len(), 1, "one request slot: the first job's offer only");
    h.advance(s.request_timeout);
    h.drain();
    assert_eq!(h.state(second), JobState::Queued);
    h.advance(s.request_timeout);
    let sent = h.drain();
    // Two offers unanswered: the first job waits for its device, and its slot went on.
    assert_eq!(h.state(offline), JobState::Requesting);
    assert!(
        h.events.iter().any(|e| matches!(e, Event::Note { job, text, state: JobState::Requesting, .. }
        if *job == offline && text.contains("waits up to 3600 s"))),
        "said as the requesting job it is"
    );
    assert_eq!(h.state(second), JobState::Requesting);
    assert_eq!(sent.iter().filter(|p| p.job == second).count(), 1);
    assert!(!h.engine.is_idle());
    // Nothing more is offered to it while it waits.
    h.advance(Duration::from_secs(600));
    assert!(h.drain().iter().all(|p| p.job != offline));
    // The device connects and asks: offered at once, and its download goes as any other.
    assert!(h.engine.aws_next_get(&dev(THING), h.now));
    let sent = h.drain();
    assert_eq!(sent.iter().filter(|p| p.job == offline).count(), 1);
    h.engine.aws_blocks(&dev(THING), &aws_job_name(offline), &request(&[0x1f], 8), h.now).unwrap();
    assert_eq!(h.drain().len(), 5);
    assert_eq!(h.state(offline), JobState::Transferring);

    // A device that never comes back: timed out once the wait is over, saying so.
    h.advance(s.request_timeout * 2); // (one tick: the second job's retry, made now, is due later)
    h.advance(s.request_timeout * 2);
    let spec = JobSpec { aws: Some(aws()), ..JobSpec::new(dev("thing-3"), image(9000)) };
    let gone = h.engine.submit(spec, h.now).unwrap();
    h.advance(s.request_timeout);
    h.advance(s.request_timeout);
    h.drain();
    assert_eq!(h.state(gone), JobState::Requesting);
    h.advance(Duration::from_secs(3599));
    assert_eq!(h.state(gone), JobState::Requesting);
    h.advance(Duration::from_secs(1));
    h.drain();
    let view = h.engine.job(gone).unwrap();
    assert_eq!(view.state, JobState::TimedOut);
    assert!(view.error.unwrap().contains("did not ask for its job within 3600 s"));
    // Cancelling a waiting job frees what it held (nothing) and its device.
    let spec = JobSpec { aws: Some(aws()), ..JobSpec::new(dev("thing-4"), image(9000)) };
    let cancelled = h.engine.submit(spec, h.now).unwrap();
    h.advance(s.request_timeout);
    h.advance(s.request_timeout);
    assert!(h.engine.job(cancelled).unwrap().aws.is_some());
    h.engine.cancel(cancelled, h.now).unwrap();
    assert!(!h.engine.aws_next_get(&dev("thing-4"), h.now));
    assert!(h.engine.is_idle(), "nothing waits any more");
}

#[test]
fn a_block_size_over_the_brokers_limit_fails_the_job_and_details_are_bounded() {
    let mut h = Harness::new(settings());
    h.engine.set_broker_max_packet(Some(2048));
    let id = h.submit_aws(18000);
    h.drain();
    let refused =
        h.engine.aws_blocks(&dev(THING), &aws_job_name(id), &request(&[0x1f], 8), h.now).unwrap_err();
    assert!(refused.contains("broker"), "{refused}");
    assert!(h.drain().is_empty());
    let view = h.engine.job(id).unwrap();
    assert_eq!(view.state, JobState::Failed);
    assert!(view.error.unwrap().contains("maximum packet size of 2048"));

    // Only the self-test words are kept and given back, cut to 64 bytes.
    let mut h = Harness::new(settings());
    let id = h.submit_aws(18000);
    let name = aws_job_name(id);
    h.drain();
    h.engine.aws_blocks(&dev(THING), &name, &request(&[0x1f], 8), h.now).unwrap();
    h.drain();
    let long = "x".repeat(1000);
    let ready = format!(
        r#"{{"status":"IN_PROGRESS","statusDetails":{{"self_test":"ready","updatedBy":"{long}","note":"{long}"}}}}"#
    );
    h.engine.aws_update(&dev(THING), &name, update(&ready), h.now).unwrap();
    assert!(h.engine.aws_next_get(&dev(THING), h.now));
    let again = json(&h.drain()[0]);
    let details = again["execution"]["statusDetails"].as_object().unwrap().clone();
    assert_eq!(details.len(), 2, "{details:?}");
    assert_eq!(details["updatedBy"].as_str().unwrap().len(), 64);
}

#[test]
fn a_device_that_asks_over_and_over_shares_one_offer_and_chunks_go_on() {
    let mut h = Harness::new(settings());
    let aws = h.submit_aws(18000);
    h.drain();
    let rocky = h.submit("plain-dev", 64 * 20);
    let out = h.drain_unacked();
    assert!(out.iter().any(|p| p.job == rocky), "the plain job got going");
    h.respond(
        "plain-dev",
        rocky,
        crate::protocol::ResponseBody::RequestAck { next_chunk: None, window: None },
    );
    for _ in 0..100 {
        assert!(h.engine.aws_next_get(&dev(THING), h.now));
    }
    let out = h.drain();
    let offers = out.iter().filter(|p| p.job == aws).count();
    assert_eq!(offers, 1, "a hundred asks, one offer");
    assert_eq!(out.iter().filter(|p| p.job == rocky).count(), 21, "every chunk and the DONE still went");
}

#[test]
fn a_confirming_job_restored_gives_the_device_its_self_test_words_back() {
    let mut h = Harness::new(settings());
    let mut view = super::tests::restored(JobId::new(9), THING, JobState::Confirming, h.now);
    view.image = image(18000);
    let mut stored = aws();
    stored.details.insert("self_test".into(), "ready".into());
    stored.details.insert("junk".into(), "x".repeat(5000));
    stored.version = 2;
    view.aws = Some(stored);
    h.engine.restore(view, h.now);
    h.drain();
    assert_eq!(h.state(JobId::new(9)), JobState::Confirming);
    assert!(h.engine.aws_next_get(&dev(THING), h.now));
    let again = json(&h.drain()[0]);
    assert_eq!(again["execution"]["status"], "IN_PROGRESS");
    assert_eq!(again["execution"]["statusDetails"], serde_json::json!({"self_test": "ready"}));
    assert_eq!(again["execution"]["versionNumber"], 2);
    let done = r#"{"status":"SUCCEEDED","statusDetails":{"reason":"accepted"}}"#;
    h.engine.aws_update(&dev(THING), "rocky-9", update(done), h.now).unwrap();
    h.drain();
    assert_eq!(h.state(JobId::new(9)), JobState::Succeeded);
    let ended = h.engine.job(JobId::new(9)).unwrap().aws.unwrap();
    assert_eq!(ended.version, 3);
    assert!(ended.details.is_empty(), "an ended job keeps no self-test words: {:?}", ended.details);
}

#[test]
fn a_self_test_the_device_rejects_rolls_the_job_back_and_a_failed_download_is_not_a_rollback() {
    let mut h = Harness::new(settings());
    let id = h.submit_aws(18000);
    let name = aws_job_name(id);
    h.drain();
    h.engine.aws_blocks(&dev(THING), &name, &request(&[0x1f], 8), h.now).unwrap();
    h.drain();
    let ready = r#"{"status":"IN_PROGRESS","statusDetails":{"self_test":"ready","updatedBy":"0x00090002"}}"#;
    h.engine.aws_update(&dev(THING), &name, update(ready), h.now).unwrap();
    assert_eq!(h.state(id), JobState::Confirming);
    let rejected = r#"{"status":"FAILED","statusDetails":{"reason":"rejected: 0x00000000"}}"#;
    h.engine.aws_update(&dev(THING), &name, update(rejected), h.now).unwrap();
    assert_eq!(h.state(id), JobState::RolledBack);

    // The same words before the image was verified: the download failed, nothing rolled back.
    let other = h.submit_aws(18000);
    h.drain();
    h.engine.aws_blocks(&dev(THING), &aws_job_name(other), &request(&[0x1f], 8), h.now).unwrap();
    h.engine.aws_update(&dev(THING), &aws_job_name(other), update(rejected), h.now).unwrap();
    assert_eq!(h.state(other), JobState::Failed);
}

#[test]
fn a_device_asking_as_the_agent_with_a_rocky_protocol_job_is_told_once_how_to_fix_it() {
    let mut h = Harness::new(settings());
    let id = h.submit(THING, 640);
    h.drain();
    for _ in 0..3 {
        assert!(!h.engine.aws_next_get(&dev(THING), h.now), "no AWS job: the device hears \"no job\"");
    }
    h.drain();
    let hints: Vec<_> = h
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Note { job, text, .. } if *job == id => Some(text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(hints.len(), 1, "said once: {hints:?}");
    assert!(hints[0].contains(&format!("rocky devices label {THING} profile=aws-iot-ota")), "{}", hints[0]);
}
