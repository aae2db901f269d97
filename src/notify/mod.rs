//! Notifications: `[[notify]]` receivers hear of rollouts changing state, jobs failing and
//! devices rolling back, as signed JSON POSTs, without anyone watching a terminal.
//!
//! Each POST carries `X-Rocky-Event` (the kind) and `X-Rocky-Signature: sha256=<hex
//! HMAC-SHA256 of the body with the receiver's secret>`. The engine is never held up: news is
//! offered to each receiver's bounded queue ([`QUEUE`]) without waiting, a full queue drops it
//! (counted), and each receiver's task tries a notification up to five times with backoff
//! (1 s, doubling to 60 s) before giving it up (counted, said in the log). Deliveries are at
//! least once: every body has an `id` that names its news across retries, restarts and
//! instances, so a receiver can drop repeats.

mod delivery;
mod settings;
mod watch;

pub use delivery::{Outgoing, QUEUE, RetryPolicy, signature};
pub use settings::{EventKind, MAX_RECEIVERS, NotifySection, check};

use crate::secret::Secret;
use crate::service::Service;

/// Starts a task per receiver and the watcher that feeds them; nothing when there are none.
/// A secret file that cannot be read is an error naming it (never its content).
pub fn start(service: &Service, receivers: &[NotifySection], policy: RetryPolicy) -> Result<(), String> {
    if receivers.is_empty() {
        return Ok(());
    }
    check(receivers)?;
    let mut routes = Vec::with_capacity(receivers.len());
    for (index, section) in receivers.iter().enumerate() {
        let secret = Secret::from_file("notify.secret_file", std::path::Path::new(&section.secret_file))
            .map_err(|e| format!("notify[{index}]: {e}"))?;
        let url = reqwest::Url::parse(&section.url).map_err(|e| format!("notify[{index}].url: {e}"))?;
        let receiver = delivery::Receiver {
            index,
            url,
            shown: section.shown_url(),
            secret: secret.expose().as_bytes().to_vec(),
            policy,
        };
        routes.push((delivery::start(receiver, service.metrics().clone())?, section.kinds()));
        tracing::info!(receiver = index, url = %section.shown_url(), events = ?section.events, "notifications on");
    }
    tokio::spawn(watch::run(service.clone(), routes));
    Ok(())
}
