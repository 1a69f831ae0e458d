//! Database connections: the two backends behind one connection type, their durability
//! settings, and embedded migrations. Backend differences live here and nowhere else.

use diesel::connection::{Instrumentation, InstrumentationEvent, SimpleConnection};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::r2d2::{self, R2D2Connection};
use diesel::result::DatabaseErrorKind;
use diesel::sql_types::Text;
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// A connection to either backend; diesel queries written once run on both.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

/// Where the data lives, parsed from `database_url`.
#[derive(Debug, Clone)]
pub enum Target {
    Sqlite(PathBuf),
    Postgres(String),
}

/// The database cannot be used, and why.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error("refusing to run: {0}")]
    Unsafe(String),
    #[error("migration failed: {0}")]
    Migration(String),
}

#[derive(QueryableByName)]
struct Setting {
    #[diesel(sql_type = Text)]
    value: String,
}

/// Runs a query returning one text column named `value`.
macro_rules! setting {
    ($conn:expr, $query:expr) => {{
        let query: &str = $query;
        let rows: Vec<Setting> = diesel::sql_query(query)
            .load($conn)
            .map_err(|e| OpenError::Connect(format!("{query}: {e}")))?;
        rows.into_iter()
            .next()
            .map(|s| s.value)
            .ok_or_else(|| OpenError::Connect(format!("{query}: no value")))?
    }};
}

impl Target {
    /// Parses `sqlite://PATH` or `postgres://…`.
    pub fn parse(url: &str) -> Result<Target, OpenError> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() || path.contains(":memory:") || path.starts_with("file:") {
                return Err(OpenError::Unsafe(
                    "SQLite needs a file path (in-memory databases lose acknowledged writes)"
                        .into(),
                ));
            }
            return Ok(Target::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Target::Postgres(url.to_owned()));
        }
        Err(OpenError::Connect(
            "database_url must be sqlite://PATH or postgres://…".into(),
        ))
    }

    /// Opens one connection with the settings the server relies on.
    pub fn connect(&self) -> Result<AnyConnection, OpenError> {
        match self {
            Target::Sqlite(path) => {
                let path = path.to_str().ok_or_else(|| {
                    OpenError::Connect("the SQLite path is not valid UTF-8".into())
                })?;
                let mut conn = SqliteConnection::establish(path)
                    .map_err(|e| OpenError::Connect(e.to_string()))?;
                // WAL + synchronous=FULL: a committed transaction survives a crash or power loss.
                conn.batch_execute(
                    "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
                )
                .map_err(|e| OpenError::Connect(e.to_string()))?;
                let mode = setting!(
                    &mut conn,
                    "SELECT journal_mode AS value FROM pragma_journal_mode()"
                );
                if !mode.eq_ignore_ascii_case("wal") {
                    return Err(OpenError::Unsafe(format!(
                        "SQLite journal_mode is {mode}, WAL is required"
                    )));
                }
                Ok(AnyConnection::Sqlite(conn))
            }
            Target::Postgres(url) => {
                let mut conn =
                    PgConnection::establish(url).map_err(|e| OpenError::Connect(e.to_string()))?;
                // Carnet's queries read a few index rows each, but the consent restriction's
                // correlated probes inflate the planner's cost estimates past jit_above_cost:
                // JIT compilation then took ~110 ms of a query that runs in 2 ms
                // (docs/performance.md, 2026-12-06).
                conn.batch_execute("SET jit = off")
                    .map_err(|e| OpenError::Connect(e.to_string()))?;
                Ok(AnyConnection::Postgresql(conn))
            }
        }
    }

    /// Checks durability settings and applies pending migrations, then on PostgreSQL the
    /// partitioning by patient id (`partitions`: 0 for none; see `store::partitions`).
    pub fn prepare(&self, partitions: u32) -> Result<(), OpenError> {
        if let Target::Sqlite(path) = self {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    OpenError::Connect(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
        }
        match self.connect()? {
            AnyConnection::Sqlite(mut conn) => {
                conn.run_pending_migrations(SQLITE_MIGRATIONS)
                    .map_err(|e| OpenError::Migration(e.to_string()))?;
            }
            AnyConnection::Postgresql(mut conn) => {
                for name in ["fsync", "synchronous_commit", "full_page_writes"] {
                    let value = setting!(
                        &mut conn,
                        &format!("SELECT current_setting('{name}') AS value")
                    );
                    if value.eq_ignore_ascii_case("off") {
                        return Err(OpenError::Unsafe(format!(
                            "PostgreSQL has {name}=off, which can lose acknowledged writes"
                        )));
                    }
                }
                conn.run_pending_migrations(POSTGRES_MIGRATIONS)
                    .map_err(|e| OpenError::Migration(e.to_string()))?;
                super::partitions::apply(&mut conn, partitions)?;
            }
        }
        Ok(())
    }
}

