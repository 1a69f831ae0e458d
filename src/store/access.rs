//! The rows the consent engine reads besides each resource's own row: a record per Patient,
//! the patient's directives, guardianships, and the terms a decision matches (authors,
//! document classes, attached Binaries). Replaced with every write of their resource, in the
//! same unit of work, like the search index.

use super::db::AnyConnection;
use super::inserts::Inserts;
use super::search::{execute, load, Bind, Dialect, Sql};
use crate::consent::model::{Actor, Directive, Guardianship, Period};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text};

/// What one resource contributes (see `consent::facts::access_rows`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessRows {
    /// A Patient's record: `Patient.active`, and when guardianship ends.
    pub record: Option<RecordRow>,
    /// A Consent's directives, or a Patient's general practitioners as authorizations.
    pub directives: Vec<Directive>,
    /// A RelatedPerson's minor: its holder is their guardian.
    pub guardian_of: Option<Guardianship>,
    /// `(kind, value)`: `author` (a Practitioner id), `class` (`system|code`), `binary` (an id).
    pub terms: Vec<(&'static str, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRow {
    pub active: bool,
    pub adult_at: Option<i64>,
}

/// The stored spelling of a directive's kind (the `directives.kind` column).
pub fn kind_of(directive: &Directive) -> &'static str {
    match directive {
        Directive::Opposition { .. } => "opposition",
        Directive::Block { .. } => "block",
        Directive::RefuseBreakGlass { .. } => "refuse-break-glass",
        Directive::Authorize { .. } => "authorize",
    }
}

/// Takes back what `resource_type/id` contributed, in its record.
pub fn remove(
    conn: &mut AnyConnection,
    dialect: Dialect,
    resource_type: &str,
    id: &str,
    patient_id: Option<&str>,
) -> QueryResult<()> {
    let record = super::record_key(patient_id);
    delete(
        conn,
        dialect,
        "directives",
        &[
            ("patient_id", record),
            ("source_type", resource_type),
            ("source_id", id),
        ],
    )?;
    delete(
        conn,
        dialect,
        "access_terms",
        &[
            ("patient_id", record),
            ("resource_type", resource_type),
            ("id", id),
        ],
    )?;
    if resource_type == "Patient" {
        delete(conn, dialect, "records", &[("patient_id", id)])?;
    }
    if resource_type == "RelatedPerson" {
        delete(conn, dialect, "guardians", &[("related_person_id", id)])?;
    }
    Ok(())
}

