//! What is news for receivers: every change of a rollout's state (from the rollouts' own
//! notices) and every job that newly ends failed or rolled back (from the lossless job feed),
//! turned into JSON once and offered to each receiver that asked for its kind. Nothing here
//! waits on a receiver.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::delivery::{Outgoing, Sender};
use super::settings::EventKind;
use crate::engine::{JobId, JobState};
use crate::runtime::RolloutNotice;
use crate::service::{JobChange, Service};
use crate::snapshot::JobSnapshot;

/// Receivers and the kinds each asked for.
pub type Routes = Vec<(Sender, Vec<EventKind>)>;

/// Runs until the runtime stops.
pub async fn run(service: Service, routes: Routes) {
    let mut notices = service.rollout_notices();
    let mut jobs = service.follow_jobs();
    // Jobs known to have ended. The feed's first batch (and a later reset, after falling
    // behind retention) says how things stand: `quiet` until it is whole, news in it only
    // what ended since `since` (the runtime's start, or the last whole batch).
    let mut ended: HashSet<JobId> = HashSet::new();
    let mut quiet = true;
    let mut since = service.clock().started_ms();
    loop {
        tokio::select! {
            notice = notices.recv() => match notice {
                Ok(notice) => offer(&routes, EventKind::Rollout, rollout_body(&service, &notice)),
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "rollout notifications were missed: the notifier fell behind");
                }
                Err(RecvError::Closed) => return,
            },
            batch = jobs.next(4096) => {
                let Some(batch) = batch else { return };
                if batch.reset {
                    ended.clear();
                    quiet = true;
                }
                let read_at = now_ms(&service);
                for change in &batch.changes {
                    match change {
                        JobChange::Job(job) if job.state.is_final() => {
                            let news = !quiet || job.finished_at.is_some_and(|at| at >= since);
                            if ended.insert(job.id)
                                && news
                                && let Some(kind) = kind_of(job.state)
                            {
                                offer(&routes, kind, job_body(&service, job, kind));
                            }
                        }
                        JobChange::Job(_) => {}
                        JobChange::Removed(id) => {
                            ended.remove(id);
                        }
                    }
                }
                if batch.complete {
                    quiet = false;
                    since = read_at;
                }
            }
        }
    }
}

/// Which kind a job's final state is news of, if any.
fn kind_of(state: JobState) -> Option<EventKind> {
    match state {
        JobState::RolledBack => Some(EventKind::RolledBack),
        state if state.is_failure() => Some(EventKind::JobFailed),
        _ => None,
    }
}

fn offer(routes: &Routes, kind: EventKind, body: serde_json::Value) {
    let Ok(bytes) = serde_json::to_vec(&body) else { return };
    let outgoing = Arc::new(Outgoing { event: kind.as_str(), body: bytes.into() });
    for (sender, kinds) in routes {
        if kinds.contains(&kind) {
            sender.offer(outgoing.clone());
        }
    }
}

fn now_ms(service: &Service) -> u64 {
    service.clock().unix_ms(service.clock().now())
}

/// `{"id": "rollout:3:change:2", "event": "rollout", "at", "rollout": {id, name, from, to, reason}}`.
fn rollout_body(service: &Service, notice: &RolloutNotice) -> serde_json::Value {
    json!({
        "id": format!("rollout:{}:change:{}", notice.rollout, notice.change),
        "event": EventKind::Rollout.as_str(),
        "at": now_ms(service),
        "rollout": {
            "id": notice.rollout,
            "name": notice.name,
            "from": notice.from.as_str(),
            "to": notice.to.as_str(),
            "reason": notice.reason,
        },
    })
}

/// `{"id": "job:12:failed", "event": "job_failed", "at", "job": {id, device, state, error,
/// rollout, image}}`.
fn job_body(service: &Service, job: &JobSnapshot, kind: EventKind) -> serde_json::Value {
    json!({
        "id": format!("job:{}:{}", job.id, job.state.as_str()),
        "event": kind.as_str(),
        "at": now_ms(service),
        "job": {
            "id": job.id,
            "device": job.device_id,
            "state": job.state.as_str(),
            "error": job.error,
            "rollout": job.rollout_id,
            "image": {"name": job.image.name, "sha256": job.image.sha256},
        },
    })
}
