//! `sts-broker admin copy-store`: moving up from one machine. Copies a SQLite data dir's
//! account, server keys, users, access keys and devices (with their last accepted steps and
//! drift) into an empty PostgreSQL store, in one transaction. Sealed values are copied as they
//! are: their sealing context is the row's identity, not the database, so the same master key
//! opens them there, and nothing is ever unsealed on the way (only the seal check is opened,
//! to refuse a master key that is not the data dir's).

use std::path::Path;
use std::time::Duration;

use rusqlite::types::Value;
use tokio_postgres::types::ToSql;

use super::{BOOTSTRAP_LOCK, connect_one, pg_config, pg_error, run_apart, schema};
use crate::config::BackendUrl;
use crate::store::error::StoreError;
use crate::store::open;

/// Rows inserted per statement.
const CHUNK: usize = 5_000;

/// What was copied.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Copied {
    /// The account id.
    pub account_id: String,
    /// Users.
    pub users: usize,
    /// Access keys, the root's included.
    pub access_keys: usize,
    /// MFA devices of every kind.
    pub devices: usize,
    /// Session-credential server keys.
    pub server_keys: usize,
}

fn column<T: rusqlite::types::FromSql>(row: &rusqlite::Row<'_>, i: usize) -> Result<T, StoreError> {
    Ok(row.get(i)?)
}

/// Reads `sql`'s rows as columns of values (one vector per column).
fn columns(
    conn: &rusqlite::Connection,
    sql: &str,
    width: usize,
) -> Result<Vec<Vec<Value>>, StoreError> {
    let mut stmt = conn.prepare(sql)?;
    let mut q = stmt.query([])?;
    let mut cols: Vec<Vec<Value>> = (0..width).map(|_| Vec::new()).collect();
    while let Some(row) = q.next()? {
        for (i, col) in cols.iter_mut().enumerate() {
            col.push(column::<Value>(row, i)?);
        }
    }
    Ok(cols)
}

fn texts(col: &[Value]) -> Result<Vec<Option<String>>, StoreError> {
    col.iter()
        .map(|v| match v {
            Value::Null => Ok(None),
            Value::Text(t) => Ok(Some(t.clone())),
            other => Err(StoreError::Corrupt(format!(
                "expected text, found {other:?}"
            ))),
        })
        .collect()
}

fn ints(col: &[Value]) -> Result<Vec<Option<i64>>, StoreError> {
    col.iter()
        .map(|v| match v {
            Value::Null => Ok(None),
            Value::Integer(n) => Ok(Some(*n)),
            other => Err(StoreError::Corrupt(format!(
                "expected an integer, found {other:?}"
            ))),
        })
        .collect()
}

fn blobs(col: &[Value]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
    col.iter()
        .map(|v| match v {
            Value::Null => Ok(None),
            Value::Blob(b) => Ok(Some(b.clone())),
            other => Err(StoreError::Corrupt(format!(
                "expected bytes, found {other:?}"
            ))),
        })
        .collect()
}

/// One column, ready to bind as a PostgreSQL array.
enum Column {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
    Bool(Vec<Option<bool>>),
    Bytes(Vec<Option<Vec<u8>>>),
}

impl Column {
    fn len(&self) -> usize {
        match self {
            Self::Text(v) => v.len(),
            Self::Int(v) => v.len(),
            Self::Bool(v) => v.len(),
            Self::Bytes(v) => v.len(),
        }
    }

    fn chunk(&self, from: usize, to: usize) -> Box<dyn ToSql + Sync + Send> {
        match self {
            Self::Text(v) => Box::new(v.get(from..to).unwrap_or_default().to_vec()),
            Self::Int(v) => Box::new(v.get(from..to).unwrap_or_default().to_vec()),
            Self::Bool(v) => Box::new(v.get(from..to).unwrap_or_default().to_vec()),
            Self::Bytes(v) => Box::new(v.get(from..to).unwrap_or_default().to_vec()),
        }
    }
}

/// A table to fill: `INSERT INTO table(cols) SELECT * FROM UNNEST($1::type[], …)`.
struct Table {
    sql: String,
    columns: Vec<Column>,
}

impl Table {
    fn rows(&self) -> usize {
        self.columns.first().map_or(0, Column::len)
    }
}

