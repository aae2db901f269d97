//! Devices that run AWS's OTA agent, through a real broker and Rocky's runtime, played by a
//! device of the tests' own written from `../shared/aws-iot-ota/` (support/aws_device.rs): a
//! job is offered on notify-next, its blocks go out as the device asks for them, the device
//! verifies the signature, reboots into self test and says SUCCEEDED, and the job ends
//! succeeded through confirming; a signature from another key ends it failed with the agent's
//! reason in words; a device without a job hears "no job".

use std::sync::Arc;
use std::time::Duration;

use rocky::broker::EmbeddedBroker;
use rocky::engine::{AwsJob, JobSpec, JobState};
use rocky::firmware::{Image, Library};
use rocky::protocol::DeviceId;
use rocky::runtime::{Runtime, RuntimeConfig};
use rocky::signing::{Alg, SigningKey, aws_signature};

use crate::support::aws_device::AwsDevice;
use crate::support::{test_image, wait_for};

fn verifying(key: &SigningKey) -> p256::ecdsa::VerifyingKey {
    let SigningKey::Es256(key) = key else { panic!("an ES256 key") };
    *key.verifying_key()
}

/// Rocky's runtime in this process on an embedded broker of its own, once it is connected.
async fn in_process() -> (EmbeddedBroker, Runtime) {
    let broker = EmbeddedBroker::start(None).unwrap();
    let runtime = Runtime::start(RuntimeConfig::new(broker.url()), Arc::new(Library::new()));
    let handle = runtime.handle.clone();
    wait_for(Duration::from_secs(20), "Rocky to connect", || async {
        handle.status().await.ok().filter(|s| s.connection.is_connected()).map(|_| ())
    })
    .await;
    (broker, runtime)
}

/// A device that is offline when its job is made does not answer the offers: the job waits
/// for it (it holds no request slot) and, when the device connects and asks, it is offered and
/// updates. The timeline says it waited, as a requesting job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_for_an_offline_aws_device_waits_until_the_device_connects_and_asks() {
    let broker = EmbeddedBroker::start(None).unwrap();
    let mut config = RuntimeConfig::new(broker.url());
    config.engine.request_timeout = Duration::from_millis(200);
    config.engine.request_attempts = 2;
    let runtime = Runtime::start(config, Arc::new(Library::new()));
    let handle = runtime.handle.clone();
    wait_for(Duration::from_secs(20), "Rocky to connect", || async {
        handle.status().await.ok().filter(|s| s.connection.is_connected()).map(|_| ())
    })
    .await;
    let signer = SigningKey::generate(Alg::Es256).unwrap();
    let image = Image::new("aws-fw.bin", test_image(9000, 5));
    let mut events = handle.subscribe();
    let id = handle.submit(aws_specs(&["aws-late"], &image, &signer)).await.unwrap()[0].id;
    let waits = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(rocky::runtime::Received::Event(envelope)) = events.recv().await
                && let rocky::runtime::RuntimeEvent::Engine(rocky::engine::Event::Note { job, text, .. }) =
                    &envelope.event
                && *job == id
            {
                return text.clone();
            }
        }
    })
    .await
    .expect("a note that the job waits for its device");
    assert!(waits.contains("the device may be offline"), "{waits}");
    assert_eq!(handle.job(id).unwrap().state, JobState::Requesting);

    let device = AwsDevice::start(broker.url().port, "aws-late", verifying(&signer)).await;
    let job = wait_for(Duration::from_secs(30), "the late device's job to end", || async {
        handle.job(id).filter(|job| job.state.is_final())
    })
    .await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let seen = device.seen.lock().unwrap().clone();
    assert_eq!(seen.image.as_deref(), Some(&image.bytes()[..]));
    assert_eq!(seen.restarted, 0, "no offer came while it downloaded");
    runtime.shutdown().await;
}

/// A job of `image` for each AWS device of `things`, signed by `signer`.
fn aws_specs(things: &[&str], image: &Image, signer: &SigningKey) -> Vec<JobSpec> {
    let signature = aws_signature(signer, image.bytes()).unwrap();
    let aws = AwsJob::new("certs/codesign.crt".into(), "firmware.bin".into(), signature);
    let spec = |thing: &&str| JobSpec {
        aws: Some(aws.clone()),
        ..JobSpec::new(DeviceId::parse(thing).unwrap(), image.clone())
    };
    things.iter().map(spec).collect()
}

