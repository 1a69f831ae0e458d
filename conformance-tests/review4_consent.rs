//! Fourth hostile review of the consent engine, against bdd4181 (the fixes of the third
//! review: List entries, deleted documents' versions, revival, conditional references). Each
//! test asserts what `shared/carnet-domain.md` asks, so it fails while the hole it is named
//! after is open.

use crate::consent::{
    consent, document, id_of, organization, patient, practitioner, set_labels, Rule, DOCUMENT_ID,
    INS_NIR,
};
use crate::inprocess::{App, Caller};
use serde_json::{json, Value};

/// A record `p` whose general practitioner `gp` (authorized, §4) works at `hospital`.
struct Record {
    app: App,
    hospital: String,
    gp: String,
    p: String,
}

impl Record {
    fn new() -> Record {
        let app = App::start();
        let provisioning = app.token(&Caller::provisioning());
        let hospital = id_of(&app.create_as(&provisioning, &organization("750000010")));
        let gp = id_of(&app.create_as(&provisioning, &practitioner("10000000001")));
        let p = id_of(&app.create_as(
            &provisioning,
            &patient("284021234567890", Some("1984-02-29"), Some(&gp)),
        ));
        Record {
            app,
            hospital,
            gp,
            p,
        }
    }

    fn token(&self, caller: &Caller) -> String {
        self.app.token(caller)
    }
}