/// Copies the SQLite store in `from` into the empty PostgreSQL store at `to` (migrated
/// first). The master key is `STS_BROKER_MASTER_KEY` or `from`'s `master.key`; the nodes on
/// PostgreSQL need the same.
pub(crate) fn copy_store(
    from: &Path,
    to: &BackendUrl,
    limit: Duration,
) -> Result<Copied, StoreError> {
    let opened = open::read_only(from)?;
    let conn = &opened.conn;
    let account_id = opened.meta.account_id.clone();
    let created_at = opened.meta.created_at.secs();
    let seal_check: Vec<u8> =
        conn.query_row("SELECT value FROM meta WHERE key = 'seal_check'", [], |r| {
            r.get(0)
        })?;
    let server_keys = columns(conn, "SELECT kid, sealed, created_at FROM server_key", 3)?;
    let users = columns(
        conn,
        "SELECT id, name, name_lc, path, created_at FROM user",
        5,
    )?;
    let keys = columns(
        conn,
        "SELECT id, owner, sealed_secret, active, created_at FROM access_key",
        5,
    )?;
    let devices = columns(
        conn,
        "SELECT serial, kind, name, path, creator, assigned_to, enabled_at, sealed_seed, bound_to, credential_id, public_key, last_step, drift, created_at FROM mfa_device",
        14,
    )?;
    let col = |cols: &[Vec<Value>], i: usize| cols.get(i).cloned().unwrap_or_default();
    let tables = vec![
        Table {
            sql: "INSERT INTO server_key(kid, sealed, created_at) SELECT * FROM UNNEST($1::text[], $2::bytea[], $3::bigint[])".into(),
            columns: vec![
                Column::Text(texts(&col(&server_keys, 0))?),
                Column::Bytes(blobs(&col(&server_keys, 1))?),
                Column::Int(ints(&col(&server_keys, 2))?),
            ],
        },
        Table {
            sql: "INSERT INTO iam_user(id, name, name_lc, path, created_at) SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[])".into(),
            columns: (0..4)
                .map(|i| texts(&col(&users, i)).map(Column::Text))
                .chain([ints(&col(&users, 4)).map(Column::Int)])
                .collect::<Result<_, _>>()?,
        },
        Table {
            sql: "INSERT INTO access_key(id, owner, sealed_secret, active, created_at) SELECT * FROM UNNEST($1::text[], $2::text[], $3::bytea[], $4::boolean[], $5::bigint[])".into(),
            columns: vec![
                Column::Text(texts(&col(&keys, 0))?),
                Column::Text(texts(&col(&keys, 1))?),
                Column::Bytes(blobs(&col(&keys, 2))?),
                Column::Bool(ints(&col(&keys, 3))?.into_iter().map(|v| v.map(|n| n != 0)).collect()),
                Column::Int(ints(&col(&keys, 4))?),
            ],
        },
        Table {
            sql: "INSERT INTO mfa_device(serial, kind, name, path, creator, assigned_to, enabled_at, sealed_seed, bound_to, credential_id, public_key, last_step, drift, created_at) SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::bytea[], $9::text[], $10::text[], $11::text[], $12::bigint[], $13::bigint[], $14::bigint[])".into(),
            columns: vec![
                Column::Text(texts(&col(&devices, 0))?),
                Column::Text(texts(&col(&devices, 1))?),
                Column::Text(texts(&col(&devices, 2))?),
                Column::Text(texts(&col(&devices, 3))?),
                Column::Text(texts(&col(&devices, 4))?),
                Column::Text(texts(&col(&devices, 5))?),
                Column::Int(ints(&col(&devices, 6))?),
                Column::Bytes(blobs(&col(&devices, 7))?),
                Column::Text(texts(&col(&devices, 8))?),
                Column::Text(texts(&col(&devices, 9))?),
                Column::Text(texts(&col(&devices, 10))?),
                Column::Int(ints(&col(&devices, 11))?),
                Column::Int(ints(&col(&devices, 12))?),
                Column::Int(ints(&col(&devices, 13))?),
            ],
        },
    ];
    let copied = Copied {
        account_id: account_id.clone(),
        server_keys: tables.first().map_or(0, Table::rows),
        users: tables.get(1).map_or(0, Table::rows),
        access_keys: tables.get(2).map_or(0, Table::rows),
        devices: tables.get(3).map_or(0, Table::rows),
    };
    let config = pg_config(to)?;
    run_apart(async move {
        let mut client = connect_one(&config, limit.max(Duration::from_secs(10))).await?;
        schema::migrate(&mut client).await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&BOOTSTRAP_LOCK])
            .await
            .map_err(pg_error)?;
        if tx
            .query_opt("SELECT id FROM account", &[])
            .await
            .map_err(pg_error)?
            .is_some()
        {
            return Err(StoreError::DataDir(
                "the PostgreSQL store already holds an account: copy-store fills an empty store only"
                    .into(),
            ));
        }
        tx.execute(
            "INSERT INTO account(id, created_at, seal_check) VALUES ($1, $2, $3)",
            &[&account_id, &created_at, &seal_check],
        )
        .await
        .map_err(pg_error)?;
        for table in &tables {
            let stmt = tx.prepare(&table.sql).await.map_err(pg_error)?;
            let mut from = 0;
            while from < table.rows() {
                let to = (from + CHUNK).min(table.rows());
                let chunk: Vec<Box<dyn ToSql + Sync + Send>> =
                    table.columns.iter().map(|c| c.chunk(from, to)).collect();
                let params: Vec<&(dyn ToSql + Sync)> = chunk
                    .iter()
                    .map(|b| b.as_ref() as &(dyn ToSql + Sync))
                    .collect();
                tx.execute(&stmt, &params).await.map_err(pg_error)?;
                from = to;
            }
        }
        tx.commit().await.map_err(pg_error)?;
        Ok(())
    })?;
    Ok(copied)
}
