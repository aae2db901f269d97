//! What broker clients and devices can do to Rocky (issue 20, part A), tried on a real
//! mosquitto with devices written from `PROTOCOL.md` alone (`crate::support::wire_device`):
//!
//! - oversized QoS 1 frames on a response topic must not silence Rocky (mosquitto 2.0 keeps
//!   the in-flight quota of what it drops), and `/healthz` must not claim health meanwhile;
//! - made-up device ids answering jobs that never existed must not fill the inventory;
//! - devices that rewind for ever must not hold every transfer slot;
//! - a second Rocky with its own store commanding the same devices is noticed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::wire_device::{Mode, WireDevice};
use crate::support::{Mosquitto, ack_frame, metric, test_image, wait_for};
use rocky::engine::{JobId, JobSpec, JobState};
use rocky::firmware::{ChunkSize, Image, Library};
use rocky::mqtt::MqttVersion;
use rocky::runtime::{ConnectionState, JobFilter, Received, Runtime, RuntimeConfig, RuntimeEvent};

/// A broker client of the test's own (MQTT 3.1.1), with room for big frames.
async fn stranger(port: u16, name: &str) -> (rumqttc::AsyncClient, Arc<Mutex<u64>>) {
    let mut options = rumqttc::MqttOptions::new(name, "127.0.0.1", port);
    options.set_max_packet_size(2 << 20, 2 << 20).set_inflight(100);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 1000);
    let acks = Arc::new(Mutex::new(0u64));
    let counted = acks.clone();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => *counted.lock().unwrap() += 1,
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    (client, acks)
}

fn started(version: MqttVersion, port: u16) -> Runtime {
    let mut config = RuntimeConfig::new(rocky::runtime::BrokerUrl::local(port));
    config.connection.version = version;
    Runtime::start(config, Arc::new(Library::new()))
}

async fn connected(runtime: &Runtime) {
    wait_for(Duration::from_secs(20), "Rocky to connect", || async {
        runtime.handle.status().await.ok().filter(|s| s.connection.is_connected()).map(|_| ())
    })
    .await;
}

/// Detection bound: a probe goes out every 2 s and is given up on after 5 s; a second of slack.
const DETECTION: Duration = Duration::from_secs(8);
/// Canaries: answers to no job, sent by the test every 200 ms with ids from here up.
const CANARY: u32 = 4_000_000_000;

