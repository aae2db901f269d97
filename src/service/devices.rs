//! The device inventory as an operator changes it: register with labels, import many, forget
//! one. The labels and the import are checked here, so every face refuses the same things.

use super::{Service, ServiceError};
use crate::audit::Action;
use crate::inventory::{Device, Labels, import, labels};
use crate::protocol::DeviceId;

impl Service {
    /// One device, as the inventory holds it.
    pub fn device(&self, id: &DeviceId) -> Result<Device, ServiceError> {
        self.inventory()
            .get(id)
            .ok_or_else(|| ServiceError::NotFound(format!("no device {id} in the inventory")))
    }

    /// Registers `id` with `labels` (replacing its labels when it is known); answers the device and
    /// whether it is new.
    pub async fn register(&self, id: DeviceId, labels: Labels) -> Result<(Device, bool), ServiceError> {
        let target = format!("device:{id}");
        let result = async {
            labels::check(&labels).map_err(|e| ServiceError::Invalid(e.to_string()))?;
            crate::inventory::profile::check(&labels).map_err(ServiceError::Invalid)?;
            let inventory = self.inventory();
            let added = inventory.register(vec![(id.clone(), labels)]).await?;
            let device =
                inventory.get(&id).ok_or_else(|| ServiceError::Internal("the device vanished".into()))?;
            Ok((device, added > 0))
        }
        .await;
        self.audited(Action::DeviceRegister, result, |_| target).await
    }

    /// Forgets `id` (its jobs stay).
    pub async fn forget(&self, id: &DeviceId) -> Result<(), ServiceError> {
        let result = match self.inventory().forget(id).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(ServiceError::NotFound(format!("no device {id} in the inventory"))),
            Err(e) => Err(e.into()),
        };
        self.audited(Action::DeviceForget, result, |_| format!("device:{id}")).await
    }
}

/// What an import did: rows read, and how many of them were new devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    pub rows: usize,
    pub added: usize,
}

impl Service {
    /// Registers every row of `body` (JSON `[{"device_id", "labels"}, …]` or lines of
    /// `device_id,key=value,…`), all or nothing.
    pub async fn import_devices(&self, body: &[u8]) -> Result<Imported, ServiceError> {
        let result = self.import_unaudited(body).await;
        self.audited(Action::DeviceImport, result, |done| match done {
            Some(done) => format!("devices ({} rows, {} new)", done.rows, done.added),
            None => "devices".to_owned(),
        })
        .await
    }

    async fn import_unaudited(&self, body: &[u8]) -> Result<Imported, ServiceError> {
        let text = std::str::from_utf8(body).map_err(|e| {
            ServiceError::Invalid(format!("the import is not UTF-8 text (byte {})", e.valid_up_to()))
        })?;
        let rows = import::parse(text).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        for row in &rows {
            crate::inventory::profile::check(&row.labels)
                .map_err(|why| ServiceError::Invalid(format!("{}: {why}", row.device_id)))?;
        }
        let count = rows.len();
        let added = self
            .inventory()
            .register(rows.into_iter().map(|row| (row.device_id, row.labels)).collect())
            .await?;
        Ok(Imported { rows: count, added })
    }
}
