//! This instance's membership of a shared database: its lease, renewed on a heartbeat, and the
//! claims it makes. The lease is also judged here by this process's own clock, from the moment
//! each renewal was sent: when that runs out without a renewal (the database is unreachable),
//! the instance must stop sending for its jobs, because another instance may claim them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::changed_rows::Seen;
use super::{PgError, Reader, lease};
use crate::engine::JobId;
use crate::store::{JobSnapshot, StoreError};

/// How often the lease is renewed, as a share of its length: three tries before it runs out.
const RENEWALS_PER_LEASE: u32 = 3;

pub struct Membership {
    instance: String,
    /// This process: the lease is renewed only under it, so another process with the same id
    /// cannot keep this one's lease alive.
    token: String,
    lease: Duration,
    reader: Reader,
    state: Mutex<LeaseState>,
}

struct LeaseState {
    /// The lease holds until then, by this process's clock.
    valid_until: Instant,
    /// Leases held so far, counting one taken again after it ran out (see [`Membership::term`]).
    term: u64,
    /// Why the last renewal failed, for `/healthz`.
    problem: Option<String>,
}

impl Membership {
    /// Joins with a fresh lease and starts renewing it; the heartbeat ends when the membership
    /// is dropped.
    ///
    /// When another process holds a live lease under the same id (a fixed `mqtt.client_id`,
    /// restarted before its lease ran out), this waits for that lease to run out, up to twice
    /// its length, so the two never drive the same jobs.
    pub async fn join(reader: Reader, instance: &str, lease: Duration) -> Result<Arc<Self>, StoreError> {
        let token = format!("{}-{:016x}", std::process::id(), crate::random::random_u64());
        let give_up = Instant::now() + lease * 2;
        let mut said = false;
        let sent = loop {
            let sent = Instant::now();
            let client = reader.client().await?;
            let joined = lease::join(&client, instance, &token, lease)
                .await
                .map_err(|e| StoreError::Postgres(PgError::new(&reader.url, &e)))?;
            drop(client);
            if joined {
                break sent;
            }
            if Instant::now() >= give_up {
                return Err(StoreError::Postgres(PgError::Query {
                    url: reader.url.clone(),
                    reason: format!(
                        "another live Rocky holds the instance id {instance:?}: give each instance its own \
                         mqtt.client_id (or leave it empty)"
                    ),
                }));
            }
            if !said {
                said = true;
                tracing::warn!(
                    instance,
                    "another process holds this instance id's lease (a restart before it ran out?); waiting for it \
                     to run out"
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        let membership = Arc::new(Self {
            instance: instance.to_owned(),
            token,
            lease,
            reader,
            state: Mutex::new(LeaseState { valid_until: sent + lease, term: 1, problem: None }),
        });
        tokio::spawn(heartbeat(Arc::downgrade(&membership), lease / RENEWALS_PER_LEASE));
        Ok(membership)
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Whether the lease still holds by this process's clock.
    pub fn holds(&self) -> bool {
        self.state.lock().map(|s| Instant::now() < s.valid_until).unwrap_or(false)
    }

    /// Which lease this is: it grows each time the lease is held again after it ran out by
    /// this process's clock (joined again, or renewed too late). Work that holds a role while
    /// the lease holds (planning rollouts) begins anew in a new term: meanwhile it did not do
    /// its part.
    pub fn term(&self) -> u64 {
        self.state.lock().map(|s| s.term).unwrap_or(0)
    }

    /// Why the lease could not be renewed, while it could not.
    pub fn problem(&self) -> Option<String> {
        self.state.lock().ok().and_then(|s| s.problem.clone())
    }

    fn failed(&self, error: &tokio_postgres::Error) -> StoreError {
        StoreError::Postgres(PgError::new(&self.reader.url, error))
    }

    /// Renews the lease once; on success it holds for a whole lease from when it was sent. A
    /// lease that had run out is taken again only after what it covered was let go by
    /// [`Membership::rejoin`] (the caller's decision).
    async fn renew(&self) -> Result<bool, StoreError> {
        let sent = Instant::now();
        let client = self.reader.client().await?;
        let renewed = lease::renew(&client, &self.instance, &self.token, self.lease)
            .await
            .map_err(|e| self.failed(&e))?;
        if let Ok(mut state) = self.state.lock() {
            if renewed {
                if Instant::now() >= state.valid_until {
                    state.term += 1;
                }
                state.valid_until = sent + self.lease;
                state.problem = None;
            } else {
                // Ran out, or another process holds it now: stop at once.
                state.valid_until = Instant::now();
            }
        }
        Ok(renewed)
    }

    /// Joins again after the lease ran out, first letting go of every job this instance still
    /// names (another may drive them now; any left are claimed again like anyone's). The caller
    /// has already dropped them from its engine.
    pub async fn rejoin(&self) -> Result<(), StoreError> {
        let sent = Instant::now();
        let mut client = self.reader.client().await?;
        lease::leave(&mut client, &self.instance, &self.token).await.map_err(|e| self.failed(&e))?;
        let joined = lease::join(&client, &self.instance, &self.token, self.lease)
            .await
            .map_err(|e| self.failed(&e))?;
        if !joined {
            return Err(StoreError::Postgres(PgError::Query {
                url: self.reader.url.clone(),
                reason: format!("another live Rocky holds the instance id {:?}", self.instance),
            }));
        }
        if let Ok(mut state) = self.state.lock() {
            state.valid_until = sent + self.lease;
            state.term += 1;
            state.problem = None;
        }
        Ok(())
    }

    /// Claims up to `limit` jobs no live instance drives; returns them as stored.
    pub async fn claim(&self, limit: usize) -> Result<Vec<JobSnapshot>, StoreError> {
        if !self.holds() {
            return Ok(Vec::new());
        }
        let mut client = self.reader.client().await?;
        let ids = lease::claim(&mut client, &self.instance, limit).await.map_err(|e| self.failed(&e))?;
        drop(client);
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.reader.jobs_by_id(&ids).await
    }

    /// The unfinished jobs this instance drives, as stored.
    pub async fn mine(&self) -> Result<Vec<JobSnapshot>, StoreError> {
        self.reader.unfinished_of(&self.instance).await
    }

    /// Who drives `job` now, if anyone.
    pub async fn owner_of(&self, job: JobId) -> Result<Option<String>, StoreError> {
        let client = self.reader.client().await?;
        lease::owner_of(&client, job).await.map_err(|e| self.failed(&e))
    }

    /// Cancels a job this instance does not drive: at once when no live instance does, else by
    /// asking the one that does.
    pub async fn ask_cancel(&self, job: JobId, reason: &str) -> Result<lease::CancelAsked, StoreError> {
        let mut client = self.reader.client().await?;
        lease::ask_cancel(&mut client, job, reason).await.map_err(|e| self.failed(&e))
    }

    /// The cancels other instances asked of this one.
    pub async fn take_cancels(&self) -> Result<Vec<JobId>, StoreError> {
        let client = self.reader.client().await?;
        lease::take_cancels(&client, &self.instance).await.map_err(|e| self.failed(&e))
    }

    /// Hands the jobs other instances drive (or none does) whose rows changed since `since`
    /// (every one without it) to `batch`, a few thousand at a time; returns where the next
    /// read starts.
    pub async fn others_changed(
        &self,
        since: Option<&Seen>,
        batch: impl FnMut(Vec<JobSnapshot>),
    ) -> Result<Seen, StoreError> {
        self.reader.others_changed(since, &self.instance, batch).await
    }

    /// The id of every stored job.
    pub async fn job_ids(&self) -> Result<std::collections::HashSet<JobId>, StoreError> {
        let client = self.reader.client().await?;
        let rows = client.query("SELECT id FROM jobs", &[]).await.map_err(|e| self.failed(&e))?;
        Ok(rows.iter().filter_map(|row| u32::try_from(row.get::<_, i64>(0)).ok().map(JobId::new)).collect())
    }

    /// A job as stored.
    pub async fn job(&self, id: JobId) -> Result<Option<JobSnapshot>, StoreError> {
        Ok(self.reader.jobs_by_id(&[id]).await?.pop())
    }

    /// Takes `role` when no live instance has it (and this one's lease holds); returns who has
    /// it now.
    pub async fn lead(&self, role: &str) -> Result<String, StoreError> {
        if !self.holds() {
            let client = self.reader.client().await?;
            let row = client
                .query_opt("SELECT instance FROM leaders WHERE role = $1", &[&role])
                .await
                .map_err(|e| self.failed(&e))?;
            return Ok(row.map_or_else(String::new, |row| row.get(0)));
        }
        let client = self.reader.client().await?;
        lease::lead(&client, role, &self.instance).await.map_err(|e| self.failed(&e))
    }

    /// Lets go of every unfinished job and ends the lease (a graceful stop).
    pub async fn leave(&self) -> Result<(), StoreError> {
        let mut client = self.reader.client().await?;
        lease::leave(&mut client, &self.instance, &self.token).await.map_err(|e| self.failed(&e))
    }

    /// Gives back claimed jobs this instance cannot drive after all.
    pub async fn unclaim(&self, jobs: &[JobId]) -> Result<(), StoreError> {
        let client = self.reader.client().await?;
        lease::unclaim(&client, &self.instance, jobs).await.map_err(|e| self.failed(&e))
    }
}

/// Renews the lease every `every` until the membership goes away; a failure is kept for
/// `/healthz` and logged once per new reason.
async fn heartbeat(membership: std::sync::Weak<Membership>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(membership) = membership.upgrade() else { return };
        // A renewal that takes longer than the pause between renewals counts as failed.
        let problem = match tokio::time::timeout(every, membership.renew()).await {
            Ok(Ok(true)) => None,
            Ok(Ok(false)) => Some("this instance's lease ran out before it could be renewed".to_owned()),
            Ok(Err(e)) => Some(format!("cannot renew this instance's lease: {e}")),
            Err(_) => Some(format!("renewing this instance's lease took over {} ms", every.as_millis())),
        };
        if let Some(problem) = problem
            && let Ok(mut state) = membership.state.lock()
        {
            if state.problem.as_ref() != Some(&problem) {
                tracing::warn!(instance = %membership.instance, %problem, "store lease");
            }
            state.problem = Some(problem);
        }
    }
}
