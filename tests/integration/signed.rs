//! Signed updates (issue 23) through a real mosquitto, against devices of the tests' own that
//! verify Rocky's manifests with their own reading of COSE (`support/signed_device.rs`):
//! an image signed offline (`rocky sign`) is attached only after Rocky verified it; a device
//! that trusts the signer updates and reports the manifest's version and counter; one that
//! trusts another key refuses with code 11 and its job says so in words; a version 1 device gets
//! the three-item request; a tampered manifest, one for another image and one from an untrusted
//! key are refused by Rocky, a lower security counter is refused when the job is made, and a
//! simulated device (`rocky sim --trust`) refuses forged requests with 11, 14 and 12. The private
//! keys' bytes appear in no log line, config output, error or answer.

use std::process::Command;
use std::time::Duration;

use crate::support::signed_device::{SignedDevice, Trusted};
use crate::support::wire_device::{Mode, WireDevice};
use crate::support::{Mosquitto, healthy, serve_command, statuses_heard, test_image, wait_for};
use reqwest::StatusCode;
use rocky::broker::free_port;
use rocky::signing::{Alg, SigningKey, write_new_signing_key};
use serde_json::{Value, json};
use sha2::Digest;

fn raw_public(key: &SigningKey) -> Trusted {
    Trusted(hex::decode(key.public().hex()).unwrap())
}

/// The strings a leak of `key` would show: its secret in hex and its PEM's base64 body.
fn secret_forms(key: &SigningKey) -> Vec<String> {
    let pem = key.to_pkcs8_pem().unwrap();
    let mut forms: Vec<String> =
        pem.lines().filter(|line| !line.starts_with("-----") && line.len() > 20).map(str::to_owned).collect();
    if let SigningKey::Ed25519(inner) = key {
        forms.push(hex::encode(inner.to_bytes()));
    }
    forms
}

/// What pycose (a COSE library independent of Rocky's) reads from `cose` once it verified it
/// under `public_hex`; `None` when python3 with pycose is not installed, which CI forbids
/// (`ROCKY_REQUIRE_PYCOSE`, set by `.ci/run`, which installs it).
fn pycose_verifies(cose: &[u8], public_hex: &str) -> Option<Result<Value, String>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/integration/data/verify_manifest.py");
    let available =
        Command::new("python3").args(["-c", "import pycose"]).output().is_ok_and(|o| o.status.success());
    if !available {
        assert!(std::env::var_os("ROCKY_REQUIRE_PYCOSE").is_none(), "python3 with pycose is required");
        eprintln!("SKIPPED: no python3 with pycose");
        return None;
    }
    let mut child = Command::new("python3")
        .args([script, public_hex])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), cose).unwrap();
    let out = child.wait_with_output().unwrap();
    Some(if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    })
}

#[test]
fn an_independent_cose_library_verifies_the_vector_and_rockys_own_manifests() {
    let vectors: Value = serde_json::from_str(include_str!("data/protocol_vectors.json")).unwrap();
    let vector = hex::decode(vectors["extensions"]["manifest"]["cbor_hex"].as_str().unwrap()).unwrap();
    let public = vectors["extensions"]["ed25519_public_key_hex"].as_str().unwrap();
    let Some(read) = pycose_verifies(&vector, public) else { return };
    let read = read.unwrap();
    assert_eq!(
        (read["size"].as_u64(), read["seq"].as_u64(), read["version"].as_str()),
        (Some(13), Some(3), Some("2.1.0"))
    );
    // Rocky's own, with both algorithms; and a wrong key is refused.
    for alg in [Alg::Ed25519, Alg::Es256] {
        let key = SigningKey::generate(alg).unwrap();
        let payload = rocky::protocol::ManifestPayload {
            image_sha256: [7; 32],
            size: 4096,
            version: Some("9.9.9".into()),
            seq: 42,
        };
        let manifest = rocky::protocol::Manifest::sign(payload, &key);
        let read = pycose_verifies(manifest.bytes(), &key.public().hex()).unwrap().unwrap();
        assert_eq!(
            (read["sha256"].as_str(), read["seq"].as_u64()),
            (Some(&*"07".repeat(32)), Some(42)),
            "{alg}"
        );
        let other = SigningKey::generate(alg).unwrap();
        assert!(pycose_verifies(manifest.bytes(), &other.public().hex()).unwrap().is_err(), "{alg}");
    }
}

fn rocky(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rocky")).args(args).current_dir(dir).env("HOME", dir).output().unwrap()
}

