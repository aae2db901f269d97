//! Devices' statuses (the status extension, issue 22) through a real mosquitto, published by a
//! client of the test's own with the bytes `PROTOCOL.md`'s vectors give: a retained status is
//! learnt by a Rocky that starts later, lands on the device when it enters the inventory, is
//! stored and outlives a SIGKILL, and the listing selects by it; bad statuses and made-up ids
//! change nothing and are counted.

use std::time::Duration;

use crate::support::{Mosquitto, Serve, wait_for};
use reqwest::StatusCode;
use rocky::broker::free_port;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::{Value, json};

fn vectors() -> Value {
    serde_json::from_str(include_str!("data/protocol_vectors.json")).unwrap()
}

/// A plain MQTT client of the test's own, its event loop polled in the background.
async fn publisher(port: u16) -> AsyncClient {
    let mut options = MqttOptions::new("status-publisher", "127.0.0.1", port);
    options.set_max_packet_size(2 << 20, 2 << 20);
    let (client, mut eventloop) = AsyncClient::new(options, 1024);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    client
}

struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self.client.get(format!("{}{path}", self.base)).send().await.unwrap();
        (response.status(), response.json().await.unwrap_or_default())
    }

    async fn healthy(&self) {
        wait_for(Duration::from_secs(30), "rocky serve to be healthy", || async {
            let response = self.client.get(format!("{}/healthz", self.base)).send().await.ok()?;
            (response.status() == StatusCode::OK).then_some(())
        })
        .await;
    }

    /// `rocky_statuses_total{outcome="…"}` from `/metrics`.
    async fn statuses(&self, outcome: &str) -> u64 {
        let text =
            self.client.get(format!("{}/metrics", self.base)).send().await.unwrap().text().await.unwrap();
        let line = format!("rocky_statuses_total{{outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(line.as_str()))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    async fn running(&self, device: &str) -> Value {
        self.get(&format!("/devices/{device}")).await.1["running"].clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_reach_the_inventory_survive_a_restart_and_bad_ones_change_nothing() {
    let Some(mosquitto) = Mosquitto::start("device_status") else { return };
    let vectors = vectors();
    let vector = &vectors["extensions"]["status"];
    let status = hex::decode(vector["cbor_hex"].as_str().unwrap()).unwrap();
    let mqtt = publisher(mosquitto.port).await;
    // Retained before any Rocky runs: a Rocky that starts later learns it at subscription.
    mqtt.publish("/fota/status/dev-07", QoS::AtLeastOnce, true, status.clone()).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let broker = mosquitto.url().to_string();
    let mut serve = Serve::start(&broker, port, data.path());
    let api = Api { base: format!("http://127.0.0.1:{port}"), client: reqwest::Client::new() };
    api.healthy().await;
    wait_for(Duration::from_secs(10), "the retained status to arrive", || async {
        (api.statuses("unlisted").await == 1).then_some(())
    })
    .await;
    // Not in the inventory until the operator registers it (or sends it a job): a status adds
    // no device. Registered, it has its status at once.
    assert_eq!(api.get("/devices/dev-07").await.0, StatusCode::NOT_FOUND);
    let put =
        api.client.put(format!("{}/devices/dev-07", api.base)).json(&json!({"labels": {}})).send().await;
    assert!(put.unwrap().status().is_success());
    let running = api.running("dev-07").await;
    assert_eq!(
        running["image"], "315f5bdb76d078c43b8ac0064e4a0164612b1fce77c869345bfc94c75894edd3",
        "{running}"
    );
    assert_eq!(
        (running["version"].as_str(), running["boot"].as_u64(), running["seq"].as_u64()),
        (Some("2.0.3"), Some(17), Some(3))
    );
    assert_eq!(running["caps"], json!(["resume", "flow", "reasons", "confirm", "manifest", "delta-bsdiff4"]));
    assert!(running["reported_at"].as_u64().is_some_and(|t| t > 1_700_000_000_000), "{running}");
    // The listing selects by what devices run.
    let ids = |body: Value| -> Vec<String> {
        body["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["device_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let put =
        api.client.put(format!("{}/devices/dev-08", api.base)).json(&json!({"labels": {}})).send().await;
    assert!(put.unwrap().status().is_success());
    assert_eq!(ids(api.get("/devices?version=2.0.3").await.1), ["dev-07"]);
    assert_eq!(
        ids(api.get(&format!("/devices?running={}", running["image"].as_str().unwrap())).await.1),
        ["dev-07"]
    );
    assert_eq!(
        ids(api.get("/devices?version_not=2.0.3").await.1),
        ["dev-08"],
        "no status: not known to run it"
    );
    let (status_code, body) = api.get("/devices?running=zz").await;
    assert_eq!(status_code, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("running"), "{body}");

    // Bad statuses: every invalid vector, 2 KiB (over a status's 1,024 bytes) and 1 MiB. Counted;
    // the last good one stays. Rocky asks the broker (MQTT 5) for nothing over 64 KiB, so the
    // 1 MiB one never reaches it: it must not cost Rocky its connection either.
    let mut bad: Vec<Vec<u8>> = vectors["extensions"]["status_invalid"]
        .as_array()
        .unwrap()
        .iter()
        .map(|case| hex::decode(case["cbor_hex"].as_str().unwrap()).unwrap())
        .collect();
    bad.push(vec![0xa1; 2048]);
    let counted = bad.len() as u64;
    bad.push(vec![0xa1; 1 << 20]);
    for payload in &bad {
        mqtt.publish("/fota/status/dev-07", QoS::AtLeastOnce, false, payload.clone()).await.unwrap();
    }
    wait_for(Duration::from_secs(20), "the bad statuses to be counted", || async {
        (api.statuses("invalid").await == counted).then_some(())
    })
    .await;
    let (code, health) = api.get("/healthz").await;
    assert_eq!((code, &health["connected"]), (StatusCode::OK, &json!(true)), "{health}");
    assert_eq!(api.running("dev-07").await, running, "a bad status changes nothing");

    // 100,000 made-up ids: kept aside up to their bound, then only counted; none enters the
    // inventory.
    let strangers = 100_000;
    // In rounds of 1,000, each counted before the next: a QoS 0 flood faster than Rocky reads
    // it is the broker's to drop (mosquitto queues 1,000 a client), and this counts exactly.
    let counted = || async { api.statuses("unlisted").await + api.statuses("refused").await };
    for round in 0..strangers / 1_000 {
        for n in round * 1_000..(round + 1) * 1_000 {
            mqtt.publish(format!("/fota/status/made-up-{n}"), QoS::AtMostOnce, false, status.clone())
                .await
                .unwrap();
        }
        // Every made-up one so far, and dev-07's first.
        let sent = (round + 1) * 1_000;
        wait_for(Duration::from_secs(60), "every made-up status to be counted", || async {
            (counted().await > sent as u64).then_some(())
        })
        .await;
    }
    assert_eq!(api.statuses("refused").await, (strangers - rocky::inventory::MAX_UNLISTED_STATUSES) as u64);
    assert_eq!(ids(api.get("/devices").await.1), ["dev-07", "dev-08"], "statuses add no device");

    // On disk: a SIGKILL and a cleared retained message later, the stored status is still known.
    let db = data.path().join("rocky.db");
    wait_for(Duration::from_secs(10), "the status to be written", || async {
        let conn =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
        let stored: Option<String> =
            conn.query_row("SELECT running FROM devices WHERE id = 'dev-07'", [], |r| r.get(0)).ok()?;
        stored.filter(|s| s.contains("2.0.3"))
    })
    .await;
    serve.kill9();
    mqtt.publish("/fota/status/dev-07", QoS::AtLeastOnce, true, Vec::new()).await.unwrap();
    let mut serve = Serve::start(&broker, port, data.path());
    api.healthy().await;
    assert_eq!(api.running("dev-07").await, running, "the stored status came back");
    // A newer status replaces it; an empty retained message clears it.
    let newer = rocky::protocol::DeviceStatus {
        image: [9; 32],
        version: Some("2.1.0".into()),
        boot: Some(18),
        seq: Some(4),
        caps: vec!["confirm".into()],
        kids: Vec::new(),
    };
    mqtt.publish("/fota/status/dev-07", QoS::AtLeastOnce, true, rocky::protocol::encode_status(&newer))
        .await
        .unwrap();
    wait_for(Duration::from_secs(10), "the newer status", || async {
        (api.running("dev-07").await["version"] == "2.1.0").then_some(())
    })
    .await;
    mqtt.publish("/fota/status/dev-07", QoS::AtLeastOnce, true, Vec::new()).await.unwrap();
    wait_for(Duration::from_secs(10), "the status to clear", || async {
        api.running("dev-07").await.is_null().then_some(())
    })
    .await;
    serve.kill9();
}
