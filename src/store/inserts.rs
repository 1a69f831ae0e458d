//! Rows bound for several tables in one unit of work, written together: a resource's search
//! index rows, the consent engine's rows, the identifier lookup.
//!
//! Each table's rows travel as one JSON array bound to one placeholder and are unpacked by the
//! database (`json_each` on SQLite, `json_array_elements` on PostgreSQL): a statement's text is
//! the same whatever the number of rows, so each connection prepares it once and keeps it (a
//! `VALUES` list grows with the rows, and PostgreSQL parsed and planned each one anew). On
//! PostgreSQL every table's insert goes in one statement (data-modifying `WITH` clauses), one
//! round trip where a create of a document took six. Rows carrying bytes, or text that JSON
//! cannot carry to both databases (NUL), go as a `VALUES` list; a table's single row (a
//! version and its body, say) goes as `VALUES` of typed placeholders, whose text is fixed too,
//! and on PostgreSQL in the same statement as the rest.

use super::db::AnyConnection;
use super::search::{bind_all, execute, execute_once, Bind, Dialect, Sql};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Bool, Nullable, Text};

/// Binds per `VALUES` statement, under SQLite's and PostgreSQL's limits.
const MAX_BINDS: usize = 30_000;

/// The rows to insert, table by table (see the module's documentation).
#[derive(Debug, Default)]
pub struct Inserts {
    tables: Vec<Table>,
}

#[derive(Debug)]
struct Table {
    /// `table (column, …)`.
    into: String,
    rows: Vec<Vec<Bind>>,
    /// What ends the statement (`ON CONFLICT …`), or nothing.
    then: &'static str,
    /// One row, each value its own placeholder ([`Inserts::add_row`]).
    single: bool,
}

impl Inserts {
    /// Adds `rows` for `into` (`table (column, …)`, one bind per column in each row).
    pub fn add(&mut self, into: impl Into<String>, rows: Vec<Vec<Bind>>) {
        self.add_then(into, rows, "");
    }

    /// [`Inserts::add`], the table's statement ending with `then` (`ON CONFLICT …`).
    pub fn add_then(&mut self, into: impl Into<String>, rows: Vec<Vec<Bind>>, then: &'static str) {
        if !rows.is_empty() {
            self.tables.push(Table {
                into: into.into(),
                rows,
                then,
                single: false,
            });
        }
    }

    /// Adds one row for `into`, its values bound as they are (bytes too): for a table that
    /// gets one row per write (a version, its id), in the same statement as the rest on
    /// PostgreSQL.
    pub fn add_row(&mut self, into: impl Into<String>, row: Vec<Bind>) {
        self.tables.push(Table {
            into: into.into(),
            rows: vec![row],
            then: "",
            single: true,
        });
    }

    /// Writes every row added. A row that breaks a unique key fails the whole write.
    pub fn write(self, conn: &mut AnyConnection, dialect: Dialect) -> QueryResult<()> {
        let (together, listed): (Vec<Table>, Vec<Table>) = self
            .tables
            .into_iter()
            .partition(|table| table.single || table.fits_json());
        for table in listed {
            insert_listed_values(conn, dialect, table)?;
        }
        match dialect {
            Dialect::Sqlite => {
                for table in together {
                    execute!(conn, statement(dialect, &[table]))?;
                }
            }
            Dialect::Postgres if !together.is_empty() => {
                execute!(conn, statement(dialect, &together))?;
            }
            Dialect::Postgres => {}
        }
        Ok(())
    }
}

impl Table {
    fn fits_json(&self) -> bool {
        self.rows.iter().flatten().all(|value| match value {
            Bind::Bytes(_) => false,
            Bind::Text(text) | Bind::OptText(Some(text)) => !text.contains('\0'),
            _ => true,
        })
    }

    /// `INSERT INTO … SELECT … FROM` the rows bound as JSON to the next placeholder.
    fn insert_from_json(&self, dialect: Dialect, binds: &mut Vec<Bind>) -> String {
        let columns: Vec<String> = self.rows[0]
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
        let rows = self
            .rows
            .iter()
            .map(|row| row.iter().map(json_value).collect())
            .collect();
        binds.push(Bind::Text(serde_json::Value::Array(rows).to_string()));
        let n = dialect.placeholder(binds.len());
        let elements = match dialect {
            Dialect::Sqlite => format!("json_each({n})"),
            Dialect::Postgres => format!("json_array_elements({n}::json) AS value"),
        };
        // `WHERE true`: SQLite would read `ON CONFLICT` after a bare `FROM …` as a join's.
        format!(
            "INSERT INTO {} SELECT {} FROM {elements} WHERE true{}",
            self.into,
            columns.join(", "),
            self.then
        )
    }

