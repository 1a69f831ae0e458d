//! PostgreSQL hash partitioning by patient id (`[postgres] partitions`): the single-machine
//! rehearsal of a database distributed by patient (Citus). Partitioned tables obey the rules
//! a distributed table does — the partition key in every primary and unique key, never NULL,
//! never updated — and a query pinned to one patient reads one partition of each table, which
//! `EXPLAIN` shows: the test suite runs on this layout, and its plan test checks every query
//! shape the builder emits (docs/scale-out.md).

use super::db::OpenError;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

/// The tables that hold a record's data, each with a NOT NULL `patient_id` leading its keys:
/// partitioned here, distributed by patient id on Citus. Every other table is the directory's,
/// a lookup keyed by what it looks up (`resource_ids`, `guardians`) or the server's own
/// (`server_secrets`, migrations).
pub const RECORD_TABLES: [&str; 11] = [
    "resources",
    "resource_versions",
    "binary_contents",
    "search_tokens",
    "search_strings",
    "search_dates",
    "search_references",
    "search_uris",
    "access_terms",
    "records",
    "directives",
];

/// The tables of the schema that are not [`RECORD_TABLES`], and why each may be.
pub const OTHER_TABLES: [&str; 12] = [
    // The directory, in no record (`store::tables`): reference tables on Citus.
    "directory_resources",
    "directory_versions",
    "directory_tokens",
    "directory_strings",
    "directory_dates",
    "directory_references",
    "directory_uris",
    // Which record holds `type/id`: keyed by what a read by bare id knows.
    "resource_ids",
    // Which record holds a Patient with `system|value`: keyed by what an INS search knows.
    "patient_identifiers",
    // Which minor a RelatedPerson represents: keyed by what a guardian's token names.
    "guardians",
    // The server's secrets (paging cursors' key).
    "server_secrets",
    "__diesel_schema_migrations",
];

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    definition: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Partitions every table of [`RECORD_TABLES`] into `partitions` hash partitions by patient
/// id, moving the rows it holds, all in one transaction; does nothing when `partitions` is 0
/// or the tables already are partitioned that way, and refuses another count.
pub fn apply(conn: &mut PgConnection, partitions: u32) -> Result<(), OpenError> {
    if partitions == 0 {
        return Ok(());
    }
    conn.transaction::<_, Failure, _>(|conn| {
        // Two processes starting at once: the second finds the work done.
        conn.batch_execute("SELECT pg_advisory_xact_lock(8150392411)")?;
        for table in RECORD_TABLES {
            match partitions_of(conn, table)? {
                None => partition(conn, table, partitions)?,
                Some(n) if n == i64::from(partitions) => {}
                Some(n) => {
                    return Err(Failure::Refused(format!(
                        "{table} has {n} partitions and postgres.partitions asks for \
                         {partitions}: repartitioning is not done at start-up"
                    )))
                }
            }
        }
        Ok(())
    })
    .map_err(|failure| match failure {
        Failure::Refused(why) => OpenError::Unsafe(why),
        Failure::Database(e) => OpenError::Migration(format!("partitioning: {e}")),
    })
}

/// Why [`apply`] rolled back.
enum Failure {
    Refused(String),
    Database(diesel::result::Error),
}

impl From<diesel::result::Error> for Failure {
    fn from(e: diesel::result::Error) -> Self {
        Failure::Database(e)
    }
}

/// How many partitions `table` has, or `None` when it is a plain table.
fn partitions_of(conn: &mut PgConnection, table: &str) -> QueryResult<Option<i64>> {
    let partitioned: Vec<Count> = diesel::sql_query(
        "SELECT COUNT(*) AS n FROM pg_partitioned_table WHERE partrelid = to_regclass($1)",
    )
    .bind::<Text, _>(table)
    .load(conn)?;
    if partitioned.first().is_none_or(|c| c.n == 0) {
        return Ok(None);
    }
    let count: Vec<Count> = diesel::sql_query(
        "SELECT COUNT(*) AS n FROM pg_inherits WHERE inhparent = to_regclass($1)",
    )
    .bind::<Text, _>(table)
    .load(conn)?;
    Ok(Some(count.first().map_or(0, |c| c.n)))
}

/// Replaces the plain `table` by a table of the same columns partitioned by patient id, with
/// its rows, and the same keys, indexes and statistics under the same names (so that later
/// migrations find them; a later `CREATE STATISTICS` must name each partition too).
fn partition(conn: &mut PgConnection, table: &str, partitions: u32) -> QueryResult<()> {
    let keys: Vec<Name> = diesel::sql_query(
        "SELECT conname AS name, pg_get_constraintdef(oid) AS definition FROM pg_constraint \
         WHERE conrelid = to_regclass($1) AND contype IN ('p', 'u') ORDER BY conname",
    )
    .bind::<Text, _>(table)
    .load(conn)?;
    let indexes: Vec<Name> = diesel::sql_query(
        "SELECT i.relname AS name, pg_get_indexdef(i.oid) AS definition FROM pg_index x \
         JOIN pg_class i ON i.oid = x.indexrelid \
         WHERE x.indrelid = to_regclass($1) \
         AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid) \
         ORDER BY i.relname",
    )
    .bind::<Text, _>(table)
    .load(conn)?;
    let statistics: Vec<Name> = diesel::sql_query(
        "SELECT stxname AS name, pg_get_statisticsobjdef(oid) AS definition \
         FROM pg_statistic_ext WHERE stxrelid = to_regclass($1) ORDER BY stxname",
    )
    .bind::<Text, _>(table)
    .load(conn)?;
    let mut script = format!(
        "ALTER TABLE {table} RENAME TO {table}_unpartitioned;\n\
         CREATE TABLE {table} (LIKE {table}_unpartitioned INCLUDING DEFAULTS) \
         PARTITION BY HASH (patient_id);\n"
    );
    for remainder in 0..partitions {
        script.push_str(&format!(
            "CREATE TABLE {table}_p{remainder} PARTITION OF {table} \
             FOR VALUES WITH (MODULUS {partitions}, REMAINDER {remainder});\n"
        ));
    }
    // Rows first, indexes after: one sort per index rather than one insertion per row.
    script.push_str(&format!(
        "INSERT INTO {table} SELECT * FROM {table}_unpartitioned;\n\
         DROP TABLE {table}_unpartitioned;\n"
    ));
    for key in &keys {
        script.push_str(&format!(
            "ALTER TABLE {table} ADD CONSTRAINT {} {};\n",
            key.name, key.definition
        ));
    }
    for index in &indexes {
        script.push_str(&format!("{};\n", index.definition));
    }
    // PostgreSQL plans each partition's scan with that partition's statistics: extended
    // statistics go on every partition, and on the parent for estimates across them.
    for statistics in &statistics {
        script.push_str(&format!("{};\n", statistics.definition));
        for remainder in 0..partitions {
            let (head, _) = statistics
                .definition
                .rsplit_once(" FROM ")
                .expect("CREATE STATISTICS … FROM table");
            let head = head.replacen(
                &statistics.name,
                &format!("{}_p{remainder}", statistics.name),
                1,
            );
            script.push_str(&format!("{head} FROM {table}_p{remainder};\n"));
        }
    }
    // Autovacuum analyzes the partitions as they fill, never the parent: once here.
    script.push_str(&format!("ANALYZE {table};\n"));
    conn.batch_execute(&script)
}
