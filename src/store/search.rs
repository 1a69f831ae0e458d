//! Runs the SQL the search module compiles: raw text with typed binds, on whichever backend
//! the store uses. Nothing here decides what matches; it only executes and decodes.

use super::db::AnyConnection;
use super::schema::server_secrets;
use super::{decode_version, Filed, Store, StoreError, Version};
use crate::search::sql::{Planning, ReadSql};
use diesel::backend::Backend;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, Binary, Bool, HasSqlType, Nullable, Text, Untyped};
use serde::{Deserialize, Serialize};

/// Which placeholder syntax the SQL must use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The placeholder of the `n`th bind (from 1), numbered on both backends so that a bind
    /// may be used twice.
    pub fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }
}

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    Text(String),
    BigInt(i64),
    /// A nullable text column (bulk import).
    OptText(Option<String>),
    /// A nullable number column.
    OptBigInt(Option<i64>),
    Bool(bool),
    Bytes(Vec<u8>),
}

/// SQL text and its binds, in placeholder order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sql {
    pub text: String,
    pub binds: Vec<Bind>,
}

/// A sort key's value for one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyValue {
    Text(String),
    Int(i64),
}

/// How many sort keys a search row carries (`k0_t`/`k0_n` … `k2_t`/`k2_n`, text or number).
pub const SORT_KEYS: usize = 3;

/// A current version with the values of its sort keys (`None`: no value, or no such key).
#[derive(Debug, Clone)]
pub struct Found {
    pub version: Version,
    pub keys: [Option<KeyValue>; SORT_KEYS],
}

#[derive(QueryableByName)]
struct VersionRow {
    #[diesel(sql_type = Text)]
    resource_type: String,
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = BigInt)]
    version_id: i64,
    #[diesel(sql_type = BigInt)]
    last_updated: i64,
    #[diesel(sql_type = Bool)]
    deleted: bool,
    #[diesel(sql_type = Text)]
    method: String,
    #[diesel(sql_type = Text)]
    key_id: String,
    #[diesel(sql_type = Binary)]
    body: Vec<u8>,
    #[diesel(sql_type = Nullable<Text>)]
    patient_id: Option<String>,
    #[diesel(sql_type = BigInt)]
    labels: i64,
    #[diesel(sql_type = Nullable<Text>)]
    writer: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    k0_t: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    k0_n: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    k1_t: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    k1_n: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    k2_t: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    k2_n: Option<i64>,
}

fn key(text: Option<String>, number: Option<i64>) -> Option<KeyValue> {
    text.map(KeyValue::Text).or(number.map(KeyValue::Int))
}

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct ContentRow {
    #[diesel(sql_type = Text)]
    key_id: String,
    #[diesel(sql_type = Binary)]
    content: Vec<u8>,
}

/// A statement of the builder, run so that the connection keeps it prepared: the text is the
/// cache key (with the binds' types), and the builder's shapes are few once the client's values
/// are bound, so a repeated search or read skips parsing and planning (SQLite's
/// `sqlite3_prepare`, PostgreSQL's parse and plan). `diesel::sql_query` is never cached
/// (it may carry text written at run time); this is the same fragment without that mark. How
/// many statements one connection keeps is bounded in `db` (a connection past the bound is
/// replaced).
pub(crate) struct Prepared<'a>(pub &'a Sql);

impl<DB> QueryFragment<DB> for Prepared<'_>
where
    DB: Backend
        + HasSqlType<Text>
        + HasSqlType<BigInt>
        + HasSqlType<Nullable<Text>>
        + HasSqlType<Nullable<BigInt>>
        + HasSqlType<Bool>
        + HasSqlType<Binary>,
    String: ToSql<Text, DB>,
    i64: ToSql<BigInt, DB>,
    Option<String>: ToSql<Nullable<Text>, DB>,
    Option<i64>: ToSql<Nullable<BigInt>, DB>,
    bool: ToSql<Bool, DB>,
    Vec<u8>: ToSql<Binary, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        // The text already holds the numbered placeholders (`?N`, `$N`): the binds are
        // values only, in placeholder order.
        out.push_sql(&self.0.text);
        for bind in &self.0.binds {
            match bind {
                Bind::Text(v) => out.push_bind_param_value_only::<Text, _>(v)?,
                Bind::BigInt(v) => out.push_bind_param_value_only::<BigInt, _>(v)?,
                Bind::OptText(v) => out.push_bind_param_value_only::<Nullable<Text>, _>(v)?,
                Bind::OptBigInt(v) => out.push_bind_param_value_only::<Nullable<BigInt>, _>(v)?,
                Bind::Bool(v) => out.push_bind_param_value_only::<Bool, _>(v)?,
                Bind::Bytes(v) => out.push_bind_param_value_only::<Binary, _>(v)?,
            }
        }
        Ok(())
    }
}

