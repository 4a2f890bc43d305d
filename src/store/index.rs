//! The in-memory index the hot path reads: access keys, users and MFA devices by their keys.
//! It is loaded once at start-up and refreshed, row by row, after every committed change (ours
//! or another process's, found through `change_log`), so it never runs ahead of the database.

use std::sync::Arc;

use dashmap::DashMap;
use rusqlite::Connection;

use super::error::StoreError;
use super::model::{AccessKey, Device, User};
use super::rows;
use super::seal::Sealer;
use crate::mfa::replay::ReplayGuard;

/// Identities by key; every entry is immutable and replaced whole on change.
#[derive(Default)]
pub struct Index {
    keys: DashMap<String, Arc<AccessKey>>,
    users: DashMap<String, Arc<User>>,
    user_ids_by_name: DashMap<String, String>,
    devices: DashMap<String, Arc<Device>>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("keys", &self.keys.len())
            .field("users", &self.users.len())
            .field("devices", &self.devices.len())
            .finish()
    }
}

/// Which row changed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Changed {
    /// A user, by id.
    User(String),
    /// An access key, by id.
    AccessKey(String),
    /// An MFA device, by serial.
    Device(String),
}

impl Index {
    /// Loads every row.
    pub fn load(
        conn: &Connection,
        sealer: &Sealer,
        replay: &dyn ReplayGuard,
    ) -> Result<Self, StoreError> {
        let index = Self::default();
        let mut stmt = conn.prepare(&format!("SELECT {} FROM user", rows::USER_COLUMNS))?;
        let mut q = stmt.query([])?;
        while let Some(row) = q.next()? {
            index.put_user(rows::user(row)?);
        }
        let mut stmt = conn.prepare(&format!("SELECT {} FROM access_key", rows::KEY_COLUMNS))?;
        let mut q = stmt.query([])?;
        while let Some(row) = q.next()? {
            let key = rows::access_key(row, sealer)?;
            index.keys.insert(key.id.clone(), Arc::new(key));
        }
        let mut stmt = conn.prepare(&format!("SELECT {} FROM mfa_device", rows::DEVICE_COLUMNS))?;
        let mut q = stmt.query([])?;
        while let Some(row) = q.next()? {
            index.put_device(rows::device(row, sealer)?, replay);
        }
        Ok(index)
    }

    fn put_user(&self, user: User) {
        self.user_ids_by_name
            .insert(user.name.to_lowercase(), user.id.clone());
        self.users.insert(user.id.clone(), Arc::new(user));
    }

    fn put_device(&self, device: Device, replay: &dyn ReplayGuard) {
        // The stored step only ever raises the in-memory one: a refresh must not reopen a step
        // this process accepted but whose write another reader has not seen yet.
        replay.seed(&device.serial, device.last_step);
        self.devices.insert(device.serial.clone(), Arc::new(device));
    }

    /// Re-reads one changed row; a missing row removes the entry.
    pub fn refresh(
        &self,
        conn: &Connection,
        sealer: &Sealer,
        replay: &dyn ReplayGuard,
        changed: &Changed,
    ) -> Result<(), StoreError> {
        match changed {
            Changed::User(id) => match rows::user_by_id(conn, id)? {
                Some(user) => {
                    if let Some(old) = self.users.get(id).map(|u| u.name.to_lowercase()) {
                        self.user_ids_by_name.remove(&old);
                    }
                    self.put_user(user);
                }
                None => {
                    if let Some((_, old)) = self.users.remove(id) {
                        self.user_ids_by_name.remove(&old.name.to_lowercase());
                    }
                }
            },
            Changed::AccessKey(id) => match rows::key_by_id(conn, sealer, id)? {
                Some(key) => {
                    self.keys.insert(id.clone(), Arc::new(key));
                }
                None => {
                    self.keys.remove(id);
                }
            },
            Changed::Device(serial) => match rows::device_by_serial(conn, sealer, serial)? {
                Some(device) => self.put_device(device, replay),
                None => {
                    self.devices.remove(serial);
                    replay.forget(serial);
                }
            },
        }
        Ok(())
    }

    /// The access key with this id.
    pub fn access_key(&self, id: &str) -> Option<Arc<AccessKey>> {
        self.keys.get(id).map(|e| Arc::clone(e.value()))
    }

    /// The user with this id.
    pub fn user(&self, id: &str) -> Option<Arc<User>> {
        self.users.get(id).map(|e| Arc::clone(e.value()))
    }

    /// The user with this name, in any case.
    pub fn user_by_name(&self, name: &str) -> Option<Arc<User>> {
        let id = self
            .user_ids_by_name
            .get(&name.to_lowercase())
            .map(|e| e.value().clone())?;
        self.user(&id)
    }

    /// The device with this serial.
    pub fn device(&self, serial: &str) -> Option<Arc<Device>> {
        self.devices.get(serial).map(|e| Arc::clone(e.value()))
    }

    /// Number of users, keys and devices (for the start-up log).
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.users.len(), self.keys.len(), self.devices.len())
    }
}
