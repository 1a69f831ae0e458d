//! Which record holds a current Patient with a given identifier (`patient_identifiers`): a
//! search that names its patient by identifier (`DocumentReference?patient.identifier=…`, the
//! INS of ITI-67) finds the record with one probe keyed by the identifier, then runs in that
//! record alone, rather than asking the Patient index of every record (every partition, and
//! every shard once distributed by patient). The rows mirror the Patient's `identifier` index
//! rows and are rewritten with them, in the same transaction.

use super::db::AnyConnection;
use super::index::{cut, IndexRows};
use super::inserts::Inserts;
use super::schema::{patient_identifiers, search_tokens};
use super::search::Bind;
use super::{Store, StoreError};
use diesel::prelude::*;
use std::collections::BTreeSet;

/// The search parameter whose values the lookup holds.
const PARAM: &str = "identifier";

/// Whether an identifier can be looked up: it has a system, and its system and value are whole
/// index keys (see [`super::index::KEY_CHARS`]), so that the lookup's equality is the token
/// search's. A search for any other is not pinned to a record; it still finds what it asks.
fn kept(system: &str, value: &str) -> bool {
    cut(system).1.is_none() && cut(value).1.is_none()
}

/// The identifiers of a Patient whose index rows are `rows`, as the lookup keeps them.
fn of(rows: &IndexRows) -> BTreeSet<(&str, &str)> {
    rows.tokens
        .iter()
        .filter(|t| t.param == PARAM)
        .filter_map(|t| Some((t.system.as_deref()?, t.code.as_str())))
        .filter(|(system, value)| kept(system, value))
        .collect()
}

/// Adds the lookup rows of the Patients `patients` (their record and index rows) to
/// `inserts`. A row already there stays: it says what is to be said.
pub(super) fn add(inserts: &mut Inserts, patients: &[(&str, &IndexRows)]) {
    let text = |v: &str| Bind::Text(v.to_owned());
    let rows = patients
        .iter()
        .flat_map(|(record, rows)| {
            of(rows)
                .into_iter()
                .map(|(system, value)| vec![text(system), text(value), text(record)])
        })
        .collect();
    inserts.add_then(
        "patient_identifiers (system, value, patient_id)",
        rows,
        " ON CONFLICT DO NOTHING",
    );
}

/// Removes the lookup rows of the Patient `id` filed in `record`, as its index rows (not yet
/// removed) list them. Each is deleted by its whole key: one shard each once the lookup is
/// distributed by value, where a delete by patient would ask every shard.
pub(super) fn remove(conn: &mut AnyConnection, record: &str, id: &str) -> QueryResult<()> {
    let rows: Vec<(Option<String>, String)> = search_tokens::table
        .filter(search_tokens::patient_id.eq(record))
        .filter(search_tokens::resource_type.eq("Patient"))
        .filter(search_tokens::id.eq(id))
        .filter(search_tokens::param.eq(PARAM))
        .filter(search_tokens::system_full.is_null())
        .filter(search_tokens::code_full.is_null())
        .select((search_tokens::system, search_tokens::code))
        .load(conn)?;
    let identifiers: BTreeSet<(String, String)> = rows
        .into_iter()
        .filter_map(|(system, value)| Some((system?, value)))
        .collect();
    for (system, value) in identifiers {
        diesel::delete(patient_identifiers::table.find((system, value, record))).execute(conn)?;
    }
    Ok(())
}

/// Removes every lookup row of the record `record` (a Patient reindexed from its body, whose
/// index rows may have been lost): by patient, on every shard once distributed, which only a
/// rebuild does.
pub(super) fn forget(conn: &mut AnyConnection, record: &str) -> QueryResult<()> {
    diesel::delete(patient_identifiers::table.filter(patient_identifiers::patient_id.eq(record)))
        .execute(conn)?;
    Ok(())
}

impl Store {
    /// The records of the current Patients with the identifier `system|value`, two at most
    /// (enough to tell one from several); none for an identifier the lookup does not keep.
    pub fn patients_with_identifier(
        &self,
        system: &str,
        value: &str,
    ) -> Result<Vec<String>, StoreError> {
        if !kept(system, value) {
            return Ok(Vec::new());
        }
        self.reading(|conn| {
            Ok(patient_identifiers::table
                .filter(patient_identifiers::system.eq(system))
                .filter(patient_identifiers::value.eq(value))
                .select(patient_identifiers::patient_id)
                .order(patient_identifiers::patient_id)
                .limit(2)
                .load(conn)?)
        })
    }
}
