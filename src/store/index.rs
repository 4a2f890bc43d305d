//! The in-memory index the hot path reads: access keys, users and MFA devices of the account,
//! by their keys. It is loaded once at start-up and then follows `change_log` row by row (the
//! writer after each of its commits, a read-only follower by polling), so it never runs ahead
//! of the database, and every process sharing a data dir converges on the same view.

use std::collections::HashSet;
use std::sync::Arc;

use dashmap::DashMap;
use rusqlite::{Connection, OptionalExtension as _};

use super::error::StoreError;
use super::rows;
use super::seal::Sealer;
use crate::model::{AccessKey, Device, User};

/// Identities by key; every entry is immutable and replaced whole on change.
pub(crate) struct Index {
    account_id: String,
    keys: DashMap<String, Arc<AccessKey>>,
    users: DashMap<String, Arc<User>>,
    user_ids_by_name: DashMap<String, String>,
    devices: DashMap<String, Arc<Device>>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("account_id", &self.account_id)
            .field("keys", &self.keys.len())
            .field("users", &self.users.len())
            .field("devices", &self.devices.len())
            .finish()
    }
}

/// Which row changed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Changed {
    /// A user, by id.
    User(String),
    /// An access key, by id.
    AccessKey(String),
    /// An MFA device, by serial.
    Device(String),
}

impl Changed {
    /// `(kind, key)` as `change_log` stores them.
    pub(crate) fn as_db(&self) -> (&'static str, &str) {
        match self {
            Self::User(k) => ("user", k),
            Self::AccessKey(k) => ("access_key", k),
            Self::Device(k) => ("device", k),
        }
    }

    /// The inverse of [`Changed::as_db`].
    pub(crate) fn from_db(kind: &str, key: String) -> Option<Self> {
        match kind {
            "user" => Some(Self::User(key)),
            "access_key" => Some(Self::AccessKey(key)),
            "device" => Some(Self::Device(key)),
            _ => None,
        }
    }
}

/// How far an index has followed `change_log`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ChangeCursor(i64);

impl ChangeCursor {
    /// The newest change at this moment: an index loaded now has seen everything up to it,
    /// the pruned changes included (`seq` never goes back, even once every row is pruned).
    pub(crate) fn at_head(conn: &Connection) -> Result<Self, StoreError> {
        let newest: i64 =
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM change_log", [], |r| {
                r.get(0)
            })?;
        Ok(Self(newest.max(pruned_through(conn)?)))
    }
}

