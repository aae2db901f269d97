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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aws_device_updates_through_self_test_and_a_bad_signature_fails_its_job() {
    let broker = EmbeddedBroker::start(None).unwrap();
    let runtime = Runtime::start(RuntimeConfig::new(broker.url()), Arc::new(Library::new()));
    let handle = runtime.handle.clone();
    wait_for(Duration::from_secs(20), "Rocky to connect", || async {
        handle.status().await.ok().filter(|s| s.connection.is_connected()).map(|_| ())
    })
    .await;
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
    let signature = aws_signature(&signer, image.bytes()).unwrap();
    let aws = AwsJob { cert_file: "certs/codesign.crt".into(), file_path: "firmware.bin".into(), signature };
    let spec = |thing: &str| JobSpec {
        aws: Some(aws.clone()),
        ..JobSpec::new(DeviceId::parse(thing).unwrap(), image.clone())
    };
    let jobs = handle.submit(vec![spec("aws-thing-1"), spec("aws-thing-2")]).await.unwrap();
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
    assert_eq!(seen.blocks, 5, "each of the 5 blocks once");
    // The job went through confirming (the device rebooted into self test).
    let history = handle.job(ok).unwrap();
    assert!(history.confirmed_at.is_some());
    assert!(refuses.seen.lock().unwrap().image.is_some());
    runtime.shutdown().await;
}
