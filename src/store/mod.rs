//! Storage: current and historical versions of every resource, over SQLite or PostgreSQL.
//!
//! Writes to an existing resource run under its write lock ([`Store::locked`]): the caller
//! reads the current version, prepares the next one and installs it in one transaction, so
//! concurrent writers of one resource queue instead of failing. Underneath, a unique
//! (type, id, version) key and a guarded update still make any lost race a
//! [`StoreError::Conflict`], on both backends, so versions never skip or repeat.

pub mod codec;
pub mod db;
pub mod import;
pub mod index;
mod schema;
pub mod search;

use diesel::prelude::*;
use schema::{binary_contents, resource_versions, resources, search_tokens};

pub use db::{OpenError, Target};
pub use index::IndexRows;

/// Storage failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another write installed a version first.
    #[error("the resource was changed concurrently")]
    Conflict,
    #[error("database: {0}")]
    Database(#[from] diesel::result::Error),
    #[error("database pool: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error(transparent)]
    Codec(#[from] codec::UnknownKey),
    /// A stored body could not be read back.
    #[error("stored body: {0}")]
    Corrupt(String),
    /// A conditional write found resources matching its condition (their ids).
    #[error("{} resource(s) match the condition", .0.len())]
    Matches(Vec<String>),
}

impl StoreError {
    /// The database could not be had in time: the pool stayed empty past its timeout, or
    /// SQLite's write lock stayed held elsewhere past busy_timeout (a `carnet reindex`).
    /// Retrying later can succeed; nothing was written.
    pub fn is_busy(&self) -> bool {
        match self {
            StoreError::Pool(_) => true,
            StoreError::Database(diesel::result::Error::DatabaseError(_, info)) => {
                let message = info.message();
                message.contains("database is locked") || message.contains("database is busy")
            }
            _ => false,
        }
    }
}

/// Which systems a token query accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemMatch {
    /// `code`: any system or none.
    Any,
    /// `|code`: values without a system.
    Absent,
    /// `system|code`.
    Is(String),
}

/// Current resources of one type having a token value.
#[derive(Debug, Clone)]
pub struct TokenQuery {
    pub resource_type: String,
    pub param: String,
    pub system: SystemMatch,
    pub code: String,
}

/// The state of a resource's current version, without its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Current {
    pub version_id: i64,
    /// Microseconds since the Unix epoch.
    pub last_updated: i64,
    pub deleted: bool,
}

/// One stored version of a resource.
#[derive(Debug, Clone)]
pub struct Version {
    pub resource_type: String,
    pub id: String,
    pub version_id: i64,
    pub last_updated: i64,
    pub deleted: bool,
    /// The interaction that wrote this version: POST, PUT, PATCH or DELETE.
    pub method: String,
    /// The JSON text of the resource; empty for a deletion.
    pub body: Vec<u8>,
}

/// A version to install, see [`Store::write`].
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub resource_type: String,
    pub id: String,
    pub version_id: i64,
    pub last_updated: i64,
    pub deleted: bool,
    pub method: &'static str,
    /// The patient whose compartment holds the resource, if any.
    pub patient_id: Option<String>,
    pub body: Vec<u8>,
    /// The bytes of a Binary, stored apart from its JSON body.
    pub content: Option<Vec<u8>>,
    /// Its search index rows (none for a deletion).
    pub index: IndexRows,
}

/// Which versions a history request covers.
#[derive(Debug, Clone)]
pub enum HistoryScope {
    System,
    Type(String),
    Instance(String, String),
}

/// One page of history, newest first.
#[derive(Debug)]
pub struct HistoryPage {
    pub versions: Vec<Version>,
    /// Pass as `before` to get the next (older) page; `None` on the last page.
    pub next: Option<i64>,
    /// Versions matching the scope and `since`, all pages together.
    pub total: i64,
}

/// The resource store.
pub struct Store {
    reader: db::Pool,
    /// SQLite allows one writer at a time: a one-connection pool queues writers instead of
    /// letting their transactions fail on lock upgrades. PostgreSQL shares the reader pool.
    writer: db::Pool,
    dialect: search::Dialect,
}

