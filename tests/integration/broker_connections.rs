//! Secured and hostile brokers, all real mosquitto processes started by the test: TLS with
//! client certificates and a password file (the CA, server and client certificates are made at
//! test time), each misconfiguration failing with its own words, two Rockys on one broker, a
//! retained message too large to deliver, and a subscription the broker's ACL refuses.

use std::sync::Arc;
use std::time::Duration;

use crate::support::{Mosquitto, Pki, mosquitto_password_file, test_image, wait_for};
use rocky::config::{Config, broker_connection};
use rocky::engine::{JobSpec, JobState};
use rocky::firmware::{Image, Library};
use rocky::mqtt::{BrokerConnection, MqttVersion};
use rocky::runtime::{ConnectionState, JobFilter, Received, Runtime, RuntimeConfig, RuntimeEvent};
use rocky::sim::{Fleet, FleetConfig};

const USER: &str = "rocky";
const PASSWORD: &str = "correct horse battery staple";

/// A secured broker: TLS on `localhost` with client certificates required, and a password.
fn secured_broker(test: &str, pki: &Pki) -> Option<Mosquitto> {
    let passwords = mosquitto_password_file(pki.dir.path(), USER, PASSWORD);
    let extra = format!(
        "{}allow_anonymous false\npassword_file {}\n",
        pki.mosquitto_tls_lines(),
        passwords.display()
    );
    Mosquitto::start_with(test, &extra)
}

/// The connection a user's rocky.toml and `ROCKY_MQTT_PASSWORD` describe.
fn connection(url: &str, pki: &Pki, ca: &str, client_cert: bool, password: &str) -> BrokerConnection {
    let mut config = Config::default();
    config.mqtt.url = url.to_owned();
    config.mqtt.ca_file = pki.path(ca).display().to_string();
    if client_cert {
        config.mqtt.client_cert = pki.path("client.pem").display().to_string();
        config.mqtt.client_key = pki.path("client.key").display().to_string();
    }
    config.mqtt.username = USER.to_owned();
    let password = password.to_owned();
    broker_connection(&config, move |var| (var == "ROCKY_MQTT_PASSWORD").then(|| password.clone()), false)
        .expect("the connection settings are valid")
}

/// A connection with nothing but its URL set.
fn plain_connection(url: &str) -> BrokerConnection {
    let mut config = Config::default();
    config.mqtt.url = url.to_owned();
    broker_connection(&config, |_| None, false).expect("the connection settings are valid")
}

async fn wait_connected(runtime: &Runtime) {
    wait_for(Duration::from_secs(20), "Rocky to connect", || async {
        runtime.handle.status().await.ok().filter(|s| s.connection.is_connected()).map(|_| ())
    })
    .await;
}

/// Waits until the runtime reports a failure and returns its reason.
async fn wait_failure(runtime: &Runtime) -> String {
    wait_for(Duration::from_secs(20), "a connection failure", || async {
        runtime.handle.status().await.ok()?.connection.reason().map(str::to_owned)
    })
    .await
}

fn jobs_for(fleet: &Fleet, image: &Image) -> Vec<JobSpec> {
    fleet.ids().into_iter().map(|device| JobSpec::new(device, image.clone())).collect()
}