/// `rocky serve` on an embedded broker of its own, with an ES256 key written to `key_name` in
/// its data directory and `config` (where `{key}` is that key file's path) as its config file.
struct Served {
    broker: EmbeddedBroker,
    data: tempfile::TempDir,
    key: SigningKey,
    client: reqwest::Client,
    base: String,
    _serve: crate::support::Serve,
}

async fn served(key_name: &str, config: &str) -> Served {
    let broker = EmbeddedBroker::start(None).unwrap();
    let data = tempfile::tempdir().unwrap();
    let key = SigningKey::generate(Alg::Es256).unwrap();
    let key_file = data.path().join(key_name);
    std::fs::write(&key_file, key.to_pkcs8_pem().unwrap().as_str()).unwrap();
    let config = config
        .replace("{key}", &format!("{:?}", key_file.display().to_string()))
        .replace("{public}", &key.public().hex());
    std::fs::write(data.path().join("test-config.toml"), config).unwrap();
    let port = rocky::broker::free_port().unwrap();
    let _serve = crate::support::Serve::start(&broker.url().to_string(), port, data.path());
    let (client, base) = (reqwest::Client::new(), format!("http://127.0.0.1:{port}"));
    crate::support::healthy(&client, &base).await;
    Served { broker, data, key, client, base, _serve }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aws_device_updates_through_self_test_and_a_bad_signature_fails_its_job() {
    let (broker, runtime) = in_process().await;
    let handle = runtime.handle.clone();
    let signer = SigningKey::generate(Alg::Es256).unwrap();
    let stranger = SigningKey::generate(Alg::Es256).unwrap();
    let port = broker.url().port;
    let good = AwsDevice::start(port, "aws-thing-1", verifying(&signer)).await;
    let refuses = AwsDevice::start(port, "aws-thing-2", verifying(&stranger)).await;
    let idle = AwsDevice::start(port, "aws-thing-3", verifying(&signer)).await;
    // The device with no job here asks and hears "no job".
    wait_for(Duration::from_secs(20), "the idle device to hear there is no job", || async {
        idle.seen.lock().unwrap().executions.iter().any(|(job, _)| job.is_empty()).then_some(())
    })
    .await;

    let image = Image::new("aws-fw.bin", test_image(18000, 27));
    let jobs = handle.submit(aws_specs(&["aws-thing-1", "aws-thing-2"], &image, &signer)).await.unwrap();
    let (ok, bad) = (jobs[0].id, jobs[1].id);
    let ended = |id| {
        let handle = handle.clone();
        async move {
            let job = handle.job(id)?;
            job.state.is_final().then(|| (job.state, job.error.clone()))
        }
    };
    let (state, error) =
        wait_for(Duration::from_secs(30), "the good device's job to end", || ended(ok)).await;
    assert_eq!((state, error), (JobState::Succeeded, None));
    let (state, error) =
        wait_for(Duration::from_secs(30), "the refusing device's job to end", || ended(bad)).await;
    assert_eq!(state, JobState::Failed);
    assert_eq!(error.as_deref(), Some("the signature check failed (0x000000e3: 0x00000000)"));

    let seen = good.seen.lock().unwrap().clone();
    assert_eq!(seen.image.as_deref(), Some(&image.bytes()[..]), "the image arrived whole");
    let name = format!("rocky-{ok}");
    assert!(seen.executions.contains(&(name.clone(), "QUEUED".into())), "{:?}", seen.executions);
    assert!(
        seen.executions.contains(&(name, "IN_PROGRESS".into())),
        "after the reboot: {:?}",
        seen.executions
    );
    assert_eq!(seen.updates.last().map(|(status, _)| status.as_str()), Some("SUCCEEDED"));
    wait_for(Duration::from_secs(10), "\"no job\" after its job ended", || async {
        let seen = good.seen.lock().unwrap();
        let done_at =
            seen.executions.iter().rposition(|(job, status)| !job.is_empty() && status == "IN_PROGRESS")?;
        seen.executions[done_at..].iter().any(|(job, _)| job.is_empty()).then_some(())
    })
    .await;
    assert_eq!(seen.blocks, 5, "each of the 5 blocks once");
    // The job went through confirming (the device rebooted into self test).
    let history = handle.job(ok).unwrap();
    assert!(history.confirmed_at.is_some());
    assert!(refuses.seen.lock().unwrap().image.is_some());
    runtime.shutdown().await;
}

/// Through `rocky serve`: a device heard asking on its AWS topic is an `aws-iot-ota` device, a
/// job for it made with `POST /jobs` carries the job document Rocky signs with its ES256 key,
/// and the device updates to SUCCEEDED; a device registered with `"profile"` shows it, and a
/// profile Rocky does not know is refused by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_jobs_updates_an_aws_device_rocky_heard_with_a_signature_of_its_own() {
    use reqwest::StatusCode;
    use serde_json::{Value, json};
    let config = "[firmware]\nsigning_key_file = {key}\n\n[aws_ota]\ncertfile = \"certs/codesign.crt\"\nfilepath = \"/ota/fw.bin\"\n";
    let Served { broker, key: signer, client, base, .. } = &served("signing.pem", config).await;
    // Registered (no label): heard asking on its AWS topic, it is an AWS device.
    let put = |id: &str, body: Value| client.put(format!("{base}/devices/{id}")).json(&body).send();
    assert_eq!(put("aws-served-1", json!({})).await.unwrap().status(), StatusCode::CREATED);
    let device = AwsDevice::start(broker.url().port, "aws-served-1", verifying(signer)).await;
    wait_for(Duration::from_secs(20), "the device to hear there is no job yet", || async {
        device.seen.lock().unwrap().executions.iter().any(|(job, _)| job.is_empty()).then_some(())
    })
    .await;

    let image = test_image(9000, 41);
    let upload =
        client.post(format!("{base}/firmware?name=aws-fw.bin")).body(image.to_vec()).send().await.unwrap();
    assert_eq!(upload.status(), StatusCode::CREATED);
    let body = json!({"device_ids": ["aws-served-1"], "firmware": {"path": "aws-fw.bin"}});
    let created = client.post(format!("{base}/jobs")).json(&body).send().await.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    let job = &created["jobs"][0];
    assert_eq!(job["aws"]["cert_file"], "certs/codesign.crt", "{job}");
    assert_eq!(job["aws"]["file_path"], "/ota/fw.bin");
    let id = job["id"].as_u64().unwrap();
    let done = wait_for(Duration::from_secs(30), "the AWS device's job to end", || async {
        let job: Value = client.get(format!("{base}/jobs/{id}")).send().await.ok()?.json().await.ok()?;
        matches!(job["state"].as_str(), Some("succeeded" | "failed" | "timed_out")).then_some(job)
    })
    .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(device.seen.lock().unwrap().image.as_deref(), Some(&image[..]));
    let shown: Value =
        client.get(format!("{base}/devices/aws-served-1")).send().await.unwrap().json().await.unwrap();
    assert_eq!(shown["profile"], "aws-iot-ota", "{shown}");

    let registered = put("aws-registered", json!({"profile": "aws-iot-ota"})).await.unwrap();
    assert_eq!(registered.status(), StatusCode::CREATED);
    assert_eq!(registered.json::<Value>().await.unwrap()["profile"], "aws-iot-ota");
    let refused = put("zig", json!({"profile": "zigbee"})).await.unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(refused.text().await.unwrap().contains("rocky or aws-iot-ota"));
}

