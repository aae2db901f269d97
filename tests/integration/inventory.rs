//! The device inventory with real processes: `rocky serve` on a real broker, devices registered
//! and imported over HTTP and with `rocky devices`, filtered, learned from the wire (last seen,
//! last job, last image that succeeded), and all of it back after a SIGKILL and a restart.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::{Serve, test_image, wait_for};
use reqwest::StatusCode;
use rocky::broker::{EmbeddedBroker, free_port};
use rocky::sim::{Fleet, FleetConfig};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_rocky");

async fn healthy(client: &reqwest::Client, base: &str) {
    wait_for(Duration::from_secs(30), "rocky serve to be healthy", || async {
        let response = client.get(format!("{base}/healthz")).send().await.ok()?;
        (response.status() == StatusCode::OK).then_some(())
    })
    .await;
}

async fn ids(client: &reqwest::Client, url: String) -> Vec<String> {
    let body: Value = client.get(url).send().await.unwrap().json().await.unwrap();
    body["devices"].as_array().unwrap().iter().map(|d| d["device_id"].as_str().unwrap().to_owned()).collect()
}

fn cli(base: &str, data: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["devices", "--server", base])
        .args(args)
        .arg("--config")
        .arg(data.join("test-config.toml"))
        .stdin(Stdio::null())
        .output()
        .expect("rocky devices runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inventory_is_managed_filtered_learned_from_the_wire_and_kept() {
    let broker = EmbeddedBroker::start(None).unwrap();
    let data = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut serve = Serve::start(&broker.url().to_string(), port, data.path());
    healthy(&client, &base).await;

    // Registered one at a time: 201 when new, 200 when the labels change.
    let put = |id: &str, labels: Value| {
        client.put(format!("{base}/devices/{id}")).json(&json!({ "labels": labels })).send()
    };
    assert_eq!(put("d1", json!({"model": "m1", "site": "lab"})).await.unwrap().status(), StatusCode::CREATED);
    assert_eq!(put("d1", json!({"model": "m1", "site": "field"})).await.unwrap().status(), StatusCode::OK);
    let bad = put("d2", json!({"bad key": "x"})).await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().await.unwrap().contains("' ' at position 3"));
    assert_eq!(put("a+b", json!({})).await.unwrap().status(), StatusCode::BAD_REQUEST);

    // An import is all or nothing, and a bad row is named by its line.
    let import = |body: &'static str| client.post(format!("{base}/devices/import")).body(body).send();
    let refused = import("d3,model=m2\nd4,model=m1\nd/5,model=m1\n").await.unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let reason: Value = refused.json().await.unwrap();
    assert!(reason["error"].as_str().unwrap().starts_with("line 3: device id \"d/5\""), "{reason}");
    assert_eq!(
        ids(&client, format!("{base}/devices")).await,
        ["d1"],
        "nothing of the refused import was kept"
    );
    let imported: Value =
        import("device_id\nd3,model=m2\nd4,model=m1\n").await.unwrap().json().await.unwrap();
    assert_eq!((imported["imported"].as_u64(), imported["added"].as_u64()), (Some(2), Some(2)));
    let json_import = client
        .post(format!("{base}/devices/import"))
        .header("content-type", "application/json")
        .body(r#"[{"device_id": "dev-01", "labels": {"model": "m1"}}, {"device_id": "dev-02"}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(json_import.status(), StatusCode::OK);
    // A device named "import" is a device like any other, whatever the import's route.
    assert_eq!(put("import", json!({"k": "v"})).await.unwrap().status(), StatusCode::CREATED);
    let named: Value =
        client.get(format!("{base}/devices/import")).send().await.unwrap().json().await.unwrap();
    assert_eq!((named["device_id"].as_str(), named["labels"]["k"].as_str()), (Some("import"), Some("v")));
    let gone = client.delete(format!("{base}/devices/import")).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::NO_CONTENT);

    // Filters.
    assert_eq!(ids(&client, format!("{base}/devices?label=model=m1")).await, ["d1", "d4", "dev-01"]);
    assert_eq!(ids(&client, format!("{base}/devices?label=model=m1&label=site=field")).await, ["d1"]);
    assert_eq!(ids(&client, format!("{base}/devices?glob=dev-*")).await, ["dev-01", "dev-02"]);
    assert_eq!(ids(&client, format!("{base}/devices?limit=2&after=d1")).await, ["d3", "d4"]);
    let unknown = client.get(format!("{base}/devices?colour=red")).send().await.unwrap();
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    assert!(ids(&client, format!("{base}/devices?seen_since=1h")).await.is_empty(), "none answered yet");

    // A job to a real device: the inventory learns when it was seen, its job and its image.
    let fleet = Fleet::start(&FleetConfig::new(broker.url(), 2)).unwrap();
    assert!(fleet.wait_connected(Duration::from_secs(20)).await);
    let image = test_image(8 * 1024, 5);
    let upload =
        client.post(format!("{base}/firmware?name=fw.bin")).body(image.to_vec()).send().await.unwrap();
    assert_eq!(upload.status(), StatusCode::CREATED);
    let body = json!({"device_ids": ["dev-01"], "firmware": {"path": "fw.bin"}, "chunk_size": 1024});
    let created: Value =
        client.post(format!("{base}/jobs")).json(&body).send().await.unwrap().json().await.unwrap();
    let job = created["jobs"][0]["id"].as_u64().unwrap();
    let device = wait_for(Duration::from_secs(30), "dev-01's image to be recorded", || async {
        let device: Value =
            client.get(format!("{base}/devices/dev-01")).send().await.ok()?.json().await.ok()?;
        device["last_image"].is_object().then_some(device)
    })
    .await;
    assert_eq!(device["last_job"].as_u64(), Some(job));
    assert_eq!(device["last_image"]["sha256"], created["jobs"][0]["image"]["sha256"]);
    assert_eq!(device["labels"], json!({"model": "m1"}), "the wire's news leaves the labels alone");
    assert!(device["last_seen"].as_u64().unwrap() >= device["first_seen"].as_u64().unwrap());
    assert_eq!(ids(&client, format!("{base}/devices?seen_since=1h")).await, ["dev-01"]);

    // The CLI, through the same API.
    let listed = cli(&base, data.path(), &["list", "--label", "model=m1"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let listed = text(&listed.stdout);
    assert!(
        listed.contains("dev-01") && listed.contains("fw.bin") && listed.ends_with("3 devices\n"),
        "{listed}"
    );
    let labelled = cli(&base, data.path(), &["label", "d9", "site=lab", "rack=3"]);
    assert_eq!(text(&labelled.stdout), "registered d9: rack=3,site=lab\n", "{}", text(&labelled.stderr));
    let relabelled = cli(&base, data.path(), &["label", "d9", "--remove", "rack"]);
    assert_eq!(text(&relabelled.stdout), "updated d9: site=lab\n");
    let file = data.path().join("fleet.csv");
    std::fs::write(&file, "e1,model=m3\ne2,model\n").unwrap();
    let refused = cli(&base, data.path(), &["import", file.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("line 2: label \"model\" has no '='"),
        "{}",
        text(&refused.stderr)
    );
    let missing = cli(&base, data.path(), &["show", "nope"]);
    assert!(text(&missing.stderr).contains("no device nope in the inventory (HTTP 404)"));
    let nobody = cli(&format!("http://127.0.0.1:{}", free_port().unwrap()), data.path(), &["list"]);
    assert!(text(&nobody.stderr).contains("no Rocky answers at"), "{}", text(&nobody.stderr));
    assert_eq!(
        client.delete(format!("{base}/devices/d3")).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        client.delete(format!("{base}/devices/d3")).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    // Once the wire's news is on disk, a SIGKILL and a restart keep everything.
    let db = data.path().join("rocky.db");
    wait_for(Duration::from_secs(10), "the wire's news to be written", || async {
        let conn =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
        let devices = rocky::store::read_devices(&conn).ok()?;
        devices.iter().any(|d| d.device_id.as_str() == "dev-01" && d.last_image.is_some()).then_some(())
    })
    .await;
    let before: Value = client.get(format!("{base}/devices")).send().await.unwrap().json().await.unwrap();
    serve.kill9();
    drop(serve);
    let _serve = Serve::start(&broker.url().to_string(), port, data.path());
    healthy(&client, &base).await;
    let after: Value = client.get(format!("{base}/devices")).send().await.unwrap().json().await.unwrap();
    assert_eq!(after, before);
    fleet.stop().await;
}
