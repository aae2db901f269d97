//! A quiet subscription (`rocky serve`'s log below debug) hears every job's changes and none
//! of the chatter (traffic, per-chunk progress), whether or not a louder subscriber listens.

use std::sync::Arc;
use std::time::Duration;

use crate::support::test_image;
use rocky::broker::EmbeddedBroker;
use rocky::engine::{Event, JobSpec, JobState};
use rocky::firmware::{Image, Library};
use rocky::runtime::{EventStream, Received, Runtime, RuntimeConfig, RuntimeEvent};
use rocky::sim::{Fleet, FleetConfig};

/// Every event until the job's success, or a failure after 60 s.
async fn until_succeeded(stream: &mut EventStream) -> Vec<RuntimeEvent> {
    let mut seen = Vec::new();
    let collecting = async {
        while let Some(received) = stream.recv().await {
            let Received::Event(envelope) = received else { continue };
            let done = matches!(
                &envelope.event,
                RuntimeEvent::Engine(Event::StateChanged { to: JobState::Succeeded, .. })
            );
            seen.push(envelope.event.clone());
            if done {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), collecting).await.expect("the job succeeded within 60 s");
    seen
}

fn chatter(events: &[RuntimeEvent]) -> usize {
    events.iter().filter(|e| e.is_chatter()).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_subscription_hears_job_changes_without_chatter() {
    let broker = EmbeddedBroker::start(None).unwrap();
    let fleet = Fleet::start(&FleetConfig::new(broker.url(), 2)).unwrap();
    assert!(fleet.wait_connected(Duration::from_secs(20)).await, "fleet connected");
    let runtime = Runtime::start(RuntimeConfig::new(broker.url()), Arc::new(Library::new()));
    let ids = fleet.ids();

    // Alone: the job's changes, and nothing else.
    let mut quiet = runtime.handle.subscribe_quiet();
    let image = Image::new("fw-a.bin", test_image(64 * 1024, 1));
    runtime.handle.submit(vec![JobSpec::new(ids[0].clone(), image)]).await.unwrap();
    let heard = until_succeeded(&mut quiet).await;
    assert_eq!(chatter(&heard), 0, "{heard:?}");
    assert!(heard.iter().any(|e| matches!(e, RuntimeEvent::Engine(Event::Created(_)))));

    // Beside a subscriber that takes everything: that one hears the traffic and every chunk,
    // the quiet one still none.
    let mut loud = runtime.handle.subscribe();
    let image = Image::new("fw-b.bin", test_image(64 * 1024, 2));
    runtime.handle.submit(vec![JobSpec::new(ids[1].clone(), image)]).await.unwrap();
    let everything = until_succeeded(&mut loud).await;
    let heard = until_succeeded(&mut quiet).await;
    assert_eq!(chatter(&heard), 0, "{heard:?}");
    let chunks =
        everything.iter().filter(|e| matches!(e, RuntimeEvent::Engine(Event::ChunkSent { .. }))).count();
    assert_eq!(chunks, 16, "64 KiB in 4 KiB chunks");
    assert!(everything.iter().any(|e| matches!(e, RuntimeEvent::Traffic(_))));
    runtime.shutdown().await;
    fleet.stop().await;
}
