//! What a List shows its reader (domain §3: a hidden resource is absent from List entries).
//! An entry stays only when its `item` references a current resource of this server that the
//! reader may see; an entry naming a missing or deleted resource, or naming one otherwise (by
//! identifier, contained, on another server), goes too, so that none of them can be told
//! from a hidden one.

use super::sql;
use crate::consent::facts::local_reference;
use crate::consent::Restriction;
use crate::store::{Store, StoreError, Version};
use serde_json::Value;
use std::collections::HashSet;

/// Entries checked per statement, so that a long List costs bounded statements.
const CHUNK: usize = 100;

/// Takes out of `list` (a List resource) the entries its reader may not see, and gives them
/// back in their order (a write puts them back: see `fhir::writes`). `run` runs a read (on the
/// store, or inside a write's unit of work).
pub fn redact(
    mut run: impl FnMut(&sql::ReadSql) -> Result<Vec<Version>, StoreError>,
    restriction: &Restriction,
    base_url: &str,
    dialect: sql::Dialect,
    list: &mut Value,
) -> Result<Vec<Value>, StoreError> {
    let target = |entry: &Value| -> Option<(String, String)> {
        let (kind, id) = local_reference(entry.get("item")?, base_url)?;
        Some((kind.to_owned(), id.to_owned()))
    };
    let Some(entries) = list.get_mut("entry").and_then(Value::as_array_mut) else {
        return Ok(Vec::new());
    };
    let targets: Vec<(String, String)> = entries.iter().filter_map(target).collect();
    let mut visible = HashSet::new();
    for chunk in targets.chunks(CHUNK) {
        for version in run(&sql::visible_among(restriction, chunk, dialect))? {
            visible.insert((version.resource_type, version.id));
        }
    }
    let (shown, hidden): (Vec<Value>, Vec<Value>) = std::mem::take(entries)
        .into_iter()
        .partition(|entry| target(entry).is_some_and(|t| visible.contains(&t)));
    if let Some(object) = list.as_object_mut() {
        match shown.is_empty() {
            // FHIR JSON has no empty arrays.
            true => object.remove("entry"),
            false => object.insert("entry".to_owned(), Value::Array(shown)),
        };
    }
    Ok(hidden)
}

/// `version` as its reader may be answered it: a current List loses the entries the reader may
/// not see ([`redact`], read on `store`); anything else is left as it is.
pub fn shown(
    store: &Store,
    restriction: &Restriction,
    base_url: &str,
    version: &mut Version,
) -> Result<(), StoreError> {
    if version.resource_type != "List" || version.deleted {
        return Ok(());
    }
    let mut body = crate::fhir::json::parse_lossless(&String::from_utf8_lossy(&version.body))
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let run = |query: &sql::ReadSql| -> Result<Vec<Version>, StoreError> {
        Ok(store.found(query)?.into_iter().map(|f| f.version).collect())
    };
    let hidden = redact(run, restriction, base_url, store.dialect(), &mut body)?;
    if !hidden.is_empty() {
        version.body = crate::fhir::json::to_text(&body, false).into_bytes();
    }
    Ok(())
}

/// Puts `hidden` entries (from [`redact`]) back at the end of `list`'s entries. A patch may
/// have made `list` anything (a number, an `entry` that is not an array): then nothing is put
/// back, and validation refuses what the patch made.
pub fn restore(list: &mut Value, hidden: Vec<Value>) {
    let Some(object) = list.as_object_mut() else {
        return;
    };
    if hidden.is_empty() {
        return;
    }
    match object.get_mut("entry") {
        Some(Value::Array(entries)) => entries.extend(hidden),
        Some(_) => {}
        None => {
            object.insert("entry".to_owned(), Value::Array(hidden));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn restoring_into_what_a_patch_made_never_panics() {
        let hidden = vec![json!({"item": {"reference": "DocumentReference/d1"}})];
        for mut patched in [json!(5), json!(null), json!([1]), json!({"entry": "x"})] {
            let before = patched.clone();
            restore(&mut patched, hidden.clone());
            assert_eq!(patched, before);
        }
        let mut list = json!({"resourceType": "List"});
        restore(&mut list, hidden.clone());
        assert_eq!(list["entry"], json!(hidden));
        let mut list = json!({"entry": [{"item": {"reference": "Patient/p"}}]});
        restore(&mut list, hidden);
        assert_eq!(list["entry"].as_array().map(Vec::len), Some(2));
    }
}
