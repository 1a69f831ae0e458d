//! Storage: current and historical versions of every resource, over SQLite or PostgreSQL.
//!
//! Writes to an existing resource run under its write lock ([`Store::locked`]): the caller
//! reads the current version, prepares the next one and installs it in one transaction, so
//! concurrent writers of one resource queue instead of failing. Underneath, a unique
//! (type, id, version) key and a guarded update still make any lost race a
//! [`StoreError::Conflict`], on both backends, so versions never skip or repeat.

pub mod access;
mod checkpoint;
pub mod codec;
pub mod db;
mod group_commit;
mod identifiers;
pub mod import;
pub mod index;
pub mod inserts;
pub mod partitions;
mod schema;
pub mod search;
pub mod tables;

use crate::consent::model::{Directive, Labels, Writer};
use crate::search::sql::ReadSql;
use diesel::prelude::*;
use schema::{directory_resources, directory_versions, resource_ids, resource_versions, resources};
use search::Bind;

pub use access::{AccessRows, RecordRow};
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
    /// The transaction a write shared with others (group commit) could not be committed:
    /// nothing of it was kept.
    #[error("{0}")]
    Uncommitted(String),
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

/// The patient id a row outside any record is stored with: none has it (a patient id is one
/// to 64 characters), and a NOT NULL column can hold it, as a distribution key must.
pub const OUTSIDE_RECORDS: &str = "";

/// The patient id to store for a row of `patient_id`'s record, or of none.
pub fn record_key(patient_id: Option<&str>) -> &str {
    patient_id.unwrap_or(OUTSIDE_RECORDS)
}

/// The record a resource is filed in, as its id lookup (`resource_ids`) gives it: a read by
/// id names it as a value, so that the statement is planned for that record's partition (one
/// shard on a distributed database) instead of finding it while it runs. A resource that does
/// not exist is "filed" outside records: the read that follows finds nothing there either,
/// the same two statements as for a resource the caller may not see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filed(String);

impl Filed {
    /// Where `version`, as read from the store, is filed.
    pub fn of(version: &Version) -> Filed {
        Filed(record_key(version.patient_id.as_deref()).to_owned())
    }

    /// Outside any record.
    pub fn outside_records() -> Filed {
        Filed(OUTSIDE_RECORDS.to_owned())
    }

    /// The patient id of the record, or [`OUTSIDE_RECORDS`].
    pub fn key(&self) -> &str {
        &self.0
    }
}

/// Where `resource_type/id` is filed (see [`Filed`]).
fn filed(conn: &mut db::AnyConnection, resource_type: &str, id: &str) -> Result<Filed, StoreError> {
    let key: Option<String> = resource_ids::table
        .find((resource_type, id))
        .select(resource_ids::patient_id)
        .first(conn)
        .optional()?;
    Ok(key.map_or_else(Filed::outside_records, Filed))
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

/// One stored version of a resource, with what access decisions read of its resource's
/// current row. Decoded in one place ([`decode_version`]) for every read path.
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
    /// The patient whose compartment holds the resource (kept by its deletion too).
    pub patient_id: Option<String>,
    /// The resource's current visibility labels.
    pub labels: Labels,
    /// Who created the resource, when known.
    pub writer: Option<Writer>,
}

/// A version to install, see [`Unit::install`].
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub resource_type: String,
    pub id: String,
    pub version_id: i64,
    pub last_updated: i64,
    pub deleted: bool,
    pub method: &'static str,
    /// The patient whose compartment holds the resource, if any; never changes once stored.
    pub patient_id: Option<String>,
    /// Its visibility labels (a deletion keeps the last ones).
    pub labels: Labels,
    /// Who created it: stored with its first version, kept by the next ones (a version over a
    /// deletion creates the resource anew: see `revives`).
    pub writer: Option<Writer>,
    /// Whether this version comes over a deletion: its writer becomes the resource's writer.
    pub revives: bool,
    pub body: Vec<u8>,
    /// The bytes of a Binary, stored apart from its JSON body.
    pub content: Option<Vec<u8>>,
    /// Its search index rows (none for a deletion).
    pub index: IndexRows,
    /// What the consent engine reads of it besides its row (none for a deletion).
    pub access: AccessRows,
}

