//! Reads the in-memory index does not answer (paged and ordered listings), run on a read-only
//! connection by [`Store::read`](super::Store::read), outside the writer's transaction.

use rusqlite::{Connection, params};

use super::error::StoreError;
use super::rows;
use super::seal::Sealer;
use crate::model::{Device, Owner, User};
use crate::time::UnixTime;

/// One line of ListAccessKeys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyMetadata {
    /// `AKIA…`.
    pub(crate) id: String,
    /// Active or not.
    pub(crate) active: bool,
    /// Creation time.
    pub(crate) created_at: UnixTime,
}

/// A page of a listing: the items and, when truncated, the marker of the next page.
#[derive(Debug)]
pub(crate) struct Page<T> {
    /// The items of this page.
    pub(crate) items: Vec<T>,
    /// Where the next page starts, when there is one.
    pub(crate) next_marker: Option<String>,
}

/// Where a listing starts and how long a page is.
#[derive(Clone, Debug)]
pub(crate) struct PageRequest {
    /// Items after this marker (a previous page's `next_marker`).
    pub(crate) marker: Option<String>,
    /// Most items in the page.
    pub(crate) max_items: usize,
}

impl PageRequest {
    fn limit(&self) -> i64 {
        i64::try_from(self.max_items.saturating_add(1)).unwrap_or(i64::MAX)
    }

    /// Cuts the one extra row fetched to learn whether there is a next page.
    fn page<T>(&self, mut items: Vec<T>, marker_of: impl Fn(&T) -> String) -> Page<T> {
        let next_marker = if items.len() > self.max_items {
            items.truncate(self.max_items);
            items.last().map(marker_of)
        } else {
            None
        };
        Page { items, next_marker }
    }
}

/// The keys of `owner`, oldest first.
pub(crate) fn list_access_keys(
    conn: &Connection,
    owner: &Owner,
) -> Result<Vec<KeyMetadata>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, active, created_at FROM access_key WHERE owner = ?1 ORDER BY created_at, id",
    )?;
    let keys = stmt
        .query_map([owner.as_db()], |r| {
            Ok(KeyMetadata {
                id: r.get(0)?,
                active: r.get(1)?,
                created_at: UnixTime::from_secs(r.get(2)?),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(keys)
}

/// Users whose path starts with `path_prefix`, by name.
pub(crate) fn list_users(
    conn: &Connection,
    path_prefix: &str,
    page: &PageRequest,
) -> Result<Page<User>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {} FROM user WHERE name_lc > ?1 AND substr(path, 1, length(?2)) = ?2 ORDER BY name_lc LIMIT ?3",
        rows::USER_COLUMNS
    ))?;
    let users = stmt
        .query_map(
            params![
                page.marker.as_deref().unwrap_or(""),
                path_prefix,
                page.limit()
            ],
            rows::user,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(page.page(users, |u| u.name.to_lowercase()))
}

/// Devices assigned to `owner`, by enable date.
pub(crate) fn list_assigned_devices(
    conn: &Connection,
    sealer: &Sealer,
    owner: &Owner,
) -> Result<Vec<Device>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {} FROM mfa_device WHERE assigned_to = ?1 ORDER BY enabled_at, serial",
        rows::DEVICE_COLUMNS
    ))?;
    let mut q = stmt.query([owner.as_db()])?;
    let mut out = Vec::new();
    while let Some(row) = q.next()? {
        out.push(rows::device(row, sealer)?);
    }
    Ok(out)
}

/// How many devices `owner` has enabled.
pub(crate) fn enabled_device_count(conn: &Connection, owner: &Owner) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT COUNT(*) FROM mfa_device WHERE assigned_to = ?1")?
        .query_row([owner.as_db()], |r| r.get(0))?)
}

/// Which virtual devices ListVirtualMFADevices returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Assignment {
    /// Enabled for someone.
    Assigned,
    /// Not enabled.
    Unassigned,
    /// Both.
    Any,
}

/// Virtual devices by serial; `visible_to` limits them to the ones an IAM user created (while
/// unassigned) or has assigned: users see only their own.
pub(crate) fn list_virtual_devices(
    conn: &Connection,
    sealer: &Sealer,
    assignment: Assignment,
    visible_to: Option<&Owner>,
    page: &PageRequest,
) -> Result<Page<Device>, StoreError> {
    let status = match assignment {
        Assignment::Assigned => "AND assigned_to IS NOT NULL",
        Assignment::Unassigned => "AND assigned_to IS NULL",
        Assignment::Any => "",
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {} FROM mfa_device WHERE kind = 'virtual' AND serial > ?1 {status} AND (?2 IS NULL OR assigned_to = ?2 OR (assigned_to IS NULL AND creator = ?2)) ORDER BY serial LIMIT ?3",
        rows::DEVICE_COLUMNS
    ))?;
    let mut q = stmt.query(params![
        page.marker.as_deref().unwrap_or(""),
        visible_to.map(Owner::as_db),
        page.limit()
    ])?;
    let mut items = Vec::new();
    while let Some(row) = q.next()? {
        items.push(rows::device(row, sealer)?);
    }
    Ok(page.page(items, |d| d.serial.clone()))
}

/// The user with this name, in any case.
pub(crate) fn user_by_name(conn: &Connection, name: &str) -> Result<Option<User>, StoreError> {
    rows::user_by_name(conn, name)
}