    /// `INSERT INTO … VALUES` the one row, each value at the next placeholder.
    fn insert_row(&self, dialect: Dialect, binds: &mut Vec<Bind>) -> String {
        let values: Vec<String> = self.rows[0]
            .iter()
            .map(|value| {
                binds.push(value.clone());
                dialect.placeholder(binds.len())
            })
            .collect();
        format!(
            "INSERT INTO {} VALUES ({}){}",
            self.into,
            values.join(", "),
            self.then
        )
    }
}

/// One statement inserting the rows of `tables` (several only on PostgreSQL: each but the last
/// in a `WITH` clause of its own).
fn statement(dialect: Dialect, tables: &[Table]) -> Sql {
    let mut binds = Vec::new();
    let inserts: Vec<String> = tables
        .iter()
        .map(|table| match table.single {
            true => table.insert_row(dialect, &mut binds),
            false => table.insert_from_json(dialect, &mut binds),
        })
        .collect();
    let text = match inserts.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, before)) => {
            let clauses: Vec<String> = before
                .iter()
                .enumerate()
                .map(|(i, insert)| format!("w{i} AS ({insert})"))
                .collect();
            format!("WITH {} {last}", clauses.join(", "))
        }
        None => unreachable!("a statement for no table is never asked for"),
    };
    Sql { text, binds }
}

/// A bound value as a JSON value (never bytes: see [`Table::fits_json`]).
fn json_value(value: &Bind) -> serde_json::Value {
    match value {
        Bind::Text(text) | Bind::OptText(Some(text)) => text.as_str().into(),
        Bind::BigInt(n) | Bind::OptBigInt(Some(n)) => (*n).into(),
        Bind::Bool(b) => (*b).into(),
        Bind::OptText(None) | Bind::OptBigInt(None) | Bind::Bytes(_) => serde_json::Value::Null,
    }
}