async fn job(client: &reqwest::Client, base: &str, id: u64) -> Value {
    client.get(format!("{base}/jobs/{id}")).send().await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_verify_rockys_manifests_and_every_wrong_manifest_is_refused_at_the_right_end() {
    let Some(mosquitto) = Mosquitto::start("signed") else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // Rocky's own key (it signs uploads) and the CI's (Rocky never holds it; it trusts its
    // public half).
    let server_key = SigningKey::generate(Alg::Ed25519).unwrap();
    let ci_key = SigningKey::generate(Alg::Ed25519).unwrap();
    let stranger = SigningKey::generate(Alg::Ed25519).unwrap();
    // A second offline signer with ES256.
    let es_key = SigningKey::generate(Alg::Es256).unwrap();
    write_new_signing_key(&dir.path().join("es.key"), &es_key).unwrap();
    write_new_signing_key(&dir.path().join("server.key"), &server_key).unwrap();
    write_new_signing_key(&dir.path().join("ci.key"), &ci_key).unwrap();
    write_new_signing_key(&dir.path().join("stranger.key"), &stranger).unwrap();
    let config = dir.path().join("rocky.toml");
    std::fs::write(
        &config,
        format!(
            "[firmware]\nsigning_key_file = \"{}\"\ntrusted_keys = [\"{}\", \"{}\"]\n",
            dir.path().join("server.key").display(),
            ci_key.public().hex(),
            es_key.public().hex()
        ),
    )
    .unwrap();

    let trusts_ci = SignedDevice::start(mosquitto.port, "trusts-ci", 0, vec![raw_public(&ci_key)]).await;
    let trusts_other =
        SignedDevice::start(mosquitto.port, "trusts-other", 0, vec![raw_public(&stranger)]).await;
    let _newer = SignedDevice::start(mosquitto.port, "runs-seq-9", 9, vec![raw_public(&ci_key)]).await;
    // It lists the one key id it takes (the stranger's): Rocky refuses the CI's image for it.
    let _lists =
        SignedDevice::start_with(mosquitto.port, "lists-stranger", 0, vec![raw_public(&stranger)], true)
            .await;
    let trusts_es = SignedDevice::start(mosquitto.port, "trusts-es", 0, vec![raw_public(&es_key)]).await;
    let v1 = WireDevice::start(mosquitto.port, "v1-device", Mode::Honest).await;

    let port = free_port().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let mut serve = serve_command(&mosquitto.url().to_string(), port, &config, &data);
    serve.env("RUST_LOG", "debug").stdout(log.try_clone().unwrap()).stderr(log);
    let mut serve = serve.spawn().unwrap();
    let client = reqwest::Client::new();
    healthy(&client, &base).await;
    statuses_heard(&client, &base, 5).await;

    // The image, uploaded: Rocky signs it with its own key (seq 0).
    let image = test_image(8 * 1024, 23);
    let sha = hex::encode(sha2::Sha256::digest(&image));
    std::fs::write(dir.path().join("fw.bin"), &image).unwrap();
    let uploaded: Value = client
        .post(format!("{base}/firmware?name=fw.bin&version=2.0.9"))
        .body(image.to_vec())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(uploaded["manifest"]["kid"], server_key.kid().hex(), "{uploaded}");
    assert_eq!(uploaded["manifest"]["version"], "2.0.9");

    // Offline signing by the CI, then attached: Rocky verifies it first.
    let signed =
        rocky(&["sign", "--key", "ci.key", "--version", "2.1.0", "--seq", "3", "fw.bin"], dir.path());
    assert!(signed.status.success(), "{}", String::from_utf8_lossy(&signed.stderr));
    let out = String::from_utf8_lossy(&signed.stdout);
    assert!(out.contains(&ci_key.kid().hex()) && out.contains(&sha), "{out}");
    let cose = std::fs::read(dir.path().join("fw.bin.cose")).unwrap();
    let put = |body: Vec<u8>, sha: String| {
        let client = client.clone();
        let base = base.clone();
        async move {
            let response =
                client.put(format!("{base}/firmware/{sha}/manifest")).body(body).send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    // Tampered: the size inside the signed payload changed.
    let mut tampered = cose.clone();
    let at = tampered.windows(3).position(|w| w == [0x02, 0x19, 0x20]).expect("size 8192 in the payload");
    tampered[at + 3] ^= 1;
    let (status, body) = put(tampered, sha.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("signature does not verify"), "{body}");
    // For another image.
    std::fs::write(dir.path().join("other.bin"), b"another image").unwrap();
    assert!(rocky(&["sign", "--key", "ci.key", "other.bin"], dir.path()).status.success());
    let (status, body) = put(std::fs::read(dir.path().join("other.bin.cose")).unwrap(), sha.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("is for image"), "{body}");
    // From a key Rocky does not trust.
    assert!(
        rocky(&["sign", "--key", "stranger.key", "--out", "fw.stranger.cose", "fw.bin"], dir.path())
            .status
            .success()
    );
    let (status, body) = put(std::fs::read(dir.path().join("fw.stranger.cose")).unwrap(), sha.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("not among Rocky's trusted keys"), "{body}");
    // The CI's own.
    let (status, body) = put(cose.clone(), sha.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["manifest"]["kid"].as_str(), body["manifest"]["seq"].as_u64()),
        (Some(&*ci_key.kid().hex()), Some(3))
    );
    // A manifest with a lower security counter does not replace it unless asked to.
    assert!(
        rocky(&["sign", "--key", "ci.key", "--seq", "1", "--out", "fw.seq1.cose", "fw.bin"], dir.path())
            .status
            .success()
    );
    let (status, body) = put(std::fs::read(dir.path().join("fw.seq1.cose")).unwrap(), sha.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().unwrap().contains("security counter 3"), "{body}");
    let listed: Value = client.get(format!("{base}/firmware")).send().await.unwrap().json().await.unwrap();
    let row =
        listed["images"].as_array().unwrap().iter().find(|i| i["sha256"] == sha.as_str()).unwrap().clone();
    assert_eq!(row["manifest"]["version"], "2.1.0", "{listed}");

    // A device that runs seq 9 is refused this seq 3 image when the job is made.
    let refused = client
        .post(format!("{base}/jobs"))
        .json(&json!({"device_ids": ["trusts-ci", "runs-seq-9"], "firmware": {"sha256": sha}}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("device runs-seq-9 runs seq 9; image fw.bin is seq 3"),
        "{body}"
    );
    let refused = client
        .post(format!("{base}/jobs"))
        .json(&json!({"device_ids": ["lists-stranger"], "firmware": {"sha256": sha}}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let body: Value = refused.json().await.unwrap();
    let expected = format!(
        "device lists-stranger trusts keys {}; image fw.bin is signed by key {}",
        stranger.kid(),
        ci_key.kid()
    );
    assert!(body["error"].as_str().unwrap().contains(&expected), "{body}");
    assert!(trusts_ci.seen().requests.is_empty(), "nothing was created, nothing sent");

    let created: Value = client
        .post(format!("{base}/jobs"))
        .json(&json!({"device_ids": ["trusts-ci", "trusts-other", "v1-device"], "firmware": {"sha256": sha}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<u64> =
        created["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), 3, "{created}");
    let ended = wait_for(Duration::from_secs(30), "the three jobs to end", || async {
        let mut jobs = Vec::new();
        for id in &ids {
            let job = job(&client, &base, *id).await;
            if ["queued", "requesting", "transferring", "finishing", "confirming"]
                .contains(&job["state"].as_str()?)
            {
                return None;
            }
            jobs.push(job);
        }
        Some(jobs)
    })
    .await;
    assert_eq!(ended[0]["state"], "succeeded", "{}", ended[0]);
    assert_eq!(ended[0]["manifest"]["kid"], ci_key.kid().hex());
    assert_eq!(
        (ended[0]["manifest"]["version"].as_str(), ended[0]["manifest"]["seq"].as_u64()),
        (Some("2.1.0"), Some(3))
    );
    assert_eq!(ended[1]["state"], "rejected", "{}", ended[1]);
    assert_eq!(
        ended[1]["error"],
        "manifest refused: signature invalid, or signed by a key the device does not trust",
        "the device's code 11 in words"
    );
    assert_eq!(ended[2]["state"], "succeeded", "{}", ended[2]);
    let cose = hex::decode(ended[0]["manifest"]["cose"].as_str().unwrap()).unwrap();
    if let Some(read) = pycose_verifies(&cose, &ci_key.public().hex()) {
        assert_eq!(read.unwrap()["sha256"].as_str(), Some(sha.as_str()), "pycose reads the job's manifest");
    }
    let seen = trusts_ci.seen();
    assert_eq!(seen.requests, vec![(ids[0], 4)], "a four-item request");
    assert_eq!(seen.verified, vec![(ci_key.kid().hex(), Some("2.1.0".to_owned()), 3)]);
    assert_eq!(trusts_other.seen().refusals, vec![(ids[1], 11)]);
    assert_eq!(v1.seen().requests, vec![ids[2]]);
    // The device reports what the manifest said of the image it now runs.
    wait_for(Duration::from_secs(10), "trusts-ci's new status", || async {
        let device: Value =
            client.get(format!("{base}/devices/trusts-ci")).send().await.ok()?.json().await.ok()?;
        (device["running"]["seq"] == 3 && device["running"]["version"] == "2.1.0").then_some(())
    })
    .await;

    // The CLI: an image with IMAGE.cose beside it is uploaded with its manifest attached.
    let image2 = test_image(4 * 1024, 24);
    std::fs::write(dir.path().join("fw2.bin"), &image2).unwrap();
    let signed =
        rocky(&["sign", "--key", "ci.key", "--version", "2.2.0", "--seq", "4", "fw2.bin"], dir.path());
    assert!(signed.status.success());
    let server = ["--server", &base];
    let made = rocky(
        &[&["job", "create", "--devices", "trusts-ci", "--firmware", "./fw2.bin"][..], &server].concat(),
        dir.path(),
    );
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    assert!(
        String::from_utf8_lossy(&made.stderr).contains("manifest attached"),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let id: u64 = String::from_utf8_lossy(&made.stdout)
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("job N created");
    let second = wait_for(Duration::from_secs(20), "the CLI's job to end", || async {
        let job = job(&client, &base, id).await;
        (job["state"] == "succeeded").then_some(job)
    })
    .await;
    assert_eq!(second["manifest"]["seq"], 4, "{second}");
    let shown = rocky(&[&["job", "show", &id.to_string()][..], &server].concat(), dir.path());
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains(&format!("manifest signed by key {} (EdDSA), version 2.2.0, seq 4", ci_key.kid())),
        "{shown}"
    );
    // ES256 end to end: signed offline, attached, verified by the device's own reading.
    let image3 = test_image(3 * 1024, 25);
    std::fs::write(dir.path().join("fw3.bin"), &image3).unwrap();
    assert!(
        rocky(&["sign", "--key", "es.key", "--version", "3.0.0", "fw3.bin"], dir.path()).status.success()
    );
    let made = rocky(
        &[&["job", "create", "--devices", "trusts-es", "--firmware", "./fw3.bin"][..], &server].concat(),
        dir.path(),
    );
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let es_job: u64 =
        String::from_utf8_lossy(&made.stdout).split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap();
    let ended = wait_for(Duration::from_secs(20), "the ES256 job to end", || async {
        let job = job(&client, &base, es_job).await;
        (job["state"] == "succeeded").then_some(job)
    })
    .await;
    assert_eq!(
        (ended["manifest"]["alg"].as_str(), ended["manifest"]["kid"].as_str()),
        (Some("ES256"), Some(&*es_key.kid().hex()))
    );
    assert_eq!(trusts_es.seen().verified, vec![(es_key.kid().hex(), Some("3.0.0".to_owned()), 0)]);
    // keys generate and show print the public half only.
    let generated = rocky(&["keys", "generate", "--out", "new.key", "--alg", "es256"], dir.path());
    assert!(generated.status.success());
    let again = rocky(&["keys", "generate", "--out", "new.key"], dir.path());
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("does not overwrite"));
    let new_key = rocky::signing::read_signing_key(&dir.path().join("new.key")).unwrap();
    let listed_key = rocky(&["keys", "show", "new.key"], dir.path());
    assert!(String::from_utf8_lossy(&listed_key.stdout).contains(&format!("kid: {}", new_key.kid())));

    // Nothing shows a private key: the answers, /metrics, /healthz, rocky config, the CLI, the log.
    let mut shown = String::new();
    for path in ["/jobs?limit=100", "/firmware", "/metrics", "/healthz", &format!("/firmware/{sha}")] {
        shown.push_str(&client.get(format!("{base}{path}")).send().await.unwrap().text().await.unwrap());
    }
    for output in [&signed, &generated, &again, &made] {
        shown.push_str(&String::from_utf8_lossy(&output.stdout));
        shown.push_str(&String::from_utf8_lossy(&output.stderr));
    }
    shown.push_str(&String::from_utf8_lossy(&listed_key.stdout));
    let config_out = rocky(&["config", "--config", config.to_str().unwrap()], dir.path());
    shown.push_str(&String::from_utf8_lossy(&config_out.stdout));
    shown.push_str(&String::from_utf8_lossy(&config_out.stderr));
    assert!(
        String::from_utf8_lossy(&config_out.stdout)
            .contains(&format!("server.key; EdDSA key {}", server_key.kid()))
    );
    // A private key given where a public one belongs is refused without repeating it.
    let wrong = dir.path().join("wrong.toml");
    std::fs::write(
        &wrong,
        format!("[firmware]\ntrusted_keys = [\"\"\"{}\"\"\"]\n", &*ci_key.to_pkcs8_pem().unwrap()),
    )
    .unwrap();
    let wrong_out = rocky(&["config", "--config", wrong.to_str().unwrap()], dir.path());
    assert!(!wrong_out.status.success());
    shown.push_str(&String::from_utf8_lossy(&wrong_out.stderr));
    assert!(String::from_utf8_lossy(&wrong_out.stderr).contains("this is a private key"));
    // Stopped as a service manager does, so every line it logged is in the file.
    crate::support::terminate(serve.id());
    let _ = serve.wait();
    shown.push_str(&std::fs::read_to_string(dir.path().join("serve.log")).unwrap());
    assert!(shown.len() > 10_000, "the log and answers were read ({} bytes)", shown.len());
    for key in [&server_key, &ci_key, &stranger, &new_key, &es_key] {
        for form in secret_forms(key) {
            assert!(!shown.contains(&form), "a private key's bytes were shown: {form}");
        }
    }
}

/// `firmware.require_signed`: every job and rollout of an unsigned image is refused, naming the
/// setting, whatever its devices say; a signed image goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_require_signed_an_unsigned_image_goes_to_no_device() {
    let Some(mosquitto) = Mosquitto::start("require-signed") else { return };
    let dir = tempfile::tempdir().unwrap();
    let ci_key = SigningKey::generate(Alg::Ed25519).unwrap();
    write_new_signing_key(&dir.path().join("ci.key"), &ci_key).unwrap();
    let config = dir.path().join("rocky.toml");
    std::fs::write(
        &config,
        format!("[firmware]\nrequire_signed = true\ntrusted_keys = [\"{}\"]\n", ci_key.public().hex()),
    )
    .unwrap();
    let v1 = WireDevice::start(mosquitto.port, "plain-1", Mode::Honest).await;
    let port = free_port().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let _serve = crate::support::Serve(
        serve_command(&mosquitto.url().to_string(), port, &config, dir.path()).spawn().unwrap(),
    );
    let client = reqwest::Client::new();
    healthy(&client, &base).await;
    let image = test_image(2048, 26);
    let sha = hex::encode(sha2::Sha256::digest(&image));
    std::fs::write(dir.path().join("fw.bin"), &image).unwrap();
    let uploaded =
        client.post(format!("{base}/firmware?name=fw.bin")).body(image.to_vec()).send().await.unwrap();
    assert_eq!(uploaded.status(), StatusCode::CREATED);
    let job_made = client
        .post(format!("{base}/jobs"))
        .json(&json!({"device_id": "plain-1", "firmware": {"sha256": sha}}))
        .send()
        .await
        .unwrap();
    assert_eq!(job_made.status(), StatusCode::BAD_REQUEST);
    let body: Value = job_made.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("firmware.require_signed is set"), "{body}");
    let rollout = client
        .post(format!("{base}/rollouts"))
        .json(&json!({"name": "unsigned", "firmware": {"sha256": sha}, "targets": {"devices": ["plain-1"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(rollout.status(), StatusCode::BAD_REQUEST);
    let body: Value = rollout.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("firmware.require_signed is set"), "{body}");
    assert!(v1.seen().requests.is_empty(), "nothing was sent");
    // Signed, the same image goes (three items to a version 1 device).
    assert!(rocky(&["sign", "--key", "ci.key", "fw.bin"], dir.path()).status.success());
    let attached = client
        .put(format!("{base}/firmware/{sha}/manifest"))
        .body(std::fs::read(dir.path().join("fw.bin.cose")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(attached.status(), StatusCode::OK);
    let created: Value = client
        .post(format!("{base}/jobs"))
        .json(&json!({"device_id": "plain-1", "firmware": {"sha256": sha}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["jobs"][0]["id"].as_u64().unwrap();
    wait_for(Duration::from_secs(20), "the signed job to succeed", || async {
        (job(&client, &base, id).await["state"] == "succeeded").then_some(())
    })
    .await;
    assert_eq!(v1.seen().requests, vec![id]);
}
