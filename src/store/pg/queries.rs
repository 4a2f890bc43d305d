//! The listings of `store::queries`, on PostgreSQL: same order (byte order, the `C`
//! collation), same pages, same markers.

use super::rows::{self, DEVICE_COLUMNS, USER_COLUMNS};
use super::{PgRead, pg_error};
use crate::model::{Device, Owner, User};
use crate::store::error::StoreError;
use crate::store::queries::{Assignment, KeyMetadata, Page, PageRequest};
use crate::time::UnixTime;

fn limit(page: &PageRequest) -> i64 {
    i64::try_from(page.max_items.saturating_add(1)).unwrap_or(i64::MAX)
}

/// Cuts the one extra row fetched to learn whether there is a next page.
fn cut<T>(page: &PageRequest, mut items: Vec<T>, marker_of: impl Fn(&T) -> String) -> Page<T> {
    let next_marker = if items.len() > page.max_items {
        items.truncate(page.max_items);
        items.last().map(marker_of)
    } else {
        None
    };
    Page { items, next_marker }
}

/// The keys of `owner`, oldest first.
pub(crate) async fn list_access_keys(
    r: &PgRead<'_>,
    owner: &Owner,
) -> Result<Vec<KeyMetadata>, StoreError> {
    r.query(
        "SELECT id, active, created_at FROM access_key WHERE owner = $1 ORDER BY created_at, id",
        &[&owner.as_db()],
    )
    .await?
    .iter()
    .map(|row| {
        Ok(KeyMetadata {
            id: row.try_get(0).map_err(pg_error)?,
            active: row.try_get(1).map_err(pg_error)?,
            created_at: UnixTime::from_secs(row.try_get(2).map_err(pg_error)?),
        })
    })
    .collect()
}

/// Users whose path starts with `path_prefix`, by name.
pub(crate) async fn list_users(
    r: &PgRead<'_>,
    path_prefix: &str,
    page: &PageRequest,
) -> Result<Page<User>, StoreError> {
    let users = r
        .query(
            &format!(
                "SELECT {USER_COLUMNS} FROM iam_user WHERE name_lc > $1 AND left(path, char_length($2::text)) = $2 ORDER BY name_lc LIMIT $3"
            ),
            &[
                &page.marker.as_deref().unwrap_or(""),
                &path_prefix,
                &limit(page),
            ],
        )
        .await?
        .iter()
        .map(rows::user)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(cut(page, users, |u| u.name.to_lowercase()))
}

/// Devices assigned to `owner`, by enable date.
pub(crate) async fn list_assigned_devices(
    r: &PgRead<'_>,
    owner: &Owner,
) -> Result<Vec<Device>, StoreError> {
    r.query(
        &format!(
            "SELECT {DEVICE_COLUMNS} FROM mfa_device WHERE assigned_to = $1 ORDER BY enabled_at, serial"
        ),
        &[&owner.as_db()],
    )
    .await?
    .iter()
    .map(|row| rows::device(row, r.sealer))
    .collect()
}

/// How many devices `owner` has enabled.
pub(crate) async fn enabled_device_count(r: &PgRead<'_>, owner: &Owner) -> Result<i64, StoreError> {
    let rows = r
        .query(
            "SELECT COUNT(*) FROM mfa_device WHERE assigned_to = $1",
            &[&owner.as_db()],
        )
        .await?;
    rows.first()
        .ok_or_else(|| StoreError::Corrupt("a count returned no row".into()))?
        .try_get(0)
        .map_err(pg_error)
}

/// Virtual devices by serial, as `store::queries::list_virtual_devices`.
pub(crate) async fn list_virtual_devices(
    r: &PgRead<'_>,
    assignment: Assignment,
    visible_to: Option<&Owner>,
    page: &PageRequest,
) -> Result<Page<Device>, StoreError> {
    let status = match assignment {
        Assignment::Assigned => "AND assigned_to IS NOT NULL",
        Assignment::Unassigned => "AND assigned_to IS NULL",
        Assignment::Any => "",
    };
    let items = r
        .query(
            &format!(
                "SELECT {DEVICE_COLUMNS} FROM mfa_device WHERE kind = 'virtual' AND serial > $1 {status} AND ($2::text IS NULL OR assigned_to = $2 OR (assigned_to IS NULL AND creator = $2)) ORDER BY serial LIMIT $3"
            ),
            &[
                &page.marker.as_deref().unwrap_or(""),
                &visible_to.map(Owner::as_db),
                &limit(page),
            ],
        )
        .await?
        .iter()
        .map(|row| rows::device(row, r.sealer))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(cut(page, items, |d| d.serial.clone()))
}

/// The user with this name, in any case.
pub(crate) async fn user_by_name(r: &PgRead<'_>, name: &str) -> Result<Option<User>, StoreError> {
    r.query_opt(
        &format!("SELECT {USER_COLUMNS} FROM iam_user WHERE name_lc = $1"),
        &[&name.to_lowercase()],
    )
    .await?
    .map(|row| rows::user(&row))
    .transpose()
}