/// A job for an AWS device is refused at creation, by name, without `[aws_ota] certfile` or
/// without a key of Rocky's to sign with; nothing is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_for_an_aws_device_without_certfile_or_key_is_refused_by_name() {
    let broker = EmbeddedBroker::start(None).unwrap();
    let device = DeviceId::parse("aws-unready").unwrap();
    let image = Image::new("fw.bin", test_image(1000, 3));
    for (certfile, said) in [("", "set [aws_ota] certfile"), ("certs/c.crt", "holds no signing key")] {
        let mut config = RuntimeConfig::new(broker.url());
        config.aws_ota.cert_file = certfile.into();
        let runtime = Runtime::start(config, Arc::new(Library::new()));
        let labels: rocky::inventory::Labels = [("profile".to_owned(), "aws-iot-ota".to_owned())].into();
        runtime.handle.inventory().register(vec![(device.clone(), labels)]).await.unwrap();
        let service = rocky::service::Service::new(runtime.handle.clone());
        let refused = service.submit(vec![JobSpec::new(device.clone(), image.clone())]).await.unwrap_err();
        let text = refused.to_string();
        assert!(text.contains(said) && text.contains("aws-unready"), "{text}");
        assert!(service.jobs(&Default::default()).is_empty(), "nothing created");
        runtime.shutdown().await;
    }
}

