//! Named tokens with roles through a real `rocky serve`: a viewer reads and gets 403 (naming the
//! role needed) on every write; an operator writes but may not attach manifests; the single
//! token is an admin; the tokens file is read again on SIGHUP, and a bad one is refused while
//! the tokens loaded before stay.

use std::io::BufRead;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use rocky::broker::{EmbeddedBroker, free_port};

use crate::support::{Serve, serve_command, token_entry, wait_for};

struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(&self, method: Method, path: &str, token: Option<&str>) -> (StatusCode, String) {
        let mut request = self.client.request(method, format!("{}{path}", self.base)).body("{}");
        request = request.header("content-type", "application/json");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        (response.status(), response.text().await.unwrap_or_default())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_reads_and_is_refused_every_write_and_the_tokens_file_is_read_again_on_sighup() {
    let broker = EmbeddedBroker::start(None).unwrap();
    let data = tempfile::tempdir().unwrap();
    let tokens = data.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        token_entry("watch", "viewer", "v-secret") + &token_entry("ci", "operator", "o-secret"),
    )
    .unwrap();
    let admin = data.path().join("admin-token");
    std::fs::write(&admin, "a-secret\n").unwrap();
    let config = data.path().join("roles.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\ntoken_file = {:?}\ntokens_file = {:?}\n",
            admin.display().to_string(),
            tokens.display().to_string()
        ),
    )
    .unwrap();
    let port = free_port().unwrap();
    // Killed on drop, a failed assertion included.
    let mut serve = Serve(
        serve_command(&broker.url().to_string(), port, &config, data.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let log = Arc::new(Mutex::new(String::new()));
    let (stdout, written) = (serve.0.stdout.take().unwrap(), log.clone());
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            written.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let api = Api { client: reqwest::Client::new(), base: format!("http://127.0.0.1:{port}") };
    wait_for(Duration::from_secs(30), "rocky serve to answer", || async {
        let response = api.client.get(format!("{}/healthz", api.base)).send().await.ok()?;
        (response.status() == StatusCode::OK).then_some(())
    })
    .await;
    let sha = "ab".repeat(32);
    // Reads: any token.
    for path in ["/jobs", "/devices", "/rollouts", "/firmware", "/metrics", "/devices/dev-1"] {
        let (status, body) = api.call(Method::GET, path, Some("v-secret")).await;
        assert!(status == StatusCode::OK || status == StatusCode::NOT_FOUND, "{path}: {status} {body}");
    }
    // Every write, refused to the viewer by the role it needs.
    let writes = [
        (Method::POST, "/jobs".to_owned(), "operator"),
        (Method::POST, "/job".to_owned(), "operator"),
        (Method::DELETE, "/jobs/1".to_owned(), "operator"),
        (Method::PUT, "/devices/dev-1".to_owned(), "operator"),
        (Method::DELETE, "/devices/dev-1".to_owned(), "operator"),
        (Method::POST, "/devices/import".to_owned(), "operator"),
        (Method::POST, "/rollouts".to_owned(), "operator"),
        (Method::POST, "/rollouts?dry_run=true".to_owned(), "operator"),
        (Method::POST, "/rollouts/1/pause".to_owned(), "operator"),
        (Method::POST, "/rollouts/1/cancel".to_owned(), "operator"),
        (Method::POST, "/firmware?name=a.bin".to_owned(), "operator"),
        (Method::POST, "/firmware?name=a.bin&version=2.0&seq=4".to_owned(), "admin"),
        (Method::PUT, format!("/firmware/{sha}/manifest"), "admin"),
        (Method::PUT, format!("/firmware/{sha}/aws-signature"), "admin"),
    ];
    for (method, path, needed) in &writes {
        let (status, body) = api.call(method.clone(), path, Some("v-secret")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        assert!(
            body.contains(&format!("needs the {needed} role; token \\\"watch\\\" is a viewer")),
            "{body}"
        );
    }
    // The operator writes, but attaching a manifest is an admin's.
    let (status, body) = api.call(Method::POST, "/rollouts/1/pause", Some("o-secret")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "past the role check: {body}");
    let (status, body) = api.call(Method::PUT, &format!("/firmware/{sha}/manifest"), Some("o-secret")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("needs the admin role; token \\\"ci\\\" is an operator"), "{body}");
    let (status, _) =
        api.call(Method::PUT, &format!("/firmware/{sha}/aws-signature"), Some("o-secret")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "an AWS signature is an admin's too");
    // The single token is the admin named default.
    let (status, body) = api.call(Method::PUT, &format!("/firmware/{sha}/manifest"), Some("a-secret")).await;
    assert_ne!(status, StatusCode::FORBIDDEN, "{body}");
    assert_ne!(status, StatusCode::UNAUTHORIZED, "{body}");
    // No token, or one not listed: 401.
    assert_eq!(api.call(Method::GET, "/jobs", None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(api.call(Method::GET, "/jobs", Some("nope")).await.0, StatusCode::UNAUTHORIZED);

    // SIGHUP reads the file again: a new token works.
    let hup = || {
        let status =
            std::process::Command::new("kill").args(["-HUP", &serve.0.id().to_string()]).status().unwrap();
        assert!(status.success());
    };
    std::fs::write(
        &tokens,
        token_entry("watch", "viewer", "v-secret") + &token_entry("late", "viewer", "l-secret"),
    )
    .unwrap();
    hup();
    wait_for(Duration::from_secs(10), "the new token to be taken", || async {
        (api.call(Method::GET, "/jobs", Some("l-secret")).await.0 == StatusCode::OK).then_some(())
    })
    .await;
    assert_eq!(
        api.call(Method::GET, "/jobs", Some("o-secret")).await.0,
        StatusCode::UNAUTHORIZED,
        "ci was taken out"
    );
    // A bad file is refused, by line, and the tokens loaded before stay.
    std::fs::write(&tokens, "[[token]]\nname = \"x\"\nrole = \"root\"\n").unwrap();
    hup();
    wait_for(Duration::from_secs(10), "the refusal in the log", || async {
        log.lock().unwrap().contains("http.tokens_file refused").then_some(())
    })
    .await;
    let said = log.lock().unwrap().clone();
    assert!(said.contains("line 3"), "{said}");
    assert!(!said.contains("v-secret") && !said.contains("a-secret"), "no token in the log");
    assert_eq!(api.call(Method::GET, "/jobs", Some("l-secret")).await.0, StatusCode::OK);
    serve.kill9();
}