impl QueryId for Prepared<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Prepared<'_> {
    type SqlType = Untyped;
}

impl<Conn> RunQueryDsl<Conn> for Prepared<'_> {}

/// Binds every value of `binds` to the boxed query, in order.
macro_rules! bind_all {
    ($query:ident, $binds:expr) => {
        for bind in &$binds {
            $query = match bind {
                Bind::Text(v) => $query.bind::<Text, _>(v.clone()),
                Bind::BigInt(v) => $query.bind::<BigInt, _>(*v),
                Bind::OptText(v) => $query.bind::<Nullable<Text>, _>(v.clone()),
                Bind::OptBigInt(v) => $query.bind::<Nullable<BigInt>, _>(*v),
                Bind::Bool(v) => $query.bind::<Bool, _>(*v),
                Bind::Bytes(v) => $query.bind::<Binary, _>(v.clone()),
            };
        }
    };
}
pub(crate) use bind_all;

/// Runs the statement `sql` once, without keeping it prepared: for text that varies with the
/// data (an insert of as many rows as a resource has index values), which would only crowd
/// the connection's statements out.
macro_rules! execute_once {
    ($conn:expr, $sql:expr) => {
        match $conn {
            AnyConnection::Postgresql(conn) => {
                let mut query = diesel::sql_query(&$sql.text).into_boxed::<diesel::pg::Pg>();
                bind_all!(query, $sql.binds);
                query.execute(conn)
            }
            AnyConnection::Sqlite(conn) => {
                let mut query =
                    diesel::sql_query(&$sql.text).into_boxed::<diesel::sqlite::Sqlite>();
                bind_all!(query, $sql.binds);
                query.execute(conn)
            }
        }
    };
}
pub(crate) use execute_once;

/// Runs the statement `sql` on the connection's own backend; returns the rows affected.
macro_rules! execute {
    ($conn:expr, $sql:expr) => {
        match $conn {
            AnyConnection::Postgresql(conn) => $crate::store::search::Prepared(&$sql).execute(conn),
            AnyConnection::Sqlite(conn) => $crate::store::search::Prepared(&$sql).execute(conn),
        }
    };
}
pub(crate) use execute;

/// Loads the rows of `sql` on the connection's own backend.
macro_rules! load {
    ($conn:expr, $sql:expr, $row:ty) => {
        match $conn {
            AnyConnection::Postgresql(conn) => {
                $crate::store::search::Prepared(&$sql).load::<$row>(conn)
            }
            AnyConnection::Sqlite(conn) => {
                $crate::store::search::Prepared(&$sql).load::<$row>(conn)
            }
        }
    };
}
pub(crate) use load;

/// Loads the rows of the builder's statement `read`: kept prepared unless its plan must be
/// made for its values ([`Planning`]); PostgreSQL then gets it unnamed, planned with the values
/// bound. SQLite keeps every statement: its plans never depend on values (QPSG, see
/// `.cargo/config.toml`).
macro_rules! load_read {
    ($conn:expr, $read:expr, $row:ty) => {{
        let sql = $read.sql();
        match ($conn, $read.planning()) {
            (AnyConnection::Postgresql(conn), Planning::ForItsValues) => {
                let mut query = diesel::sql_query(&sql.text).into_boxed::<diesel::pg::Pg>();
                bind_all!(query, sql.binds);
                query.load::<$row>(conn)
            }
            (conn, _) => load!(conn, sql, $row),
        }
    }};
}

impl Store {
    /// The placeholder syntax of this store's backend.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The versions `sql` selects (see `search::sql`), in its order, with their sort keys.
    pub fn found(&self, sql: &ReadSql) -> Result<Vec<Found>, StoreError> {
        self.reading(|conn| load_found(conn, sql))
    }

    /// The versions `read` selects of `resource_type/id` once it knows where the resource is
    /// filed: the lookup and the read on one connection.
    pub fn found_filed(
        &self,
        resource_type: &str,
        id: &str,
        read: impl Fn(&Filed) -> ReadSql,
    ) -> Result<Vec<Found>, StoreError> {
        self.reading(|conn| {
            let filed = super::filed(conn, resource_type, id)?;
            load_found(conn, &read(&filed))
        })
    }

    /// Where `resource_type/id` is filed (see [`Filed`]).
    pub fn filed(&self, resource_type: &str, id: &str) -> Result<Filed, StoreError> {
        self.reading(|conn| super::filed(conn, resource_type, id))
    }

    /// The count `sql` computes (a single `n` column).
    pub fn count(&self, sql: &ReadSql) -> Result<i64, StoreError> {
        self.reading(|conn| load_count(conn, sql))
    }