/// An IHE MHD SubmissionSet of `patient` listing `entries` (List entries as given).
fn submission_set(patient: &str, entries: Vec<Value>) -> Value {
    json!({
        "resourceType": "List",
        "identifier": [{"system": "urn:carnet:test:submission", "value": "set-1"}],
        "status": "current",
        "mode": "working",
        "code": {"coding": [{"system": "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes",
            "code": "submissionset"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "entry": entries,
    })
}

/// The lab files a report marked `INVISIBLE_PATIENT` in `p`'s record; its id.
fn unannounced_report(record: &Record) -> String {
    let feeder = record.token(&Caller::feeding_system());
    let mut report = document(
        &record.p,
        "oncology",
        "11",
        &["INVISIBLE_PATIENT"],
        None,
        None,
    );
    report["description"] = json!("biopsy: malignant");
    let hidden = id_of(&record.app.create_as(&feeder, &report));
    let holder = record.token(&Caller::patient(&record.p));
    let read = record.app.request_as(
        &holder,
        "GET",
        &format!("/DocumentReference/{hidden}"),
        &[],
        None,
    );
    assert_eq!(read.status, 404, "the report is hidden: {}", read.body);
    hidden
}

/// §3: "A hidden document is absent everywhere: ... List entries". bdd4181 takes hidden
/// entries out of a List in read, vread, history, search and includes, but a conditional
/// create's answer is not one of them: the patient POSTs any List with `If-None-Exist:
/// _id={the lab's SubmissionSet}`, which matches (the patient may read the List), and the
/// server answers 200 with the stored List as is, entry naming the unannounced report
/// included (`Created::Existing` is never redacted).
#[test]
fn a_conditional_create_s_answer_shows_no_hidden_list_entry() {
    let record = Record::new();
    let app = &record.app;
    let hidden = unannounced_report(&record);
    let feeder = record.token(&Caller::feeding_system());
    let entry = json!({"item": {"reference": format!("DocumentReference/{hidden}")}});
    let list = id_of(&app.create_as(&feeder, &submission_set(&record.p, vec![entry])));
    let holder = record.token(&Caller::patient(&record.p));
    let read = app.request_as(&holder, "GET", &format!("/List/{list}"), &[], None);
    assert_eq!(read.status, 200, "{}", read.body);
    assert!(!read.body.contains(&hidden), "the read is redacted");
    let mut probe = submission_set(&record.p, vec![]);
    probe.as_object_mut().unwrap().remove("entry");
    let reply = app.send_as(
        &holder,
        "POST",
        "/List",
        &probe,
        &[
            ("If-None-Exist", &format!("_id={list}")),
            ("Prefer", "return=representation"),
        ],
    );
    assert!(
        !reply.body.contains(&hidden),
        "If-None-Exist answered the lab's List with the hidden entry: {} {}",
        reply.status,
        reply.body
    );
}

/// §3: `MASQUE_PS` hides a document from "every professional except the document's author";
/// a hidden document is absent from List entries. The patient masks a lab report from their
/// GP. The lab's SubmissionSet names the GP as its source (`List.source`, an author element),
/// so the GP may patch the List; the GP's read of the List is redacted, but a JSON Patch of
/// its title answers the whole stored List, entry naming the masked report included: the
/// PATCH path reads the current version unredacted and `written` never redacts (its `test`
/// operations probe the hidden entries likewise).
#[test]
fn a_patch_s_answer_shows_no_hidden_list_entry() {
    let record = Record::new();
    let app = &record.app;
    let feeder = record.token(&Caller::feeding_system());
    let masked = id_of(&app.create_as(
        &feeder,
        &document(&record.p, "psychiatry", "11", &[], None, None),
    ));
    let path = format!("/DocumentReference/{masked}");
    let holder = record.token(&Caller::patient(&record.p));
    let mut body = app.request_as(&holder, "GET", &path, &[], None).json();
    set_labels(&mut body, &["MASQUE_PS"]);
    let relabel = app.send_as(&holder, "PUT", &path, &body, &[]);
    assert_eq!(
        relabel.status, 200,
        "the patient masks it: {}",
        relabel.body
    );
    let gp = record.token(&Caller::professional(&record.gp, "10", &record.hospital));
    assert_eq!(app.request_as(&gp, "GET", &path, &[], None).status, 404);
    let mut set = submission_set(
        &record.p,
        vec![json!({"item": {"reference": format!("DocumentReference/{masked}")}})],
    );
    set["source"] = json!({"reference": format!("Practitioner/{}", record.gp)});
    let list = id_of(&app.create_as(&feeder, &set));
    let list_path = format!("/List/{list}");
    let read = app.request_as(&gp, "GET", &list_path, &[], None);
    assert_eq!(read.status, 200, "the GP reads the List: {}", read.body);
    assert!(!read.body.contains(&masked), "the read is redacted");
    let reply = app.request_as(
        &gp,
        "PATCH",
        &list_path,
        &[
            ("Content-Type", "application/json-patch+json"),
            ("Prefer", "return=representation"),
        ],
        Some(br#"[{"op": "add", "path": "/title", "value": "reviewed"}]"#),
    );
    assert!(
        !reply.body.contains(&masked),
        "the PATCH answer names the masked document: {} {}",
        reply.status,
        reply.body
    );
}

/// §3: a hidden document is absent from "List entries" (and from `_include`, chained and
/// `_has` parameters). `Reader::redact_list` only takes out entries whose `item.reference`
/// names a local resource: an entry naming the unannounced report by its business identifier
/// (`item.identifier`, a FHIR logical reference, with its `display`) stays, and tells the
/// patient what the report is.
#[test]
fn a_hidden_document_named_by_identifier_is_absent_from_list_entries() {
    let record = Record::new();
    let app = &record.app;
    let hidden = unannounced_report(&record);
    let feeder = record.token(&Caller::feeding_system());
    let entry = json!({"item": {
        "type": "DocumentReference",
        "identifier": {"system": DOCUMENT_ID, "value": "oncology"},
        "display": "Oncology: biopsy result",
    }});
    let list = id_of(&app.create_as(&feeder, &submission_set(&record.p, vec![entry])));
    let holder = record.token(&Caller::patient(&record.p));
    let reply = app.request_as(&holder, "GET", &format!("/List/{list}"), &[], None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        !reply.body.contains("oncology") && !reply.body.contains("biopsy"),
        "the List names the hidden document {hidden} by its identifier: {}",
        reply.body
    );
}

/// §3: a hidden document is absent from "search results, `_total`, ... chained and `_has`
/// parameters ... List entries". The List's entry is redacted from the answer, but the search
/// index still holds it: `List?item=DocumentReference/{hidden}` finds the List, so a search
/// tells whether a hidden document exists and is listed (and which List lists it).
#[test]
fn a_list_is_not_found_by_a_hidden_entry() {
    let record = Record::new();
    let app = &record.app;
    let hidden = unannounced_report(&record);
    let feeder = record.token(&Caller::feeding_system());
    let entry = json!({"item": {"reference": format!("DocumentReference/{hidden}")}});
    app.create_as(&feeder, &submission_set(&record.p, vec![entry]));
    let holder = record.token(&Caller::patient(&record.p));
    let reply = app.request_as(
        &holder,
        "GET",
        &format!("/List?item=DocumentReference/{hidden}"),
        &[],
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json()["total"],
        0,
        "a search by the hidden document found its List: {}",
        reply.body
    );
}

/// §2: an opposed record — "every feed is refused"; §10: feeds name the subject by INS.
/// bdd4181 refuses a conditional reference (`Patient?identifier=…`) outside a transaction,
/// but not the other ways of naming the person that resolve to no local Patient: a logical
/// reference (`subject.identifier` = the INS, no `reference`, valid FHIR R4 and common in
/// MHD feeds), a `urn:uuid:` reference outside a Bundle, or a contained Patient carrying the
/// INS (`#pat`). Each is accepted (201) and stored outside any record, where the opposition
/// is not consulted (and the holder never sees it).
#[test]
fn a_feed_naming_an_opposed_record_by_ins_without_a_reference_is_refused() {
    let record = Record::new();
    let app = &record.app;
    let provisioning = record.token(&Caller::provisioning());
    app.create_as(
        &provisioning,
        &consent(&record.p, &Rule::Opposition, (None, None)),
    );
    let feeder = record.token(&Caller::feeding_system());
    let direct = app.send_as(
        &feeder,
        "POST",
        "/DocumentReference",
        &document(&record.p, "direct", "11", &[], None, None),
        &[],
    );
    assert_eq!(direct.status, 403, "{}", direct.body);
    let subjects = [
        (
            "by-identifier",
            json!({"type": "Patient", "identifier": {"system": INS_NIR, "value": "284021234567890"}}),
        ),
        (
            "by-urn",
            json!({"reference": "urn:uuid:9d3c2f5e-8f43-4b59-9a8e-6f0d3c1b2a11",
                "identifier": {"system": INS_NIR, "value": "284021234567890"}}),
        ),
        ("by-contained", json!({"reference": "#pat"})),
    ];
    let mut accepted = Vec::new();
    for (name, subject) in subjects {
        let mut feed = document(&record.p, name, "11", &[], None, None);
        feed["subject"] = subject;
        if name == "by-contained" {
            feed["contained"] = json!([{"resourceType": "Patient", "id": "pat",
                "identifier": [{"system": INS_NIR, "value": "284021234567890"}]}]);
        }
        let reply = app.send_as(&feeder, "POST", "/DocumentReference", &feed, &[]);
        if !(400..500).contains(&reply.status) {
            accepted.push(format!("{name}: {}", reply.status));
        }
    }
    assert!(
        accepted.is_empty(),
        "feeds naming the opposed record by its INS were accepted: {accepted:?}"
    );
}

/// §3: a hidden document is absent from "List entries"; §5: only its author replaces a
/// List. The patient may not write the lab's SubmissionSet, yet a JSON Patch of it runs on
/// the stored, unredacted List before the write is judged: `copy` from
/// `/entry/0/item/reference` into `/date` fails validation with a 422 that quotes the value,
/// the hidden report's id; and removing `/entry/0` (403, forbidden) answers unlike removing
/// `/entry/1` (422, no such path), so the patient counts entries their read does not show.
#[test]
fn a_refused_patch_shows_no_hidden_list_entry() {
    let record = Record::new();
    let app = &record.app;
    let hidden = unannounced_report(&record);
    let feeder = record.token(&Caller::feeding_system());
    let entry = json!({"item": {"reference": format!("DocumentReference/{hidden}")}});
    let list = id_of(&app.create_as(&feeder, &submission_set(&record.p, vec![entry])));
    let path = format!("/List/{list}");
    let holder = record.token(&Caller::patient(&record.p));
    let read = app.request_as(&holder, "GET", &path, &[], None);
    assert_eq!(read.status, 200, "{}", read.body);
    assert!(!read.body.contains(&hidden), "the read is redacted");
    let patch = |ops: &str| {
        app.request_as(
            &holder,
            "PATCH",
            &path,
            &[("Content-Type", "application/json-patch+json")],
            Some(ops.as_bytes()),
        )
    };
    let copied = patch(r#"[{"op": "copy", "from": "/entry/0/item/reference", "path": "/date"}]"#);
    assert!(
        !copied.body.contains(&hidden),
        "a refused PATCH quoted the hidden entry: {} {}",
        copied.status,
        copied.body
    );
    let first = patch(r#"[{"op": "remove", "path": "/entry/0"}]"#);
    let second = patch(r#"[{"op": "remove", "path": "/entry/1"}]"#);
    assert_eq!(
        first.status, second.status,
        "a PATCH tells a hidden entry from none: {} / {}",
        first.body, second.body
    );
}

/// "No panic, no 500 for anything a client can send": a patch that turns a List with entries
/// its caller may not see into something that is not a List is refused (4xx) like any other
/// invalid patch, and changes nothing.
#[test]
fn a_patch_that_unmakes_a_list_with_hidden_entries_is_refused() {
    let record = Record::new();
    let app = &record.app;
    let hidden = unannounced_report(&record);
    let feeder = record.token(&Caller::feeding_system());
    let entry = json!({"item": {"reference": format!("DocumentReference/{hidden}")}});
    let list = id_of(&app.create_as(&feeder, &submission_set(&record.p, vec![entry])));
    let path = format!("/List/{list}");
    let holder = record.token(&Caller::patient(&record.p));
    for ops in [
        r#"[{"op": "replace", "path": "", "value": 5}]"#,
        r#"[{"op": "replace", "path": "", "value": null}]"#,
        r#"[{"op": "add", "path": "/entry", "value": "x"}]"#,
    ] {
        let reply = app.request_as(
            &holder,
            "PATCH",
            &path,
            &[("Content-Type", "application/json-patch+json")],
            Some(ops.as_bytes()),
        );
        assert!(
            (400..500).contains(&reply.status),
            "{ops}: {} {}",
            reply.status,
            reply.body
        );
        assert!(!reply.body.contains(&hidden), "{ops}: {}", reply.body);
    }
    let stored = app.request_as(&feeder, "GET", &path, &[], None);
    assert!(stored.body.contains(&hidden), "{}", stored.body);
}