/// One rollout to devices of both profiles through `rocky serve`: Rocky-protocol devices (the
/// tests' own, from PROTOCOL.md) and AWS devices; without a `certfile` anywhere the rollout is
/// refused by name (and its dry run lists the AWS devices as refused), with the rollout's own
/// `"aws_ota"` every device updates, each in its own protocol, and the AWS jobs name the
/// rollout's paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_mixes_rocky_and_aws_devices_with_its_own_certfile() {
    use crate::support::wire_device::{Mode, WireDevice};
    use reqwest::StatusCode;
    use serde_json::{Value, json};
    // No [aws_ota] certfile: the rollout names its own.
    let Served { broker, data, key: signer, client, base, .. } =
        &served("signing.pem", "[firmware]\nsigning_key_file = {key}\n").await;
    let csv = "mix-1\nmix-2\nmix-aws-1,profile=aws-iot-ota\nmix-aws-2,profile=aws-iot-ota\n";
    let imported = client.post(format!("{base}/devices/import")).body(csv).send().await.unwrap();
    assert_eq!(imported.status(), StatusCode::OK);
    let rocky_devices = [
        WireDevice::start(broker.url().port, "mix-1", Mode::Honest).await,
        WireDevice::start(broker.url().port, "mix-2", Mode::Honest).await,
    ];
    let aws_devices = [
        AwsDevice::start(broker.url().port, "mix-aws-1", verifying(signer)).await,
        AwsDevice::start(broker.url().port, "mix-aws-2", verifying(signer)).await,
    ];
    let image = test_image(10_000, 51);
    let upload =
        client.post(format!("{base}/firmware?name=mix-fw.bin")).body(image.to_vec()).send().await.unwrap();
    assert_eq!(upload.status(), StatusCode::CREATED);
    let mut body = json!({
        "name": "mixed fleet",
        "firmware": {"path": "mix-fw.bin"},
        "targets": {"glob": "mix-*"},
        "waves": [2, "100%"],
    });

    // No certfile in the config or the rollout: refused by name, and the dry run says why.
    let refused = client.post(format!("{base}/rollouts")).json(&body).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let text = refused.text().await.unwrap();
    assert!(text.contains("mix-aws-1") && text.contains("certfile"), "{text}");
    let dry: Value = client
        .post(format!("{base}/rollouts?dry_run=true"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dry["refused_count"], 2, "{dry}");
    assert_eq!(dry["refused"][0]["device"], "mix-aws-1", "{dry}");
    let listed: Value = client.get(format!("{base}/rollouts")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["rollouts"].as_array().map(Vec::len), Some(0), "nothing was created: {listed}");
    let bad = json!({"certfile": ""});
    body["aws_ota"] = bad;
    let empty = client.post(format!("{base}/rollouts")).json(&body).send().await.unwrap();
    assert_eq!(empty.status(), StatusCode::BAD_REQUEST);
    assert!(empty.text().await.unwrap().contains("aws_ota.certfile is empty"));

    body["aws_ota"] = json!({"certfile": "certs/fleet-b.crt", "filepath": "/ota/b.bin"});
    let created = client.post(format!("{base}/rollouts")).json(&body).send().await.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let id = created.json::<Value>().await.unwrap()["id"].as_u64().unwrap();
    let done = wait_for(Duration::from_secs(60), "the mixed rollout to end", || async {
        let rollout: Value =
            client.get(format!("{base}/rollouts/{id}")).send().await.ok()?.json().await.ok()?;
        matches!(rollout["state"].as_str(), Some("succeeded" | "completed" | "aborted")).then_some(rollout)
    })
    .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let jobs: Value =
        client.get(format!("{base}/jobs?rollout={id}")).send().await.unwrap().json().await.unwrap();
    let jobs = jobs["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 4, "{jobs:?}");
    for job in jobs {
        assert_eq!(job["state"], "succeeded", "{job}");
        let aws = job["device_id"].as_str().unwrap().starts_with("mix-aws");
        if aws {
            assert_eq!(job["aws"]["cert_file"], "certs/fleet-b.crt", "{job}");
            assert_eq!(job["aws"]["file_path"], "/ota/b.bin", "{job}");
        } else {
            assert!(job["aws"].is_null(), "a Rocky-protocol job has no job document: {job}");
        }
    }
    for device in &aws_devices {
        assert_eq!(device.seen.lock().unwrap().image.as_deref(), Some(&image[..]));
    }
    for device in &rocky_devices {
        assert!(device.seen().verdicts.iter().any(|(_, ok)| *ok), "{:?}", device.seen().verdicts);
    }

    // The CLI shows each device's profile, and a job made with it names its own certfile.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rocky"))
            .args(args)
            .args(["--server", base])
            .env("HOME", data.path())
            .env_remove("ROCKY_HTTP_TOKEN")
            .env_remove("ROCKY_HTTP_TOKEN_FILE")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{args:?}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        stdout
    };
    let table = cli(&["devices", "list"]);
    let line = |id: &str| table.lines().find(|l| l.starts_with(id)).unwrap_or_default().to_owned();
    assert!(table.lines().next().unwrap_or_default().contains("PROFILE"), "{table}");
    assert!(line("mix-aws-1 ").contains("aws-iot-ota"), "{table}");
    assert!(line("mix-1 ").contains("rocky"), "{table}");
    let shown = cli(&["devices", "show", "mix-aws-2"]);
    assert!(shown.contains("profile     aws-iot-ota (AWS's OTA agent)"), "{shown}");
    let made = cli(&[
        "job",
        "create",
        "--devices",
        "mix-aws-2",
        "--firmware",
        "mix-fw.bin",
        "--aws-certfile",
        "certs/c.crt",
        "--json",
    ]);
    let made: Value = serde_json::from_str(&made).unwrap();
    assert_eq!(made["jobs"][0]["aws"]["cert_file"], "certs/c.crt", "{made}");
    // `rocky job show` says how an AWS job is signed, not "unsigned".
    let job = made["jobs"][0]["id"].as_u64().unwrap().to_string();
    let shown = cli(&["job", "show", &job]);
    assert!(shown.contains("signed   sig-sha256-ecdsa ME"), "{shown}");
    assert!(shown.contains("checked with certs/c.crt on the device"), "{shown}");
    assert!(!shown.contains("unsigned"), "{shown}");
    // Its timeline says when each step came, to the millisecond.
    let stamped = shown.lines().skip_while(|l| !l.starts_with("timeline:")).nth(1).unwrap_or_default();
    let stamp = stamped.trim_start().split(" UTC  ").next().unwrap_or_default();
    assert!(stamp.len() == 23 && stamp.as_bytes()[19] == b'.', "{shown}");
}

