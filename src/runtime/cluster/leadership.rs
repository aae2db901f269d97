//! Which instance holds a role in a shared store (the one that plans rollouts): learned from the
//! store, taken when no live instance holds it. Alone, this instance holds every role.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::store::Membership;

#[derive(Clone)]
pub struct Leadership {
    role: &'static str,
    /// This instance's membership of a shared store (`None`: alone).
    shared: Option<Arc<Membership>>,
    /// The instance the store last named for the role.
    holder: Arc<Mutex<Option<String>>>,
}

impl Leadership {
    pub fn new(role: &'static str, shared: Option<Arc<Membership>>) -> Self {
        Self { role, shared, holder: Arc::new(Mutex::new(None)) }
    }

    /// The term of this instance's lease ([`Membership::term`]); 0 alone.
    pub fn term(&self) -> u64 {
        self.shared.as_ref().map_or(0, |shared| shared.term())
    }

    /// This instance's membership, when it shares its store.
    pub fn shared(&self) -> Option<&Arc<Membership>> {
        self.shared.as_ref()
    }

    fn lock(&self) -> MutexGuard<'_, Option<String>> {
        self.holder.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this instance holds the role: always alone; sharing, while its lease holds and
    /// the store named it last.
    pub fn holds(&self) -> bool {
        let Some(shared) = &self.shared else { return true };
        shared.holds() && self.lock().as_deref() == Some(shared.instance())
    }

    /// The instance that holds the role as last learned (empty when none is known).
    pub fn holder(&self) -> String {
        self.lock().clone().unwrap_or_default()
    }

    /// Asks the store who holds the role, taking it when no live instance has it. (Whether this
    /// instance has just begun to hold it is the caller's to judge: see [`Self::term`].)
    pub async fn elect(&self) {
        let Some(shared) = &self.shared else { return };
        match shared.lead(self.role).await {
            Ok(holder) => *self.lock() = Some(holder),
            Err(error) => tracing::debug!(%error, role = self.role, "could not learn who holds the role"),
        }
    }

    /// Forgets who holds the role (this instance could not take over what it was given): the
    /// next election decides again.
    pub fn forget(&self) {
        *self.lock() = None;
    }
}
