//! Searches that name one patient's record: `DocumentReference?patient=Patient/…`,
//! `…?patient.identifier=system|value`, `Patient?_id=…`, `Patient?identifier=system|value`,
//! and the compartment searches `Patient/{id}/{type}` (of which `$everything` is made). Such a
//! search is pinned to that record (`resources.patient_id`), so that the record's facts are
//! asked once, of the pinned id, rather than per row (see `consent::InRecord`), and, sharded
//! by patient, the query runs on one shard (docs/scale-out.md).
//!
//! Pinning a search by a parameter changes no result: a record's patient id is the first
//! Patient reference found along the compartment's paths in order
//! (`fhir::resource::compartment_patient`); the parameters pinned here are over the first
//! path, a single reference, so a resource whose `patient` (or `subject` to a Patient) is
//! `Patient/X` is in record X.
//!
//! *Decision*: a compartment search is the record. FHIR puts in `Patient/X`'s compartment
//! every resource naming X along any of its paths, including one filed in another record
//! that names X further down (an AllergyIntolerance of Y that X asserted). In Carnet such a
//! resource belongs to Y's record, is governed by Y's choices, and is found there; X's
//! compartment searches and `$everything` return X's record. For the patient, a guardian or
//! an app, who read one record only, nothing changes. `Patient/X/Patient` is not pinned: it
//! also lists the records linked to X's as the same person.

use super::query::{Criterion, Include, ReferenceMatch, Search, SystemMatch, Test};
use crate::fhir::registry;

/// How a search names the record it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Named {
    /// By the patient's id.
    Id(String),
    /// By one of the patient's identifiers (`system|value`); `chained`: through a chain on
    /// the search's reference to the patient (`patient.identifier=`), else on Patient itself.
    Identifier {
        system: String,
        value: String,
        chained: bool,
    },
}

/// The first criterion of `search` that names one patient's record, and its position.
pub fn named(search: &Search) -> Option<(usize, Named)> {
    search
        .criteria
        .iter()
        .enumerate()
        .find_map(|(i, criterion)| naming(&search.resource_type, criterion).map(|n| (i, n)))
}

/// `search` with its criterion at `index` (a chain naming the patient by identifier) replaced by
/// a reference to `patient_id`, the one current Patient with that identifier.
pub fn by_id(mut search: Search, index: usize, patient_id: &str) -> Search {
    if let Some(criterion) = search.criteria.get_mut(index) {
        if matches!(criterion.test, Test::Chain(_)) {
            criterion.test = Test::Reference(vec![ReferenceMatch::Local {
                target_type: Some("Patient".to_owned()),
                id: patient_id.to_owned(),
            }]);
        }
    }
    search
}

/// Whether what `include` adds to matches of `from_type` in one record stays in that record:
/// through the reference the record is taken from, to the Patient (`_include`) or from it
/// (`_revinclude`).
pub fn stays_in_record(include: &Include, from_type: &str) -> bool {
    let through_record = record_reference(&include.source_type, &include.param);
    match include.reverse {
        true => through_record && from_type == "Patient",
        false => through_record && include.target_types == ["Patient"],
    }
}

fn naming(resource_type: &str, criterion: &Criterion) -> Option<Named> {
    let key = criterion.key.as_str();
    if key == super::query::COMPARTMENT {
        // On Patient the compartment also holds the other records linked to this one as the
        // same person (`Patient.link`): not one record.
        return match resource_type {
            "Patient" => None,
            _ => compartment_patient(criterion).map(Named::Id),
        };
    }
    if resource_type == "Patient" {
        return match (key, &criterion.test) {
            ("_id", Test::Id(ids)) if ids.len() == 1 => Some(Named::Id(ids[0].clone())),
            ("identifier", test) => identifier(test, false),
            _ => None,
        };
    }
    if !record_reference(resource_type, key) {
        return None;
    }
    match &criterion.test {
        // Typed: a bare id also matches a reference to another type with that id (the index
        // keeps what was written, `Group/g1` under `patient` included), which no record holds.
        Test::Reference(references) => match references.as_slice() {
            [ReferenceMatch::Local {
                target_type: Some(target),
                id,
            }] if target == "Patient" => Some(Named::Id(id.clone())),
            _ => None,
        },
        Test::Chain(targets) => match targets.as_slice() {
            [(target, inner)] if target == "Patient" && inner.key == "identifier" => {
                identifier(&inner.test, true)
            }
            _ => None,
        },
        _ => None,
    }
}

/// The patient of a compartment criterion (`query::patient_compartment`): every alternative
/// names the same one.
fn compartment_patient(criterion: &Criterion) -> Option<String> {
    let Test::AnyOf(alternatives) = &criterion.test else {
        return None;
    };
    let mut patients = alternatives.iter().map(|c| match &c.test {
        Test::Reference(references) => match references.as_slice() {
            [ReferenceMatch::Local {
                target_type: Some(target),
                id,
            }] if target == "Patient" => Some(id.clone()),
            _ => None,
        },
        Test::Id(ids) if c.key == "_id" && ids.len() == 1 => Some(ids[0].clone()),
        _ => None,
    });
    let first = patients.next()??;
    patients
        .all(|p| p.as_deref() == Some(first.as_str()))
        .then_some(first)
}

