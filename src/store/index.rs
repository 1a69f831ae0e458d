//! The search index rows of one resource, one table per parameter type, replaced as a whole in
//! the transaction that writes the resource.

use super::db::AnyConnection;
use super::schema::{search_dates, search_references, search_strings, search_tokens, search_uris};
use super::search::{bind_all, execute, Bind, Dialect, Sql};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Bool, Nullable, Text};

/// A token: a code with its system (identifiers, codes, Codings, booleans).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenRow {
    /// The search parameter (or a derived key such as `identifier:of-type`).
    pub param: String,
    pub system: Option<String>,
    pub code: String,
    /// Normalised display text, for `:text`.
    pub text: Option<String>,
}

/// A string value, normalised for matching and as written for `:exact`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StringRow {
    pub param: String,
    pub normalized: String,
    pub exact: String,
}

/// A date range `[low, high)` in microseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DateRow {
    pub param: String,
    pub low: i64,
    pub high: i64,
}

/// A reference: to a resource of this server (`target_type`/`target_id`) or only a URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReferenceRow {
    pub param: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub url: String,
}

/// A URI value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UriRow {
    pub param: String,
    pub uri: String,
}

/// Every index row of one resource version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexRows {
    pub tokens: Vec<TokenRow>,
    pub strings: Vec<StringRow>,
    pub dates: Vec<DateRow>,
    pub references: Vec<ReferenceRow>,
    pub uris: Vec<UriRow>,
}

impl IndexRows {
    /// How many rows in all.
    pub fn len(&self) -> usize {
        self.tokens.len()
            + self.strings.len()
            + self.dates.len()
            + self.references.len()
            + self.uris.len()
    }

    /// True when the resource has no indexed value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Removes the resource's rows and writes `rows` (none for a deletion).
pub fn replace(
    conn: &mut AnyConnection,
    dialect: Dialect,
    resource_type: &str,
    id: &str,
    patient_id: Option<&str>,
    rows: &IndexRows,
) -> QueryResult<()> {
    remove(conn, resource_type, id)?;
    insert(conn, dialect, &[(resource_type, id, patient_id, rows)])
}

/// The index rows of one resource, with whose they are: type, id and compartment patient.
pub type Owned<'a> = (&'a str, &'a str, Option<&'a str>, &'a IndexRows);

/// Writes the rows of every resource of `owned`, one multi-row statement per table (and per
/// bind limit) rather than a statement per row.
pub fn insert(conn: &mut AnyConnection, dialect: Dialect, owned: &[Owned]) -> QueryResult<()> {
    let text = |v: &str| Bind::Text(v.to_owned());
    let optional = |v: &Option<String>| Bind::OptText(v.clone());
    let mut tokens = Vec::new();
    let mut strings = Vec::new();
    let mut dates = Vec::new();
    let mut references = Vec::new();
    let mut uris = Vec::new();
    for (resource_type, id, patient_id, rows) in owned {
        let with = |values: Vec<Bind>| {
            let owner = [
                text(resource_type),
                text(id),
                Bind::OptText(patient_id.map(str::to_owned)),
            ];
            owner.into_iter().chain(values).collect::<Vec<Bind>>()
        };
        for t in &rows.tokens {
            tokens.push(with(vec![
                text(&t.param),
                optional(&t.system),
                text(&t.code),
                optional(&t.text),
            ]));
        }
        for s in &rows.strings {
            strings.push(with(vec![
                text(&s.param),
                text(&s.normalized),
                text(&s.exact),
            ]));
        }
        for d in &rows.dates {
            dates.push(with(vec![
                text(&d.param),
                Bind::BigInt(d.low),
                Bind::BigInt(d.high),
            ]));
        }
        for r in &rows.references {
            references.push(with(vec![
                text(&r.param),
                optional(&r.target_type),
                optional(&r.target_id),
                text(&r.url),
            ]));
        }
        for u in &rows.uris {
            uris.push(with(vec![text(&u.param), text(&u.uri)]));
        }
    }
    let owner = "resource_type, id, patient_id";
    let tables = [
        (
            format!("search_tokens ({owner}, param, system, code, text)"),
            tokens,
        ),
        (
            format!("search_strings ({owner}, param, normalized, exact)"),
            strings,
        ),
        (format!("search_dates ({owner}, param, low, high)"), dates),
        (
            format!("search_references ({owner}, param, target_type, target_id, url)"),
            references,
        ),
        (format!("search_uris ({owner}, param, uri)"), uris),
    ];
    for (into, rows) in tables {
        insert_values(conn, dialect, &into, rows)?;
    }
    Ok(())
}

/// Binds per statement, under SQLite's and PostgreSQL's limits.
const MAX_BINDS: usize = 30_000;

/// `INSERT INTO {into} VALUES (…), (…)…` in as few statements as the bind limits allow.
pub fn insert_values(
    conn: &mut AnyConnection,
    dialect: Dialect,
    into: &str,
    rows: Vec<Vec<Bind>>,
) -> QueryResult<()> {
    let Some(width) = rows.first().map(Vec::len) else {
        return Ok(());
    };
    for chunk in rows.chunks((MAX_BINDS / width).max(1)) {
        let mut sql = Sql {
            text: format!("INSERT INTO {into} VALUES "),
            binds: Vec::with_capacity(chunk.len() * width),
        };
        for (i, row) in chunk.iter().enumerate() {
            sql.text.push_str(if i == 0 { "(" } else { ", (" });
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

fn remove(conn: &mut AnyConnection, resource_type: &str, id: &str) -> QueryResult<()> {
    macro_rules! delete_from {
        ($($table:ident),+) => {$(
            diesel::delete(
                $table::table
                    .filter($table::resource_type.eq(resource_type))
                    .filter($table::id.eq(id)),
            )
            .execute(conn)?;
        )+};
    }
    delete_from!(
        search_tokens,
        search_strings,
        search_dates,
        search_references,
        search_uris
    );
    Ok(())
}