/// Which versions a history request covers.
#[derive(Debug, Clone)]
pub enum HistoryScope {
    System,
    Type(String),
    /// One resource: its type, its id and where it is filed.
    Instance(String, String, Filed),
}

/// Where a version stands in a history, newest first: by when it was written, then by its key
/// (ties in the same microsecond). Taken from the versions themselves, not from a global write
/// sequence, which a database distributed over several nodes does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPosition {
    pub last_updated: i64,
    pub patient_id: String,
    pub resource_type: String,
    pub id: String,
    pub version_id: i64,
}

impl HistoryPosition {
    pub fn of(version: &Version) -> HistoryPosition {
        HistoryPosition {
            last_updated: version.last_updated,
            patient_id: record_key(version.patient_id.as_deref()).to_owned(),
            resource_type: version.resource_type.clone(),
            id: version.id.clone(),
            version_id: version.version_id,
        }
    }

    /// The position as a paging cursor: `_` occurs in no type or id, and needs no escaping.
    pub fn cursor(&self) -> String {
        format!(
            "{}_{}_{}_{}_{}",
            self.last_updated, self.version_id, self.resource_type, self.id, self.patient_id
        )
    }

    /// The position a [`HistoryPosition::cursor`] gives, or `None` for any other text: a type
    /// of letters, a valid id, a valid patient id or none (nothing else reaches the SQL).
    pub fn from_cursor(text: &str) -> Option<HistoryPosition> {
        use crate::fhir::resource::is_valid_id;
        let mut parts = text.splitn(5, '_');
        let last_updated = parts.next()?.parse().ok()?;
        let version_id = parts.next()?.parse().ok()?;
        let resource_type = parts.next().filter(|t| {
            !t.is_empty() && t.len() <= 64 && t.bytes().all(|b| b.is_ascii_alphabetic())
        })?;
        let id = parts.next().filter(|id| is_valid_id(id))?;
        let patient_id = parts
            .next()
            .filter(|p| *p == OUTSIDE_RECORDS || is_valid_id(p))?;
        let (resource_type, id, patient_id) = (
            resource_type.to_owned(),
            id.to_owned(),
            patient_id.to_owned(),
        );
        Some(HistoryPosition {
            last_updated,
            patient_id,
            resource_type,
            id,
            version_id,
        })
    }
}

/// The resource store. Reads run only the queries `search::sql` writes ([`ReadSql`]), each
/// carrying the caller's restriction; writes run in a [`Unit`] of work.
pub struct Store {
    reader: db::Pool,
    /// SQLite allows one writer at a time: a one-connection pool queues writers instead of
    /// letting their transactions fail on lock upgrades. PostgreSQL shares the reader pool.
    writer: db::Pool,
    /// SQLite's writes, batched into shared commits; none on PostgreSQL, whose units each
    /// commit on their own connection.
    group_commit: Option<group_commit::GroupCommit>,
    dialect: search::Dialect,
}

/// The columns of a version row, as every read path selects them (see `search::sql`).
pub(crate) struct VersionRow {
    pub resource_type: String,
    pub id: String,
    pub version_id: i64,
    pub last_updated: i64,
    pub deleted: bool,
    pub method: String,
    pub key_id: String,
    pub body: Vec<u8>,
    pub patient_id: Option<String>,
    pub labels: i64,
    pub writer: Option<String>,
}

impl Store {
    /// Checks the database's durability settings, applies migrations (and on PostgreSQL the
    /// partitioning by patient id into `partitions`, see [`partitions`]) and opens the pools.
    pub fn open(database_url: &str, partitions: u32) -> Result<Store, OpenError> {
        let target = Target::parse(database_url)?;
        target.prepare(partitions)?;
        let reader = db::pool(&target, 8)?;
        let writer = match target {
            Target::Sqlite(_) => db::writer_pool(&target)?,
            Target::Postgres(_) => reader.clone(),
        };
        let dialect = match target {
            Target::Sqlite(_) => search::Dialect::Sqlite,
            Target::Postgres(_) => search::Dialect::Postgres,
        };
        let group_commit = match target {
            Target::Sqlite(_) => Some(group_commit::GroupCommit::new(Some(
                checkpoint::Checkpointer::start(&target)?,
            ))),
            Target::Postgres(_) => None,
        };
        Ok(Store {
            reader,
            writer,
            group_commit,
            dialect,
        })
    }

