//! The in-memory index the hot path reads: access keys, users and MFA devices of the account,
//! by their keys. It is loaded once at start-up and then follows `change_log` row by row (the
//! writer after each of its commits, a read-only follower by polling), so it never runs ahead
//! of the database, and every process sharing a data dir converges on the same view.

use std::borrow::Borrow;
use std::cell::Cell;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use rusqlite::{Connection, OptionalExtension as _};

use super::error::StoreError;
use super::rows;
use super::seal::Sealer;
use crate::model::{AccessKey, Device, DeviceKind, Owner, User};

/// What an identity is found by in its table.
trait Keyed {
    fn key(&self) -> &str;
}

impl Keyed for User {
    fn key(&self) -> &str {
        &self.id
    }
}

impl Keyed for AccessKey {
    fn key(&self) -> &str {
        &self.id
    }
}

impl Keyed for Device {
    fn key(&self) -> &str {
        &self.serial
    }
}

/// A table's entry: the identity, found by the key it holds. A map from a copy of the key would
/// hold every id twice and make each bucket 32 bytes instead of 8 (at 1,000,000 users the
/// tables have 2^21 buckets each).
struct Found<T>(Arc<T>);

impl<T: Keyed> Hash for Found<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes, which `Borrow<str>` requires: lookups hash the bare key.
        self.0.key().hash(state);
    }
}

impl<T: Keyed> PartialEq for Found<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0.key() == other.0.key()
    }
}

impl<T: Keyed> Eq for Found<T> {}

impl<T: Keyed> Borrow<str> for Found<T> {
    fn borrow(&self) -> &str {
        self.0.key()
    }
}

/// Identities by their own key.
type Table<T> = DashMap<Found<T>, ()>;

/// Puts `value` in place of the entry with its key, if any, in one step under the shard's lock
/// (a reader never finds the key missing meanwhile), and returns the entry it replaced.
fn put<T: Keyed>(table: &Table<T>, value: Arc<T>) -> Option<Arc<T>> {
    match table.entry(Found(value)) {
        // `replace_entry` swaps the stored key too: a plain `insert` would keep the old one,
        // which is the old identity itself here.
        Entry::Occupied(entry) => Some(entry.replace_entry(()).0.0),
        Entry::Vacant(entry) => {
            entry.insert(());
            None
        }
    }
}

fn get<T: Keyed>(table: &Table<T>, key: &str) -> Option<Arc<T>> {
    table.get(key).map(|e| Arc::clone(&e.key().0))
}

fn remove<T: Keyed>(table: &Table<T>, key: &str) -> Option<Arc<T>> {
    table.remove(key).map(|(found, ())| found.0)
}

/// Reads the database file once, front to back, on a thread of its own while the load runs, so
/// that the load finds its pages in the page cache. After a reboot the load otherwise waits on
/// one 4 KiB read at a time, scattered over the file (its tables are interleaved with the
/// others): at 1,000,000 users (830 MiB) that was ~10 s more than a warm start, where a
/// sequential read of the whole file takes ~2 s on the same disk. (`POSIX_FADV_WILLNEED` read
/// only the first 8 MiB here.) The index holds about as many bytes as the file, so a machine
/// that can hold one can cache the other. When the file is cached already this costs a copy
/// per page on the other core. Best effort: nothing depends on it; it stops when the load does.
struct Prefetch(Arc<AtomicBool>);

impl Prefetch {
    fn start(path: &str) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&done);
        let path = path.to_owned();
        let _detached = std::thread::Builder::new()
            .name("sts-broker-prefetch".into())
            .spawn(move || {
                let Ok(mut file) = std::fs::File::open(&path) else {
                    return;
                };
                let mut buf = vec![0u8; 1 << 20];
                while !stop.load(Ordering::Relaxed) {
                    match std::io::Read::read(&mut file, &mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            });
        Self(done)
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The owners of the keys and devices a load reads, sharing the ids of the users it read.
///
/// Keys and devices mostly come in the order of their owners (a table is read in insertion
/// order, and a user's key and device are created after the user): the user met last and the
/// one after it are tried before a look-up in the users table, which at 1,000,000 users costs a
/// SipHash and cache misses in a table of 16 MiB (13% of the load's perf samples when every owner
/// was looked up).
struct LoadOwners<'a> {
    index: &'a Index,
    /// The users as the load read them.
    in_order: Vec<Arc<User>>,
    /// Where in `in_order` the next owner probably is.
    next: Cell<usize>,
}

impl LoadOwners<'_> {
    fn owner(&self, value: &str) -> Owner {
        let at = self.next.get();
        for i in [at.wrapping_sub(1), at] {
            if let Some(user) = self.in_order.get(i)
                && *user.id == *value
            {
                self.next.set(i + 1);
                return Owner::User(Arc::clone(&user.id));
            }
        }
        self.index.owner(value)
    }
}