async fn oversized_frames_do_not_silence_rocky(version: MqttVersion, test: &str) {
    let Some(broker) = Mosquitto::start(test) else { return };
    let runtime = started(version, broker.port);
    connected(&runtime).await;
    let device = WireDevice::start(broker.port, "dev-1", Mode::Honest).await;
    let mut events = runtime.handle.subscribe();
    let t0 = Instant::now();
    // What Rocky received and said, by time since t0: canary arrivals and disconnects.
    let arrivals: Arc<Mutex<BTreeMap<u32, Duration>>> = Arc::default();
    let drops: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let (arrived, dropped) = (arrivals.clone(), drops.clone());
    let listener = tokio::spawn(async move {
        while let Some(received) = events.recv().await {
            let Received::Event(envelope) = received else { continue };
            match &envelope.event {
                RuntimeEvent::Traffic(t) if t.job.is_some_and(|j| j.get() >= CANARY) => {
                    arrived.lock().unwrap().entry(t.job.map_or(0, JobId::get)).or_insert(t0.elapsed());
                }
                RuntimeEvent::Connection(ConnectionState::Disconnected { .. }) => {
                    dropped.lock().unwrap().push(t0.elapsed())
                }
                _ => {}
            }
        }
    });

    // The attack: 25 frames of 600 KB at QoS 1 on a response topic.
    let (attacker, acks) = stranger(broker.port, "attacker").await;
    for _ in 0..25 {
        attacker
            .publish("/fota/cmd_resp/evil", rumqttc::QoS::AtLeastOnce, false, vec![0xEE; 600 * 1000])
            .await
            .unwrap();
    }
    wait_for(Duration::from_secs(30), "the broker to take all 25 frames", || async {
        (*acks.lock().unwrap() >= 25).then_some(())
    })
    .await;

    // Canaries and health samples from here until the job is done.
    let (canary, _) = stranger(broker.port, "canary").await;
    let sent: Arc<Mutex<Vec<(u32, Duration)>>> = Arc::default();
    let sent_log = sent.clone();
    let canaries = tokio::spawn(async move {
        for i in 0.. {
            let _ = canary
                .publish("/fota/cmd_resp/canary", rumqttc::QoS::AtLeastOnce, false, ack_frame(CANARY + i))
                .await;
            sent_log.lock().unwrap().push((CANARY + i, t0.elapsed()));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let samples: Arc<Mutex<Vec<(Duration, bool)>>> = Arc::default();
    let (sampled, handle) = (samples.clone(), runtime.handle.clone());
    let health = tokio::spawn(async move {
        loop {
            if let Ok(status) = handle.status().await {
                sampled.lock().unwrap().push((t0.elapsed(), status.connection.is_connected()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });

    // A normal job then succeeds within 20 s of the attack (the probe notices in at most 7 s).
    let image = Image::new("fw.bin", test_image(64 * 1024, 3));
    let spec = JobSpec::new("dev-1".parse().unwrap(), image);
    let flooded = Instant::now();
    runtime.handle.submit(vec![spec]).await.unwrap();
    let job = wait_for(Duration::from_secs(20), "a normal job to succeed after the flood", || async {
        runtime.handle.jobs(&JobFilter::default()).into_iter().find(|j| j.state.is_final())
    })
    .await;
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    assert_eq!(device.seen().verdicts.last(), Some(&(u64::from(job.id.get()), true)));
    let took = flooded.elapsed();
    // Let the canaries sent by now have their chance to arrive.
    tokio::time::sleep(DETECTION).await;
    canaries.abort();
    health.abort();
    listener.abort();

    // /healthz never claimed health while answers were not arriving: at every sample that
    // said "connected", each canary sent more than DETECTION before it had arrived by then,
    // unless a reconnect since (a clean session) dropped it.
    let (sent, arrivals, drops, samples) = (
        sent.lock().unwrap().clone(),
        arrivals.lock().unwrap().clone(),
        drops.lock().unwrap().clone(),
        samples.lock().unwrap().clone(),
    );
    for (at, healthy) in samples.iter().filter(|(_, healthy)| *healthy) {
        for (id, sent_at) in sent.iter().filter(|(_, s)| *s + DETECTION <= *at) {
            let arrived = arrivals.get(id).is_some_and(|a| a <= at);
            let dropped = drops.iter().any(|d| d > sent_at && d <= at);
            assert!(
                arrived || dropped,
                "{healthy} at {at:?}: canary {id} sent at {sent_at:?} had not arrived (job took {took:?})"
            );
        }
    }
    let stalls = runtime.handle.metrics().render(&Default::default(), Default::default());
    eprintln!("{test}: the job succeeded {took:?} after the flood; {} canaries arrived", arrivals.len());
    assert!(!arrivals.is_empty(), "answers arrive again");
    if version == MqttVersion::V5 {
        assert!(stalls.contains("rocky_delivery_stalls_total 1"), "the stall was noticed once: {stalls}");
    }
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_do_not_silence_rocky_on_mqtt_5() {
    oversized_frames_do_not_silence_rocky(MqttVersion::V5, "oversized_frames_mqtt_5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_do_not_silence_rocky_on_mqtt_3_1_1() {
    oversized_frames_do_not_silence_rocky(MqttVersion::V311, "oversized_frames_mqtt_3_1_1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_devices_answering_no_job_take_no_inventory_room() {
    let Some(broker) = Mosquitto::start("made_up_devices") else { return };
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("test-config.toml"), "[store]\nmax_devices = 20\n").unwrap();
    let port = rocky::broker::free_port().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let _serve = crate::support::Serve::start(&broker.url().to_string(), port, data.path());
    let client = reqwest::Client::new();
    wait_for(Duration::from_secs(30), "rocky serve to be healthy", || async {
        let response = client.get(format!("{base}/healthz")).send().await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
    // 200 well-formed answers to jobs that never existed, from 200 made-up devices.
    let (attacker, acks) = stranger(broker.port, "attacker").await;
    for i in 0..200u32 {
        let topic = format!("/fota/cmd_resp/made-up-{i}");
        attacker.publish(topic, rumqttc::QoS::AtLeastOnce, false, ack_frame(i + 1)).await.unwrap();
    }
    wait_for(Duration::from_secs(30), "the broker to take them", || async {
        (*acks.lock().unwrap() >= 200).then_some(())
    })
    .await;
    let metrics = wait_for(Duration::from_secs(30), "Rocky to count all 200", || async {
        let text = client.get(format!("{base}/metrics")).send().await.ok()?.text().await.ok()?;
        (metric(&text, "rocky_responses_unsolicited_total") >= 200).then_some(text)
    })
    .await;
    assert_eq!(metric(&metrics, "rocky_responses_unsolicited_total"), 200, "counted, each once");
    let devices: serde_json::Value =
        client.get(format!("{base}/devices")).send().await.unwrap().json().await.unwrap();
    assert_eq!(devices["devices"].as_array().unwrap().len(), 0, "none stored: {devices}");
    // Every one of the 20 places is still the operator's.
    let rows: String = (0..20).map(|i| format!("real-{i},site=lab\n")).collect();
    let imported = client.post(format!("{base}/devices/import")).body(rows).send().await.unwrap();
    assert_eq!(imported.status(), 200, "{}", imported.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_that_rewind_for_ever_end_failed_and_do_not_hold_up_a_healthy_one() {
    let Some(broker) = Mosquitto::start("rewinders") else { return };
    let mut rewinders = Vec::new();
    for i in 0..64 {
        rewinders.push(WireDevice::start(broker.port, &format!("rw-{i:02}"), Mode::Rewinder).await);
    }
    let healthy = WireDevice::start(broker.port, "healthy", Mode::Honest).await;
    let runtime = started(MqttVersion::Auto, broker.port);
    connected(&runtime).await;
    let image = Image::new("fw.bin", test_image(300 * 1024, 9));
    let chunk_size = Some(ChunkSize::new(4096).unwrap());
    let specs: Vec<JobSpec> = (0..64)
        .map(|i| JobSpec { chunk_size, ..JobSpec::new(format!("rw-{i:02}").parse().unwrap(), image.clone()) })
        .collect();
    runtime.handle.submit(specs).await.unwrap();
    // Every transfer slot (64) is a rewinder's before the healthy job is made.
    wait_for(Duration::from_secs(20), "the rewinders to hold every slot", || async {
        let jobs = runtime.handle.jobs(&JobFilter::default());
        (jobs.iter().filter(|j| j.state == JobState::Transferring).count() == 64).then_some(())
    })
    .await;
    let spec = JobSpec { chunk_size, ..JobSpec::new("healthy".parse().unwrap(), image.clone()) };
    let made = Instant::now();
    runtime.handle.submit(vec![spec]).await.unwrap();
    let job = wait_for(Duration::from_secs(10), "the healthy device's job to succeed", || async {
        runtime
            .handle
            .jobs(&JobFilter::default())
            .into_iter()
            .find(|j| j.device_id.as_str() == "healthy" && j.state == JobState::Succeeded)
    })
    .await;
    eprintln!("the healthy job succeeded {:?} after it was made, among 64 rewinders", made.elapsed());
    assert_eq!(healthy.seen().verdicts, vec![(u64::from(job.id.get()), true)]);
    // Each rewinder's job ends failed, naming why, with a bounded number of bytes sent.
    let jobs = wait_for(Duration::from_secs(60), "every rewinder's job to end", || async {
        let jobs = runtime.handle.jobs(&JobFilter::default());
        jobs.iter().all(|j| j.state.is_final()).then_some(jobs)
    })
    .await;
    for job in jobs.iter().filter(|j| j.device_id.as_str() != "healthy") {
        assert_eq!(job.state, JobState::Failed, "{}: {:?}", job.device_id, job.error);
        let error = job.error.clone().unwrap_or_default();
        assert!(error.contains("jobs.max_rewinds") || error.contains("jobs.max_send_factor"), "{error}");
        assert!(job.bytes_sent <= 3 * 300 * 1024, "{}: {} bytes", job.device_id, job.bytes_sent);
    }
    drop(rewinders);
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_rocky_commanding_the_same_device_is_noticed_once() {
    let Some(broker) = Mosquitto::start("second_rocky") else { return };
    let _device = WireDevice::start(broker.port, "dev-1", Mode::Honest).await;
    let client = reqwest::Client::new();
    let mut instances = Vec::new();
    for _ in 0..2 {
        let data = tempfile::tempdir().unwrap();
        let port = rocky::broker::free_port().unwrap();
        let serve = crate::support::Serve::start(&broker.url().to_string(), port, data.path());
        let base = format!("http://127.0.0.1:{port}");
        wait_for(Duration::from_secs(30), "rocky serve to be healthy", || async {
            let response = client.get(format!("{base}/healthz")).send().await.ok()?;
            (response.status() == 200).then_some(())
        })
        .await;
        std::fs::write(data.path().join("uploads").join("fw.bin"), test_image(8 * 1024, 1)).unwrap();
        instances.push((serve, base, data));
    }
    let create = |base: &str| {
        client
            .post(format!("{base}/jobs"))
            .json(&serde_json::json!({"device_id": "dev-1", "firmware": {"path": "fw.bin"}}))
            .send()
    };
    let finished = |base: String| {
        let client = client.clone();
        async move {
            wait_for(Duration::from_secs(30), "the job to end", || async {
                let jobs: serde_json::Value =
                    client.get(format!("{base}/jobs")).send().await.ok()?.json().await.ok()?;
                let job = jobs["jobs"].as_array()?.first()?.clone();
                (job["state"] == "succeeded").then_some(job["id"].as_u64()?)
            })
            .await
        }
    };
    let (a, b) = (instances[0].1.clone(), instances[1].1.clone());
    assert_eq!(create(&b).await.unwrap().status(), 201);
    let b_job = finished(b.clone()).await;
    assert_eq!(create(&a).await.unwrap().status(), 201);
    let a_job = finished(a.clone()).await;
    assert_ne!(a_job, b_job, "two stores number their jobs from their own random points");
    // Each saw the other's commands on dev-1's topic, and says so once for the device.
    for base in [&a, &b] {
        let text = wait_for(Duration::from_secs(15), "the other's commands to be noticed", || async {
            let text = client.get(format!("{base}/metrics")).send().await.ok()?.text().await.ok()?;
            (metric(&text, "rocky_foreign_commands_total") >= 2).then_some(text)
        })
        .await;
        assert_eq!(metric(&text, "rocky_foreign_command_devices_total"), 1, "{base}: once per device");
    }
}
