//! The search index rows of one resource, one table per parameter type, replaced as a whole in
//! the transaction that writes the resource.

use super::db::AnyConnection;
use super::search::{bind_all, execute, execute_once, Bind, Dialect, Sql};
use super::tables::{self, Tables};
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

/// Characters of a text value the indexed columns hold. A longer value keeps its first
/// `KEY_CHARS` characters there and goes whole to the column's unindexed `_full` twin: an index
/// entry stays far below PostgreSQL's B-tree limit (2704 bytes) even with a 4-byte character
/// in each place, and a match on the key is confirmed on the whole value. Characters, not
/// bytes, so that SQL's `substr` (characters on both backends) cuts where this does.
pub const KEY_CHARS: usize = 200;

/// A value as its indexed key and, when the key is cut short, the whole value.
pub fn cut(value: &str) -> (&str, Option<&str>) {
    match value.char_indices().nth(KEY_CHARS) {
        Some((end, _)) => (&value[..end], Some(value)),
        None => (value, None),
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
    remove(
        conn,
        dialect,
        resource_type,
        id,
        super::record_key(patient_id),
    )?;
    insert(conn, dialect, &[(resource_type, id, patient_id, rows)])
}

/// The index rows of one resource, with whose they are: type, id and compartment patient.
pub type Owned<'a> = (&'a str, &'a str, Option<&'a str>, &'a IndexRows);

/// Writes the rows of every resource of `owned`, one multi-row statement per table (and per
/// bind limit) rather than a statement per row, in the tables of each resource's type.
pub fn insert(conn: &mut AnyConnection, dialect: Dialect, owned: &[Owned]) -> QueryResult<()> {
    let patients: Vec<(&str, &IndexRows)> = owned
        .iter()
        .filter_map(
            |(resource_type, _, patient_id, rows)| match (*resource_type, patient_id) {
                ("Patient", Some(record)) => Some((*record, *rows)),
                _ => None,
            },
        )
        .collect();
    super::identifiers::insert(conn, dialect, &patients)?;
    for set in tables::ALL {
        let of_set: Vec<Owned> = owned
            .iter()
            .filter(|(resource_type, ..)| tables::of(resource_type) == set)
            .copied()
            .collect();
        insert_into(conn, dialect, set, &of_set)?;
    }
    Ok(())
}

fn insert_into(
    conn: &mut AnyConnection,
    dialect: Dialect,
    set: &Tables,
    owned: &[Owned],
) -> QueryResult<()> {
    let text = |v: &str| Bind::Text(v.to_owned());
    let optional = |v: &Option<String>| Bind::OptText(v.clone());
    // The key and the whole value when cut (see `KEY_CHARS`).
    let keyed = |v: &str| {
        let (key, full) = cut(v);
        [text(key), Bind::OptText(full.map(str::to_owned))]
    };
    let keyed_optional = |v: &Option<String>| match v {
        Some(v) => keyed(v),
        None => [Bind::OptText(None), Bind::OptText(None)],
    };
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
                text(super::record_key(*patient_id)),
            ];
            owner.into_iter().chain(values).collect::<Vec<Bind>>()
        };
        for t in &rows.tokens {
            let mut values = vec![text(&t.param)];
            values.extend(keyed_optional(&t.system));
            values.extend(keyed(&t.code));
            values.push(optional(&t.text));
            tokens.push(with(values));
        }
        for s in &rows.strings {
            let mut values = vec![text(&s.param)];
            values.extend(keyed(&s.normalized));
            values.push(text(&s.exact));
            strings.push(with(values));
        }
        for d in &rows.dates {
            dates.push(with(vec![
                text(&d.param),
                Bind::BigInt(d.low),
                Bind::BigInt(d.high),
            ]));
        }
        for r in &rows.references {
            let mut values = vec![
                text(&r.param),
                optional(&r.target_type),
                optional(&r.target_id),
            ];
            values.extend(keyed(&r.url));
            references.push(with(values));
        }
        for u in &rows.uris {
            let mut values = vec![text(&u.param)];
            values.extend(keyed(&u.uri));
            uris.push(with(values));
        }
    }
    let owner = "resource_type, id, patient_id";
    let tables = [
        (
            format!(
                "{} ({owner}, param, system, system_full, code, code_full, text)",
                set.tokens
            ),
            tokens,
        ),
        (
            format!(
                "{} ({owner}, param, normalized, normalized_full, exact)",
                set.strings
            ),
            strings,
        ),
        (format!("{} ({owner}, param, low, high)", set.dates), dates),
        (
            format!(
                "{} ({owner}, param, target_type, target_id, url, url_full)",
                set.references
            ),
            references,
        ),
        (
            format!("{} ({owner}, param, uri, uri_full)", set.uris),
            uris,
        ),
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
    insert_values_then(conn, dialect, into, rows, "")
}

