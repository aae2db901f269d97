//! Notifications through a real `rocky serve`: a receiver the test starts hears every change of
//! a rollout's state and the failed job, each POST signed with its secret (checked here with
//! an HMAC of the test's own); a second receiver that is down costs the engine nothing (the
//! rollout ends as it would, the live receiver hears all) and its failures are in `/metrics`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use rocky::sim::{Behavior, BehaviorPlan, FleetConfig, Selection};
use serde_json::{Value, json};

use crate::support::served_fleet::ServedFleet;
use crate::support::{test_image, wait_for};

type Heard = Arc<Mutex<Vec<(axum::http::HeaderMap, bytes::Bytes)>>>;

/// A webhook receiver on a loopback port: what it was sent.
async fn receiver() -> (String, Heard) {
    let heard: Heard = Arc::default();
    let seen = heard.clone();
    let app = axum::Router::new().route(
        "/hooks/rocky",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: bytes::Bytes| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push((headers, body));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/rocky", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, heard)
}

/// The signature as the receiver checks it, written from the README's words.
fn expected_signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_hears_the_rollout_signed_and_a_dead_one_costs_nothing() {
    let (url, heard) = receiver().await;
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let secrets = tempfile::tempdir().unwrap();
    let (live_secret, dead_secret) = (secrets.path().join("live"), secrets.path().join("dead"));
    std::fs::write(&live_secret, "live-hook-secret\n").unwrap();
    std::fs::write(&dead_secret, "dead-hook-secret\n").unwrap();
    let config = format!(
        "[[notify]]\nurl = {url:?}\nevents = [\"rollout\", \"job_failed\"]\nsecret_file = {:?}\n\n\
         [[notify]]\nurl = \"http://127.0.0.1:{dead_port}/gone\"\nsecret_file = {:?}\n",
        live_secret.display().to_string(),
        dead_secret.display().to_string()
    );
    // dev-02 fails verification every time.
    let fail_second = |fleet: &mut FleetConfig| {
        fleet.plan = BehaviorPlan::default().with(Behavior::Fail, Selection::List(vec!["2".into()]))
    };
    let served =
        ServedFleet::start_with_config(3, fail_second, "fw-n.bin", &test_image(4096, 5), &config).await;
    let (client, base) = (&served.client, served.base.as_str());
    let body = json!({"name": "notified", "firmware": {"path": "fw-n.bin"},
        "targets": {"devices": served.ids()}, "waves": [1, "100%"]});
    let created = client.post(format!("{base}/rollouts")).json(&body).send().await.unwrap();
    assert_eq!(created.status(), 201);
    let id = created.json::<Value>().await.unwrap()["id"].as_u64().unwrap();
    let state = wait_for(Duration::from_secs(60), "the rollout to end", || async {
        let view: Value = client.get(format!("{base}/rollouts/{id}")).send().await.ok()?.json().await.ok()?;
        let state = view["state"].as_str()?.to_owned();
        matches!(state.as_str(), "succeeded" | "completed" | "aborted").then_some(state)
    })
    .await;
    // The last change's notification follows the rollout's end.
    let bodies = wait_for(Duration::from_secs(30), "the rollout's end to be notified", || async {
        let heard = heard.lock().unwrap();
        let bodies: Vec<Value> = heard.iter().map(|(_, b)| serde_json::from_slice(b).unwrap()).collect();
        bodies.iter().any(|b| b["rollout"]["to"] == state.as_str()).then_some(bodies)
    })
    .await;

    for (headers, raw) in heard.lock().unwrap().iter() {
        assert_eq!(headers["x-rocky-signature"], expected_signature(b"live-hook-secret", raw));
        assert_eq!(headers["content-type"], "application/json");
    }
    let rollout: Vec<&Value> = bodies.iter().filter(|b| b["event"] == "rollout").collect();
    assert!(rollout.len() >= 2, "{bodies:?}");
    assert!(rollout.iter().all(|b| b["rollout"]["id"] == id && b["rollout"]["name"] == "notified"));
    // Each change once, numbered in order, from the rollout's first.
    let ids: Vec<&str> = rollout.iter().map(|b| b["id"].as_str().unwrap()).collect();
    let numbered: Vec<String> = (1..=ids.len()).map(|n| format!("rollout:{id}:change:{n}")).collect();
    assert_eq!(ids, numbered);
    assert!(rollout.windows(2).all(|w| w[0]["rollout"]["to"] == w[1]["rollout"]["from"]), "{rollout:?}");
    let failed: Vec<&Value> = bodies.iter().filter(|b| b["event"] == "job_failed").collect();
    assert_eq!(failed.len(), 1, "{bodies:?}");
    assert_eq!(failed[0]["job"]["device"], "dev-02");
    assert_eq!(failed[0]["job"]["rollout"], id);

    // The dead receiver's tries are counted; the engine went on without it.
    let metrics = wait_for(Duration::from_secs(30), "the dead receiver's failures in /metrics", || async {
        let text = client.get(format!("{base}/metrics")).send().await.ok()?.text().await.ok()?;
        text.contains("rocky_notifications_total{receiver=\"1\",outcome=\"retried\"}").then_some(text)
    })
    .await;
    assert!(metrics.contains("rocky_notifications_total{receiver=\"0\",outcome=\"sent\"}"), "{metrics}");
    assert!(!metrics.contains("gone") && !metrics.contains("hooks/rocky"), "no receiver URL in the metrics");
    let jobs: Value = client.get(format!("{base}/jobs")).send().await.unwrap().json().await.unwrap();
    let ended = jobs["jobs"].as_array().unwrap().iter().filter(|j| j["state"] == "succeeded").count();
    assert_eq!(ended, 2, "{jobs}");
}
