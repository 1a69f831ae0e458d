//! Bulk import: many new resources in one transaction, written with multi-row statements.
//!
//! Used to load benchmark data sets at a realistic size in minutes rather than hours. The
//! resources must be new (first versions) and already valid: nothing here checks them.

use super::db::AnyConnection;
use super::index;
use super::inserts::{insert_values, Inserts};
use super::search::{Bind, Dialect};
use super::tables::{self, Tables};
use super::{codec, NewVersion, Store, StoreError};
use diesel::prelude::*;

impl Store {
    /// Inserts the first versions `versions`, their current state and their index rows, all or
    /// nothing.
    pub fn import(&self, versions: &[NewVersion]) -> Result<(), StoreError> {
        let dialect = self.dialect;
        let mut conn = self.writer.get()?;
        conn.transaction::<_, StoreError, _>(|conn| {
            let text = |v: &str| Bind::Text(v.to_owned());
            for set in tables::ALL {
                let of_set: Vec<&NewVersion> = versions
                    .iter()
                    .filter(|v| tables::of(&v.resource_type) == set)
                    .collect();
                insert_resources(conn, dialect, set, &of_set)?;
            }
            // The resources are new: their ids, index and consent rows are only added, all in
            // one set of statements.
            let mut inserts = Inserts::default();
            let ids = versions
                .iter()
                .map(|v| {
                    vec![
                        text(&v.resource_type),
                        text(&v.id),
                        text(super::record_key(v.patient_id.as_deref())),
                    ]
                })
                .collect();
            inserts.add("resource_ids (resource_type, id, patient_id)", ids);
            let owned: Vec<index::Owned> = versions
                .iter()
                .map(|v| {
                    (
                        v.resource_type.as_str(),
                        v.id.as_str(),
                        v.patient_id.as_deref(),
                        &v.index,
                    )
                })
                .collect();
            index::add(&mut inserts, &owned);
            for v in versions {
                let patient_id = v.patient_id.as_deref();
                super::access::add(&mut inserts, &v.resource_type, &v.id, patient_id, &v.access);
            }
            inserts.write(conn, dialect)?;
            Ok(())
        })
    }
}

/// The versions and current rows of `versions`, all of whose types live in `set`.
fn insert_resources(
    conn: &mut AnyConnection,
    dialect: Dialect,
    set: &Tables,
    versions: &[&NewVersion],
) -> Result<(), StoreError> {
    let text = |v: &str| Bind::Text(v.to_owned());
    let mut rows = Vec::with_capacity(versions.len());
    for v in versions {
        let encoded = codec::encode(v.body.clone());
        rows.push(vec![
            text(&v.resource_type),
            text(&v.id),
            Bind::BigInt(v.version_id),
            Bind::BigInt(v.last_updated),
            Bind::Bool(v.deleted),
            text(v.method),
            text(super::record_key(v.patient_id.as_deref())),
            text(&encoded.key_id),
            Bind::Bytes(encoded.bytes),
        ]);
    }
    insert_values(
        conn,
        dialect,
        &format!(
            "{} (resource_type, id, version_id, last_updated, deleted, method, patient_id, \
             key_id, body)",
            set.versions
        ),
        rows,
    )?;
    let rows = versions
        .iter()
        .map(|v| {
            vec![
                text(&v.resource_type),
                text(&v.id),
                Bind::BigInt(v.version_id),
                Bind::BigInt(v.last_updated),
                Bind::Bool(v.deleted),
                text(super::record_key(v.patient_id.as_deref())),
                Bind::BigInt(v.labels.bits()),
                Bind::OptText(v.writer.as_ref().map(|w| w.key())),
            ]
        })
        .collect();
    insert_values(
        conn,
        dialect,
        &format!(
            "{} (resource_type, id, version_id, last_updated, deleted, patient_id, labels, writer)",
            set.resources
        ),
        rows,
    )?;
    Ok(())
}