/// Serializes conditional writes on the same condition until the transaction ends.
/// SQLite needs nothing: its single writer connection already serializes every write.
pub fn lock_condition(conn: &mut AnyConnection, condition: &str) -> QueryResult<()> {
    if let AnyConnection::Postgresql(pg) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
            .bind::<diesel::sql_types::BigInt, _>(fnv1a(condition))
            .execute(pg)?;
    }
    Ok(())
}

/// Serializes writes to one resource until the transaction ends (see `Store::locked`); call
/// it first in the transaction. On PostgreSQL an advisory lock keyed by the resource. SQLite's
/// single writer connection already serializes the server's writes; a write statement (one
/// that changes nothing) takes the database's write lock before the transaction reads, so a
/// writer in another process (`carnet reindex`) is waited for (busy_timeout) instead of
/// invalidating what this transaction read.
pub fn lock_resource(conn: &mut AnyConnection, resource_type: &str, id: &str) -> QueryResult<()> {
    match conn {
        AnyConnection::Sqlite(_) => lock_writes(conn),
        // The separator cannot occur in a type or an id, so no condition key names a resource.
        _ => lock_condition(conn, &format!("resource\u{1f}{resource_type}\u{1f}{id}")),
    }
}

/// On SQLite, takes the database's write lock now, before the transaction reads (see
/// [`lock_resource`]): nothing is written by anyone else until it ends. Nothing on PostgreSQL,
/// where writers lock each resource.
pub fn lock_writes(conn: &mut AnyConnection) -> QueryResult<()> {
    if let AnyConnection::Sqlite(sqlite) = conn {
        diesel::sql_query("UPDATE resources SET version_id = version_id WHERE 0")
            .execute(sqlite)?;
    }
    Ok(())
}

/// A stable 64-bit hash (FNV-1a): the advisory lock key of a condition.
fn fnv1a(text: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

/// How many statements one pooled connection keeps prepared before it is replaced. The
/// builder's shapes in steady use are far fewer; a client that sends many distinct shapes
/// costs reconnections, never unbounded memory (diesel's cache has no eviction, and
/// PostgreSQL keeps a session's prepared statements until it ends).
pub const KEPT_STATEMENTS: usize = 256;

/// What a pooled connection's own events say about it: how many statements it keeps
/// prepared, whether it was lost (the server closed it, or it could not be written to), and
/// the pool's loss count when it was last known to work.
#[derive(Debug, Default)]
struct Health {
    kept: usize,
    lost: bool,
    known_good_at: u64,
    /// Statements started (for tests of how many round trips a path takes).
    started: usize,
}

impl Instrumentation for Health {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::CacheQuery { .. } => self.kept += 1,
            InstrumentationEvent::StartQuery { .. } => self.started += 1,
            InstrumentationEvent::FinishQuery { error: Some(e), .. } if is_lost(e) => {
                self.lost = true
            }
            _ => {}
        }
    }
}

/// Whether `error` says the connection itself is gone (the statement may never have reached
/// the server), rather than that a statement failed.
pub fn is_lost(error: &diesel::result::Error) -> bool {
    matches!(
        error,
        diesel::result::Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _
        )
    )
}

/// How many statements `conn` keeps prepared (for tests of what is kept).
#[cfg(test)]
pub fn kept_statements(conn: &mut AnyConnection) -> usize {
    if health(conn).is_none() {
        conn.set_instrumentation(Health::default());
    }
    health(conn).map_or(0, |h| h.kept)
}

/// How many statements `conn` has started since it was opened (for tests of round trips).
#[cfg(test)]
pub fn statements_started(conn: &mut AnyConnection) -> usize {
    health(conn).map_or(0, |h| h.started)
}

fn health(conn: &mut AnyConnection) -> Option<&mut Health> {
    conn.instrumentation().downcast_mut::<Health>()
}

/// Builds pooled connections for one target, and retires those that were lost or keep too
/// many statements.
pub struct Manager {
    target: Target,
    /// Whether the pool's connections are SQLite's writer (see [`writer_pool`]).
    writer: bool,
    /// How many lost connections the pool has seen: a connection last known to work before
    /// the latest loss (the database restarted, say) is checked once before it is handed out.
    losses: Arc<AtomicU64>,
}