type VersionRow = (String, String, i64, i64, bool, String, String, Vec<u8>);

impl Store {
    /// Checks the database's durability settings, applies migrations and opens the pools.
    pub fn open(database_url: &str) -> Result<Store, OpenError> {
        let target = Target::parse(database_url)?;
        target.prepare()?;
        let reader = db::pool(&target, 8)?;
        let writer = match target {
            Target::Sqlite(_) => db::pool(&target, 1)?,
            Target::Postgres(_) => reader.clone(),
        };
        let dialect = match target {
            Target::Sqlite(_) => search::Dialect::Sqlite,
            Target::Postgres(_) => search::Dialect::Postgres,
        };
        Ok(Store {
            reader,
            writer,
            dialect,
        })
    }

    /// The current version's state, if the resource ever existed.
    pub fn current(&self, resource_type: &str, id: &str) -> Result<Option<Current>, StoreError> {
        current_of(&mut *self.reader.get()?, resource_type, id)
    }

    /// The current version, deleted or not.
    pub fn read(&self, resource_type: &str, id: &str) -> Result<Option<Version>, StoreError> {
        read_current(&mut *self.reader.get()?, resource_type, id)
    }

    /// One version by number.
    pub fn vread(
        &self,
        resource_type: &str,
        id: &str,
        version_id: i64,
    ) -> Result<Option<Version>, StoreError> {
        let mut conn = self.reader.get()?;
        let row = resource_versions::table
            .filter(resource_versions::resource_type.eq(resource_type))
            .filter(resource_versions::id.eq(id))
            .filter(resource_versions::version_id.eq(version_id))
            .select(version_columns())
            .first::<VersionRow>(&mut conn)
            .optional()?;
        row.map(decode_version).transpose()
    }

    /// The bytes of version `version_id` of `Binary/{id}`, if it has any.
    pub fn binary_content(&self, id: &str, version_id: i64) -> Result<Option<Vec<u8>>, StoreError> {
        let mut conn = self.reader.get()?;
        let row = binary_contents::table
            .find((id, version_id))
            .select((binary_contents::key_id, binary_contents::content))
            .first::<(String, Vec<u8>)>(&mut conn)
            .optional()?;
        Ok(row
            .map(|(key_id, bytes)| codec::decode(&key_id, bytes))
            .transpose()?)
    }

    /// Ids of current resources matching `query` (at most `limit`).
    pub fn find_ids(&self, query: &TokenQuery, limit: i64) -> Result<Vec<String>, StoreError> {
        let mut conn = self.reader.get()?;
        Ok(token_matches(&mut conn, query, limit)?)
    }

    /// Installs `new` if the resource's current version is still `expected`
    /// (`None`: the resource must not exist yet); otherwise [`StoreError::Conflict`].
    /// With `unless`, the write happens only if no current resource matches that query,
    /// checked atomically with the write; otherwise [`StoreError::Matches`].
    pub fn write(
        &self,
        expected: Option<i64>,
        new: NewVersion,
        unless: Option<&TokenQuery>,
    ) -> Result<(), StoreError> {
        let mut conn = self.writer.get()?;
        conn.transaction::<_, StoreError, _>(|conn| {
            if let Some(query) = unless {
                db::lock_condition(
                    conn,
                    &format!("{}|{}|{}", query.resource_type, query.param, query.code),
                )?;
                let found = token_matches(conn, query, 2)?;
                if !found.is_empty() {
                    return Err(StoreError::Matches(found));
                }
            }
            install(conn, self.dialect, expected, new)
        })
    }