    /// Runs `work` as one unit of work: one transaction that everything it reads and installs
    /// shares (a write, its index rows, and every entry of a transaction Bundle). Nothing
    /// `work` installed stays when it fails, and it returns only once what it installed is
    /// committed. On SQLite the transaction may be a savepoint of a batch that other units
    /// share (`group_commit`): `work` then also sees what earlier units of the batch wrote.
    pub fn unit<T, E: From<StoreError>>(
        &self,
        work: impl FnOnce(&mut Unit<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        if let Some(group) = &self.group_commit {
            return group.run(&self.writer, self.dialect, work);
        }
        let mut pending = Some(work);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut conn = self.writer.get().map_err(StoreError::from)?;
            let result = conn.transaction::<T, Failure<E>, _>(|conn| {
                let mut unit = Unit {
                    conn,
                    dialect: self.dialect,
                };
                // The transaction runs its closure once, after BEGIN succeeded.
                let work = pending.take().ok_or(Failure::Store(StoreError::Conflict))?;
                work(&mut unit).map_err(Failure::Work)
            });
            match result {
                // BEGIN failed on a lost connection (the database restarted since it was last
                // used): nothing ran, so the unit runs once more on another connection.
                Err(Failure::Store(StoreError::Database(e)))
                    if pending.is_some() && attempts == 1 && db::is_lost(&e) =>
                {
                    continue
                }
                result => {
                    return result.map_err(|failure| match failure {
                        Failure::Store(e) => E::from(e),
                        Failure::Work(e) => e,
                    })
                }
            }
        }
    }