/// One `system|value` identifier, not negated.
fn identifier(test: &Test, chained: bool) -> Option<Named> {
    match test {
        Test::Token {
            negate: false,
            values,
        } => match values.as_slice() {
            [value] => match (&value.system, &value.code) {
                (SystemMatch::Is(system), Some(code)) => Some(Named::Identifier {
                    system: system.clone(),
                    value: code.clone(),
                    chained,
                }),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// Whether the reference parameter `key` of `resource_type` is the element a record's patient
/// id is taken from (the first path of the patient compartment), to a Patient. Only a
/// top-level element: those are single references in R4 (the test below lists them), where
/// one deeper (`participant.actor`) may name several patients, of which the record is the
/// first's.
fn record_reference(resource_type: &str, key: &str) -> bool {
    let Some(first) = registry::lookup(resource_type).and_then(|k| k.compartment.first()) else {
        return false;
    };
    let Some(param) = super::registry::lookup(resource_type, key) else {
        return false;
    };
    match param.paths.as_slice() {
        [path] => {
            !first.contains('.')
                && path.steps == [*first]
                && matches!(path.only_target.as_deref(), None | Some("Patient"))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::query;
    use super::*;

    fn named_in(resource_type: &str, query: &str) -> Option<Named> {
        let params: Vec<(String, String)> = query
            .split('&')
            .map(|pair| pair.split_once('=').unwrap())
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let search = super::super::query::parse(resource_type, &params, true, 20, 100).unwrap();
        named(&search).map(|(_, named)| named)
    }

    /// Only a search that names one record by its own reference, or by one identifier with
    /// its system, is pinned.
    #[test]
    fn a_search_is_pinned_only_where_it_names_one_record() {
        let id = |id: &str| Some(Named::Id(id.to_owned()));
        let ins = |chained| {
            Some(Named::Identifier {
                system: "urn:oid:1.2.250.1.213.1.4.8".to_owned(),
                value: "1800".to_owned(),
                chained,
            })
        };
        let cases = [
            (
                "DocumentReference",
                "patient=Patient/p1&status=current",
                id("p1"),
            ),
            ("DocumentReference", "patient=p1", None),
            (
                "DocumentReference",
                "status=current&patient=Patient/p1",
                id("p1"),
            ),
            ("DocumentReference", "subject=Patient/p1", id("p1")),
            ("DocumentReference", "subject=p1", None),
            ("DocumentReference", "subject=Device/p1", None),
            ("DocumentReference", "patient=p1,p2", None),
            ("DocumentReference", "patient:missing=false", None),
            (
                "DocumentReference",
                "patient.identifier=urn:oid:1.2.250.1.213.1.4.8|1800",
                ins(true),
            ),
            ("DocumentReference", "patient.identifier=1800", None),
            ("DocumentReference", "author=Patient/p1", None),
            ("Appointment", "patient=p1", None),
            ("Patient", "_id=p1", id("p1")),
            ("Patient", "_id=p1,p2", None),
            (
                "Patient",
                "identifier=urn:oid:1.2.250.1.213.1.4.8|1800",
                ins(false),
            ),
            (
                "Patient",
                "identifier:not=urn:oid:1.2.250.1.213.1.4.8|1800",
                None,
            ),
            ("Patient", "name=Martin", None),
        ];
        for (resource_type, query, expected) in cases {
            assert_eq!(
                named_in(resource_type, query),
                expected,
                "{resource_type}?{query}"
            );
        }
        // Compartment searches (and `$everything`) are the record, except on Patient.
        for (resource_type, expected) in [
            ("DocumentReference", id("p1")),
            ("AllergyIntolerance", id("p1")),
            ("Appointment", id("p1")),
            ("Patient", None),
        ] {
            let mut search = query::parse(resource_type, &[], true, 20, 100).unwrap();
            search
                .criteria
                .push(query::patient_compartment(resource_type, "p1").unwrap());
            assert_eq!(
                named(&search).map(|(_, n)| n),
                expected,
                "Patient/p1/{resource_type}"
            );
        }
    }

    /// The parameters that pin a search: exactly those over the compartment's first path.
    #[test]
    fn the_record_references_are_the_compartment_s_first_paths() {
        let mut found: Vec<(&str, String)> = Vec::new();
        for kind in registry::all() {
            for param in super::super::registry::params_of(kind.name) {
                if record_reference(kind.name, &param.code) {
                    found.push((kind.name, param.code.clone()));
                }
            }
        }
        found.sort();
        let expected: Vec<(&str, String)> = vec![
            ("AllergyIntolerance", "patient".into()),
            ("Communication", "patient".into()),
            ("Communication", "subject".into()),
            ("Consent", "patient".into()),
            ("DocumentReference", "patient".into()),
            ("DocumentReference", "subject".into()),
            ("List", "patient".into()),
            ("List", "subject".into()),
            ("RelatedPerson", "patient".into()),
        ];
        assert_eq!(found, expected);
    }
}