impl r2d2::ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = OpenError;

    fn connect(&self) -> Result<AnyConnection, OpenError> {
        let mut conn = self.target.connect()?;
        if let (true, AnyConnection::Sqlite(sqlite)) = (self.writer, &mut conn) {
            sqlite
                .batch_execute(&format!(
                    "PRAGMA wal_autocheckpoint = {}; PRAGMA cache_size = -{WRITER_CACHE_KIB}",
                    super::checkpoint::WRITER_CHECKPOINT_PAGES
                ))
                .map_err(|e| OpenError::Connect(e.to_string()))?;
        }
        conn.set_instrumentation(Health {
            known_good_at: self.losses.load(Ordering::Acquire),
            ..Health::default()
        });
        Ok(conn)
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), OpenError> {
        conn.ping().map_err(|e| OpenError::Connect(e.to_string()))
    }

    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        let (lost, kept) = health(conn).map_or((false, 0), |h| (h.lost, h.kept));
        if lost {
            self.losses.fetch_add(1, Ordering::AcqRel);
        }
        lost || kept > KEPT_STATEMENTS || conn.is_broken()
    }
}

/// A connection lent by a [`Pool`].
pub type Pooled = r2d2::PooledConnection<Manager>;

/// A pool of connections to one target. Connections are not tested on the way out (a
/// round trip per checkout); one that fails as lost is retired when it comes back, and
/// after such a loss every other connection is checked once before its next use.
#[derive(Clone)]
pub struct Pool {
    pool: r2d2::Pool<Manager>,
    /// The manager's count of lost connections.
    losses: Arc<AtomicU64>,
}

impl Pool {
    /// A connection, waiting for one to be free (up to the pool's timeout).
    pub fn get(&self) -> Result<Pooled, r2d2::PoolError> {
        let losses = self.losses.load(Ordering::Acquire);
        for _ in 0..=self.pool.max_size() {
            let mut conn = self.pool.get()?;
            if health(&mut conn).is_none_or(|h| h.known_good_at >= losses) {
                return Ok(conn);
            }
            let works = conn.ping().is_ok();
            if let Some(h) = health(&mut conn) {
                h.known_good_at = losses;
                h.lost = !works;
            }
            if works {
                return Ok(conn);
            }
        }
        self.pool.get()
    }
}

/// Builds a pool; `size` connections at most.
pub fn pool(target: &Target, size: u32) -> Result<Pool, OpenError> {
    build(target, size, false)
}

/// Page cache of SQLite's writer, in KiB (SQLite's default is 2,000). Writes land in index
/// pages all over the database: with the default, page reads from the file took a tenth of
/// the writer's time under concurrent creates (docs/performance.md, session 11); 32 MiB did
/// no better than 8 and cost 25 MiB more resident memory. One connection, so bounded.
const WRITER_CACHE_KIB: u32 = 8 * 1024;

/// The pool of SQLite's one writer connection: its own page cache, and it checkpoints only
/// as a backstop (`store::checkpoint` does it off the write path). The same as [`pool`] on
/// PostgreSQL.
pub fn writer_pool(target: &Target) -> Result<Pool, OpenError> {
    build(target, 1, true)
}