    /// Runs `work` as a unit of work holding the write lock of `resource_type/id`: writes to
    /// one resource run one after another, each reading what the previous one installed, so a
    /// read-modify-write (a PATCH) never applies to a stale version.
    pub fn locked<T, E: From<StoreError>>(
        &self,
        resource_type: &str,
        id: &str,
        work: impl FnOnce(&mut Unit<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        // Queue in the process first: a writer waiting for a busy resource holds no pooled
        // connection, which readers (PostgreSQL shares one pool) would otherwise wait for.
        let _queued = queue_of(resource_type, id)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.unit(|unit| {
            db::lock_resource(unit.conn, resource_type, id).map_err(StoreError::from)?;
            work(unit)
        })
    }
}

impl Store {
    /// Rebuilds the index rows and the consent engine's rows of every current resource with
    /// `index_of` (its body in, its rows out; no consent rows: keep the stored ones), a batch
    /// of resources per transaction, and returns how many were indexed. Runs while the server
    /// serves: each resource's rows are written under its write lock, and only if the body
    /// they come from is still its current version; one written meanwhile has the rows of its
    /// own write.
    pub fn reindex(
        &self,
        index_of: impl Fn(&Version) -> Result<(IndexRows, Option<AccessRows>), StoreError>,
    ) -> Result<u64, StoreError> {
        let mut done = 0;
        for tables in tables::ALL {
            let mut after: Option<(String, String)> = None;
            loop {
                let mut conn = self.writer.get()?;
                let indexed = conn.transaction::<_, StoreError, _>(|conn| {
                    db::lock_writes(conn)?;
                    let rows = current_batch(conn, tables, after.as_ref())?;
                    let mut count = 0;
                    let mut last = None;
                    for row in rows {
                        let version = decode_version(row)?;
                        let (index, access) = index_of(&version)?;
                        last = Some((version.resource_type.clone(), version.id.clone()));
                        db::lock_resource(conn, &version.resource_type, &version.id)?;
                        if !search::is_current(conn, self.dialect, tables, &version)? {
                            // Written (or deleted) since the batch was read: its write
                            // replaced its rows from its own body.
                            continue;
                        }
                        count += 1;
                        if let ("Patient", Some(record)) = (
                            version.resource_type.as_str(),
                            version.patient_id.as_deref(),
                        ) {
                            // Rebuilt from the body, not from index rows that may be lost.
                            identifiers::forget(conn, record)?;
                        }
                        let (kind, id) = (&version.resource_type, &version.id);
                        let patient_id = version.patient_id.as_deref();
                        let mut inserts = inserts::Inserts::default();
                        index::remove(conn, self.dialect, kind, id, record_key(patient_id))?;
                        index::add(&mut inserts, &[(kind, id, patient_id, &index)]);
                        // Rows that can no longer be derived are kept, never dropped: a
                        // directive lost here would open what it closed.
                        if let Some(access) = access {
                            access::remove(conn, self.dialect, kind, id, patient_id)?;
                            access::add(&mut inserts, kind, id, patient_id, &access);
                        }
                        inserts.write(conn, self.dialect)?;
                    }
                    Ok((count, last))
                })?;
                done += indexed.0;
                match indexed.1 {
                    Some(last) => after = Some(last),
                    None => break,
                }
            }
        }
        Ok(done)
    }
}

/// The next batch of current (not deleted) resources of `tables` after `after` (type, id),
/// in (type, id) order.
fn current_batch(
    conn: &mut db::AnyConnection,
    tables: &tables::Tables,
    after: Option<&(String, String)>,
) -> Result<Vec<VersionRow>, StoreError> {
    const BATCH: i64 = 500;
    macro_rules! batch_of {
        ($resources:ident, $versions:ident) => {{
            let mut query = $resources::table
                .inner_join(
                    $versions::table.on($versions::patient_id
                        .eq($resources::patient_id)
                        .and($versions::resource_type.eq($resources::resource_type))
                        .and($versions::id.eq($resources::id))
                        .and($versions::version_id.eq($resources::version_id))),
                )
                .filter($resources::deleted.eq(false))
                .into_boxed();
            if let Some((kind, id)) = after {
                query = query.filter(
                    $resources::resource_type
                        .gt(kind.clone())
                        .or($resources::resource_type
                            .eq(kind.clone())
                            .and($resources::id.gt(id.clone()))),
                );
            }
            #[allow(clippy::type_complexity)]
            let rows: Vec<(
                (String, String, i64, i64, bool, String, String, Vec<u8>),
                (String, i64, Option<String>),
            )> = query
                .order(($resources::resource_type, $resources::id))
                .limit(BATCH)
                .select((
                    (
                        $versions::resource_type,
                        $versions::id,
                        $versions::version_id,
                        $versions::last_updated,
                        $versions::deleted,
                        $versions::method,
                        $versions::key_id,
                        $versions::body,
                    ),
                    (
                        $resources::patient_id,
                        $resources::labels,
                        $resources::writer,
                    ),
                ))
                .load(conn)?;
            rows
        }};
    }
    let rows = match tables.is_directory() {
        true => batch_of!(directory_resources, directory_versions),
        false => batch_of!(resources, resource_versions),
    };
    Ok(rows
        .into_iter()
        .map(
            |(
                (resource_type, id, version_id, last_updated, deleted, method, key_id, body),
                (patient_id, labels, writer),
            )| VersionRow {
                resource_type,
                id,
                version_id,
                last_updated,
                deleted,
                method,
                key_id,
                body,
                patient_id: Some(patient_id),
                labels,
                writer,
            },
        )
        .collect())
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

/// One unit of work: a transaction (see [`Store::unit`]).
pub struct Unit<'c> {
    conn: &'c mut db::AnyConnection,
    dialect: search::Dialect,
}

impl Unit<'_> {
    /// Where `resource_type/id` is filed, seen from inside this unit.
    pub fn filed(&mut self, resource_type: &str, id: &str) -> Result<Filed, StoreError> {
        filed(self.conn, resource_type, id)
    }

    /// The versions `sql` selects, read inside this unit (it sees what the unit installed).
    pub fn versions(&mut self, sql: &ReadSql) -> Result<Vec<Version>, StoreError> {
        Ok(search::load_found(self.conn, sql)?
            .into_iter()
            .map(|found| found.version)
            .collect())
    }

