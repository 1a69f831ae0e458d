//! The rows the consent engine reads besides each resource's own row: a record per Patient,
//! the patient's directives, guardianships, and the terms a decision matches (authors,
//! document classes, attached Binaries). Replaced with every write of their resource, in the
//! same unit of work, like the search index.

use super::db::AnyConnection;
use super::index::insert_values;
use super::search::{bind_all, execute, Bind, Dialect, Sql};
use crate::consent::model::{Actor, Directive, Period};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Bool, Nullable, Text};

/// What one resource contributes (see `consent::facts::access_rows`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessRows {
    /// A Patient's record: `Patient.active`, and when guardianship ends.
    pub record: Option<RecordRow>,
    /// A Consent's directives, or a Patient's general practitioners as authorizations.
    pub directives: Vec<Directive>,
    /// A RelatedPerson's minor: its holder is their guardian.
    pub guardian_of: Option<String>,
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

/// Replaces what `resource_type/id` contributed with `rows` (none for a deletion).
pub fn replace(
    conn: &mut AnyConnection,
    dialect: Dialect,
    resource_type: &str,
    id: &str,
    patient_id: Option<&str>,
    rows: &AccessRows,
) -> QueryResult<()> {
    let text = |v: &str| Bind::Text(v.to_owned());
    let optional = |v: Option<&str>| Bind::OptText(v.map(str::to_owned));
    let number = Bind::OptBigInt;
    // What this resource contributed before.
    delete(
        conn,
        dialect,
        "directives",
        &[("source_type", resource_type), ("source_id", id)],
    )?;
    delete(
        conn,
        dialect,
        "access_terms",
        &[("resource_type", resource_type), ("id", id)],
    )?;
    if resource_type == "Patient" {
        delete(conn, dialect, "records", &[("patient_id", id)])?;
    }
    if resource_type == "RelatedPerson" {
        delete(conn, dialect, "guardians", &[("related_person_id", id)])?;
    }
    if let Some(record) = rows.record {
        insert_values(
            conn,
            dialect,
            "records (patient_id, active, adult_at)",
            vec![vec![
                text(id),
                Bind::Bool(record.active),
                number(record.adult_at),
            ]],
        )?;
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
        insert_values(
            conn,
            dialect,
            "directives (patient_id, source_type, source_id, kind, actor_type, actor_id, \
             period_start, period_end)",
            directives,
        )?;
    }
    if let Some(minor) = &rows.guardian_of {
        insert_values(
            conn,
            dialect,
            "guardians (related_person_id, patient_id)",
            vec![vec![text(id), text(minor)]],
        )?;
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
                optional(patient_id),
                text(kind),
                text(value),
            ]
        })
        .collect();
    insert_values(
        conn,
        dialect,
        "access_terms (resource_type, id, patient_id, kind, value)",
        terms,
    )
}

/// `DELETE FROM {table} WHERE` each column equals its value.
fn delete(
    conn: &mut AnyConnection,
    dialect: Dialect,
    table: &str,
    equal: &[(&str, &str)],
) -> QueryResult<()> {
    let conditions: Vec<String> = equal
        .iter()
        .enumerate()
        .map(|(i, (column, _))| match dialect {
            Dialect::Postgres => format!("{column} = ${}", i + 1),
            Dialect::Sqlite => format!("{column} = ?{}", i + 1),
        })
        .collect();
    let sql = Sql {
        text: format!("DELETE FROM {table} WHERE {}", conditions.join(" AND ")),
        binds: equal
            .iter()
            .map(|(_, value)| Bind::Text((*value).to_owned()))
            .collect(),
    };
    execute!(conn, sql)?;
    Ok(())
}