/// Adds what `resource_type/id` contributes to `inserts` (it must have nothing written yet).
pub fn add(
    inserts: &mut Inserts,
    resource_type: &str,
    id: &str,
    patient_id: Option<&str>,
    rows: &AccessRows,
) {
    let text = |v: &str| Bind::Text(v.to_owned());
    let optional = |v: Option<&str>| Bind::OptText(v.map(str::to_owned));
    let number = Bind::OptBigInt;
    let record = super::record_key(patient_id);
    if let Some(record) = rows.record {
        inserts.add(
            "records (patient_id, active, adult_at)",
            vec![vec![
                text(id),
                Bind::Bool(record.active),
                number(record.adult_at),
            ]],
        );
    }
    if let (Some(patient_id), false) = (patient_id, rows.directives.is_empty()) {
        let directives =
            rows.directives
                .iter()
                .map(|directive| {
                    let (actor, period) = match directive {
                        Directive::Opposition { period }
                        | Directive::RefuseBreakGlass { period } => (None, *period),
                        Directive::Block { actor, period } => (Some(actor.clone()), *period),
                        Directive::Authorize {
                            practitioner,
                            period,
                        } => (Some(Actor::Practitioner(practitioner.clone())), *period),
                    };
                    let (actor_type, actor_id) = match &actor {
                        Some(Actor::Practitioner(id)) => (Some("Practitioner"), Some(id.as_str())),
                        Some(Actor::Organization(id)) => (Some("Organization"), Some(id.as_str())),
                        None => (None, None),
                    };
                    let Period { start, end } = period;
                    vec![
                        text(patient_id),
                        text(resource_type),
                        text(id),
                        text(kind_of(directive)),
                        optional(actor_type),
                        optional(actor_id),
                        number(start),
                        number(end),
                    ]
                })
                .collect();
        inserts.add(
            "directives (patient_id, source_type, source_id, kind, actor_type, actor_id, \
             period_start, period_end)",
            directives,
        );
    }
    if let Some(guardianship) = &rows.guardian_of {
        inserts.add(
            "guardians (related_person_id, patient_id, period_start, period_end)",
            vec![vec![
                text(id),
                text(&guardianship.minor),
                number(guardianship.period.start),
                number(guardianship.period.end),
            ]],
        );
    }
    let mut terms: Vec<&(&'static str, String)> = rows.terms.iter().collect();
    terms.sort();
    terms.dedup();
    let terms = terms
        .into_iter()
        .map(|(kind, value)| {
            vec![
                text(resource_type),
                text(id),
                text(record),
                text(kind),
                text(value),
            ]
        })
        .collect();
    inserts.add(
        "access_terms (resource_type, id, patient_id, kind, value)",
        terms,
    );
}

/// `DELETE FROM {table} WHERE` each column equals its value.
fn delete(
    conn: &mut AnyConnection,
    dialect: Dialect,
    table: &str,
    equal: &[(&str, &str)],
) -> QueryResult<()> {
    let sql = statement(dialect, &format!("DELETE FROM {table}"), equal);
    execute!(conn, sql)?;
    Ok(())
}

/// A record's row (`active` set) or one of its directives (`kind` set), see [`record`].
#[derive(QueryableByName)]
struct RecordDirectiveColumns {
    #[diesel(sql_type = Nullable<Bool>)]
    active: Option<bool>,
    #[diesel(sql_type = Nullable<BigInt>)]
    adult_at: Option<i64>,
    #[diesel(embed)]
    directive: DirectiveColumns,
}

/// A directive's row; `kind` NULL: the record's own row in [`record`]'s `UNION ALL`.
#[derive(QueryableByName)]
struct DirectiveColumns {
    #[diesel(sql_type = Nullable<Text>)]
    kind: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    actor_type: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    actor_id: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    period_start: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    period_end: Option<i64>,
}

#[derive(QueryableByName)]
struct Pair {
    #[diesel(sql_type = Text)]
    a: String,
    #[diesel(sql_type = Text)]
    b: String,
}

/// `SELECT … WHERE` each column equals its value, numbered for `dialect`.
fn select(dialect: Dialect, columns: &str, table: &str, equal: &[(&str, &str)]) -> Sql {
    statement(dialect, &format!("SELECT {columns} FROM {table}"), equal)
}

/// `{head} WHERE` each column equals its value, bound.
fn statement(dialect: Dialect, head: &str, equal: &[(&str, &str)]) -> Sql {
    let conditions: Vec<String> = equal
        .iter()
        .enumerate()
        .map(|(i, (column, _))| format!("{column} = {}", dialect.placeholder(i + 1)))
        .collect();
    Sql {
        text: format!("{head} WHERE {}", conditions.join(" AND ")),
        binds: equal
            .iter()
            .map(|(_, value)| Bind::Text((*value).to_owned()))
            .collect(),
    }
}

/// The stored record of `patient_id` (from its Patient), if any, and its directives: what a
/// write decision reads of a record, in one statement — each table asked of the patient id as
/// a value (one shard), their rows one after the other (`UNION ALL`).
pub fn record(
    conn: &mut AnyConnection,
    dialect: Dialect,
    patient_id: &str,
) -> QueryResult<(Option<RecordRow>, Vec<Directive>)> {
    let p = dialect.placeholder(1);
    let sql = Sql {
        text: format!(
            "SELECT active, adult_at, NULL AS kind, NULL AS actor_type, NULL AS actor_id, \
             NULL AS period_start, NULL AS period_end FROM records WHERE patient_id = {p} \
             UNION ALL SELECT NULL, NULL, kind, actor_type, actor_id, period_start, period_end \
             FROM directives WHERE patient_id = {p}"
        ),
        binds: vec![Bind::Text(patient_id.to_owned())],
    };
    let mut record = None;
    let mut directives = Vec::new();
    for row in load!(conn, sql, RecordDirectiveColumns)? {
        match row.active {
            Some(active) => {
                record = Some(RecordRow {
                    active,
                    adult_at: row.adult_at,
                })
            }
            None => directives.extend(directive(row.directive)),
        }
    }
    Ok((record, directives))
}

/// The directives stored for `patient_id` (`source`: only those of one resource).
pub fn directives(
    conn: &mut AnyConnection,
    dialect: Dialect,
    patient_id: Option<&str>,
    source: Option<(&str, &str)>,
) -> QueryResult<Vec<Directive>> {
    let mut equal = Vec::new();
    if let Some(patient_id) = patient_id {
        equal.push(("patient_id", patient_id));
    }
    if let Some((source_type, source_id)) = source {
        equal.push(("source_type", source_type));
        equal.push(("source_id", source_id));
    }
    let sql = select(
        dialect,
        "kind, actor_type, actor_id, period_start, period_end",
        "directives",
        &equal,
    );
    let rows = load!(conn, sql, DirectiveColumns)?;
    Ok(rows.into_iter().filter_map(directive).collect())
}

/// A stored directive row as the engine reads it (`None`: a kind it does not know).
fn directive(r: DirectiveColumns) -> Option<Directive> {
    let period = Period {
        start: r.period_start,
        end: r.period_end,
    };
    let actor = match (r.actor_type.as_deref(), r.actor_id) {
        (Some("Practitioner"), Some(id)) => Some(Actor::Practitioner(id)),
        (Some("Organization"), Some(id)) => Some(Actor::Organization(id)),
        _ => None,
    };
    Some(match (r.kind?.as_str(), actor) {
        ("opposition", _) => Directive::Opposition { period },
        ("refuse-break-glass", _) => Directive::RefuseBreakGlass { period },
        ("block", Some(actor)) => Directive::Block { actor, period },
        ("authorize", Some(Actor::Practitioner(practitioner))) => Directive::Authorize {
            practitioner,
            period,
        },
        _ => return None,
    })
}

#[derive(QueryableByName)]
struct GuardianColumns {
    #[diesel(sql_type = Text)]
    patient_id: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    period_start: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    period_end: Option<i64>,
}

/// The minor a RelatedPerson links its holder to, and for when, if any.
pub fn guardianship(
    conn: &mut AnyConnection,
    dialect: Dialect,
    related_person_id: &str,
) -> QueryResult<Option<Guardianship>> {
    let sql = select(
        dialect,
        "patient_id, period_start, period_end",
        "guardians",
        &[("related_person_id", related_person_id)],
    );
    Ok(load!(conn, sql, GuardianColumns)?
        .into_iter()
        .next()
        .map(|g| Guardianship {
            minor: g.patient_id,
            period: Period {
                start: g.period_start,
                end: g.period_end,
            },
        }))
}

/// The ids of the Organizations with this identifier (`system` absent: any system).
pub fn organizations(
    conn: &mut AnyConnection,
    dialect: Dialect,
    system: Option<&str>,
    value: &str,
) -> QueryResult<Vec<String>> {
    let mut equal = vec![
        ("resource_type", "Organization"),
        ("param", "identifier"),
        ("code", value),
    ];
    if let Some(system) = system {
        equal.push(("system", system));
    }
    let tokens = super::tables::DIRECTORY.tokens;
    let sql = select(dialect, "id AS a, code AS b", tokens, &equal);
    Ok(load!(conn, sql, Pair)?.into_iter().map(|p| p.a).collect())
}

/// The access terms (`kind`, `value`) of `resource_type/id`, in the record `record`.
pub fn terms(
    conn: &mut AnyConnection,
    dialect: Dialect,
    record: &str,
    resource_type: &str,
    id: &str,
) -> QueryResult<Vec<(String, String)>> {
    let sql = select(
        dialect,
        "kind AS a, value AS b",
        "access_terms",
        &[
            ("patient_id", record),
            ("resource_type", resource_type),
            ("id", id),
        ],
    );
    Ok(load!(conn, sql, Pair)?
        .into_iter()
        .map(|p| (p.a, p.b))
        .collect())
}

/// Whether a document written by `writer` points to `Binary/{id}`.
pub fn referenced_binary(
    conn: &mut AnyConnection,
    dialect: Dialect,
    id: &str,
    writer: &str,
) -> QueryResult<bool> {
    let sql = Sql {
        text: format!(
            "SELECT t.kind AS a, t.value AS b FROM access_terms t JOIN resources d \
             ON d.patient_id = t.patient_id AND d.resource_type = t.resource_type \
             AND d.id = t.id \
             WHERE t.kind = 'binary' AND t.value = {} AND d.writer = {}",
            dialect.placeholder(1),
            dialect.placeholder(2)
        ),
        binds: vec![Bind::Text(id.to_owned()), Bind::Text(writer.to_owned())],
    };
    Ok(!load!(conn, sql, Pair)?.is_empty())
}