    /// Serialises the units that check the same condition (`key`) until they end: a
    /// conditional create checks that nothing matches and installs atomically.
    pub fn lock_condition(&mut self, key: &str) -> Result<(), StoreError> {
        Ok(db::lock_condition(self.conn, key)?)
    }

    /// What a write decision reads of a record: its stored row and its directives.
    pub fn record(
        &mut self,
        patient_id: &str,
    ) -> Result<(Option<RecordRow>, Vec<Directive>), StoreError> {
        Ok(access::record(self.conn, self.dialect, patient_id)?)
    }

    /// The directives one resource (a Consent) of `patient_id`'s record expresses, as stored.
    pub fn directives_of(
        &mut self,
        patient_id: Option<&str>,
        resource_type: &str,
        id: &str,
    ) -> Result<Vec<Directive>, StoreError> {
        Ok(access::directives(
            self.conn,
            self.dialect,
            Some(record_key(patient_id)),
            Some((resource_type, id)),
        )?)
    }

    /// The minor a RelatedPerson represents, and for when, if any.
    pub fn guardianship(
        &mut self,
        related_person_id: &str,
    ) -> Result<Option<crate::consent::model::Guardianship>, StoreError> {
        Ok(access::guardianship(
            self.conn,
            self.dialect,
            related_person_id,
        )?)
    }

    /// The ids of the Organizations with this identifier.
    pub fn organizations(
        &mut self,
        system: Option<&str>,
        value: &str,
    ) -> Result<Vec<String>, StoreError> {
        Ok(access::organizations(
            self.conn,
            self.dialect,
            system,
            value,
        )?)
    }

    /// Whether a document written by `writer` points to `Binary/{id}`.
    pub fn referenced_binary(&mut self, id: &str, writer: &str) -> Result<bool, StoreError> {
        Ok(access::referenced_binary(
            self.conn,
            self.dialect,
            id,
            writer,
        )?)
    }

    /// The access terms of a stored resource of `patient_id`'s record.
    pub fn terms(
        &mut self,
        patient_id: Option<&str>,
        resource_type: &str,
        id: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        Ok(access::terms(
            self.conn,
            self.dialect,
            record_key(patient_id),
            resource_type,
            id,
        )?)
    }