    /// Runs `work` holding the write lock of `resource_type/id`, in one transaction: writes to
    /// one resource run one after another, each reading (through [`Held`]) what the previous
    /// one installed, so a read-modify-write (a PATCH) never applies to a stale version.
    /// Nothing `work` installed stays when it fails.
    pub fn locked<T, E: From<StoreError>>(
        &self,
        resource_type: &str,
        id: &str,
        work: impl FnOnce(&mut Held<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        // Queue in the process first: a writer waiting for a busy resource holds no pooled
        // connection, which readers (PostgreSQL shares one pool) would otherwise wait for.
        let _queued = queue_of(resource_type, id)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut conn = self.writer.get().map_err(StoreError::from)?;
        let result = conn.transaction::<T, Failure<E>, _>(|conn| {
            db::lock_resource(conn, resource_type, id)?;
            let mut held = Held {
                conn,
                dialect: self.dialect,
                resource_type,
                id,
            };
            work(&mut held).map_err(Failure::Work)
        });
        result.map_err(|failure| match failure {
            Failure::Store(e) => E::from(e),
            Failure::Work(e) => e,
        })
    }

    /// One page of versions in `scope`, newest first, written at or after `since`
    /// (microseconds) and older than the `before` cursor.
    pub fn history(
        &self,
        scope: &HistoryScope,
        since: Option<i64>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<HistoryPage, StoreError> {
        let mut conn = self.reader.get()?;
        let filtered = || {
            let mut query = resource_versions::table.into_boxed();
            match scope {
                HistoryScope::System => {}
                HistoryScope::Type(t) => {
                    query = query.filter(resource_versions::resource_type.eq(t.clone()))
                }
                HistoryScope::Instance(t, id) => {
                    query = query
                        .filter(resource_versions::resource_type.eq(t.clone()))
                        .filter(resource_versions::id.eq(id.clone()))
                }
            }
            if let Some(since) = since {
                query = query.filter(resource_versions::last_updated.ge(since));
            }
            query
        };
        let total: i64 = filtered().count().get_result(&mut conn)?;
        let mut page = filtered();
        if let Some(before) = before {
            page = page.filter(resource_versions::seq.lt(before));
        }
        let rows: Vec<(i64, VersionRow)> = page
            .order(resource_versions::seq.desc())
            .limit(limit + 1)
            .select((resource_versions::seq, version_columns()))
            .load(&mut conn)?;
        let more = rows.len() as i64 > limit;
        let mut versions = Vec::with_capacity(rows.len());
        let mut next = None;
        for (seq, row) in rows.into_iter().take(limit as usize) {
            versions.push(decode_version(row)?);
            next = Some(seq);
        }
        Ok(HistoryPage {
            versions,
            next: if more { next } else { None },
            total,
        })
    }
}

impl Store {
    /// Rebuilds the index rows of every current resource with `index_of` (its body in, its
    /// rows out), a batch of resources per transaction, and returns how many were indexed.
    /// Runs while the server serves: a resource written meanwhile gets its rows from its write.
    pub fn reindex(
        &self,
        index_of: impl Fn(&Version) -> Result<IndexRows, StoreError>,
    ) -> Result<u64, StoreError> {
        const BATCH: i64 = 500;
        let mut after: Option<(String, String)> = None;
        let mut done = 0;
        loop {
            let mut conn = self.writer.get()?;
            let indexed = conn.transaction::<_, StoreError, _>(|conn| {
                let mut query = resources::table
                    .inner_join(
                        resource_versions::table.on(resource_versions::resource_type
                            .eq(resources::resource_type)
                            .and(resource_versions::id.eq(resources::id))
                            .and(resource_versions::version_id.eq(resources::version_id))),
                    )
                    .filter(resources::deleted.eq(false))
                    .into_boxed();
                if let Some((kind, id)) = &after {
                    query = query.filter(
                        resources::resource_type
                            .gt(kind.clone())
                            .or(resources::resource_type
                                .eq(kind.clone())
                                .and(resources::id.gt(id.clone()))),
                    );
                }
                let rows: Vec<(Option<String>, VersionRow)> = query
                    .order((resources::resource_type, resources::id))
                    .limit(BATCH)
                    .select((resources::patient_id, version_columns()))
                    .load(conn)?;
                let mut last = None;
                for (patient_id, row) in rows.iter().cloned() {
                    let version = decode_version(row)?;
                    let index = index_of(&version)?;
                    index::replace(
                        conn,
                        self.dialect,
                        &version.resource_type,
                        &version.id,
                        patient_id.as_deref(),
                        &index,
                    )?;
                    last = Some((version.resource_type, version.id));
                }
                Ok((rows.len() as u64, last))
            })?;
            done += indexed.0;
            match indexed.1 {
                Some(last) => after = Some(last),
                None => return Ok(done),
            }
        }
    }
}

#[allow(clippy::type_complexity)]
fn version_columns() -> (
    resource_versions::resource_type,
    resource_versions::id,
    resource_versions::version_id,
    resource_versions::last_updated,
    resource_versions::deleted,
    resource_versions::method,
    resource_versions::key_id,
    resource_versions::body,
) {
    (
        resource_versions::resource_type,
        resource_versions::id,
        resource_versions::version_id,
        resource_versions::last_updated,
        resource_versions::deleted,
        resource_versions::method,
        resource_versions::key_id,
        resource_versions::body,
    )
}

/// The in-process queue of writers of `resource_type/id` (see [`Store::locked`]): one of a
/// fixed set, chosen by hash. Resources sharing one only queue together; the database lock
/// taken next still serializes writers in other processes.
fn queue_of(resource_type: &str, id: &str) -> &'static std::sync::Mutex<()> {
    use std::hash::{Hash, Hasher};
    static QUEUES: [std::sync::Mutex<()>; 64] = [const { std::sync::Mutex::new(()) }; 64];
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (resource_type, id).hash(&mut hasher);
    &QUEUES[(hasher.finish() % QUEUES.len() as u64) as usize]
}

/// A resource whose write lock the current transaction holds (see [`Store::locked`]).
pub struct Held<'c> {
    conn: &'c mut db::AnyConnection,
    dialect: search::Dialect,
    resource_type: &'c str,
    id: &'c str,
}

