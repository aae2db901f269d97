//! The runtime in this process as the console's source: every action is the one `service/`
//! gives the HTTP API too.

use std::sync::Arc;

use super::{Answer, INVENTORY_PAGE, InventoryPage, ROLLOUTS_SHOWN, RolloutVerb, Source};
use crate::clock::Clock;
use crate::engine::{JobId, JobSpec};
use crate::firmware::{Image, Library, LoadLimits};
use crate::inventory::DeviceQuery;
use crate::rollout::{DeviceWindow, RolloutId, RolloutRequest, RolloutView};
use crate::service::{ConnectionState, EventStream, JobFollower, Service};
use crate::snapshot::HistoryRecord;
use crate::snapshot::JobSnapshot;

pub struct Local {
    service: Service,
}

impl Local {
    pub fn new(service: impl Into<Service>) -> Self {
        Self { service: service.into() }
    }
}

impl Source for Local {
    fn attached(&self) -> bool {
        false
    }

    fn clock(&self) -> Clock {
        *self.service.clock()
    }

    fn follow_jobs(&self) -> JobFollower {
        self.service.follow_jobs()
    }

    fn subscribe(&self) -> Option<EventStream> {
        Some(self.service.subscribe())
    }

    fn library(&self) -> Arc<Library> {
        self.service.library().clone()
    }

    fn connection(&self) -> Answer<'_, Option<ConnectionState>> {
        Box::pin(async move { Ok(self.service.status().await.ok().map(|status| status.connection)) })
    }

    fn inventory(&self, after: Option<crate::protocol::DeviceId>) -> Answer<'_, InventoryPage> {
        let query = DeviceQuery { limit: INVENTORY_PAGE, after, ..Default::default() };
        let (devices, next_after) = self.service.inventory().page(&query);
        Box::pin(async move { Ok(InventoryPage { devices, next_after }) })
    }

    fn submit(&self, specs: Vec<JobSpec>) -> Answer<'_, usize> {
        Box::pin(
            async move { self.service.submit(specs).await.map(|jobs| jobs.len()).map_err(|e| e.to_string()) },
        )
    }

    fn cancel(&self, id: JobId) -> Answer<'_, ()> {
        Box::pin(async move { self.service.cancel_job(id).await.map(|_| ()).map_err(|e| e.to_string()) })
    }

    fn retry<'a>(&'a self, job: &'a JobSnapshot, limits: &'a LoadLimits) -> Answer<'a, usize> {
        Box::pin(async move {
            self.service.retry(job, limits).await.map(|jobs| jobs.len()).map_err(|e| e.to_string())
        })
    }

    fn rollouts(&self) -> Answer<'_, Vec<RolloutView>> {
        let list = self.service.rollouts(ROLLOUTS_SHOWN);
        Box::pin(async move { Ok(list) })
    }

    fn rollout(&self, id: RolloutId, window: Option<DeviceWindow>) -> Answer<'_, RolloutView> {
        let view = self.service.rollout_view(id, window).map_err(|e| e.to_string());
        Box::pin(async move { view })
    }

    fn create_rollout(&self, request: RolloutRequest, image: Image) -> Answer<'_, RolloutId> {
        Box::pin(async move {
            let plan = self.service.plan_rollout(&request).map_err(|e| e.to_string())?;
            let started = self.service.start_rollout(plan, image).await.map_err(|e| e.to_string())?;
            Ok(started.rollout.id)
        })
    }

    fn dry_run_rollout(
        &self,
        request: RolloutRequest,
        image: Image,
    ) -> Answer<'_, crate::service::RolloutDryRun> {
        Box::pin(async move {
            let plan = self.service.plan_rollout(&request).map_err(|e| e.to_string())?;
            self.service.dry_run_rollout(&plan, &image).await.map_err(|e| e.to_string())
        })
    }

    fn control_rollout(&self, id: RolloutId, verb: RolloutVerb) -> Answer<'_, ()> {
        Box::pin(async move {
            self.service
                .control_rollout(id, verb)
                .await
                .map(|_| ())
                .map_err(|e| format!("cannot {} rollout {id}: {e}", verb.as_str()))
        })
    }

    fn audit(&self, query: crate::audit::Query) -> Answer<'_, crate::audit::Page> {
        Box::pin(async move { self.service.audit(&query).await.map_err(|e| e.to_string()) })
    }

    fn history(&self, id: JobId) -> Answer<'_, Vec<HistoryRecord>> {
        Box::pin(async move { self.service.job_history(id).await.map_err(|e| e.to_string()) })
    }

    fn manifest(&self, image: Image) -> Answer<'_, Option<crate::protocol::Manifest>> {
        Box::pin(async move { self.service.manifest_for(&image).map_err(|e| e.to_string()) })
    }

    fn attach_manifest(&self, image: Image, cose: Vec<u8>) -> Answer<'_, crate::protocol::Manifest> {
        Box::pin(async move {
            // Held by hash first, so the service finds it; attached (and audited) as the API does.
            let image = self.service.library().intern(image);
            let attached = self
                .service
                .attach_manifest(image.sha256(), &cose, false)
                .await
                .map_err(|e| e.to_string())?;
            attached.manifest.ok_or_else(|| "the manifest was not kept".to_owned())
        })
    }

    fn attach_aws_signature(&self, image: Image, signature: String) -> Answer<'_, ()> {
        Box::pin(async move {
            let image = self.service.library().intern(image);
            self.service.attach_aws_signature(image.sha256(), &signature).await.map_err(|e| e.to_string())?;
            Ok(())
        })
    }
}
