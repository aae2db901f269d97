//! The inventory's rows: the operator's columns (`labels`, `registered`) and the wire's
//! (`first_seen`, `last_seen`, `last_image_*`, `last_job`) are written by separate statements,
//! so an operator's change and the driver's batch never overwrite each other's columns.

use rusqlite::{Connection, Transaction, params};

use crate::inventory::{Device, Labels};
use crate::protocol::DeviceId;
use crate::snapshot::ImageInfo;

/// Registers devices with these labels, in one transaction (all or none).
pub fn register(conn: &mut Connection, rows: &[(DeviceId, Labels)]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut upsert = tx.prepare(
            "INSERT INTO devices (id, labels, registered) VALUES (?1, ?2, 1)
             ON CONFLICT(id) DO UPDATE SET labels = excluded.labels, registered = 1",
        )?;
        for (id, labels) in rows {
            let labels = serde_json::to_string(labels).unwrap_or_else(|_| "{}".into());
            upsert.execute(params![id.as_str(), labels])?;
        }
    }
    tx.commit()
}

pub fn forget(conn: &mut Connection, id: &DeviceId) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM devices WHERE id = ?1", [id.as_str()]).map(|_| ())
}

/// Writes what the wire told of these devices, inside the flush's transaction.
pub fn observe(tx: &Transaction, devices: &[Device]) -> rusqlite::Result<()> {
    let mut upsert = tx.prepare(
        "INSERT INTO devices (id, first_seen, last_seen, last_image_name, last_image_size, last_image_sha256, last_job,
                              running)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT(id) DO UPDATE SET
            first_seen = coalesce(devices.first_seen, excluded.first_seen),
            last_seen = max(coalesce(devices.last_seen, 0), coalesce(excluded.last_seen, 0)),
            last_image_name = coalesce(excluded.last_image_name, devices.last_image_name),
            last_image_size = coalesce(excluded.last_image_size, devices.last_image_size),
            last_image_sha256 = coalesce(excluded.last_image_sha256, devices.last_image_sha256),
            last_job = max(coalesce(devices.last_job, 0), coalesce(excluded.last_job, 0)),
            running = excluded.running",
    )?;
    for device in devices {
        let image = device.last_image.as_ref();
        upsert.execute(params![
            device.device_id.as_str(),
            device.first_seen.map(|t| t as i64),
            device.last_seen.map(|t| t as i64),
            image.map(|i| &*i.name),
            image.map(|i| i.size as i64),
            image.map(|i| &*i.sha256),
            device.last_job,
            super::super::device_rows::running_json(device),
        ])?;
    }
    Ok(())
}

/// Every device, by id. A row Rocky would refuse (a bad id or labels) is skipped with a warning.
pub fn load(conn: &Connection) -> rusqlite::Result<Vec<Device>> {
    let mut stmt = conn.prepare(
        "SELECT id, labels, registered, first_seen, last_seen, last_image_name, last_image_size,
                last_image_sha256, last_job, running FROM devices ORDER BY id",
    )?;
    let rows = stmt.query_map([], |row| {
        let id: String = row.get("id")?;
        let labels: String = row.get("labels")?;
        let name: Option<String> = row.get("last_image_name")?;
        let size: Option<u64> = row.get("last_image_size")?;
        let sha256: Option<String> = row.get("last_image_sha256")?;
        let last_seen: Option<u64> = row.get("last_seen")?;
        let last_job: Option<crate::engine::JobId> = row.get("last_job")?;
        let running: Option<String> = row.get("running")?;
        Ok((
            running,
            id,
            labels,
            row.get::<_, bool>("registered")?,
            row.get("first_seen")?,
            last_seen,
            name,
            size,
            sha256,
            last_job,
        ))
    })?;
    let mut devices = Vec::new();
    for row in rows {
        let (running, id, labels, registered, first_seen, last_seen, name, size, sha256, last_job) = row?;
        let device_id = match DeviceId::parse(&id) {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(reason = %e, "a stored device was skipped");
                continue;
            }
        };
        let running = super::super::device_rows::running_from(&device_id, running.as_deref());
        let labels: Labels = match serde_json::from_str(&labels) {
            Ok(labels) => labels,
            Err(e) => {
                tracing::warn!(device = %device_id, reason = %e, "a stored device's labels were unreadable; it has none");
                Labels::new()
            }
        };
        let last_image = match (name, size, sha256) {
            (Some(name), Some(size), Some(sha256)) => {
                Some(ImageInfo { name: name.into(), size, sha256: sha256.into() })
            }
            _ => None,
        };
        devices.push(Device {
            device_id,
            labels,
            registered,
            first_seen,
            // 0 is the "never" a merge writes.
            last_seen: last_seen.filter(|t| *t > 0),
            last_image,
            last_job: last_job.filter(|j| j.get() > 0),
            running,
            // Worked out when shown (its label, or heard on AWS topics).
            profile: crate::inventory::Profile::Rocky,
        });
    }
    Ok(devices)
}