/// Signed offline: `rocky sign --format aws` writes `IMAGE.sig-sha256-ecdsa` with a key Rocky
/// never holds, `rocky job create --firmware ./IMAGE` attaches it after the upload (the server
/// checks it with `firmware.trusted_keys`), and the AWS device verifies that very signature; a
/// signature of an untrusted key is refused by name, as is an Ed25519 key for `--format aws`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_aws_signature_is_attached_by_the_cli_and_checked_by_the_device() {
    use reqwest::StatusCode;
    use serde_json::Value;
    // Rocky holds no key: it trusts the CI's public half only.
    let config = "[firmware]\ntrusted_keys = [\"{public}\"]\n\n[aws_ota]\ncertfile = \"certs/ci.crt\"\n";
    let Served { broker, data, key: ci_key, client, base, .. } = &served("ci.pem", config).await;
    let put = client
        .put(format!("{base}/devices/aws-offline"))
        .json(&serde_json::json!({"profile": "aws-iot-ota"}));
    assert_eq!(put.send().await.unwrap().status(), StatusCode::CREATED);
    let device = AwsDevice::start(broker.url().port, "aws-offline", verifying(ci_key)).await;

    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_rocky"))
            .args(args)
            .current_dir(data.path())
            .env("HOME", data.path())
            .env_remove("ROCKY_HTTP_TOKEN")
            .env_remove("ROCKY_HTTP_TOKEN_FILE")
            .output()
            .unwrap()
    };
    let image = test_image(7000, 61);
    std::fs::write(data.path().join("fw.bin"), &image).unwrap();
    let signed = cli(&["sign", "--format", "aws", "--key", "ci.pem", "fw.bin"]);
    let said = String::from_utf8_lossy(&signed.stdout);
    assert!(signed.status.success(), "{said}{}", String::from_utf8_lossy(&signed.stderr));
    assert!(said.contains("sig-sha256-ecdsa: fw.bin.sig-sha256-ecdsa"), "{said}");
    let signature = std::fs::read_to_string(data.path().join("fw.bin.sig-sha256-ecdsa")).unwrap();
    assert!(rocky::signing::aws_signature_verifies(&ci_key.public(), &image, &signature));
    // The flags of a COSE manifest and an Ed25519 key are refused by name.
    let ed = data.path().join("ed.pem");
    std::fs::write(&ed, SigningKey::generate(Alg::Ed25519).unwrap().to_pkcs8_pem().unwrap().as_str())
        .unwrap();
    let refused = cli(&["sign", "--format", "aws", "--key", "ed.pem", "--out", "x.sig", "fw.bin"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("es256"));
    let refused = cli(&["sign", "--format", "aws", "--key", "ci.pem", "--seq", "3", "fw.bin"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--version and --seq go into a COSE manifest"));

    let made = cli(&[
        "job",
        "create",
        "--devices",
        "aws-offline",
        "--firmware",
        "./fw.bin",
        "--json",
        "--server",
        base,
    ]);
    let stdout = String::from_utf8_lossy(&made.stdout);
    assert!(made.status.success(), "{stdout}{}", String::from_utf8_lossy(&made.stderr));
    assert!(String::from_utf8_lossy(&made.stderr).contains("sig-sha256-ecdsa attached"));
    let made: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(made["jobs"][0]["aws"]["signature"].as_str(), Some(signature.trim()), "{made}");
    let id = made["jobs"][0]["id"].as_u64().unwrap();
    let done = wait_for(Duration::from_secs(30), "the AWS device's job to end", || async {
        let job: Value = client.get(format!("{base}/jobs/{id}")).send().await.ok()?.json().await.ok()?;
        matches!(job["state"].as_str(), Some("succeeded" | "failed" | "timed_out")).then_some(job)
    })
    .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(device.seen.lock().unwrap().image.as_deref(), Some(&image[..]));

    // Another key's signature: refused, naming why; the attached one stays.
    let sha = made["jobs"][0]["image"]["sha256"].as_str().unwrap().to_owned();
    let stranger = aws_signature(&SigningKey::generate(Alg::Es256).unwrap(), &image).unwrap();
    let answer =
        client.put(format!("{base}/firmware/{sha}/aws-signature")).body(stranger).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    assert!(
        answer.text().await.unwrap().contains("does not verify over this image with any trusted ES256 key")
    );
    let shown: Value =
        client.get(format!("{base}/firmware/{sha}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(shown["aws_signature"].as_str(), Some(signature.trim()), "{shown}");
    // The console attached to this server attaches what it finds beside a file the same way.
    use rocky::tui::source::Source as _;
    let console = rocky::tui::source::Remote::connect(base, None).unwrap();
    let other = Image::new("other.bin", test_image(3000, 62));
    let refused = console.attach_aws_signature(other.clone(), signature.clone()).await.unwrap_err();
    assert!(refused.contains("does not verify"), "{refused}");
    let own = aws_signature(ci_key, other.bytes()).unwrap();
    console.attach_aws_signature(other.clone(), own.clone()).await.unwrap();
    let other_sha = rocky::protocol::sha256_hex(other.sha256());
    let shown: Value =
        client.get(format!("{base}/firmware/{other_sha}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(shown["aws_signature"].as_str(), Some(own.as_str()), "{shown}");
    let long = client
        .put(format!("{base}/firmware/{sha}/aws-signature"))
        .body("A".repeat(4096))
        .send()
        .await
        .unwrap();
    assert_eq!(long.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

/// A device whose new image fails its self test says FAILED "rejected: …" and runs its old
/// image again: the job ends `rolled_back` with the agent's words. A job cancelled while its
/// device downloads tells the device "no job" on notify-next, and the device drops the download.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_self_test_rolls_back_and_a_cancel_tells_the_device() {
    use crate::support::aws_device::AwsMode;
    let (broker, runtime) = in_process().await;
    let handle = runtime.handle.clone();
    let signer = SigningKey::generate(Alg::Es256).unwrap();
    let port = broker.url().port;
    let rejects =
        AwsDevice::start_as(port, "aws-rejects", verifying(&signer), AwsMode::RejectsSelfTest).await;
    let stalls = AwsDevice::start_as(port, "aws-stalls", verifying(&signer), AwsMode::Stalls).await;
    let image = Image::new("aws-fw.bin", test_image(60_000, 71));
    let jobs = handle.submit(aws_specs(&["aws-rejects", "aws-stalls"], &image, &signer)).await.unwrap();
    let (back, stalled) = (jobs[0].id, jobs[1].id);
    let job = wait_for(Duration::from_secs(30), "the rejecting device's job to end", || async {
        handle.job(back).filter(|job| job.state.is_final())
    })
    .await;
    assert_eq!(job.state, JobState::RolledBack, "{job:?}");
    assert_eq!(
        job.error.as_deref(),
        Some(
            "the device rejected the new image in its self test and runs the one before (rejected: 0x00000000)"
        )
    );
    assert!(rejects.seen.lock().unwrap().image.is_some());

    wait_for(Duration::from_secs(30), "the stalling device's download to begin", || async {
        (stalls.seen.lock().unwrap().blocks >= 8).then_some(())
    })
    .await;
    assert_eq!(handle.job(stalled).unwrap().state, JobState::Transferring);
    handle.cancel(stalled).await.unwrap();
    wait_for(Duration::from_secs(10), "the cancelled device to hear \"no job\"", || async {
        (stalls.seen.lock().unwrap().dropped == 1).then_some(())
    })
    .await;
    assert_eq!(handle.job(stalled).unwrap().state, JobState::Cancelled);
    runtime.shutdown().await;
}

/// `rocky sim --profile aws-iot-ota`'s devices (the fleet in this process), each on its own
/// connection: one passes its self test, one fails it (rolled back), one trusts another key
/// (its signature check fails), one rejects the job, one damages what it received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_aws_devices_update_roll_back_and_refuse_as_the_agent_does() {
    use rocky::sim::{Behavior, BehaviorPlan, Fleet, FleetConfig, Selection};
    let (broker, runtime) = in_process().await;
    let handle = runtime.handle.clone();
    let signer = SigningKey::generate(Alg::Es256).unwrap();
    let mut trust = rocky::signing::TrustedKeys::default();
    trust.add(signer.public(), "Rocky's key".into());
    let mut config = FleetConfig::new(broker.url(), 5);
    config.prefix = "thing-".into();
    config.model.profile = rocky::inventory::Profile::AwsIotOta;
    config.model.trust = Some(Arc::new(trust));
    config.model.reboot_delay = Duration::from_millis(100);
    config.rollback = Some(Selection::List(vec!["2".into()]));
    config.distrust = Some(Selection::List(vec!["3".into()]));
    config.plan = BehaviorPlan::default()
        .with(Behavior::Nack, Selection::List(vec!["4".into()]))
        .with(Behavior::Corrupt, Selection::List(vec!["5".into()]));
    let fleet = Fleet::start(&config).unwrap();
    assert!(fleet.wait_connected(Duration::from_secs(20)).await);

    let image = Image::new("aws-fw.bin", test_image(40_000, 81));
    let things: Vec<String> = fleet.ids().iter().map(ToString::to_string).collect();
    let things: Vec<&str> = things.iter().map(String::as_str).collect();
    let jobs = handle.submit(aws_specs(&things, &image, &signer)).await.unwrap();
    let ends = wait_for(Duration::from_secs(30), "every simulated AWS device's job to end", || async {
        let ends: Vec<_> =
            jobs.iter().filter_map(|job| handle.job(job.id).filter(|j| j.state.is_final())).collect();
        (ends.len() == jobs.len()).then_some(ends)
    })
    .await;
    let states: Vec<_> = ends.iter().map(|job| (job.device_id.to_string(), job.state)).collect();
    assert_eq!(
        states,
        [
            ("thing-01".to_owned(), JobState::Succeeded),
            ("thing-02".to_owned(), JobState::RolledBack),
            ("thing-03".to_owned(), JobState::Failed),
            ("thing-04".to_owned(), JobState::Rejected),
            ("thing-05".to_owned(), JobState::Failed),
        ]
    );
    assert!(ends[0].confirmed_at.is_some(), "through confirming");
    assert!(ends[2].error.as_deref().unwrap_or_default().starts_with("the signature check failed"));
    assert!(ends[4].error.as_deref().unwrap_or_default().starts_with("the signature check failed"));
    let good = fleet.report(&DeviceId::parse("thing-01").unwrap()).unwrap();
    assert_eq!(good.bytes, 40_000, "each block once");
    assert_eq!(good.restarted_downloads, 0, "no job message came while it downloaded");
    fleet.stop().await;
    runtime.shutdown().await;
}

/// Runs `program` in `dir` (HOME there too); its output, which must be a success.
fn run_in(dir: &std::path::Path, program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (openssl is needed: apt-get install openssl)"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{program} {args:?}: {text}");
    text
}

/// OpenSSL checks, with the certificate `codesign.crt` in `dir`, the signature `rocky sign
/// --format aws` writes with `signing.pem`, and refuses it over a changed image.
fn openssl_verifies_with(dir: &std::path::Path) {
    let rocky = env!("CARGO_BIN_EXE_rocky");
    std::fs::write(dir.join("app.bin"), test_image(50_000, 91)).unwrap();
    run_in(dir, rocky, &["sign", "--format", "aws", "--key", "signing.pem", "app.bin"]);
    let text = std::fs::read_to_string(dir.join("app.bin.sig-sha256-ecdsa")).unwrap();
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD.decode(text.trim()).unwrap();
    std::fs::write(dir.join("sig.der"), der).unwrap();
    run_in(dir, "openssl", &["x509", "-pubkey", "-noout", "-in", "codesign.crt", "-out", "pub.pem"]);
    let verified = run_in(
        dir,
        "openssl",
        &["dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig.der", "app.bin"],
    );
    assert!(verified.contains("Verified OK"), "{verified}");
    let mut changed = test_image(50_000, 91).to_vec();
    changed[7] ^= 1;
    std::fs::write(dir.join("app.bin"), changed).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig.der", "app.bin"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// OpenSSL, an implementation of its own, checks what devices check: a certificate made with
/// `openssl req -x509` from the key `rocky keys generate --alg es256` writes verifies the
/// signature `rocky sign --format aws` writes (the README's recipe, run as written).
#[test]
fn openssl_verifies_rocky_sign_format_aws_with_a_certificate_of_rockys_key() {
    let dir = tempfile::tempdir().unwrap();
    let rocky = env!("CARGO_BIN_EXE_rocky");
    run_in(dir.path(), rocky, &["keys", "generate", "--alg", "es256", "--out", "signing.pem"]);
    run_in(
        dir.path(),
        "openssl",
        &[
            "req",
            "-new",
            "-x509",
            "-key",
            "signing.pem",
            "-subj",
            "/CN=rocky code signing",
            "-days",
            "3650",
            "-addext",
            "keyUsage=digitalSignature",
            "-addext",
            "extendedKeyUsage=codeSigning",
            "-out",
            "codesign.crt",
        ],
    );
    openssl_verifies_with(dir.path());
}

/// `rocky keys cert` makes that certificate without OpenSSL: OpenSSL reads it as a code-signing
/// certificate of the key and verifies with it; `rocky keys show` reads its key (the same key
/// id); an Ed25519 key, an existing file and a bad name are refused in words.
#[test]
fn rocky_keys_cert_makes_a_code_signing_certificate_openssl_verifies_with() {
    let dir = tempfile::tempdir().unwrap();
    let rocky = env!("CARGO_BIN_EXE_rocky");
    let made = run_in(dir.path(), rocky, &["keys", "generate", "--alg", "es256", "--out", "signing.pem"]);
    let kid = made.lines().find(|l| l.starts_with("kid: ")).unwrap().to_owned();
    let cert = run_in(dir.path(), rocky, &["keys", "cert", "--key", "signing.pem", "--out", "codesign.crt"]);
    assert!(cert.contains(&kid), "{cert}");
    let text = run_in(dir.path(), "openssl", &["x509", "-in", "codesign.crt", "-noout", "-text"]);
    assert!(text.contains("CN=rocky code signing") || text.contains("CN = rocky code signing"), "{text}");
    assert!(text.contains("Code Signing") && text.contains("Digital Signature"), "{text}");
    openssl_verifies_with(dir.path());
    let shown = run_in(dir.path(), rocky, &["keys", "show", "codesign.crt"]);
    assert!(shown.contains(&kid), "the certificate's key is the signing key: {shown}");

    let refused = |args: &[&str]| {
        let out = std::process::Command::new(rocky).args(args).current_dir(dir.path()).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let again = refused(&["keys", "cert", "--key", "signing.pem", "--out", "codesign.crt"]);
    assert!(again.contains("codesign.crt"), "an existing file is kept: {again}");
    run_in(dir.path(), rocky, &["keys", "generate", "--out", "ed.pem"]);
    let ed = refused(&["keys", "cert", "--key", "ed.pem", "--out", "ed.crt"]);
    assert!(ed.contains("--alg es256"), "{ed}");
    let name = refused(&["keys", "cert", "--key", "signing.pem", "--out", "x.crt", "--cn", ""]);
    assert!(name.contains("--cn"), "{name}");
}
