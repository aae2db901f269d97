//! Sharing one job store between instances, in one place. The SQL lives in
//! `store/postgres/` (`membership.rs`: instances, leases and roles; `lease.rs`: claiming jobs and
//! asking other instances to cancel theirs); what the runtime does with it lives here:
//!
//! - [`claims`]: the task that, every second, renews this instance's lease, claims jobs no live
//!   instance drives, takes the cancels asked of it, mirrors other instances' jobs into the job
//!   table, and fences this instance when its lease cannot be renewed;
//! - [`Fence`]: the rule the engine's task checks before anything is sent or created: not fenced
//!   by the claims task, and the lease still held by this process's own clock;
//! - [`Cluster`]: this instance's membership, made once at start and handed to the driver (its
//!   fence), the handle (cancelling a job another instance drives), the claims task and the
//!   graceful stop;
//! - [`Leadership`]: which instance holds a role (the one that plans rollouts), learned from the
//!   store.
//! - [`Trouble`]: how a periodic read of the store that fails is said: once per new reason.
//!
//! Without a shared store none of it runs: the fence never closes and this instance holds every
//! role.

pub(super) mod claims;
pub(super) mod fence;
mod leadership;
mod member;
mod trouble;

pub(super) use fence::Fence;
pub(super) use leadership::Leadership;
pub(super) use member::Cluster;
pub(super) use trouble::Trouble;
