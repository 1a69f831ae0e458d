//! Runs the SQL the search module compiles: raw text with typed binds, on whichever backend
//! the store uses. Nothing here decides what matches; it only executes and decodes.

use super::db::AnyConnection;
use super::schema::server_secrets;
use super::{decode_version, Store, StoreError, Version};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Bool, Text};

/// Which placeholder syntax the SQL must use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    Text(String),
    BigInt(i64),
}

/// SQL text and its binds, in placeholder order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sql {
    pub text: String,
    pub binds: Vec<Bind>,
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
}

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Loads the rows of `sql` on the connection's own backend.
macro_rules! load {
    ($conn:expr, $sql:expr, $row:ty) => {
        match $conn {
            AnyConnection::Postgresql(conn) => {
                let mut query = diesel::sql_query(&$sql.text).into_boxed::<diesel::pg::Pg>();
                for bind in &$sql.binds {
                    query = match bind {
                        Bind::Text(v) => query.bind::<Text, _>(v.clone()),
                        Bind::BigInt(v) => query.bind::<BigInt, _>(*v),
                    };
                }
                query.load::<$row>(conn)
            }
            AnyConnection::Sqlite(conn) => {
                let mut query =
                    diesel::sql_query(&$sql.text).into_boxed::<diesel::sqlite::Sqlite>();
                for bind in &$sql.binds {
                    query = match bind {
                        Bind::Text(v) => query.bind::<Text, _>(v.clone()),
                        Bind::BigInt(v) => query.bind::<BigInt, _>(*v),
                    };
                }
                query.load::<$row>(conn)
            }
        }
    };
}

impl Store {
    /// The placeholder syntax of this store's backend.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The current versions `sql` selects (see `search::sql::page`), in its order.
    pub fn search_versions(&self, sql: &Sql) -> Result<Vec<Version>, StoreError> {
        let mut conn = self.reader.get()?;
        let rows = load!(&mut *conn, sql, VersionRow)?;
        rows.into_iter()
            .map(|r| {
                decode_version((
                    r.resource_type,
                    r.id,
                    r.version_id,
                    r.last_updated,
                    r.deleted,
                    r.method,
                    r.key_id,
                    r.body,
                ))
            })
            .collect()
    }

    /// The count `sql` computes (a single `n` column).
    pub fn search_count(&self, sql: &Sql) -> Result<i64, StoreError> {
        let mut conn = self.reader.get()?;
        let rows = load!(&mut *conn, sql, CountRow)?;
        Ok(rows.first().map_or(0, |r| r.n))
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