impl Held<'_> {
    /// The current version's state, if the resource ever existed.
    pub fn current(&mut self) -> Result<Option<Current>, StoreError> {
        current_of(self.conn, self.resource_type, self.id)
    }

    /// The current version, deleted or not.
    pub fn read(&mut self) -> Result<Option<Version>, StoreError> {
        read_current(self.conn, self.resource_type, self.id)
    }

    /// Installs `new`, a version of the held resource, over `expected` (see [`Store::write`]).
    pub fn install(&mut self, expected: Option<i64>, new: NewVersion) -> Result<(), StoreError> {
        if new.resource_type != self.resource_type || new.id != self.id {
            return Err(StoreError::Corrupt(format!(
                "a write to {}/{} under the lock of {}/{}",
                new.resource_type, new.id, self.resource_type, self.id
            )));
        }
        install(self.conn, self.dialect, expected, new)
    }
}

/// Why a [`Store::locked`] transaction failed: the database, or the caller's work.
enum Failure<E> {
    Store(StoreError),
    Work(E),
}

impl<E> From<diesel::result::Error> for Failure<E> {
    fn from(e: diesel::result::Error) -> Self {
        Failure::Store(e.into())
    }
}

fn current_of(
    conn: &mut db::AnyConnection,
    resource_type: &str,
    id: &str,
) -> Result<Option<Current>, StoreError> {
    let row = resources::table
        .find((resource_type, id))
        .select((
            resources::version_id,
            resources::last_updated,
            resources::deleted,
        ))
        .first::<(i64, i64, bool)>(conn)
        .optional()?;
    Ok(row.map(|(version_id, last_updated, deleted)| Current {
        version_id,
        last_updated,
        deleted,
    }))
}

fn read_current(
    conn: &mut db::AnyConnection,
    resource_type: &str,
    id: &str,
) -> Result<Option<Version>, StoreError> {
    let row = resource_versions::table
        .inner_join(
            resources::table.on(resources::resource_type
                .eq(resource_versions::resource_type)
                .and(resources::id.eq(resource_versions::id))
                .and(resources::version_id.eq(resource_versions::version_id))),
        )
        .filter(resources::resource_type.eq(resource_type))
        .filter(resources::id.eq(id))
        .select(version_columns())
        .first::<VersionRow>(conn)
        .optional()?;
    row.map(decode_version).transpose()
}