/// The newest change pruned from `change_log` (0 when none was).
fn pruned_through(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT value FROM meta WHERE key = 'change_log_pruned_through'")?
        .query_row([], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// What following `change_log` found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Followed {
    /// Every change since the cursor was applied.
    Applied,
    /// Changes the cursor had not seen were pruned; the index must be loaded again.
    Gap,
}

impl Index {
    /// An empty index of `account_id`.
    pub(crate) fn empty(account_id: &str) -> Self {
        Self {
            account_id: account_id.to_owned(),
            keys: DashMap::new(),
            users: DashMap::new(),
            user_ids_by_name: DashMap::new(),
            devices: DashMap::new(),
        }
    }

    /// Loads every row, and the cursor the load is consistent with (both read in one
    /// transaction, so a change committed meanwhile is neither lost nor applied twice).
    pub(crate) fn load(
        conn: &mut Connection,
        sealer: &Sealer,
        account_id: &str,
    ) -> Result<(Self, ChangeCursor), StoreError> {
        let tx = conn.transaction()?;
        let cursor = ChangeCursor::at_head(&tx)?;
        // Sized from the row counts, so the load never rehashes a map while it grows (each
        // doubling moves every entry and holds the old and the new table at once).
        let count = |table: &str| -> Result<usize, StoreError> {
            let n: i64 =
                tx.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?;
            Ok(usize::try_from(n).unwrap_or(0))
        };
        let (users, keys, devices) = (count("user")?, count("access_key")?, count("mfa_device")?);
        let index = Self {
            account_id: account_id.to_owned(),
            keys: DashMap::with_capacity(keys),
            users: DashMap::with_capacity(users),
            user_ids_by_name: DashMap::with_capacity(users),
            devices: DashMap::with_capacity(devices),
        };
        let mut stmt = tx.prepare(&format!("SELECT {} FROM user", rows::USER_COLUMNS))?;
        let mut q = stmt.query([])?;
        while let Some(row) = q.next()? {
            index.put_user(rows::user(row)?);
        }
        drop(q);
        drop(stmt);
        let mut stmt = tx.prepare(&format!("SELECT {} FROM access_key", rows::KEY_COLUMNS))?;
        let mut q = stmt.query([])?;
        while let Some(row) = q.next()? {
            let key = rows::access_key(row, sealer)?;
            index.keys.insert(key.id.clone(), Arc::new(key));
        }
        drop(q);
        drop(stmt);
        let mut stmt = tx.prepare(&format!("SELECT {} FROM mfa_device", rows::DEVICE_COLUMNS))?;
        let mut q = stmt.query([])?;
        while let Some(row) = q.next()? {
            let device = rows::device(row, sealer)?;
            index
                .devices
                .insert(device.serial.clone(), Arc::new(device));
        }
        drop(q);
        drop(stmt);
        tx.finish()?;
        Ok((index, cursor))
    }

    /// Replaces every entry with those of `fresh` (after a [`Followed::Gap`]).
    pub(crate) fn replace_with(&self, fresh: Self) {
        self.keys.retain(|k, _| fresh.keys.contains_key(k));
        self.users.retain(|k, _| fresh.users.contains_key(k));
        self.user_ids_by_name
            .retain(|k, _| fresh.user_ids_by_name.contains_key(k));
        self.devices.retain(|k, _| fresh.devices.contains_key(k));
        for (k, v) in fresh.keys {
            self.keys.insert(k, v);
        }
        for (k, v) in fresh.users {
            self.users.insert(k, v);
        }
        for (k, v) in fresh.user_ids_by_name {
            self.user_ids_by_name.insert(k, v);
        }
        for (k, v) in fresh.devices {
            self.devices.insert(k, v);
        }
    }

    fn put_user(&self, user: User) {
        self.user_ids_by_name
            .insert(user.name.to_lowercase(), user.id.clone());
        self.users.insert(user.id.clone(), Arc::new(user));
    }

    /// Applies every change logged after `cursor` and moves it forward. Several changes of
    /// one row cost one re-read.
    pub(crate) fn follow(
        &self,
        conn: &Connection,
        sealer: &Sealer,
        cursor: &mut ChangeCursor,
    ) -> Result<Followed, StoreError> {
        if pruned_through(conn)? > cursor.0 {
            return Ok(Followed::Gap);
        }
        let mut stmt = conn
            .prepare_cached("SELECT seq, kind, key FROM change_log WHERE seq > ?1 ORDER BY seq")?;
        let rows = stmt
            .query_map([cursor.0], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        drop(stmt);
        let mut seen = HashSet::new();
        for (seq, kind, key) in rows {
            if let Some(changed) = Changed::from_db(&kind, key)
                && seen.insert(changed.clone())
            {
                self.refresh(conn, sealer, &changed)?;
            }
            cursor.0 = seq;
        }
        Ok(Followed::Applied)
    }

    /// Re-reads one changed row; a missing row removes the entry.
    fn refresh(
        &self,
        conn: &Connection,
        sealer: &Sealer,
        changed: &Changed,
    ) -> Result<(), StoreError> {
        match changed {
            Changed::User(id) => {
                if let Some((_, old)) = self.users.remove(id) {
                    self.user_ids_by_name.remove(&old.name.to_lowercase());
                }
                if let Some(user) = rows::user_by_id(conn, id)? {
                    self.put_user(user);
                }
            }
            Changed::AccessKey(id) => match rows::key_by_id(conn, sealer, id)? {
                Some(key) => {
                    self.keys.insert(id.clone(), Arc::new(key));
                }
                None => {
                    self.keys.remove(id);
                }
            },
            Changed::Device(serial) => match rows::device_by_serial(conn, sealer, serial)? {
                Some(device) => {
                    self.devices.insert(serial.clone(), Arc::new(device));
                }
                None => {
                    self.devices.remove(serial);
                }
            },
        }
        Ok(())
    }

    /// Puts (or, with `None`, removes) one user: a follower of a store that is not SQLite.
    pub(crate) fn apply_user(&self, id: &str, user: Option<User>) {
        if let Some((_, old)) = self.users.remove(id) {
            self.user_ids_by_name.remove(&old.name.to_lowercase());
        }
        if let Some(user) = user {
            self.put_user(user);
        }
    }

    /// Puts (or removes) one access key, as [`Index::apply_user`].
    pub(crate) fn apply_access_key(&self, id: &str, key: Option<AccessKey>) {
        match key {
            Some(key) => {
                self.keys.insert(id.to_owned(), Arc::new(key));
            }
            None => {
                self.keys.remove(id);
            }
        }
    }

    /// Puts (or removes) one device, as [`Index::apply_user`].
    pub(crate) fn apply_device(&self, serial: &str, device: Option<Device>) {
        match device {
            Some(device) => {
                self.devices.insert(serial.to_owned(), Arc::new(device));
            }
            None => {
                self.devices.remove(serial);
            }
        }
    }

    /// The account every identity here belongs to.
    pub(crate) fn account_id(&self) -> &str {
        &self.account_id
    }

    /// The access key with this id.
    pub(crate) fn access_key(&self, id: &str) -> Option<Arc<AccessKey>> {
        self.keys.get(id).map(|e| Arc::clone(e.value()))
    }

    /// The user with this id.
    pub(crate) fn user(&self, id: &str) -> Option<Arc<User>> {
        self.users.get(id).map(|e| Arc::clone(e.value()))
    }

    /// The user with this name, in any case.
    pub(crate) fn user_by_name(&self, name: &str) -> Option<Arc<User>> {
        let id = self
            .user_ids_by_name
            .get(&name.to_lowercase())
            .map(|e| e.value().clone())?;
        self.user(&id)
    }

    /// The device with this serial.
    pub(crate) fn device(&self, serial: &str) -> Option<Arc<Device>> {
        self.devices.get(serial).map(|e| Arc::clone(e.value()))
    }
}
