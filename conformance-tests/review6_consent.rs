//! Sixth hostile review of the consent engine, against b6dbccb (only `Patient/`-typed
//! references pin; includes of a multi-type search are not pinned) and 398bd38 (a search naming
//! a patient by identifier finds the one current Patient and reads its record's facts in one
//! statement, `sql::record_facts_by_identifier`). Each test states what the reference policy
//! (`consent::policy::may_read`/`may_list`) gives for a search pinned by identifier, on the
//! edge cases of identifier resolution, for every kind of caller (each rule renders its own
//! facts in the new statement, with its own binds: run on SQLite and on PostgreSQL).
//!
//! No finding: both tests pass on both backends at 398bd38. They stay as regression checks
//! of the one-statement lookup. (A deleted Patient sharing an identifier cannot be made
//! through the API — records are closed, never deleted — and every path, the lookup, the
//! Patient search and the chain, filters `deleted = FALSE` alike.)

use crate::consent::{
    consent, document, guardian_link, id_of, organization, patient, practitioner,
};
use crate::consent::{Rule, INS_NIR};
use crate::inprocess::{bundle_entries, App, Caller};
use serde_json::json;

/// An identifier system that several Patients share a value of, in these tests.
const SHARED: &str = "urn:carnet:test:review6";

/// The entries of a searchset as `mode Type/id`, sorted.
fn entries(app: &App, token: &str, path: &str) -> Vec<String> {
    let reply = app.get_as(token, path);
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
    let mut found: Vec<String> = bundle_entries(&reply.json())
        .into_iter()
        .map(|(key, mode)| format!("{} {key}", mode.unwrap_or_default()))
        .collect();
    found.sort();
    found
}

fn sorted(items: &[String]) -> Vec<String> {
    let mut items = items.to_vec();
    items.sort();
    items
}

/// The world of these tests:
/// - `p`, an adult whose general practitioner `gp` is authorized, holds its NIR, `SHARED|42`
///   twice, and a 300-character `SHARED|long` value;
/// - `o`, an opposed record (`SHARED|43`);
/// - `m`, a minor with a guardian `g` (`SHARED|44`).
///
/// Each record holds one document the feeding system wrote.
struct World {
    app: App,
    gp: String,
    hospital: String,
    long: String,
    p: String,
    p_doc: String,
    o: String,
    m: String,
    m_doc: String,
    g: String,
}

impl World {
    fn new() -> World {
        let app = App::start();
        let provisioning = app.token(&Caller::provisioning());
        let feeder = app.token(&Caller::feeding_system());
        let hospital = id_of(&app.create_as(&provisioning, &organization("750000010")));
        let gp = id_of(&app.create_as(&provisioning, &practitioner("10000000001")));
        let long = format!("L{}", "0123456789".repeat(30));
        let with = |nir: &str, birth: &str, gp: Option<&str>, extra: &[&str]| {
            let mut header = patient(nir, Some(birth), gp);
            for value in extra {
                header["identifier"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"system": SHARED, "value": value}));
            }
            header
        };
        let p = id_of(&app.create_as(
            &provisioning,
            &with(
                "284021234567890",
                "1984-02-29",
                Some(&gp),
                &["42", "42", &long],
            ),
        ));
        let p_doc =
            id_of(&app.create_as(&feeder, &document(&p, "p-report", "11", &[], None, None)));
        let o = id_of(&app.create_as(
            &provisioning,
            &with("184021234567892", "1980-05-05", Some(&gp), &["43"]),
        ));
        app.create_as(&feeder, &document(&o, "o-report", "11", &[], None, None));
        app.create_as(&provisioning, &consent(&o, &Rule::Opposition, (None, None)));
        let m = id_of(&app.create_as(
            &provisioning,
            &with(
                "184021234567893",
                &crate::consent::paris_date(-8, 0),
                Some(&gp),
                &["44"],
            ),
        ));
        let m_doc =
            id_of(&app.create_as(&feeder, &document(&m, "m-report", "11", &[], None, None)));
        let g = id_of(&app.create_as(&provisioning, &guardian_link(&m)));
        World {
            app,
            gp,
            hospital,
            long,
            p,
            p_doc,
            o,
            m,
            m_doc,
            g,
        }
    }
}