/// Inserts `new` and makes it current if the current version is still `expected`; a lost
/// race (guarded update missed, or a duplicate key) is [`StoreError::Conflict`].
fn install(
    conn: &mut db::AnyConnection,
    dialect: search::Dialect,
    expected: Option<i64>,
    new: NewVersion,
) -> Result<(), StoreError> {
    let encoded = codec::encode(new.body);
    let content = new.content.map(codec::encode);
    let result = (|| -> Result<(), StoreError> {
        diesel::insert_into(resource_versions::table)
            .values((
                resource_versions::resource_type.eq(&new.resource_type),
                resource_versions::id.eq(&new.id),
                resource_versions::version_id.eq(new.version_id),
                resource_versions::last_updated.eq(new.last_updated),
                resource_versions::deleted.eq(new.deleted),
                resource_versions::method.eq(new.method),
                resource_versions::patient_id.eq(&new.patient_id),
                resource_versions::key_id.eq(&encoded.key_id),
                resource_versions::body.eq(&encoded.bytes),
            ))
            .execute(conn)?;
        if let Some(content) = &content {
            diesel::insert_into(binary_contents::table)
                .values((
                    binary_contents::id.eq(&new.id),
                    binary_contents::version_id.eq(new.version_id),
                    binary_contents::key_id.eq(&content.key_id),
                    binary_contents::content.eq(&content.bytes),
                ))
                .execute(conn)?;
        }
        let installed = match expected {
            None => diesel::insert_into(resources::table)
                .values((
                    resources::resource_type.eq(&new.resource_type),
                    resources::id.eq(&new.id),
                    resources::version_id.eq(new.version_id),
                    resources::last_updated.eq(new.last_updated),
                    resources::deleted.eq(new.deleted),
                    resources::patient_id.eq(&new.patient_id),
                ))
                .execute(conn)?,
            Some(version) => diesel::update(
                resources::table
                    .find((&new.resource_type, &new.id))
                    .filter(resources::version_id.eq(version)),
            )
            .set((
                resources::version_id.eq(new.version_id),
                resources::last_updated.eq(new.last_updated),
                resources::deleted.eq(new.deleted),
                resources::patient_id.eq(&new.patient_id),
            ))
            .execute(conn)?,
        };
        if installed != 1 {
            return Err(StoreError::Conflict);
        }
        index::replace(
            conn,
            dialect,
            &new.resource_type,
            &new.id,
            new.patient_id.as_deref(),
            &new.index,
        )?;
        Ok(())
    })();
    match result {
        Err(StoreError::Database(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        ))) => Err(StoreError::Conflict),
        other => other,
    }
}

fn token_matches(
    conn: &mut db::AnyConnection,
    query: &TokenQuery,
    limit: i64,
) -> diesel::QueryResult<Vec<String>> {
    // Long values are indexed by a key and kept whole beside it (see `index::cut`).
    let (code, code_full) = index::cut(&query.code);
    let mut select = search_tokens::table
        .filter(search_tokens::resource_type.eq(query.resource_type.clone()))
        .filter(search_tokens::param.eq(query.param.clone()))
        .filter(search_tokens::code.eq(code.to_owned()))
        .select(search_tokens::id)
        .distinct()
        .into_boxed();
    select = match code_full {
        Some(full) => select.filter(search_tokens::code_full.eq(full.to_owned())),
        None => select.filter(search_tokens::code_full.is_null()),
    };
    select = match &query.system {
        SystemMatch::Any => select,
        SystemMatch::Absent => select.filter(search_tokens::system.is_null()),
        SystemMatch::Is(system) => match index::cut(system) {
            (system, None) => select
                .filter(search_tokens::system.eq(system.to_owned()))
                .filter(search_tokens::system_full.is_null()),
            (system, Some(full)) => select
                .filter(search_tokens::system.eq(system.to_owned()))
                .filter(search_tokens::system_full.eq(full.to_owned())),
        },
    };
    select.order(search_tokens::id).limit(limit).load(conn)
}

fn decode_version(row: VersionRow) -> Result<Version, StoreError> {
    let (resource_type, id, version_id, last_updated, deleted, method, key_id, body) = row;
    Ok(Version {
        resource_type,
        id,
        version_id,
        last_updated,
        deleted,
        method,
        body: codec::decode(&key_id, body)?,
    })
}
