//! Fifth hostile review of the consent engine, against 3513c5b (searches naming one record are
//! pinned to it, `r.patient_id = X`, with the record's facts read once). The commit claims the
//! pinning "changes no result"; each test here compares a pinned search with what the same
//! rows give unpinned (the rendering of 3513c5b^), so it fails while the difference is there.

use crate::consent::{guardian_link, id_of, patient};
use crate::inprocess::{bundle_entries, App, Caller};
use serde_json::json;

/// An identifier system shared, in these tests, by a Patient and a resource of another type.
const SHARED: &str = "urn:carnet:test:shared";

/// `Type/id` of the entries of a searchset whose `search.mode` is `mode`.
fn with_mode(body: &serde_json::Value, mode: &str) -> Vec<String> {
    bundle_entries(body)
        .into_iter()
        .filter(|(_, m)| m.as_deref() == Some(mode))
        .map(|(key, _)| key)
        .collect()
}

/// A system-level search runs one search per type; the first (by type name) decides the
/// restriction the includes run under. When that first search is pinned (here
/// `Patient?identifier=` resolved to one Patient `p`), an `_include` through the record
/// reference from the matches of *another* type's search is pinned to `p`'s record too, so a
/// Patient those matches point to in another record is dropped. Unpinned (3513c5b^, or the
/// same search of one type), it is included: the provisioning client reads every header.
#[test]
fn a_system_search_includes_through_the_record_reference_of_every_type_s_matches() {
    let app = App::start();
    let provisioning = app.token(&Caller::provisioning());
    let mut header = patient("284021234567890", Some("1984-02-29"), None);
    header["identifier"]
        .as_array_mut()
        .unwrap()
        .push(json!({"system": SHARED, "value": "42"}));
    let p = id_of(&app.create_as(&provisioning, &header));
    let y = id_of(&app.create_as(
        &provisioning,
        &patient("184021234567891", Some("2015-06-01"), None),
    ));
    // A RelatedPerson of record y carrying the identifier p's header has.
    let mut link = guardian_link(&y);
    link["identifier"] = json!([{"system": SHARED, "value": "42"}]);
    let r = id_of(&app.create_as(&provisioning, &link));

    // One type, unpinned (an identifier on RelatedPerson names no record): y is included.
    let one = app.get_as(
        &provisioning,
        &format!("/RelatedPerson?identifier={SHARED}%7C42&_include=RelatedPerson:patient"),
    );
    assert_eq!(one.status, 200, "{}", one.body);
    let one = one.json();
    assert_eq!(with_mode(&one, "match"), [format!("RelatedPerson/{r}")]);
    assert_eq!(with_mode(&one, "include"), [format!("Patient/{y}")]);

    // The same, over two types: Patient (first by name, pinned to p) and RelatedPerson.
    let both = app.get_as(
        &provisioning,
        &format!(
            "/?_type=Patient,RelatedPerson&identifier={SHARED}%7C42\
             &_include=RelatedPerson:patient"
        ),
    );
    assert_eq!(both.status, 200, "{}", both.body);
    let both = both.json();
    let mut matches = with_mode(&both, "match");
    matches.sort();
    assert_eq!(
        matches,
        [format!("Patient/{p}"), format!("RelatedPerson/{r}")]
    );
    assert_eq!(
        with_mode(&both, "include"),
        [format!("Patient/{y}")],
        "RelatedPerson/{r}'s patient is dropped from the includes: they were pinned to the \
         record of the first type's search (Patient/{p}): {both}"
    );
}

/// `patient` of AllergyIntolerance, RelatedPerson and Consent may point only to a Patient, so
/// a bare id names one (`record::record_reference`: "only_patients"). But nothing checks a
/// stored reference's type, and a bare id matches the index on the id alone: before the pin,
/// `AllergyIntolerance?patient=g1` found an allergy whose `patient` is `Group/g1` (in no
/// record, visible to its writer). Pinned to the record `g1`, it is gone.
#[test]
fn a_bare_patient_id_still_finds_what_it_found_before_the_pin() {
    let app = App::start();
    let feeder = app.token(&Caller::feeding_system());
    let allergy = json!({
        "resourceType": "AllergyIntolerance",
        "code": {"text": "penicillin"},
        "patient": {"reference": "Group/g1"},
    });
    let created = app.send_as(&feeder, "POST", "/AllergyIntolerance", &allergy, &[]);
    assert_eq!(created.status, 201, "{}", created.body);
    let id = id_of(&created.json());
    // Its writer reads it, and finds it by the reference as written.
    let read = app.get_as(&feeder, &format!("/AllergyIntolerance/{id}"));
    assert_eq!(read.status, 200, "{}", read.body);
    let typed = app.get_as(&feeder, "/AllergyIntolerance?patient=Group/g1");
    assert_eq!(typed.status, 200, "{}", typed.body);
    // (A typed `Group/` value is not pinned; the bare id is.)
    let bare = app.get_as(&feeder, "/AllergyIntolerance?patient=g1");
    assert_eq!(bare.status, 200, "{}", bare.body);
    let bare = bare.json();
    let unpinned = app.get_as(&feeder, "/AllergyIntolerance?patient:missing=false");
    assert_eq!(unpinned.status, 200, "{}", unpinned.body);
    assert_eq!(
        with_mode(&unpinned.json(), "match"),
        [format!("AllergyIntolerance/{id}")]
    );
    assert_eq!(
        with_mode(&bare, "match"),
        [format!("AllergyIntolerance/{id}")],
        "`patient=g1` matched AllergyIntolerance/{id} (its patient is Group/g1) before the \
         pin; pinned to the record g1 it is gone: {bare}"
    );
}