/// `Patient?identifier=` and `DocumentReference?patient.identifier=` name `p` by its NIR, by a
/// value `p` holds twice, and by a value over the index key length: each is pinned to `p`, and
/// each must find what the reference policy lets the caller see of `p`'s record.
#[test]
fn an_identifier_names_the_live_patient_for_every_caller() {
    let w = World::new();
    let (p, p_doc) = (&w.p, &w.p_doc);
    let callers: Vec<(&str, Caller, bool, bool)> = vec![
        // (who, caller, sees p's header, sees p's document)
        ("provisioning", Caller::provisioning(), true, false),
        ("feeder", Caller::feeding_system(), true, true),
        (
            "authorized gp",
            Caller::professional(&w.gp, "10", &w.hospital),
            true,
            true,
        ),
        ("holder", Caller::patient(p), true, true),
        ("app", Caller::catalogue_app(p), true, true),
    ];
    let values = [
        format!("{INS_NIR}%7C284021234567890"),
        format!("{SHARED}%7C42"),
        format!("{SHARED}%7C{}", w.long),
    ];
    for (who, caller, header, doc) in &callers {
        let token = w.app.token(caller);
        for value in &values {
            let patients = entries(&w.app, &token, &format!("/Patient?identifier={value}"));
            let expected: Vec<String> = match header {
                true => vec![format!("match Patient/{p}")],
                false => vec![],
            };
            assert_eq!(patients, expected, "{who}: Patient?identifier={value}");
            if *who == "provisioning" {
                continue; // It reads no DocumentReference.
            }
            let docs = entries(
                &w.app,
                &token,
                &format!("/DocumentReference?patient.identifier={value}"),
            );
            let expected: Vec<String> = match doc {
                true => vec![format!("match DocumentReference/{p_doc}")],
                false => vec![],
            };
            assert_eq!(
                docs, expected,
                "{who}: DocumentReference?patient.identifier={value}"
            );
            // The same with the header included and revincluded (single-type, pinned includes).
            let with_header = entries(
                &w.app,
                &token,
                &format!(
                    "/DocumentReference?patient.identifier={value}\
                     &_include=DocumentReference:subject:Patient"
                ),
            );
            let mut expected = expected.clone();
            if *doc && *header {
                expected.push(format!("include Patient/{p}"));
            }
            assert_eq!(
                with_header,
                sorted(&expected),
                "{who}: …&_include=DocumentReference:subject:Patient ({value})"
            );
        }
    }
}

/// The facts each rule reads in the new statement: an opposed record shows nothing to the
/// feeder or a professional, and everything to its holder; a minor's record shows to its
/// guardian (`GUARDED`), and to the authorized gp; a non-authorized professional sees
/// nothing of it. Named by identifier (pinned, facts read with the lookup) and by typed
/// reference (pinned, facts read alone), the results must agree.
#[test]
fn the_facts_read_with_the_lookup_are_the_record_s() {
    let w = World::new();
    let stranger = {
        let provisioning = w.app.token(&Caller::provisioning());
        id_of(&w.app.create_as(&provisioning, &practitioner("10000000009")))
    };
    let callers: Vec<(&str, Caller)> = vec![
        ("feeder", Caller::feeding_system()),
        ("gp", Caller::professional(&w.gp, "10", &w.hospital)),
        (
            "stranger",
            Caller::professional(&stranger, "10", &w.hospital),
        ),
        (
            "stranger in emergency",
            Caller::professional(&stranger, "10", &w.hospital).break_glass("review6"),
        ),
        ("holder o", Caller::patient(&w.o)),
        ("holder m", Caller::patient(&w.m)),
        ("guardian of m", Caller::guardian(&w.g)),
        ("app of m", Caller::catalogue_app(&w.m)),
    ];
    for (who, caller) in &callers {
        let token = w.app.token(caller);
        for (record, value) in [(&w.o, "43"), (&w.m, "44")] {
            let by_reference = entries(
                &w.app,
                &token,
                &format!("/DocumentReference?patient=Patient/{record}"),
            );
            let by_identifier = entries(
                &w.app,
                &token,
                &format!("/DocumentReference?patient.identifier={SHARED}%7C{value}"),
            );
            let header_by_id = entries(&w.app, &token, &format!("/Patient?_id={record}"));
            let header_by_identifier = entries(
                &w.app,
                &token,
                &format!("/Patient?identifier={SHARED}%7C{value}"),
            );
            assert_eq!(
                header_by_identifier, header_by_id,
                "{who}: Patient?identifier={value} vs Patient?_id={record}"
            );
            // The chain also needs the header listed (through_header): it finds what the
            // typed reference finds, or nothing where the header is not listed.
            assert!(
                by_identifier.iter().all(|e| by_reference.contains(e)),
                "{who}: patient.identifier={value} found more than patient=Patient/{record}: \
                 {by_identifier:?} vs {by_reference:?}"
            );
            if !by_reference.is_empty() && !header_by_id.is_empty() {
                assert_eq!(by_identifier, by_reference, "{who}: {value}");
            }
        }
        if *who == "guardian of m" {
            let docs = entries(
                &w.app,
                &token,
                &format!("/DocumentReference?patient.identifier={SHARED}%7C44"),
            );
            assert_eq!(
                docs,
                [format!("match DocumentReference/{}", w.m_doc)],
                "{who}"
            );
        }
    }
}
