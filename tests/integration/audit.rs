//! The audit trail through a real `rocky serve` with named tokens: a rollout created by one
//! operator, paused by another and cancelled by the admin is listed with those actors, in
//! order, before each answer; a viewer's refused write and a refused cancel are there too;
//! `GET /audit` filters by actor, target and time and pages; `rocky audit` prints it.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use rocky::broker::{EmbeddedBroker, free_port};
use serde_json::{Value, json};

use crate::support::{Serve, serve_command, token_entry, wait_for};

struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn audit(&self, query: &str) -> Vec<Value> {
        let (status, page) = self.call(Method::GET, &format!("/audit?{query}"), "v-secret", None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        page["entries"].as_array().cloned().unwrap_or_default()
    }
}

fn fields(entries: &[Value], names: &[&str]) -> Vec<Vec<String>> {
    entries
        .iter()
        .map(|e| names.iter().map(|n| e[*n].as_str().unwrap_or_default().to_owned()).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_lists_create_pause_and_cancel_with_their_actors() {
    let broker = EmbeddedBroker::start(None).unwrap();
    let data = tempfile::tempdir().unwrap();
    let tokens = data.path().join("tokens.toml");
    let file = token_entry("watch", "viewer", "v-secret")
        + &token_entry("ci", "operator", "ci-secret")
        + &token_entry("ana", "operator", "ana-secret");
    std::fs::write(&tokens, file).unwrap();
    let admin = data.path().join("admin-token");
    std::fs::write(&admin, "a-secret\n").unwrap();
    let config = data.path().join("audit.toml");
    let text = format!(
        "[http]\ntoken_file = {:?}\ntokens_file = {:?}\n",
        admin.display().to_string(),
        tokens.display().to_string()
    );
    std::fs::write(&config, text).unwrap();
    let port = free_port().unwrap();
    let _serve = Serve(serve_command(&broker.url().to_string(), port, &config, data.path()).spawn().unwrap());
    let api = Api { client: reqwest::Client::new(), base: format!("http://127.0.0.1:{port}") };
    wait_for(Duration::from_secs(30), "rocky serve to answer", || async {
        let response = api.client.get(format!("{}/healthz", api.base)).send().await.ok()?;
        (response.status() == StatusCode::OK).then_some(())
    })
    .await;
    let started =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;

    let upload = api
        .client
        .post(format!("{}/firmware?name=fw-a.bin", api.base))
        .bearer_auth("ci-secret")
        .body(vec![7u8; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), StatusCode::CREATED);
    let sha = upload.json::<Value>().await.unwrap()["sha256"].as_str().unwrap().to_owned();
    // Devices that never answer: the rollout stays running until it is cancelled.
    let rollout = json!({"name": "audited", "firmware": {"path": "fw-a.bin"},
        "targets": {"devices": ["quiet-1", "quiet-2"]}});
    let (status, created) = api.call(Method::POST, "/rollouts", "ci-secret", Some(rollout)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_u64().unwrap();
    // Each entry is written before its answer: read right after, it is there.
    let target = format!("rollout:{id}");
    let listed = api.audit(&format!("target={target}")).await;
    assert_eq!(fields(&listed, &["actor", "action"]), [["ci", "rollout.create"]]);

    let (status, _) = api.call(Method::POST, &format!("/rollouts/{id}/pause"), "ana-secret", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api.call(Method::POST, &format!("/rollouts/{id}/resume"), "v-secret", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api.call(Method::POST, &format!("/rollouts/{id}/cancel"), "a-secret", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api.call(Method::POST, "/rollouts/999/cancel", "ana-secret", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let listed = api.audit(&format!("target={target}")).await;
    assert_eq!(
        fields(&listed, &["actor", "action", "outcome"]),
        [["ci", "rollout.create", "ok"], ["ana", "rollout.pause", "ok"], ["default", "rollout.cancel", "ok"]]
    );
    let times: Vec<i64> = listed.iter().map(|e| e["at"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]) && times[0] >= started - 1000, "{times:?}");

    // Everything, oldest first: the upload, the refusals included.
    let all = api.audit("").await;
    let actions = fields(&all, &["actor", "action", "target"]);
    assert_eq!(actions[0], ["ci", "firmware.upload", &format!("firmware:{sha}")]);
    assert!(actions.contains(&vec![
        "watch".into(),
        "forbidden".into(),
        format!("POST /rollouts/{id}/resume")
    ]));
    let refused = all.iter().find(|e| e["target"] == "rollout:999").expect("the refused cancel is audited");
    assert!(refused["outcome"].as_str().unwrap().starts_with("refused: "), "{refused}");
    assert_eq!(refused["actor"], "ana");
    let ana = api.audit("actor=ana").await;
    assert_eq!(
        fields(&ana, &["action", "target"]),
        [["rollout.pause", &target], ["rollout.cancel", "rollout:999"]]
    );
    assert!(
        api.audit("since=1000").await.len() == all.len()
            && api.audit(&format!("since={}", i64::MAX)).await.is_empty()
    );
    // Paged: two at a time, the cursor from each page.
    let (mut paged, mut after) = (Vec::new(), None::<i64>);
    loop {
        let cursor = after.map(|a| format!("&after={a}")).unwrap_or_default();
        let (_, page) = api.call(Method::GET, &format!("/audit?limit=2{cursor}"), "v-secret", None).await;
        paged.extend(page["entries"].as_array().unwrap().clone());
        match page["next_after"].as_i64() {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(paged, all);
    let (status, error) = api.call(Method::GET, "/audit?limit=0", "v-secret", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    let (status, _) = api.call(Method::GET, "/audit", "wrong", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The CLI, as a viewer.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rocky"))
        .args(["audit", "--server", &api.base, "--target", &target])
        .arg("--config")
        .arg(&config)
        .env("ROCKY_HTTP_TOKEN", "v-secret")
        .env_remove("ROCKY_HTTP_TOKEN_FILE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(lines[0].starts_with("TIME") && lines[0].contains("ACTOR"), "{stdout}");
    assert!(lines[1].contains("ci") && lines[1].contains("rollout.create"), "{stdout}");
    assert!(lines[3].contains("default") && lines[3].contains("rollout.cancel"), "{stdout}");
}
