//! What a resource contributes to the search index: every supported parameter of its type,
//! extracted and turned into the store's rows.

use super::extract::{extract, IndexValue};
use super::registry::params_of;
use crate::store::index::{DateRow, IndexRows, ReferenceRow, StringRow, TokenRow, UriRow};
use serde_json::Value;

/// The index rows of `document`, a resource of `resource_type` (references to `base_url` are
/// local references).
pub fn rows(resource_type: &str, document: &Value, base_url: &str) -> IndexRows {
    let mut rows = IndexRows::default();
    for param in params_of(resource_type) {
        if param.unsupported.is_some() {
            continue;
        }
        for (key, value) in extract(document, param, base_url) {
            push(&mut rows, key, value);
        }
    }
    dedup(&mut rows.tokens);
    dedup(&mut rows.strings);
    dedup(&mut rows.dates);
    dedup(&mut rows.references);
    dedup(&mut rows.uris);
    rows
}

fn push(rows: &mut IndexRows, param: String, value: IndexValue) {
    match value {
        IndexValue::String { normalized, exact } => rows.strings.push(StringRow {
            param,
            normalized,
            exact,
        }),
        IndexValue::Token { system, code, text } => rows.tokens.push(TokenRow {
            param,
            system,
            code,
            text,
        }),
        IndexValue::Date { low, high } => rows.dates.push(DateRow { param, low, high }),
        IndexValue::Reference {
            target_type,
            target_id,
            url,
        } => rows.references.push(ReferenceRow {
            param,
            target_type,
            target_id,
            url,
        }),
        IndexValue::Uri(uri) => rows.uris.push(UriRow { param, uri }),
    }
}

/// The same value twice (two codings alike, a name repeated) matches no differently. Linear:
/// a resource may carry thousands of values.
fn dedup<T: Eq + std::hash::Hash + Clone>(rows: &mut Vec<T>) {
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    rows.retain(|row| seen.insert(row.clone()));
}
