//! The search index rows of one resource, one table per parameter type, replaced as a whole in
//! the transaction that writes the resource.

use super::db::AnyConnection;
use super::schema::{search_dates, search_references, search_strings, search_tokens, search_uris};
use diesel::prelude::*;

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
    resource_type: &str,
    id: &str,
    patient_id: Option<&str>,
    rows: &IndexRows,
) -> QueryResult<()> {
    remove(conn, resource_type, id)?;
    for row in &rows.tokens {
        diesel::insert_into(search_tokens::table)
            .values((
                search_tokens::resource_type.eq(resource_type),
                search_tokens::id.eq(id),
                search_tokens::param.eq(&row.param),
                search_tokens::system.eq(&row.system),
                search_tokens::code.eq(&row.code),
                search_tokens::text.eq(&row.text),
                search_tokens::patient_id.eq(patient_id),
            ))
            .execute(conn)?;
    }
    for row in &rows.strings {
        diesel::insert_into(search_strings::table)
            .values((
                search_strings::resource_type.eq(resource_type),
                search_strings::id.eq(id),
                search_strings::param.eq(&row.param),
                search_strings::normalized.eq(&row.normalized),
                search_strings::exact.eq(&row.exact),
                search_strings::patient_id.eq(patient_id),
            ))
            .execute(conn)?;
    }
    for row in &rows.dates {
        diesel::insert_into(search_dates::table)
            .values((
                search_dates::resource_type.eq(resource_type),
                search_dates::id.eq(id),
                search_dates::param.eq(&row.param),
                search_dates::low.eq(row.low),
                search_dates::high.eq(row.high),
                search_dates::patient_id.eq(patient_id),
            ))
            .execute(conn)?;
    }
    for row in &rows.references {
        diesel::insert_into(search_references::table)
            .values((
                search_references::resource_type.eq(resource_type),
                search_references::id.eq(id),
                search_references::param.eq(&row.param),
                search_references::target_type.eq(&row.target_type),
                search_references::target_id.eq(&row.target_id),
                search_references::url.eq(&row.url),
                search_references::patient_id.eq(patient_id),
            ))
            .execute(conn)?;
    }
    for row in &rows.uris {
        diesel::insert_into(search_uris::table)
            .values((
                search_uris::resource_type.eq(resource_type),
                search_uris::id.eq(id),
                search_uris::param.eq(&row.param),
                search_uris::uri.eq(&row.uri),
                search_uris::patient_id.eq(patient_id),
            ))
            .execute(conn)?;
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