/// [`insert_values`], each statement ending with `then` (`ON CONFLICT …`).
///
/// The rows travel as one JSON array bound to one placeholder and are unpacked by the database
/// (`json_each` on SQLite, `json_array_elements` on PostgreSQL): the statement's text is the
/// same whatever the number of rows, so each connection prepares it once and keeps it (a
/// `VALUES` list grows with the rows, and PostgreSQL parsed and planned each one anew).
/// Rows carrying bytes, or text JSON cannot carry to both databases (NUL), go as a `VALUES`
/// list.
pub fn insert_values_then(
    conn: &mut AnyConnection,
    dialect: Dialect,
    into: &str,
    rows: Vec<Vec<Bind>>,
    then: &str,
) -> QueryResult<()> {
    let Some(first) = rows.first() else {
        return Ok(());
    };
    let as_json = rows.iter().flatten().all(|value| match value {
        Bind::Bytes(_) => false,
        Bind::Text(text) | Bind::OptText(Some(text)) => !text.contains('\0'),
        _ => true,
    });
    if !as_json {
        return insert_listed_values(conn, dialect, into, rows, then);
    }
    let columns: Vec<String> = first
        .iter()
        .enumerate()
        .map(|(i, value)| match (dialect, value) {
            (Dialect::Sqlite, _) => format!("value ->> {i}"),
            (Dialect::Postgres, Bind::BigInt(_) | Bind::OptBigInt(_)) => {
                format!("(value ->> {i})::bigint")
            }
            (Dialect::Postgres, Bind::Bool(_)) => format!("(value ->> {i})::boolean"),
            (Dialect::Postgres, _) => format!("value ->> {i}"),
        })
        .collect();
    let elements = match dialect {
        Dialect::Sqlite => "json_each(?1)",
        Dialect::Postgres => "json_array_elements($1::json) AS value",
    };
    let json: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|row| row.into_iter().map(json_value).collect())
        .collect();
    // `WHERE true`: SQLite would read `ON CONFLICT` after a bare `FROM …` as a join's.
    let sql = Sql {
        text: format!(
            "INSERT INTO {into} SELECT {} FROM {elements} WHERE true{then}",
            columns.join(", ")
        ),
        binds: vec![Bind::Text(serde_json::Value::Array(json).to_string())],
    };
    execute!(conn, sql)?;
    Ok(())
}

/// A bound value as a JSON value (never bytes: see [`insert_values_then`]).
fn json_value(value: Bind) -> serde_json::Value {
    match value {
        Bind::Text(text) | Bind::OptText(Some(text)) => text.into(),
        Bind::BigInt(n) | Bind::OptBigInt(Some(n)) => n.into(),
        Bind::Bool(b) => b.into(),
        Bind::OptText(None) | Bind::OptBigInt(None) | Bind::Bytes(_) => serde_json::Value::Null,
    }
}

/// `INSERT INTO {into} VALUES (…), (…)…{then}` in as few statements as the bind limits allow.
fn insert_listed_values(
    conn: &mut AnyConnection,
    dialect: Dialect,
    into: &str,
    rows: Vec<Vec<Bind>>,
    then: &str,
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
                sql.text.push_str(&dialect.placeholder(n));
            }
            sql.text.push(')');
        }
        sql.text.push_str(then);
        execute_once!(conn, sql)?;
    }
    Ok(())
}

