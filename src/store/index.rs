//! The search index rows of one resource, one table per parameter type, replaced as a whole in
//! the transaction that writes the resource.

use super::db::AnyConnection;
use super::inserts::Inserts;
use super::search::{execute, Bind, Dialect, Sql};
use super::tables::{self, Tables};
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

/// The index rows of one resource, with whose they are: type, id and compartment patient.
pub type Owned<'a> = (&'a str, &'a str, Option<&'a str>, &'a IndexRows);

/// Adds the rows of every resource of `owned` to `inserts`, in the tables of each resource's
/// type: one statement per table, not per row.
pub fn add(inserts: &mut Inserts, owned: &[Owned]) {
    let patients: Vec<(&str, &IndexRows)> = owned
        .iter()
        .filter_map(
            |(resource_type, _, patient_id, rows)| match (*resource_type, patient_id) {
                ("Patient", Some(record)) => Some((*record, *rows)),
                _ => None,
            },
        )
        .collect();
    super::identifiers::add(inserts, &patients);
    for set in tables::ALL {
        let of_set: Vec<Owned> = owned
            .iter()
            .filter(|(resource_type, ..)| tables::of(resource_type) == set)
            .copied()
            .collect();
        add_into(inserts, set, &of_set);
    }
}

fn add_into(inserts: &mut Inserts, set: &Tables, owned: &[Owned]) {
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
        inserts.add(into, rows);
    }
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
}