fn build(target: &Target, size: u32, writer: bool) -> Result<Pool, OpenError> {
    let losses = Arc::new(AtomicU64::new(0));
    let pool = r2d2::Pool::builder()
        .max_size(size)
        .connection_timeout(Duration::from_secs(30))
        .test_on_check_out(false)
        .build(Manager {
            target: target.clone(),
            writer,
            losses: losses.clone(),
        })
        .map_err(|e| OpenError::Connect(e.to_string()))?;
    Ok(Pool { pool, losses })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(QueryableByName)]
    struct Number {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }

    fn number(conn: &mut AnyConnection, text: &str) -> i64 {
        use crate::store::search::{Prepared, Sql};
        let sql = Sql {
            text: text.to_owned(),
            binds: vec![],
        };
        let rows = match conn {
            AnyConnection::Sqlite(c) => Prepared(&sql).load::<Number>(c),
            AnyConnection::Postgresql(c) => Prepared(&sql).load::<Number>(c),
        };
        rows.unwrap()[0].n
    }

    fn scratch_pool(size: u32) -> (Pool, PathBuf) {
        let dir = std::env::temp_dir().join(format!("carnet-pool-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let pool = pool(&Target::Sqlite(dir.join("carnet.db")), size).unwrap();
        (pool, dir)
    }

    #[test]
    fn sqlite_is_built_as_the_server_relies_on() {
        #[derive(QueryableByName)]
        struct CompileOption {
            #[diesel(sql_type = Text)]
            compile_options: String,
        }
        let (pool, dir) = scratch_pool(1);
        let mut conn = pool.get().unwrap();
        let AnyConnection::Sqlite(sqlite) = &mut *conn else {
            unreachable!("a SQLite pool")
        };
        let options: Vec<String> = diesel::sql_query("PRAGMA compile_options")
            .load::<CompileOption>(sqlite)
            .unwrap()
            .into_iter()
            .map(|o| o.compile_options)
            .collect();
        // See `.cargo/config.toml`: kept statements are not compiled again on each use.
        assert!(options.iter().any(|o| o == "ENABLE_QPSG"), "{options:?}");
        drop(conn);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A bulk import's statement, or a large transaction Bundle's, journals megabytes of the
    /// pages it changes: SQLite built with a larger statement-journal spill threshold failed
    /// such a statement ("database or disk is full") once its journal outgrew the threshold.
    #[test]
    fn a_statement_journaling_megabytes_succeeds() {
        let dir = std::env::temp_dir().join(format!("carnet-journal-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let writer = writer_pool(&Target::Sqlite(dir.join("carnet.db"))).unwrap();
        let mut conn = writer.get().unwrap();
        conn.batch_execute("CREATE TABLE t (a TEXT, b TEXT); CREATE INDEX t_b ON t (b, a);")
            .unwrap();
        let rows = |from: u32| {
            format!(
                "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 99999) \
                 INSERT INTO t SELECT printf('%040d', i), printf('%040d', i * 2 + {from}) FROM n;"
            )
        };
        // A statement after the transaction's first write journals the pages that existed
        // before it and that it changes (to take back only itself if it fails): the second
        // statement's rows land between the first's, in every page of the index (~10 MB).
        let inserted = conn.transaction::<_, diesel::result::Error, _>(|conn| {
            conn.batch_execute(&rows(0))?;
            conn.batch_execute(&rows(1))
        });
        assert!(inserted.is_ok(), "{inserted:?}");
        drop(conn);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_builder_statement_is_prepared_once_per_connection() {
        let (pool, dir) = scratch_pool(1);
        let mut conn = pool.get().unwrap();
        assert_eq!(number(&mut conn, "SELECT 7 AS n"), 7);
        assert_eq!(number(&mut conn, "SELECT 7 AS n"), 7);
        assert_eq!(
            health(&mut conn).unwrap().kept,
            1,
            "the same text is kept once"
        );
        assert_eq!(number(&mut conn, "SELECT 8 AS n"), 8);
        assert_eq!(health(&mut conn).unwrap().kept, 2);
        // Text written at run time through diesel::sql_query is never kept.
        diesel::sql_query("SELECT 9").execute(&mut *conn).unwrap();
        assert_eq!(health(&mut conn).unwrap().kept, 2);
        drop(conn);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_connection_keeping_too_many_statements_is_replaced() {
        let (pool, dir) = scratch_pool(1);
        let mut conn = pool.get().unwrap();
        for i in 0..KEPT_STATEMENTS {
            number(&mut conn, &format!("SELECT {i} AS n"));
        }
        drop(conn);
        let mut conn = pool.get().unwrap();
        assert_eq!(
            health(&mut conn).unwrap().kept,
            KEPT_STATEMENTS,
            "at the bound, the connection stays"
        );
        number(&mut conn, "SELECT -1 AS n");
        drop(conn);
        let mut conn = pool.get().unwrap();
        assert_eq!(
            health(&mut conn).unwrap().kept,
            0,
            "past it, a new connection"
        );
        drop(conn);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_sqlite_resource_lock_is_the_write_lock() {
        let dir = std::env::temp_dir().join(format!("carnet-lock-{}", uuid::Uuid::new_v4()));
        let target = Target::Sqlite(dir.join("carnet.db"));
        target.prepare(0).unwrap();
        let mut holder = target.connect().unwrap();
        let mut other =
            SqliteConnection::establish(dir.join("carnet.db").to_str().unwrap()).unwrap();
        holder
            .transaction::<_, diesel::result::Error, _>(|conn| {
                lock_resource(conn, "Patient", "1")?;
                // Another process's write now waits (here: fails at once, no busy timeout).
                let write = diesel::sql_query("DELETE FROM resources").execute(&mut other);
                assert!(
                    write.is_err(),
                    "the lock must hold the database's write lock"
                );
                Ok(())
            })
            .unwrap();
        diesel::sql_query("DELETE FROM resources")
            .execute(&mut other)
            .expect("released with the transaction");
        let _ = std::fs::remove_dir_all(dir);
    }
}
