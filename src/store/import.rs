//! Bulk import: many new resources in one transaction, written with multi-row statements.
//!
//! Used to load benchmark data sets at a realistic size in minutes rather than hours. The
//! resources must be new (first versions) and already valid: nothing here checks them.

use super::db::AnyConnection;
use super::search::{bind_all, execute, Bind, Dialect, Sql};
use super::{codec, NewVersion, Store, StoreError};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Bool, Nullable, Text};

/// Binds per statement, under SQLite's and PostgreSQL's limits.
const MAX_BINDS: usize = 30_000;

impl Store {
    /// Inserts the first versions `versions`, their current state and their index rows, all or
    /// nothing.
    pub fn import(&self, versions: &[NewVersion]) -> Result<(), StoreError> {
        let dialect = self.dialect;
        let mut conn = self.writer.get()?;
        conn.transaction::<_, StoreError, _>(|conn| {
            let text = |v: &str| Bind::Text(v.to_owned());
            let optional = |v: &Option<String>| Bind::OptText(v.clone());
            let mut rows = Vec::with_capacity(versions.len());
            for v in versions {
                let encoded = codec::encode(v.body.clone());
                rows.push(vec![
                    text(&v.resource_type),
                    text(&v.id),
                    Bind::BigInt(v.version_id),
                    Bind::BigInt(v.last_updated),
                    Bind::Bool(v.deleted),
                    text(v.method),
                    optional(&v.patient_id),
                    text(&encoded.key_id),
                    Bind::Bytes(encoded.bytes),
                ]);
            }
            insert(
                conn,
                dialect,
                "resource_versions (resource_type, id, version_id, last_updated, deleted, method, \
                 patient_id, key_id, body)",
                rows,
            )?;
            let rows = versions
                .iter()
                .map(|v| {
                    vec![
                        text(&v.resource_type),
                        text(&v.id),
                        Bind::BigInt(v.version_id),
                        Bind::BigInt(v.last_updated),
                        Bind::Bool(v.deleted),
                        optional(&v.patient_id),
                    ]
                })
                .collect();
            insert(
                conn,
                dialect,
                "resources (resource_type, id, version_id, last_updated, deleted, patient_id)",
                rows,
            )?;
            let owner =
                |v: &NewVersion| (text(&v.resource_type), text(&v.id), optional(&v.patient_id));
            let mut tokens = Vec::new();
            let mut strings = Vec::new();
            let mut dates = Vec::new();
            let mut references = Vec::new();
            let mut uris = Vec::new();
            for v in versions {
                let (kind, id, patient) = owner(v);
                let with = |mut values: Vec<Bind>| {
                    let mut row = vec![kind.clone(), id.clone(), patient.clone()];
                    row.append(&mut values);
                    row
                };
                for t in &v.index.tokens {
                    tokens.push(with(vec![
                        text(&t.param),
                        optional(&t.system),
                        text(&t.code),
                        optional(&t.text),
                    ]));
                }
                for s in &v.index.strings {
                    strings.push(with(vec![
                        text(&s.param),
                        text(&s.normalized),
                        text(&s.exact),
                    ]));
                }
                for d in &v.index.dates {
                    dates.push(with(vec![
                        text(&d.param),
                        Bind::BigInt(d.low),
                        Bind::BigInt(d.high),
                    ]));
                }
                for r in &v.index.references {
                    references.push(with(vec![
                        text(&r.param),
                        optional(&r.target_type),
                        optional(&r.target_id),
                        text(&r.url),
                    ]));
                }
                for u in &v.index.uris {
                    uris.push(with(vec![text(&u.param), text(&u.uri)]));
                }
            }
            let owner_columns = "resource_type, id, patient_id";
            insert(
                conn,
                dialect,
                &format!("search_tokens ({owner_columns}, param, system, code, text)"),
                tokens,
            )?;
            insert(
                conn,
                dialect,
                &format!("search_strings ({owner_columns}, param, normalized, exact)"),
                strings,
            )?;
            insert(
                conn,
                dialect,
                &format!("search_dates ({owner_columns}, param, low, high)"),
                dates,
            )?;
            insert(
                conn,
                dialect,
                &format!("search_references ({owner_columns}, param, target_type, target_id, url)"),
                references,
            )?;
            insert(
                conn,
                dialect,
                &format!("search_uris ({owner_columns}, param, uri)"),
                uris,
            )?;
            Ok(())
        })
    }
}

/// `INSERT INTO {into} VALUES (…), (…)…` in as few statements as the bind limits allow.
fn insert(
    conn: &mut AnyConnection,
    dialect: Dialect,
    into: &str,
    rows: Vec<Vec<Bind>>,
) -> Result<(), StoreError> {
    let Some(width) = rows.first().map(Vec::len) else {
        return Ok(());
    };
    for chunk in rows.chunks((MAX_BINDS / width).max(1)) {
        let mut sql = Sql {
            text: format!("INSERT INTO {into} VALUES "),
            binds: Vec::with_capacity(chunk.len() * width),
        };
        for (i, row) in chunk.iter().enumerate() {
            if i > 0 {
                sql.text.push_str(", ");
            }
            sql.text.push('(');
            for (j, value) in row.iter().enumerate() {
                if j > 0 {
                    sql.text.push_str(", ");
                }
                sql.binds.push(value.clone());
                let n = sql.binds.len();
                sql.text.push_str(&match dialect {
                    Dialect::Sqlite => format!("?{n}"),
                    Dialect::Postgres => format!("${n}"),
                });
            }
            sql.text.push(')');
        }
        execute!(conn, sql)?;
    }
    Ok(())
}
