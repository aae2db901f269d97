//! The runtime in this process as the console's source: every action is the one `service/`
//! and the runtime's `Handle` give the HTTP API too.

use std::sync::Arc;

use super::{Answer, INVENTORY_SHOWN, ROLLOUTS_SHOWN, RolloutVerb, Source};
use crate::clock::Clock;
use crate::engine::{JobId, JobSpec};
use crate::firmware::{Image, Library, LoadLimits};
use crate::inventory::{Device, DeviceQuery};
use crate::rollout::{RolloutId, RolloutRequest, RolloutView};
use crate::runtime::{ConnectionState, EventStream, Handle, JobFollower};
use crate::service;
use crate::snapshot::HistoryRecord;
use crate::snapshot::JobSnapshot;

pub struct Local {
    handle: Handle,
}

impl Local {
    pub fn new(handle: Handle) -> Self {
        Self { handle }
    }
}

impl Source for Local {
    fn attached(&self) -> bool {
        false
    }

    fn clock(&self) -> Clock {
        *self.handle.clock()
    }

    fn follow_jobs(&self) -> JobFollower {
        self.handle.follow_jobs()
    }

    fn subscribe(&self) -> Option<EventStream> {
        Some(self.handle.subscribe())
    }

    fn library(&self) -> Arc<Library> {
        self.handle.library().clone()
    }

    fn connection(&self) -> Answer<'_, Option<ConnectionState>> {
        Box::pin(async move { Ok(self.handle.status().await.ok().map(|status| status.connection)) })
    }

    fn inventory(&self) -> Answer<'_, Vec<Device>> {
        let query = DeviceQuery { limit: INVENTORY_SHOWN, ..Default::default() };
        let devices = self.handle.inventory().list(&query);
        Box::pin(async move { Ok(devices) })
    }

    fn submit(&self, specs: Vec<JobSpec>) -> Answer<'_, usize> {
        Box::pin(
            async move { self.handle.submit(specs).await.map(|jobs| jobs.len()).map_err(|e| e.to_string()) },
        )
    }

    fn cancel(&self, id: JobId) -> Answer<'_, ()> {
        Box::pin(async move { self.handle.cancel(id).await.map(|_| ()).map_err(|e| e.to_string()) })
    }

    fn retry<'a>(&'a self, job: &'a JobSnapshot, limits: &'a LoadLimits) -> Answer<'a, usize> {
        Box::pin(async move {
            service::retry(&self.handle, job, limits).await.map(|jobs| jobs.len()).map_err(|e| e.to_string())
        })
    }

    fn rollouts(&self) -> Answer<'_, Vec<RolloutView>> {
        let list = self.handle.rollouts().list(ROLLOUTS_SHOWN);
        Box::pin(async move { Ok(list) })
    }

    fn rollout(&self, id: RolloutId) -> Answer<'_, RolloutView> {
        let view = service::rollout_view(&self.handle, id).map_err(|e| e.to_string());
        Box::pin(async move { view })
    }

    fn create_rollout(&self, request: RolloutRequest, image: Image) -> Answer<'_, RolloutId> {
        Box::pin(async move {
            let plan = service::plan_rollout(&self.handle, &request).map_err(|e| e.to_string())?;
            let started =
                service::start_rollout(&self.handle, plan, image).await.map_err(|e| e.to_string())?;
            Ok(started.rollout.id)
        })
    }

    fn control_rollout(&self, id: RolloutId, verb: RolloutVerb) -> Answer<'_, ()> {
        Box::pin(async move {
            service::control_rollout(&self.handle, id, verb)
                .await
                .map(|_| ())
                .map_err(|e| format!("cannot {} rollout {id}: {e}", verb.as_str()))
        })
    }

    fn history(&self, id: JobId) -> Answer<'_, Vec<HistoryRecord>> {
        Box::pin(async move {
            match self.handle.history(id).await {
                Ok(history) => history,
                Err(e) => Err(e.to_string()),
            }
        })
    }
}