/// `INSERT INTO {into} VALUES (…), (…)…{then}` in as few statements as the bind limits allow.
fn insert_listed_values(
    conn: &mut AnyConnection,
    dialect: Dialect,
    table: Table,
) -> QueryResult<()> {
    let Some(width) = table.rows.first().map(Vec::len) else {
        return Ok(());
    };
    for chunk in table.rows.chunks((MAX_BINDS / width).max(1)) {
        let mut sql = Sql {
            text: format!("INSERT INTO {} VALUES ", table.into),
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
        sql.text.push_str(table.then);
        execute_once!(conn, sql)?;
    }
    Ok(())
}

/// Inserts `rows` into `into` at once (see [`Inserts`]).
pub fn insert_values(
    conn: &mut AnyConnection,
    dialect: Dialect,
    into: &str,
    rows: Vec<Vec<Bind>>,
) -> QueryResult<()> {
    let mut inserts = Inserts::default();
    inserts.add(into, rows);
    inserts.write(conn, dialect)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::search::load;

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
        load!(conn, sql, Row).unwrap()
    }

    /// Each database, when the tests are given one (SQLite always).
    fn each_backend(test: impl Fn(&mut AnyConnection, Dialect)) {
        let dir = std::env::temp_dir().join(format!("carnet-index-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = crate::store::db::Target::Sqlite(dir.join("carnet.db"));
        test(&mut target.connect().unwrap(), Dialect::Sqlite);
        let _ = std::fs::remove_dir_all(dir);
        if let Ok(url) = std::env::var("CARNET_TEST_DATABASE_URL") {
            let target = crate::store::db::Target::Postgres(url);
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
            let kept = crate::store::db::kept_statements(conn);
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
            assert_eq!(crate::store::db::kept_statements(conn), kept + 1);
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

    #[test]
    fn several_tables_take_one_statement_on_postgresql_and_one_each_on_sqlite() {
        each_backend(|conn, dialect| {
            for table in ["one", "two"] {
                let create = Sql {
                    text: format!("CREATE TABLE {table} (t TEXT NOT NULL, n BIGINT)"),
                    binds: vec![],
                };
                execute_once!(conn, create).unwrap();
            }
            let kept = crate::store::db::kept_statements(conn);
            let mut inserts = Inserts::default();
            inserts.add(
                "one (t, n)",
                vec![vec![Bind::Text("a".into()), Bind::OptBigInt(Some(1))]],
            );
            inserts.add("two (t, n)", vec![]);
            inserts.add_then(
                "two (t, n)",
                vec![
                    vec![Bind::Text("b".into()), Bind::OptBigInt(None)],
                    vec![Bind::Text("c".into()), Bind::OptBigInt(Some(3))],
                ],
                "",
            );
            inserts.write(conn, dialect).unwrap();
            let statements = match dialect {
                Dialect::Sqlite => 2,
                Dialect::Postgres => 1,
            };
            assert_eq!(crate::store::db::kept_statements(conn), kept + statements);
            #[derive(diesel::QueryableByName, Debug, PartialEq)]
            struct Both {
                #[diesel(sql_type = Text)]
                t: String,
                #[diesel(sql_type = Nullable<BigInt>)]
                n: Option<i64>,
            }
            let sql = Sql {
                text: "SELECT t, n FROM one UNION ALL SELECT t, n FROM two ORDER BY t".into(),
                binds: vec![],
            };
            let found: Vec<(String, Option<i64>)> = load!(conn, sql, Both)
                .unwrap()
                .into_iter()
                .map(|b| (b.t, b.n))
                .collect();
            assert_eq!(
                found,
                [
                    ("a".into(), Some(1)),
                    ("b".into(), None),
                    ("c".into(), Some(3))
                ]
            );
        });
    }

    /// Single rows (bytes and all) join the other tables' rows: one statement on PostgreSQL,
    /// one per table on SQLite, each kept; a key a single row breaks fails the write as a
    /// unique violation (what `store::install` answers as a conflict).
    #[test]
    fn single_rows_with_bytes_join_the_statement_and_fail_it_on_a_taken_key() {
        each_backend(|conn, dialect| {
            let bytes = match dialect {
                Dialect::Sqlite => "BLOB",
                Dialect::Postgres => "BYTEA",
            };
            for create in [
                "CREATE TABLE one (t TEXT NOT NULL, n BIGINT)".to_owned(),
                format!("CREATE TABLE blobs (k BIGINT PRIMARY KEY, body {bytes} NOT NULL)"),
            ] {
                let create = Sql {
                    text: create,
                    binds: vec![],
                };
                execute_once!(conn, create).unwrap();
            }
            let body: Vec<u8> = (0..=255).chain([0, 0]).collect();
            let write = |conn: &mut AnyConnection, t: &str| {
                let mut inserts = Inserts::default();
                inserts.add_row(
                    "blobs (k, body)",
                    vec![Bind::BigInt(1), Bind::Bytes(body.clone())],
                );
                inserts.add(
                    "one (t, n)",
                    vec![vec![Bind::Text(t.into()), Bind::OptBigInt(Some(2))]],
                );
                inserts.write(conn, dialect)
            };
            let kept = crate::store::db::kept_statements(conn);
            write(conn, "a").unwrap();
            let statements = match dialect {
                Dialect::Sqlite => 2,
                Dialect::Postgres => 1,
            };
            assert_eq!(crate::store::db::kept_statements(conn), kept + statements);
            #[derive(diesel::QueryableByName)]
            struct Blob {
                #[diesel(sql_type = Binary)]
                body: Vec<u8>,
            }
            let sql = Sql {
                text: "SELECT body FROM blobs WHERE k = 1".into(),
                binds: vec![],
            };
            let back = load!(conn, sql, Blob).unwrap();
            assert_eq!(back.len(), 1);
            assert_eq!(back[0].body, body);
            let taken = write(conn, "b").unwrap_err();
            assert!(
                matches!(
                    taken,
                    diesel::result::Error::DatabaseError(
                        diesel::result::DatabaseErrorKind::UniqueViolation,
                        _
                    )
                ),
                "{taken:?}"
            );
        });
    }

    #[derive(diesel::QueryableByName, Debug, PartialEq)]
    struct EdgeRow {
        #[diesel(sql_type = BigInt)]
        k: i64,
        #[diesel(embed)]
        values: Row,
        #[diesel(sql_type = Text)]
        kind: String,
    }

    /// Review 11 (coverage): the JSON path against the values binding them one by one took:
    /// text that looks like numbers, JSON or escapes, control and astral characters, a
    /// megabyte of text, numbers at and near the bounds of i64 and of a double's integers,
    /// NULLs first then values, both booleans. Each comes back as written and with the type
    /// it was written with (SQLite's `typeof`: no text stored as a number, nor the reverse).
    #[test]
    fn review11_edge_values_come_back_as_written_through_json() {
        each_backend(|conn, dialect| {
            let create = Sql {
                text: "CREATE TABLE edges (k BIGINT NOT NULL, t TEXT NOT NULL, o TEXT, \
                       n BIGINT NOT NULL, m BIGINT, b BOOLEAN NOT NULL)"
                    .to_owned(),
                binds: vec![],
            };
            execute_once!(conn, create).unwrap();
            let texts: Vec<String> = vec![
                "1e5".into(),
                "-0".into(),
                " 12".into(),
                "0012".into(),
                "9223372036854775808".into(),
                "-9223372036854775809".into(),
                "1.0".into(),
                "true".into(),
                "false".into(),
                "null".into(),
                "[1,2]".into(),
                "{\"a\":1}".into(),
                "\"quoted\"".into(),
                "\\u0000".into(),
                "\\ud800".into(),
                "\\".into(),
                "\u{1}\u{8}\u{9}\u{a}\u{c}\u{d}\u{1f}\u{7f}".into(),
                "\u{80}\u{9f}\u{a0}\u{ad}".into(),
                "\u{2028}\u{2029}\u{feff}\u{fffe}\u{ffff}".into(),
                "\u{10000}\u{1f600}\u{10ffff}".into(),
                "e\u{301} ễ 中文 العربية".into(),
                "'; DROP TABLE edges; --".into(),
                "?1 $1 :a @a".into(),
                "é".repeat(500_000),
                "x".repeat(1_000_001),
            ];
            let numbers = [
                i64::MIN,
                i64::MIN + 1,
                i64::MAX,
                i64::MAX - 1,
                (1 << 53) + 1,
                -((1 << 53) + 1),
                1_000_000_000_000_000_001,
                0,
                -1,
            ];
            let mut rows = Vec::new();
            let mut expected = Vec::new();
            let mut k = 0;
            for (i, t) in texts.iter().enumerate() {
                let n = numbers[i % numbers.len()];
                // The first row's optional columns are NULL, later ones alternate.
                let some = i % 2 == 1;
                let o = some.then(|| t.clone());
                let m = some.then_some(numbers[(i + 3) % numbers.len()]);
                rows.push(vec![
                    Bind::BigInt(k),
                    Bind::Text(t.clone()),
                    Bind::OptText(o.clone()),
                    Bind::BigInt(n),
                    Bind::OptBigInt(m),
                    Bind::Bool(i % 3 == 0),
                ]);
                expected.push(EdgeRow {
                    k,
                    values: Row {
                        t: t.clone(),
                        o,
                        n,
                        m,
                        b: i % 3 == 0,
                    },
                    kind: String::new(),
                });
                k += 1;
            }
            for &n in &numbers {
                rows.push(vec![
                    Bind::BigInt(k),
                    Bind::Text(n.to_string()),
                    Bind::OptText(Some(n.to_string())),
                    Bind::BigInt(n),
                    Bind::OptBigInt(Some(n)),
                    Bind::Bool(n > 0),
                ]);
                expected.push(EdgeRow {
                    k,
                    values: Row {
                        t: n.to_string(),
                        o: Some(n.to_string()),
                        n,
                        m: Some(n),
                        b: n > 0,
                    },
                    kind: String::new(),
                });
                k += 1;
            }
            insert_values(conn, dialect, "edges (k, t, o, n, m, b)", rows).unwrap();
            let kinds = match dialect {
                Dialect::Sqlite => {
                    "typeof(t) || ',' || typeof(o) || ',' || typeof(n) || ',' || typeof(m)"
                }
                Dialect::Postgres => "''",
            };
            let sql = Sql {
                text: format!("SELECT k, t, o, n, m, b, {kinds} AS kind FROM edges ORDER BY k"),
                binds: vec![],
            };
            let back = load!(conn, sql, EdgeRow).unwrap();
            assert_eq!(back.len(), expected.len());
            for (got, mut want) in back.into_iter().zip(expected) {
                if dialect == Dialect::Sqlite {
                    want.kind = format!(
                        "text,{},integer,{}",
                        if want.values.o.is_some() {
                            "text"
                        } else {
                            "null"
                        },
                        if want.values.m.is_some() {
                            "integer"
                        } else {
                            "null"
                        }
                    );
                }
                assert_eq!(got, want, "{dialect:?}, row {}", want.k);
            }
        });
    }
}
