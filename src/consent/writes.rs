//! The write decision: [`policy::may_write`] over the facts of the record a write touches,
//! read inside the write's own unit of work (so under the resource's lock, and seeing the
//! directives as they are now).

use super::model::{Code, Facts, Record};
use super::policy::{self, Edit, Refusal, World, WriteAction};
use super::Engine;
use crate::auth::principal::Principal;
use crate::store::{AccessRows, NewVersion, StoreError, Unit, Version};
use std::collections::HashMap;

/// One side of a write, as the decision sees it.
pub enum Side<'a> {
    /// A stored version (the resource being updated or deleted).
    Stored(&'a Version),
    /// The version about to be installed.
    New(&'a NewVersion),
}

/// Why a write decision could not be made or was refused.
pub enum Verdict {
    Refused(Refusal),
    Store(StoreError),
}

impl From<StoreError> for Verdict {
    fn from(e: StoreError) -> Verdict {
        Verdict::Store(e)
    }
}

impl Engine {
    /// May `principal` create `new`, replace `old` by `new`, or delete `old`?
    pub fn check_write(
        &self,
        unit: &mut Unit<'_>,
        principal: &Principal,
        now: i64,
        old: Option<&Version>,
        new: Option<&NewVersion>,
    ) -> Result<(), Verdict> {
        let patient = new
            .and_then(|n| n.patient_id.clone())
            .or_else(|| old.and_then(|o| o.patient_id.clone()));
        let world = self.world(unit, principal, patient.as_deref(), now)?;
        let old_facts = match old {
            Some(version) => Some(stored(unit, version)?),
            None => None,
        };
        let mut new_facts = new.map(fresh);
        let revival = old.is_some_and(|old| old.deleted);
        // A resource's writer is its creator's: an update does not make the caller its writer
        // (a version over a deletion is a creation: its writer is the caller).
        if let (Some(old), Some((facts, _)), false) = (old, new_facts.as_mut(), revival) {
            facts.writer = old.writer.clone();
        }
        if let Some(old) = old.filter(|_| !revival) {
            fixed_once_written(
                unit,
                principal,
                old,
                new,
                old_facts.as_ref(),
                new_facts.as_ref(),
            )?;
        }
        let verdict = match (&old_facts, &new_facts, old, new) {
            (Some((old_facts, old_directives)), Some((facts, directives)), _, _) if revival => {
                policy::may_write(
                    principal,
                    &world,
                    WriteAction::Revive {
                        old: policy::Version {
                            facts: old_facts,
                            directives: old_directives,
                        },
                        new: policy::Version { facts, directives },
                    },
                )
            }
            (None, Some((facts, directives)), _, _) => policy::may_write(
                principal,
                &world,
                WriteAction::Create {
                    row: policy::Version { facts, directives },
                },
            ),
            (
                Some((old_facts, old_directives)),
                Some((facts, directives)),
                Some(old),
                Some(new),
            ) => policy::may_write(
                principal,
                &world,
                WriteAction::Update {
                    old: policy::Version {
                        facts: old_facts,
                        directives: old_directives,
                    },
                    new: policy::Version { facts, directives },
                    edit: edit_of(old, new),
                },
            ),
            (Some((facts, directives)), None, _, _) => policy::may_write(
                principal,
                &world,
                WriteAction::Delete {
                    old: policy::Version { facts, directives },
                },
            ),
            _ => Ok(()),
        };
        verdict.map_err(Verdict::Refused)
    }

    /// The world of one record, as much of it as a write decision consults.
    fn world(
        &self,
        unit: &mut Unit<'_>,
        principal: &Principal,
        patient_id: Option<&str>,
        now: i64,
    ) -> Result<World<crate::consent::matrix::ProfessionMatrix>, StoreError> {
        let mut records = HashMap::new();
        if let Some(patient_id) = patient_id {
            let (row, directives) = unit.record(patient_id)?;
            if let Some(row) = row {
                records.insert(
                    patient_id.to_owned(),
                    Record {
                        patient_id: patient_id.to_owned(),
                        active: row.active,
                        adult_at: row.adult_at,
                        directives,
                    },
                );
            } else if !directives.is_empty() {
                // Directives written before the Patient: the record is open, as without them.
                records.insert(
                    patient_id.to_owned(),
                    Record {
                        patient_id: patient_id.to_owned(),
                        active: true,
                        adult_at: None,
                        directives,
                    },
                );
            }
        }
        let mut guardianships = HashMap::new();
        if let Principal::Guardian { related_person_id } = principal {
            if let Some(guardianship) = unit.guardianship(related_person_id)? {
                guardianships.insert(related_person_id.clone(), guardianship);
            }
        }
        let mut organizations = HashMap::new();
        if let Principal::FeedingSystem { organization, .. } = principal {
            let (system, value) = match organization.split_once('|') {
                Some((system, value)) => (Some(system), value),
                None => (None, organization.as_str()),
            };
            organizations.insert(organization.clone(), unit.organizations(system, value)?);
        }
        Ok(World {
            records,
            guardianships,
            organizations,
            professions: self.matrix.clone(),
            now,
        })
    }
}

/// What no update changes, whoever asks (the policy decides who may write at all):
/// - a document's bytes once a document points to them: a document is replaced by another
///   (IHE MHD `relatesTo`), its Binary is not rewritten under it;
/// - a document's class and type: every version of it is judged by them (the profession
///   matrix), so a refiled document is a new document;
/// - a record's identity (INS, birth date: the end of guardianship) for the holder's side,
///   who may only close or reopen the record and choose the general practitioner.
fn fixed_once_written(
    unit: &mut Unit<'_>,
    principal: &Principal,
    old: &Version,
    new: Option<&NewVersion>,
    old_facts: Option<&(Facts, Vec<super::model::Directive>)>,
    new_facts: Option<&(Facts, Vec<super::model::Directive>)>,
) -> Result<(), Verdict> {
    let refuse = |why: &str| Err(Verdict::Refused(Refusal::Forbidden(why.to_owned())));
    let pointed_to = match old.writer.as_ref() {
        Some(writer) if old.resource_type == "Binary" => {
            unit.referenced_binary(&old.id, &writer.key())?
        }
        _ => false,
    };
    if pointed_to {
        return refuse(
            "a document points to this Binary: its bytes are not replaced or deleted; \
             publish a replacement document instead",
        );
    }
    let Some(new) = new else { return Ok(()) };
    if old.resource_type == "DocumentReference" {
        let classes = |facts: Option<&(Facts, Vec<super::model::Directive>)>| {
            let mut codes = facts.map(|(f, _)| f.classes.clone()).unwrap_or_default();
            codes.sort();
            codes
        };
        if classes(old_facts) != classes(new_facts) {
            return refuse(
                "a document's category and type are fixed once written: publish a \
                 replacement document (relatesTo replaces) to refile it",
            );
        }
    }
    let holder_side = matches!(
        principal,
        Principal::Patient { .. } | Principal::Guardian { .. }
    );
    if holder_side && old.resource_type == "Patient" && !only_holder_fields_change(old, new) {
        return refuse(
            "the record's holder may change only active (close or reopen the record) and \
             generalPractitioner; the identity (INS, birth date) is the insurer's",
        );
    }
    Ok(())
}

/// Whether a Patient update changes nothing but `active` and `generalPractitioner`.
fn only_holder_fields_change(old: &Version, new: &NewVersion) -> bool {
    let strip = |body: &[u8]| -> Option<serde_json::Value> {
        let mut document: serde_json::Value = serde_json::from_slice(body).ok()?;
        let object = document.as_object_mut()?;
        object.remove("active");
        object.remove("generalPractitioner");
        // The narrative shows the identity too: it stays as written.
        if let Some(meta) = object.get_mut("meta").and_then(|m| m.as_object_mut()) {
            meta.remove("versionId");
            meta.remove("lastUpdated");
        }
        Some(document)
    };
    matches!((strip(&old.body), strip(&new.body)), (Some(a), Some(b)) if a == b)
}

/// The facts of a stored version, with the terms and directives stored for it.
fn stored(
    unit: &mut Unit<'_>,
    version: &Version,
) -> Result<(Facts, Vec<super::model::Directive>), StoreError> {
    let record = version.patient_id.as_deref();
    let terms = unit.terms(record, &version.resource_type, &version.id)?;
    let directives = unit.directives_of(record, &version.resource_type, &version.id)?;
    let facts = facts(
        &version.resource_type,
        &version.id,
        version.patient_id.clone(),
        version.labels,
        version.writer.clone(),
        terms.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    Ok((facts, directives))
}

/// The facts of a version about to be installed.
fn fresh(new: &NewVersion) -> (Facts, Vec<super::model::Directive>) {
    let AccessRows {
        terms, directives, ..
    } = &new.access;
    let facts = facts(
        &new.resource_type,
        &new.id,
        new.patient_id.clone(),
        new.labels,
        new.writer.clone(),
        terms.iter().map(|(k, v)| (*k, v.as_str())),
    );
    (facts, directives.clone())
}

fn facts<'a>(
    resource_type: &str,
    id: &str,
    patient_id: Option<String>,
    labels: super::model::Labels,
    writer: Option<super::model::Writer>,
    terms: impl Iterator<Item = (&'a str, &'a str)>,
) -> Facts {
    let mut authors = Vec::new();
    let mut classes = Vec::new();
    for (kind, value) in terms {
        match kind {
            "author" => authors.push(value.to_owned()),
            "class" => {
                if let Some((system, code)) = value.split_once('|') {
                    classes.push(Code {
                        system: system.to_owned(),
                        code: code.to_owned(),
                    });
                }
            }
            _ => {}
        }
    }
    Facts {
        resource_type: resource_type.to_owned(),
        id: id.to_owned(),
        patient_id,
        labels,
        writer,
        authors,
        classes,
    }
}

/// A relabelling changes the visibility labels and nothing else (§10's metadata update): anyone
/// who may set those labels may make it. Anything else, a no-op included, replaces the
/// resource.
fn edit_of(old: &Version, new: &NewVersion) -> Edit {
    if old.labels == new.labels {
        return Edit::Replace;
    }
    let strip = |body: &[u8]| -> Option<serde_json::Value> {
        let mut document: serde_json::Value = serde_json::from_slice(body).ok()?;
        let object = document.as_object_mut()?;
        object.remove("securityLabel");
        if let Some(meta) = object.get_mut("meta").and_then(|m| m.as_object_mut()) {
            meta.remove("security");
            meta.remove("versionId");
            meta.remove("lastUpdated");
            if meta.is_empty() {
                object.remove("meta");
            }
        }
        Some(document)
    };
    match (strip(&old.body), strip(&new.body)) {
        (Some(before), Some(after)) if before == after => Edit::Relabel,
        _ => Edit::Replace,
    }
}