    /// Installs `new` if the resource's current version is still `expected` (`None`: it must
    /// not exist yet); otherwise [`StoreError::Conflict`].
    pub fn install(&mut self, expected: Option<i64>, new: NewVersion) -> Result<(), StoreError> {
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
    let record = record_key(new.patient_id.as_deref());
    let (kind, id, patient_id) = (&new.resource_type, &new.id, new.patient_id.as_deref());
    let writer = new.writer.as_ref().map(Writer::key);
    // The directory's rows go to its own tables (see `tables`), the same columns.
    let set = tables::of(kind);
    let (current, versions) = (set.resources, set.versions);
    let text = |value: &str| Bind::Text(value.to_owned());
    let mut inserts = inserts::Inserts::default();
    if let Some(content) = content {
        inserts.add_row(
            "binary_contents (patient_id, id, version_id, key_id, content)",
            vec![
                text(record),
                text(id),
                Bind::BigInt(new.version_id),
                Bind::Text(content.key_id),
                Bind::Bytes(content.bytes),
            ],
        );
    }
    inserts.add_row(
        format!(
            "{versions} (resource_type, id, version_id, last_updated, deleted, method, \
             patient_id, key_id, body)"
        ),
        vec![
            text(kind),
            text(id),
            Bind::BigInt(new.version_id),
            Bind::BigInt(new.last_updated),
            Bind::Bool(new.deleted),
            text(new.method),
            text(record),
            Bind::Text(encoded.key_id),
            Bind::Bytes(encoded.bytes),
        ],
    );
    let result = (|| -> Result<(), StoreError> {
        match expected {
            None => {
                // Ids are unique by type across records; a taken one is a lost race (the
                // write fails on the key: a conflict, below).
                inserts.add_row(
                    "resource_ids (resource_type, id, patient_id)",
                    vec![text(kind), text(id), text(record)],
                );
                inserts.add_row(
                    format!(
                        "{current} (resource_type, id, version_id, last_updated, deleted, \
                         patient_id, labels, writer)"
                    ),
                    vec![
                        text(kind),
                        text(id),
                        Bind::BigInt(new.version_id),
                        Bind::BigInt(new.last_updated),
                        Bind::Bool(new.deleted),
                        text(record),
                        Bind::BigInt(new.labels.bits()),
                        Bind::OptText(writer),
                    ],
                );
            }
            Some(version) => {
                macro_rules! update_current {
                    ($resources:ident) => {{
                        let installed = diesel::update(
                            $resources::table
                                .find((record, kind, id))
                                .filter($resources::version_id.eq(version)),
                        )
                        // Neither the patient id (the future distribution key) nor the writer
                        // ever change: the write path refuses a move to another patient
                        // before it gets here.
                        .set((
                            $resources::version_id.eq(new.version_id),
                            $resources::last_updated.eq(new.last_updated),
                            $resources::deleted.eq(new.deleted),
                            $resources::labels.eq(new.labels.bits()),
                        ))
                        .execute(conn)?;
                        if installed == 1 && new.revives {
                            diesel::update($resources::table.find((record, kind, id)))
                                .set($resources::writer.eq(&writer))
                                .execute(conn)?;
                        }
                        installed
                    }};
                }
                let installed = match set.is_directory() {
                    true => update_current!(directory_resources),
                    false => update_current!(resources),
                };
                if installed != 1 {
                    return Err(StoreError::Conflict);
                }
                index::remove(conn, dialect, kind, id, record)?;
                access::remove(conn, dialect, kind, id, patient_id)?;
            }
        }
        // A first version's id was free (`resource_ids` takes it here): nothing was indexed
        // under it, so the deletes that could find nothing (seven for a document) are not run.
        index::add(&mut inserts, &[(kind, id, patient_id, &new.index)]);
        access::add(&mut inserts, kind, id, patient_id, &new.access);
        inserts.write(conn, dialect)?;
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

/// The one place a version row becomes a [`Version`].
pub(crate) fn decode_version(row: VersionRow) -> Result<Version, StoreError> {
    Ok(Version {
        body: codec::decode(&row.key_id, row.body)?,
        resource_type: row.resource_type,
        id: row.id,
        version_id: row.version_id,
        last_updated: row.last_updated,
        deleted: row.deleted,
        method: row.method,
        patient_id: row.patient_id.filter(|p| p != OUTSIDE_RECORDS),
        labels: Labels::from_bits(row.labels),
        writer: row.writer.as_deref().and_then(Writer::from_key),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh store on each backend the tests are given (SQLite always), its PostgreSQL
    /// database dropped after.
    fn each_store(test: impl Fn(&Store)) {
        let dir = std::env::temp_dir().join(format!("carnet-store-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        test(&Store::open(&format!("sqlite://{}/carnet.db", dir.display()), 0).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
        let Ok(admin) = std::env::var("CARNET_TEST_DATABASE_URL") else {
            return;
        };
        struct Dropped(String, String);
        impl Drop for Dropped {
            fn drop(&mut self) {
                if let Ok(mut conn) = diesel::PgConnection::establish(&self.0) {
                    let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.1);
                    let _ = diesel::sql_query(drop).execute(&mut conn);
                }
            }
        }
        let name = format!("carnet_unit_{}", uuid::Uuid::new_v4().simple());
        let mut conn = diesel::PgConnection::establish(&admin).unwrap();
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .unwrap();
        let _dropped = Dropped(admin.clone(), name.clone());
        let (prefix, _) = admin.rsplit_once('/').expect("a database URL with a path");
        test(&Store::open(&format!("{prefix}/{name}"), 0).unwrap());
    }

    fn document(id: &str) -> NewVersion {
        let token = |param: &str, code: &str| index::TokenRow {
            param: param.into(),
            system: None,
            code: code.into(),
            text: None,
        };
        NewVersion {
            resource_type: "DocumentReference".into(),
            id: id.into(),
            version_id: 1,
            last_updated: 1_700_000_000_000_000,
            deleted: false,
            method: "POST",
            patient_id: Some("p1".into()),
            labels: Labels::NONE,
            writer: Some(Writer::System("lab".into())),
            revives: false,
            body: br#"{"resourceType":"DocumentReference"}"#.to_vec(),
            content: None,
            index: IndexRows {
                tokens: vec![token("status", "current"), token("_id", id)],
                ..IndexRows::default()
            },
            access: AccessRows {
                terms: vec![("class", "http://loinc.org|11488-4".into())],
                ..AccessRows::default()
            },
        }
    }

    /// A document's first version — its version and current rows, its id, its index and
    /// consent rows — is written in one statement on PostgreSQL (one per table on SQLite,
    /// where a statement is no round trip), and what a write decision reads of a record is
    /// one statement on both. A second first version at the same id is a conflict.
    #[test]
    fn a_first_version_is_one_statement_on_postgresql() {
        each_store(|store| {
            store
                .unit(|unit| -> Result<(), StoreError> {
                    let before = db::statements_started(unit.conn);
                    assert_eq!(unit.record("p1")?, (None, vec![]));
                    assert_eq!(db::statements_started(unit.conn), before + 1);
                    unit.install(None, document("d1"))?;
                    let tables = match store.dialect() {
                        // The version, the current row, the id, the tokens, the terms.
                        search::Dialect::Sqlite => 5,
                        search::Dialect::Postgres => 1,
                    };
                    assert_eq!(db::statements_started(unit.conn), before + 1 + tables);
                    Ok(())
                })
                .unwrap();
            let again = store.unit(|unit| unit.install(None, document("d1")));
            assert!(matches!(again, Err(StoreError::Conflict)), "{again:?}");
            let filed = store.filed("DocumentReference", "d1").unwrap();
            assert_eq!(filed.key(), "p1");
        });
    }

    /// A search across records is never kept prepared on PostgreSQL: kept, its sixth execution
    /// on a connection got a generic plan that read 2,000,000 rows for a page of 20 (a feeder
    /// paging `status=current&type=…`, docs/performance.md session 13). A pinned one is kept.
    #[test]
    fn a_search_across_records_is_not_kept_on_postgresql() {
        use crate::search::sql::tests::{professional, search};
        use crate::search::{sql, Position};
        let feeder = search(&[("status", "current"), ("type", "http://loinc.org|11502-2")]);
        each_store(|store| {
            let page = |restriction: &crate::consent::Restriction| {
                let start = Position::Start;
                sql::page(
                    &feeder,
                    restriction,
                    "http://h",
                    &start,
                    20,
                    store.dialect(),
                )
            };
            let across = page(&professional());
            let pinned = page(&professional().in_record("p", false));
            store
                .unit(|unit| -> Result<(), StoreError> {
                    let kept = db::kept_statements(unit.conn);
                    for _ in 0..6 {
                        unit.versions(&across)?;
                    }
                    let expected = match store.dialect() {
                        // Its plan never depends on values (QPSG): kept, parsed once.
                        search::Dialect::Sqlite => kept + 1,
                        search::Dialect::Postgres => kept,
                    };
                    assert_eq!(db::kept_statements(unit.conn), expected);
                    unit.versions(&pinned)?;
                    assert_eq!(db::kept_statements(unit.conn), expected + 1);
                    Ok(())
                })
                .unwrap();
        });
    }

    #[test]
    fn a_history_position_survives_its_cursor_and_nothing_else_is_one() {
        let position = HistoryPosition {
            last_updated: 1_700_000_000_000_001,
            patient_id: String::new(),
            resource_type: "Organization".into(),
            id: "a-b.c".into(),
            version_id: 3,
        };
        assert_eq!(
            HistoryPosition::from_cursor(&position.cursor()),
            Some(position)
        );
        for text in [
            "",
            "12",
            "x_1_Patient_a_b",
            "1_x_Patient_a_b",
            "1_2_Patient",
            "1_2_Patient_a\u{0}b_c",
            "1_2_Patient_a_b\u{0}",
            "1_2_Pa-tient_a_b",
            "1_2_Patient__b",
        ] {
            assert_eq!(HistoryPosition::from_cursor(text), None, "{text}");
        }
    }
}