/// Deletes the index rows of one resource, within its record (one shard once distributed).
pub fn remove(
    conn: &mut AnyConnection,
    dialect: Dialect,
    resource_type: &str,
    id: &str,
    record: &str,
) -> QueryResult<()> {
    if resource_type == "Patient" && record != super::OUTSIDE_RECORDS {
        super::identifiers::remove(conn, record, id)?;
    }
    let set = tables::of(resource_type);
    for table in [set.tokens, set.strings, set.dates, set.references, set.uris] {
        let sql = Sql {
            text: format!(
                "DELETE FROM {table} WHERE patient_id = {} AND resource_type = {} AND id = {}",
                dialect.placeholder(1),
                dialect.placeholder(2),
                dialect.placeholder(3)
            ),
            binds: vec![
                Bind::Text(record.to_owned()),
                Bind::Text(resource_type.to_owned()),
                Bind::Text(id.to_owned()),
            ],
        };
        execute!(conn, sql)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_at_a_character_boundary() {
        assert_eq!(cut("court"), ("court", None));
        let exactly = "é".repeat(KEY_CHARS);
        assert_eq!(cut(&exactly), (exactly.as_str(), None));
        let long = format!("{}ễ", "é".repeat(KEY_CHARS));
        let (key, full) = cut(&long);
        assert_eq!(key, exactly);
        assert_eq!(full, Some(long.as_str()));
    }

    #[derive(diesel::QueryableByName, Debug, PartialEq)]
    struct Row {
        #[diesel(sql_type = Text)]
        t: String,
        #[diesel(sql_type = Nullable<Text>)]
        o: Option<String>,
        #[diesel(sql_type = BigInt)]
        n: i64,
        #[diesel(sql_type = Nullable<BigInt>)]
        m: Option<i64>,
        #[diesel(sql_type = Bool)]
        b: bool,
    }

    fn rows_back(conn: &mut AnyConnection) -> Vec<Row> {
        let sql = Sql {
            text: "SELECT t, o, n, m, b FROM kinds ORDER BY n".to_owned(),
            binds: vec![],
        };
        super::super::search::load!(conn, sql, Row).unwrap()
    }

    /// Each database, when the tests are given one (SQLite always).
    fn each_backend(test: impl Fn(&mut AnyConnection, Dialect)) {
        let dir = std::env::temp_dir().join(format!("carnet-index-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = super::super::db::Target::Sqlite(dir.join("carnet.db"));
        test(&mut target.connect().unwrap(), Dialect::Sqlite);
        let _ = std::fs::remove_dir_all(dir);
        if let Ok(url) = std::env::var("CARNET_TEST_DATABASE_URL") {
            let target = super::super::db::Target::Postgres(url);
            let mut conn = target.connect().unwrap();
            conn.begin_test_transaction().unwrap();
            test(&mut conn, Dialect::Postgres);
        }
    }

    #[test]
    fn rows_of_any_count_go_through_one_kept_statement_and_come_back_as_they_were() {
        each_backend(|conn, dialect| {
            let create = Sql {
                text: "CREATE TABLE kinds (t TEXT NOT NULL, o TEXT, n BIGINT NOT NULL, m BIGINT, \
                       b BOOLEAN NOT NULL)"
                    .to_owned(),
                binds: vec![],
            };
            execute_once!(conn, create).unwrap();
            let row = |t: &str, o: Option<&str>, n: i64, m: Option<i64>, b: bool| {
                vec![
                    Bind::Text(t.to_owned()),
                    Bind::OptText(o.map(str::to_owned)),
                    Bind::BigInt(n),
                    Bind::OptBigInt(m),
                    Bind::Bool(b),
                ]
            };
            let kept = super::super::db::kept_statements(conn);
            let into = "kinds (t, o, n, m, b)";
            insert_values(conn, dialect, into, vec![row("0012", None, 1, None, true)]).unwrap();
            insert_values(
                conn,
                dialect,
                into,
                vec![
                    row(
                        "é \"ễ\" \\ \n",
                        Some("null"),
                        i64::MIN,
                        Some(i64::MAX),
                        false,
                    ),
                    row("", Some(""), 3, Some(-1), true),
                ],
            )
            .unwrap();
            // A NUL cannot travel in JSON to PostgreSQL: only SQLite takes it, as a list.
            if dialect == Dialect::Sqlite {
                insert_values(conn, dialect, into, vec![row("a\0b", None, 4, None, false)])
                    .unwrap();
            }
            assert_eq!(super::super::db::kept_statements(conn), kept + 1);
            let mut expected = vec![
                Row {
                    t: "é \"ễ\" \\ \n".into(),
                    o: Some("null".into()),
                    n: i64::MIN,
                    m: Some(i64::MAX),
                    b: false,
                },
                Row {
                    t: "0012".into(),
                    o: None,
                    n: 1,
                    m: None,
                    b: true,
                },
                Row {
                    t: "".into(),
                    o: Some("".into()),
                    n: 3,
                    m: Some(-1),
                    b: true,
                },
            ];
            if dialect == Dialect::Sqlite {
                expected.push(Row {
                    t: "a\0b".into(),
                    o: None,
                    n: 4,
                    m: None,
                    b: false,
                });
            }
            assert_eq!(rows_back(conn), expected);
        });
    }
}