/// Identities by key; every entry is immutable and replaced whole on change.
pub(crate) struct Index {
    account_id: String,
    keys: Table<AccessKey>,
    users: Table<User>,
    /// By lower-case name.
    users_by_name: DashMap<Box<str>, Arc<User>>,
    devices: Table<Device>,
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
            users_by_name: DashMap::new(),
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
        let _prefetch = conn.path().map(Prefetch::start);
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
            users_by_name: DashMap::with_capacity(users),
            devices: DashMap::with_capacity(devices),
        };
        // Users first, so that keys and devices share their owners' ids.
        let mut in_order = Vec::with_capacity(users);
        let mut stmt = tx.prepare(&format!("SELECT {} FROM user", rows::USER_COLUMNS))?;
        let mut q = stmt.query([])?;
        while let Some(row) = q.next()? {
            in_order.push(index.put_user(rows::user(row)?));
        }
        drop(q);
        drop(stmt);
        let owners = LoadOwners {
            index: &index,
            in_order,
            next: Cell::new(0),
        };
        let owner = |value: &str| owners.owner(value);
        let mut stmt = tx.prepare(&format!("SELECT {} FROM access_key", rows::KEY_COLUMNS))?;
        let mut q = stmt.query([])?;
        while let Some(row) = q.next()? {
            put(
                &index.keys,
                Arc::new(rows::access_key_owned_by(row, sealer, &owner)?),
            );
        }
        drop(q);
        drop(stmt);
        let mut stmt = tx.prepare(&format!("SELECT {} FROM mfa_device", rows::DEVICE_COLUMNS))?;
        let mut q = stmt.query([])?;
        while let Some(row) = q.next()? {
            put(
                &index.devices,
                Arc::new(rows::device_owned_by(row, sealer, &owner)?),
            );
        }
        drop(q);
        drop(stmt);
        tx.finish()?;
        Ok((index, cursor))
    }

    /// Replaces every entry with those of `fresh` (after a [`Followed::Gap`]).
    pub(crate) fn replace_with(&self, fresh: Self) {
        self.keys.retain(|k, ()| fresh.keys.contains_key(k.0.key()));
        self.users
            .retain(|k, ()| fresh.users.contains_key(k.0.key()));
        self.users_by_name
            .retain(|k, _| fresh.users_by_name.contains_key(k));
        self.devices
            .retain(|k, ()| fresh.devices.contains_key(k.0.key()));
        for (k, ()) in fresh.keys {
            put(&self.keys, k.0);
        }
        for (k, ()) in fresh.users {
            put(&self.users, k.0);
        }
        for (k, v) in fresh.users_by_name {
            self.users_by_name.insert(k, v);
        }
        for (k, ()) in fresh.devices {
            put(&self.devices, k.0);
        }
    }

    /// `value` (a stored owner) as an [`Owner`] sharing the id of the user in memory, if any.
    fn owner(&self, value: &str) -> Owner {
        if value == "root" {
            return Owner::Root;
        }
        match get(&self.users, value) {
            Some(user) => Owner::User(Arc::clone(&user.id)),
            None => rows::owner(value),
        }
    }

    /// Makes `owner` share the id of the user in memory (an entry re-read after a change).
    fn intern(&self, owner: &mut Owner) {
        if let Owner::User(id) = owner
            && let Some(user) = get(&self.users, id)
        {
            *id = Arc::clone(&user.id);
        }
    }

    /// Puts `user` in place of the entry with its id, and moves its name entry if the name
    /// changed.
    fn put_user(&self, user: User) -> Arc<User> {
        let user = Arc::new(user);
        let name = user.name.to_lowercase();
        let old = put(&self.users, Arc::clone(&user));
        if let Some(old) = old
            && old.name.to_lowercase() != name
        {
            self.forget_name(&old);
        }
        self.users_by_name
            .insert(name.into_boxed_str(), Arc::clone(&user));
        user
    }

    /// Removes `old`'s name entry, unless another user holds that name by now.
    fn forget_name(&self, old: &User) {
        self.users_by_name
            .remove_if(old.name.to_lowercase().as_str(), |_, current| {
                current.id == old.id
            });
    }

    fn put_key(&self, mut key: AccessKey) {
        self.intern(&mut key.owner);
        put(&self.keys, Arc::new(key));
    }

    fn put_device(&self, mut device: Device) {
        let Device {
            kind, assigned_to, ..
        } = &mut device;
        for owner in [
            assigned_to.as_mut(),
            match kind {
                DeviceKind::Virtual { creator, .. } => Some(creator),
                DeviceKind::Hardware { bound_to, .. } => bound_to.as_mut(),
                DeviceKind::Fido => None,
            },
        ]
        .into_iter()
        .flatten()
        {
            self.intern(owner);
        }
        put(&self.devices, Arc::new(device));
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
            Changed::User(id) => self.apply_user(id, rows::user_by_id(conn, id)?),
            Changed::AccessKey(id) => self.apply_access_key(id, rows::key_by_id(conn, sealer, id)?),
            Changed::Device(serial) => {
                self.apply_device(serial, rows::device_by_serial(conn, sealer, serial)?);
            }
        }
        Ok(())
    }

    /// Puts (or, with `None`, removes) one user: a follower of a store that is not SQLite.
    pub(crate) fn apply_user(&self, id: &str, user: Option<User>) {
        match user {
            Some(user) => {
                self.put_user(user);
            }
            None => {
                if let Some(old) = remove(&self.users, id) {
                    self.forget_name(&old);
                }
            }
        }
    }

    /// Puts (or removes) one access key, as [`Index::apply_user`].
    pub(crate) fn apply_access_key(&self, id: &str, key: Option<AccessKey>) {
        match key {
            Some(key) => self.put_key(key),
            None => {
                remove(&self.keys, id);
            }
        }
    }

    /// Puts (or removes) one device, as [`Index::apply_user`].
    pub(crate) fn apply_device(&self, serial: &str, device: Option<Device>) {
        match device {
            Some(device) => self.put_device(device),
            None => {
                remove(&self.devices, serial);
            }
        }
    }

    /// The account every identity here belongs to.
    pub(crate) fn account_id(&self) -> &str {
        &self.account_id
    }

    /// The access key with this id.
    pub(crate) fn access_key(&self, id: &str) -> Option<Arc<AccessKey>> {
        get(&self.keys, id)
    }

    /// The user with this id.
    pub(crate) fn user(&self, id: &str) -> Option<Arc<User>> {
        get(&self.users, id)
    }

    /// The user with this name, in any case.
    pub(crate) fn user_by_name(&self, name: &str) -> Option<Arc<User>> {
        self.users_by_name
            .get(name.to_lowercase().as_str())
            .map(|e| Arc::clone(e.value()))
    }

    /// The device with this serial.
    pub(crate) fn device(&self, serial: &str) -> Option<Arc<Device>> {
        get(&self.devices, serial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mfa::totp::TotpStep;
    use crate::model::TotpDevice;
    use crate::time::UnixTime;

    fn user(id: &str, name: &str) -> User {
        User {
            id: id.into(),
            name: name.to_owned(),
            path: "/".to_owned(),
            created_at: UnixTime::default(),
        }
    }

    fn device(serial: &str, owner: &str) -> Device {
        Device {
            serial: serial.to_owned(),
            kind: DeviceKind::Virtual {
                creator: Owner::User(owner.into()),
                totp: TotpDevice {
                    key: crate::mfa::totp::TotpKey::new(&[7; 20]).unwrap(),
                    drift: 0,
                    last_step: TotpStep::BEFORE_ALL,
                },
            },
            assigned_to: Some(Owner::User(owner.into())),
            enabled_at: None,
        }
    }

    #[test]
    fn a_changed_entry_replaces_the_old_one_key_and_all() {
        let index = Index::empty("123456789012");
        index.apply_access_key("AKIA1", Some(AccessKey::new("AKIA1", Owner::Root, "s1")));
        let mut changed = AccessKey::new("AKIA1", Owner::Root, "s2");
        changed.active = false;
        index.apply_access_key("AKIA1", Some(changed));
        let found = index.access_key("AKIA1").unwrap();
        assert!(!found.active);
        assert_eq!(found.secret.as_str(), "s2");
        // The table's own key is the new entry, not the old one kept beside a new value.
        let stored = index.keys.get("AKIA1").unwrap();
        assert!(Arc::ptr_eq(&stored.key().0, &found));
        drop(stored);
        assert_eq!(index.keys.len(), 1);
        index.apply_access_key("AKIA1", None);
        assert!(index.access_key("AKIA1").is_none());
        assert!(index.access_key("AKIA2").is_none());
    }

    #[test]
    fn keys_and_devices_share_their_owners_id() {
        let index = Index::empty("123456789012");
        index.apply_user("AIDA1", Some(user("AIDA1", "Alice")));
        index.apply_access_key(
            "AKIA1",
            Some(AccessKey::new("AKIA1", Owner::User("AIDA1".into()), "s")),
        );
        let serial = "arn:aws:iam::123456789012:mfa/alice";
        index.apply_device(serial, Some(device(serial, "AIDA1")));
        let alice = index.user("AIDA1").unwrap();
        let Owner::User(key_owner) = &index.access_key("AKIA1").unwrap().owner else {
            panic!("a user's key")
        };
        assert!(Arc::ptr_eq(key_owner, &alice.id));
        let found = index.device(serial).unwrap();
        let Some(Owner::User(holder)) = &found.assigned_to else {
            panic!("an assigned device")
        };
        assert!(Arc::ptr_eq(holder, &alice.id));
        let DeviceKind::Virtual {
            creator: Owner::User(creator),
            ..
        } = &found.kind
        else {
            panic!("a virtual device created by alice")
        };
        assert!(Arc::ptr_eq(creator, &alice.id));
        // An owner not in memory keeps its own copy.
        index.apply_access_key(
            "AKIA2",
            Some(AccessKey::new("AKIA2", Owner::User("AIDA9".into()), "s")),
        );
        assert_eq!(
            index.access_key("AKIA2").unwrap().owner,
            Owner::User("AIDA9".into())
        );
    }

    #[test]
    fn a_load_shares_owner_ids_in_any_order() {
        let index = Index::empty("123456789012");
        let in_order: Vec<_> = ["AIDA1", "AIDA2", "AIDA3"]
            .iter()
            .map(|id| index.put_user(user(id, &id.to_lowercase())))
            .collect();
        let owners = LoadOwners {
            index: &index,
            in_order: in_order.clone(),
            next: Cell::new(0),
        };
        // In order (each asked twice, as a device's creator and holder), then out of order.
        for (value, at) in [
            (1, 0),
            (1, 0),
            (2, 1),
            (2, 1),
            (3, 2),
            (1, 0),
            (3, 2),
            (2, 1),
        ] {
            let Owner::User(id) = owners.owner(&format!("AIDA{value}")) else {
                panic!("a user")
            };
            assert!(Arc::ptr_eq(&id, &in_order[at].id), "AIDA{value}");
        }
        assert_eq!(owners.owner("root"), Owner::Root);
        assert_eq!(owners.owner("AIDA9"), Owner::User("AIDA9".into()));
    }

    #[test]
    fn names_follow_renames_and_deletes_in_any_case() {
        let index = Index::empty("123456789012");
        index.apply_user("AIDA1", Some(user("AIDA1", "Alice")));
        assert_eq!(&*index.user_by_name("ALICE").unwrap().id, "AIDA1");
        index.apply_user("AIDA1", Some(user("AIDA1", "Carol")));
        assert!(index.user_by_name("alice").is_none());
        assert_eq!(index.user_by_name("carol").unwrap().name, "Carol");
        // A case-only rename keeps the entry, with the new spelling.
        index.apply_user("AIDA1", Some(user("AIDA1", "CAROL")));
        assert_eq!(index.user_by_name("carol").unwrap().name, "CAROL");
        // A name another user holds by now is not taken from it.
        index.apply_user("AIDA2", Some(user("AIDA2", "Dave")));
        index
            .users_by_name
            .insert("carol".into(), Arc::new(user("AIDA3", "carol")));
        index.apply_user("AIDA1", None);
        assert!(index.user("AIDA1").is_none());
        assert_eq!(&*index.user_by_name("carol").unwrap().id, "AIDA3");
        index.apply_user("AIDA2", None);
        assert!(index.user_by_name("dave").is_none());
    }
}