    /// The bytes `sql` selects (a Binary's content), if any.
    pub fn content(&self, sql: &ReadSql) -> Result<Option<Vec<u8>>, StoreError> {
        self.reading(|conn| load_content(conn, sql))
    }

    /// Runs the read `work` on a pooled connection, and once more on another if the first
    /// turned out lost (the database restarted since it was last used): a read changes
    /// nothing, so repeating it is safe, and the pool checks its other connections first.
    pub(super) fn reading<T>(
        &self,
        work: impl Fn(&mut AnyConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // The first connection goes back to the pool (and is retired) before the second.
        let first = work(&mut *self.reader.get()?);
        match first {
            Err(StoreError::Database(e)) if super::db::is_lost(&e) => {
                work(&mut *self.reader.get()?)
            }
            other => other,
        }
    }

    /// Refreshes the planner's statistics (after a bulk load or a reindex): SQLite only picks
    /// good plans for large tables once it knows how selective each index is.
    pub fn analyze(&self) -> Result<(), StoreError> {
        let mut conn = self.writer.get()?;
        diesel::sql_query("ANALYZE").execute(&mut *conn)?;
        Ok(())
    }

    /// The secret called `name`, created at random on first use and the same ever after.
    pub fn secret(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        let mut conn = self.writer.get()?;
        conn.transaction::<_, StoreError, _>(|conn| {
            let existing: Option<Vec<u8>> = server_secrets::table
                .find(name)
                .select(server_secrets::secret)
                .first(conn)
                .optional()?;
            if let Some(secret) = existing {
                return Ok(secret);
            }
            let mut secret = vec![0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
                .map_err(|_| StoreError::Corrupt("no randomness for a secret".into()))?;
            diesel::insert_into(server_secrets::table)
                .values((
                    server_secrets::name.eq(name),
                    server_secrets::secret.eq(&secret),
                ))
                .execute(conn)?;
            Ok(secret)
        })
    }
}

/// Runs `sql` (version rows) on `conn`.
pub(super) fn load_found(
    conn: &mut AnyConnection,
    sql: &ReadSql,
) -> Result<Vec<Found>, StoreError> {
    let rows = load_read!(conn, sql, VersionRow)?;
    rows.into_iter()
        .map(|r| {
            let version = decode_version(super::VersionRow {
                resource_type: r.resource_type,
                id: r.id,
                version_id: r.version_id,
                last_updated: r.last_updated,
                deleted: r.deleted,
                method: r.method,
                key_id: r.key_id,
                body: r.body,
                patient_id: r.patient_id,
                labels: r.labels,
                writer: r.writer,
            })?;
            Ok(Found {
                version,
                keys: [
                    key(r.k0_t, r.k0_n),
                    key(r.k1_t, r.k1_n),
                    key(r.k2_t, r.k2_n),
                ],
            })
        })
        .collect()
}

/// Whether `version` is still the current, undeleted version of its resource (in `tables`):
/// read again by a rebuild that holds the resource's lock, in case a write came between.
pub(super) fn is_current(
    conn: &mut AnyConnection,
    dialect: Dialect,
    tables: &super::tables::Tables,
    version: &Version,
) -> Result<bool, StoreError> {
    let p = |n| dialect.placeholder(n);
    let sql = Sql {
        text: format!(
            "SELECT COUNT(*) AS n FROM {} WHERE patient_id = {} AND resource_type = {} \
             AND id = {} AND version_id = {} AND deleted = FALSE",
            tables.resources,
            p(1),
            p(2),
            p(3),
            p(4)
        ),
        binds: vec![
            Bind::Text(super::record_key(version.patient_id.as_deref()).to_owned()),
            Bind::Text(version.resource_type.clone()),
            Bind::Text(version.id.clone()),
            Bind::BigInt(version.version_id),
        ],
    };
    let rows = load!(conn, sql, CountRow)?;
    Ok(rows.first().is_some_and(|r| r.n == 1))
}

/// Runs `sql` (one `n` column) on `conn`.
pub(super) fn load_count(conn: &mut AnyConnection, sql: &ReadSql) -> Result<i64, StoreError> {
    let rows = load_read!(conn, sql, CountRow)?;
    Ok(rows.first().map_or(0, |r| r.n))
}

/// Runs `sql` (a `key_id` and a `content` column) on `conn` and decodes the content.
pub(super) fn load_content(
    conn: &mut AnyConnection,
    sql: &ReadSql,
) -> Result<Option<Vec<u8>>, StoreError> {
    let rows = load_read!(conn, sql, ContentRow)?;
    match rows.into_iter().next() {
        None => Ok(None),
        Some(row) => Ok(Some(super::codec::decode(&row.key_id, row.content)?)),
    }
}