async fn wait_all_final(
    runtime: &Runtime,
    count: usize,
) -> Vec<std::sync::Arc<rocky::snapshot::JobSnapshot>> {
    wait_for(Duration::from_secs(60), "every job to finish", || async {
        let jobs = runtime.handle.jobs(&JobFilter::default());
        (jobs.len() == count && jobs.iter().all(|j| j.state.is_final())).then_some(jobs)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_runs_through_tls_with_client_certificates_and_a_password() {
    let pki = Pki::new();
    let Some(mosquitto) = secured_broker("tls_rollout", &pki) else { return };
    let url = format!("mqtts://localhost:{}", mosquitto.port);
    let rocky = connection(&url, &pki, "ca.pem", true, PASSWORD);
    let runtime = Runtime::start(RuntimeConfig::with_connection(rocky.clone()), Arc::new(Library::new()));
    // The simulated devices take the same TLS and credentials (each with its own client id).
    let fleet = Fleet::start(&FleetConfig::with_connection(rocky, 3)).unwrap();
    assert!(fleet.wait_connected(Duration::from_secs(20)).await, "devices connect through TLS");
    wait_connected(&runtime).await;
    let image = Image::new("tls.bin", test_image(40_000, 1));
    runtime.handle.submit(jobs_for(&fleet, &image)).await.unwrap();
    let jobs = wait_all_final(&runtime, 3).await;
    assert!(jobs.iter().all(|j| j.state == JobState::Succeeded), "{jobs:?}");
    runtime.shutdown().await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_misconfiguration_fails_with_its_own_words() {
    let pki = Pki::new();
    let Some(mosquitto) = secured_broker("tls_mistakes", &pki) else { return };
    let by_name = format!("mqtts://localhost:{}", mosquitto.port);
    let by_ip = format!("mqtts://127.0.0.1:{}", mosquitto.port);
    let cases = [
        (
            "wrong CA",
            connection(&by_name, &pki, "other-ca.pem", true, PASSWORD),
            "not signed by a trusted CA",
        ),
        (
            "wrong host name",
            connection(&by_ip, &pki, "ca.pem", true, PASSWORD),
            "not valid for \"127.0.0.1\"",
        ),
        ("wrong password", connection(&by_name, &pki, "ca.pem", true, "wrong"), "user name or password"),
        (
            "no client certificate",
            connection(&by_name, &pki, "ca.pem", false, PASSWORD),
            "client certificate",
        ),
    ];
    let runs = cases.into_iter().map(|(what, connection, expected)| async move {
        let runtime = Runtime::start(RuntimeConfig::with_connection(connection), Arc::new(Library::new()));
        let seen = record_connection_states(&runtime);
        let reason = wait_failure(&runtime).await;
        assert!(reason.contains(expected), "{what}: {reason:?} should contain {expected:?}");
        assert!(!reason.contains(PASSWORD), "{what}: {reason}");
        // Backing off, not spinning: 100 ms doubling gives at most 7 tries in 5 s.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let tries =
            seen.lock().unwrap().iter().filter(|s| matches!(s, ConnectionState::Reconnecting { .. })).count();
        assert!((2..=8).contains(&tries), "{what}: {tries} tries in 5 s");
        runtime.shutdown().await;
    });
    futures_util::future::join_all(runs).await;
}

/// Waits until the runtime has failed `count` times and returns the reasons, newest last.
async fn wait_failures(
    runtime: &Runtime,
    seen: &std::sync::Mutex<Vec<ConnectionState>>,
    count: usize,
) -> Vec<String> {
    wait_for(Duration::from_secs(30), "connection failures", || async {
        let reasons: Vec<String> = seen
            .lock()
            .unwrap()
            .iter()
            .filter_map(|s| match s {
                ConnectionState::Reconnecting { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .collect();
        (reasons.len() >= count).then_some(reasons)
    })
    .await
    .into_iter()
    .chain(runtime.handle.status().await.ok().and_then(|s| s.connection.reason().map(str::to_owned)))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_port_given_as_plain_and_a_plain_port_given_as_tls_are_named() {
    let pki = Pki::new();
    let Some(tls) = secured_broker("tls_port_as_plain", &pki) else { return };
    let Some(plain) = Mosquitto::start("plain_port_as_tls") else { return };
    let cases = [
        (
            "plain URL, TLS port",
            plain_connection(&format!("mqtt://localhost:{}", tls.port)),
            format!("localhost:{} speaks TLS: use mqtts://", tls.port),
        ),
        (
            "TLS URL, plain port",
            connection(&format!("mqtts://localhost:{}", plain.port), &pki, "ca.pem", true, PASSWORD),
            format!("localhost:{} does not speak TLS", plain.port),
        ),
    ];
    for (what, connection, expected) in cases {
        let runtime = Runtime::start(RuntimeConfig::with_connection(connection), Arc::new(Library::new()));
        let seen = record_connection_states(&runtime);
        let reasons = wait_failures(&runtime, &seen, 3).await;
        for reason in &reasons {
            assert!(reason.contains(&expected), "{what}: {reason:?} should contain {expected:?}");
            assert!(!reason.contains("MQTT 5"), "{what}: not a version matter: {reason:?}");
        }
        runtime.shutdown().await;
    }
}

/// Connection states a runtime reports, collected in the background.
fn record_connection_states(runtime: &Runtime) -> Arc<std::sync::Mutex<Vec<ConnectionState>>> {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut events = runtime.handle.subscribe();
    let sink = seen.clone();
    tokio::spawn(async move {
        while let Some(received) = events.recv().await {
            if let Received::Event(envelope) = received
                && let RuntimeEvent::Connection(state) = &envelope.event
            {
                sink.lock().unwrap().push(state.clone());
            }
        }
    });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rockys_with_default_settings_share_a_broker_for_30_s() {
    let Some(mosquitto) = Mosquitto::start("two_rockys") else { return };
    let a = Runtime::start(RuntimeConfig::new(mosquitto.url()), Arc::new(Library::new()));
    let b = Runtime::start(RuntimeConfig::new(mosquitto.url()), Arc::new(Library::new()));
    let (seen_a, seen_b) = (record_connection_states(&a), record_connection_states(&b));
    wait_connected(&a).await;
    wait_connected(&b).await;
    // Watch both for 30 s: a takeover shows within milliseconds, so any fight would be seen.
    tokio::time::sleep(Duration::from_secs(30)).await;
    for (name, seen) in [("a", &seen_a), ("b", &seen_b)] {
        let states = seen.lock().unwrap().clone();
        let lost = states.iter().filter(|s| matches!(s, ConnectionState::Disconnected { .. })).count();
        assert_eq!(lost, 0, "rocky {name} lost its connection: {states:?}");
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rockys_with_one_client_id_report_the_takeover_and_back_off() {
    let Some(mosquitto) = Mosquitto::start("same_client_id") else { return };
    let start = || {
        let mut config = RuntimeConfig::new(mosquitto.url());
        config.connection.client_id = "rocky-shared-id".to_owned();
        Runtime::start(config, Arc::new(Library::new()))
    };
    let a = start();
    let seen = record_connection_states(&a);
    wait_connected(&a).await;
    let b = start();
    let reason = wait_failure(&a).await;
    assert!(reason.contains("same client id \"rocky-shared-id\""), "{reason}");
    // Backing off: the retries the two make grow further apart instead of fighting 5×/s.
    let delays = wait_for(Duration::from_secs(30), "three retries with growing delays", || {
        let states = seen.lock().unwrap().clone();
        async move {
            let delays: Vec<u64> = states
                .iter()
                .filter_map(|s| match s {
                    ConnectionState::Reconnecting { delay_ms, reason, .. }
                        if reason.contains("same client id") =>
                    {
                        Some(*delay_ms)
                    }
                    _ => None,
                })
                .collect();
            (delays.len() >= 3).then_some(delays)
        }
    })
    .await;
    assert!(delays.windows(2).all(|w| w[1] > w[0]), "delays grow: {delays:?}");
    a.shutdown().await;
    b.shutdown().await;
}

/// Publishes one message with a plain 3.1.1 client that allows big packets, and waits for the
/// broker's PUBACK (a broker that limits message sizes acknowledges, then drops it).
async fn publish(port: u16, topic: &str, payload: Vec<u8>, retain: bool) {
    let mut options = rumqttc::MqttOptions::new("test-publisher", "127.0.0.1", port);
    options.set_max_packet_size(8 * 1024 * 1024, 8 * 1024 * 1024);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 10);
    client.publish(topic, rumqttc::QoS::AtLeastOnce, retain, payload).await.unwrap();
    let acked = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or(false);
    assert!(acked, "the broker acknowledged the big message");
    let _ = client.disconnect().await;
}

/// A rollout next to a retained and a live 2 MiB message on response topics: Rocky stays
/// connected and every job succeeds.
async fn rollout_beside_oversized_messages(mosquitto: &Mosquitto, version: MqttVersion) {
    publish(mosquitto.port, "/fota/cmd_resp/evil", vec![0xA5; 2 * 1024 * 1024], true).await;
    let mut config = RuntimeConfig::new(mosquitto.url());
    config.connection.version = version;
    let runtime = Runtime::start(config, Arc::new(Library::new()));
    let seen = record_connection_states(&runtime);
    let fleet = Fleet::start(&FleetConfig::new(mosquitto.url(), 4)).unwrap();
    assert!(fleet.wait_connected(Duration::from_secs(20)).await);
    wait_connected(&runtime).await;
    let image = Image::new("big-neighbour.bin", test_image(64_000, 2));
    runtime.handle.submit(jobs_for(&fleet, &image)).await.unwrap();
    publish(mosquitto.port, "/fota/cmd_resp/dev-01", vec![0x5A; 2 * 1024 * 1024], false).await;
    let jobs = wait_all_final(&runtime, 4).await;
    assert!(jobs.iter().all(|j| j.state == JobState::Succeeded), "{jobs:?}");
    let states = seen.lock().unwrap().clone();
    assert!(
        !states.iter().any(|s| matches!(s, ConnectionState::Disconnected { .. })),
        "never disconnected: {states:?}"
    );
    runtime.shutdown().await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_2_mib_message_on_a_response_topic_does_not_disconnect_rocky() {
    let Some(mosquitto) = Mosquitto::start("oversized_retained") else { return };
    // MQTT 5 (the default): Rocky tells the broker its packet limit, and the broker holds both
    // messages back from Rocky. (Under 3.1.1 the same broker makes Rocky unable to connect.)
    rollout_beside_oversized_messages(&mosquitto, MqttVersion::Auto).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_mqtt_3_1_1_the_brokers_message_size_limit_is_what_protects_rocky() {
    // As the README says for `mqtt.version = 4`: the broker refuses big messages itself.
    let Some(mosquitto) = Mosquitto::start_with("oversized_v311", "message_size_limit 1048576\n") else {
        return;
    };
    rollout_beside_oversized_messages(&mosquitto, MqttVersion::V311).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_the_broker_refuses_is_an_error_not_a_connection() {
    let Some((mosquitto, dir)) = Mosquitto::start_refusing_subscriptions("refused_subscription") else {
        return;
    };
    let runtime = Runtime::start(RuntimeConfig::new(mosquitto.url()), Arc::new(Library::new()));
    let reason = wait_failure(&runtime).await;
    assert!(reason.contains("refused the subscription"), "{reason}");
    // And /healthz says so.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = rocky::http::ApiState::new(runtime.handle.clone(), dir.path().to_path_buf());
    tokio::spawn(rocky::http::serve(listener, state, std::future::pending()));
    let response = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["reason"].as_str().unwrap_or_default().contains("refused the subscription"), "{body}");
    let status = runtime.handle.status().await.unwrap();
    assert!(!status.connection.is_connected(), "{status:?}");
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_tls_connects_to_an_unverifiable_broker_and_says_so() {
    let pki = Pki::new();
    let Some(mosquitto) = secured_broker("insecure_tls", &pki) else { return };
    let mut config = Config::default();
    // The wrong CA and a host name the certificate lacks: only --insecure-tls gets through.
    config.mqtt.url = format!("mqtts://127.0.0.1:{}", mosquitto.port);
    config.mqtt.client_cert = pki.path("client.pem").display().to_string();
    config.mqtt.client_key = pki.path("client.key").display().to_string();
    config.mqtt.username = USER.to_owned();
    let env = |var: &str| (var == "ROCKY_MQTT_PASSWORD").then(|| PASSWORD.to_owned());
    let insecure = broker_connection(&config, env, true).unwrap();
    assert!(insecure.insecure_tls);
    let runtime = Runtime::start(RuntimeConfig::with_connection(insecure), Arc::new(Library::new()));
    wait_connected(&runtime).await;
    assert!(runtime.handle.status().await.unwrap().insecure_tls, "shown in /healthz and the console");
    runtime.shutdown().await;
}

/// A broker that takes TCP connections and never answers an MQTT 5 CONNECT (as amqtt does),
/// while a 3.1.1 CONNECT is passed through to a real broker on `upstream`. Returns its port.
async fn silent_to_mqtt_5(upstream: u16) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                // CONNECT: fixed header, remaining length, protocol name "MQTT" (2 + 4 bytes),
                // then the protocol level. 16 bytes hold all of that for any client id.
                let mut head = vec![0u8; 16];
                if client.read_exact(&mut head).await.is_err() {
                    return;
                }
                let length_bytes = head[1..].iter().position(|b| b & 0x80 == 0).unwrap_or(0) + 1;
                let level = head[1 + length_bytes + 6];
                if level == 5 {
                    // Read on, answer nothing.
                    let mut sink = [0u8; 1024];
                    while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
                    return;
                }
                let Ok(mut broker) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else {
                    return;
                };
                if broker.write_all(&head).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut broker).await;
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_falls_back_to_3_1_1_when_a_broker_never_answers_an_mqtt_5_connect() {
    let Some(mosquitto) = Mosquitto::start("silent_to_mqtt_5") else { return };
    let port = silent_to_mqtt_5(mosquitto.port).await;
    let started = std::time::Instant::now();
    let runtime =
        Runtime::start(RuntimeConfig::new(rocky::runtime::BrokerUrl::local(port)), Arc::new(Library::new()));
    // 5 s twice for the CONNACK that never comes, then 3.1.1 at once.
    wait_connected(&runtime).await;
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    let fleet = Fleet::start(&FleetConfig::new(mosquitto.url(), 1)).unwrap();
    assert!(fleet.wait_connected(Duration::from_secs(20)).await);
    let image = Image::new("fw.bin", test_image(4096, 2));
    runtime.handle.submit(jobs_for(&fleet, &image)).await.unwrap();
    let jobs = wait_all_final(&runtime, 1).await;
    assert!(jobs.iter().all(|j| j.state == JobState::Succeeded), "{jobs:?}");
    runtime.shutdown().await;
    fleet.stop().await;
}

/// mosquitto with an ACL that lets anyone read everything but write only responses and data:
/// Rocky's FOTA_REQUEST to `/fota/cmd/dev-1` is refused (MQTT 5: PUBACK "not authorized").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_the_broker_refuses_ends_the_job_failed_and_health_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("acl");
    std::fs::write(&acl, "topic read /fota/#\ntopic write /fota/cmd_resp/#\ntopic write /fota/data/#\n")
        .unwrap();
    let extra = format!("acl_file {}\n", acl.display());
    let Some(mosquitto) = Mosquitto::start_with("refused_publish", &extra) else { return };
    let mut config = RuntimeConfig::new(mosquitto.url());
    config.connection.version = MqttVersion::V5;
    let runtime = Runtime::start(config, Arc::new(Library::new()));
    wait_connected(&runtime).await;
    let image = Image::new("fw.bin", test_image(4096, 2));
    let spec = JobSpec::new("dev-1".parse().unwrap(), image);
    runtime.handle.submit(vec![spec]).await.unwrap();
    let jobs = wait_all_final(&runtime, 1).await;
    assert_eq!(jobs[0].state, JobState::Failed, "{jobs:?}");
    assert_eq!(
        jobs[0].error.as_deref(),
        Some("the broker refused publishing to /fota/cmd/dev-1: not authorized")
    );
    let status = runtime.handle.status().await.unwrap();
    let refused = status.publish_refused.unwrap_or_default();
    assert!(
        refused.contains("the broker refuses Rocky's publishes") && refused.contains("not authorized"),
        "{refused}"
    );
    runtime.shutdown().await;
}
