//! Third hostile review of the consent engine, against d470e28 (record headers in listings,
//! guardianship periods). Each test asserts what `shared/carnet-domain.md` asks, so it fails
//! while the hole it is named after is open.

use crate::consent::{
    document, guardian_link, id_of, organization, patient, practitioner, DOCUMENT_ID,
};
use crate::inprocess::{App, Caller};
use serde_json::json;

/// A certified catalogue app that may write (`patient/*.cruds`), besides the read-only
/// `test-app`.
const WRITING_APP: &str = r#"
[[clients]]
client_id = "writer-app"
kind = "app"
scopes = "patient/*.cruds"
"#;

/// Two records `a` and `b` (no general practitioner), and a practitioner `p2` working at
/// a hospital who is authorized on neither.
struct Two {
    app: App,
    hospital: String,
    p2: String,
    a: String,
    b: String,
}

impl Two {
    fn new(app: App) -> Two {
        let provisioning = app.token(&Caller::provisioning());
        let hospital = id_of(&app.create_as(&provisioning, &organization("750000010")));
        let p2 = id_of(&app.create_as(&provisioning, &practitioner("10000000002")));
        let a = id_of(&app.create_as(
            &provisioning,
            &patient("284021234567890", Some("1984-02-29"), None),
        ));
        let b = id_of(&app.create_as(
            &provisioning,
            &patient("190017512345678", Some("1990-01-01"), None),
        ));
        Two {
            app,
            hospital,
            p2,
            a,
            b,
        }
    }

    fn token(&self, caller: &Caller) -> String {
        self.app.token(caller)
    }
}

fn binary_upload(app: &App, token: &str, bytes: &[u8]) -> String {
    let reply = app.request_as(
        token,
        "POST",
        "/Binary",
        &[("Content-Type", "application/pdf")],
        Some(bytes),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    crate::consent::created_id(&reply)
}

/// §5 (catalogue app: "within its scopes", its launch patient only), §3 ("its Binary"): a
/// catalogue app is one client for all its users, so the writer key of what it writes
/// (`Writer::App(client_id)`) is shared by every patient who launches it. A Binary the app
/// uploaded while launched for A (outside any record, a document's bytes) is read back by
/// the same app launched for B: B's token reads A's bytes.
#[test]
fn an_app_launched_for_one_patient_does_not_read_what_it_wrote_for_another() {
    let two = Two::new(App::start_configured(WRITING_APP));
    let app = &two.app;
    let for_a = two.token(
        &Caller::catalogue_app(&two.a)
            .client("writer-app")
            .scope("patient/*.cruds"),
    );
    let for_b = two.token(
        &Caller::catalogue_app(&two.b)
            .client("writer-app")
            .scope("patient/*.cruds"),
    );
    let binary = binary_upload(app, &for_a, b"%PDF-1.4 A's blood test");
    assert_eq!(
        app.request_as(&for_a, "GET", &format!("/Binary/{binary}"), &[], None)
            .status,
        200,
        "the app launched for A reads A's upload"
    );
    let reply = app.request_as(&for_b, "GET", &format!("/Binary/{binary}"), &[], None);
    assert_eq!(
        reply.status, 404,
        "the app launched for B reads the Binary it uploaded for A: {}",
        reply.body
    );
    let listed = app.request_as(&for_b, "GET", "/Binary", &[], None);
    assert!(
        !listed.body.contains(&binary),
        "the app launched for B lists A's Binary: {}",
        listed.body
    );
}

/// §10 "Logical deletion hides the document, its versions and its Binary for good": after
/// the lab deletes its document, the document's earlier versions are still served to the
/// patient (and to anyone who saw it) by vread and instance history.
#[test]
fn a_deleted_document_s_versions_are_hidden_for_good() {
    let two = Two::new(App::start());
    let app = &two.app;
    let feeder = two.token(&Caller::feeding_system());
    let mut body = document(&two.a, "deleted-report", "11", &[], None, None);
    body["description"] = json!("retracted: wrong patient");
    let id = id_of(&app.create_as(&feeder, &body));
    let path = format!("/DocumentReference/{id}");
    assert_eq!(
        app.request_as(&feeder, "DELETE", &path, &[], None).status,
        204
    );
    let holder = two.token(&Caller::patient(&two.a));
    for who in [&holder, &feeder] {
        let vread = app.request_as(who, "GET", &format!("{path}/_history/1"), &[], None);
        assert!(
            !vread.body.contains("retracted"),
            "vread of a deleted document's first version: {} {}",
            vread.status,
            vread.body
        );
        let history = app.request_as(who, "GET", &format!("{path}/_history"), &[], None);
        assert!(
            !history.body.contains("retracted"),
            "history of a deleted document: {} {}",
            history.status,
            history.body
        );
    }
}

/// §5 (read/search by an "other professional": no) and the reference policy ("what they wrote
/// themselves gives no read ... the write's answer is not a read"): a lab feeds a document
/// naming `p2` its author; `p2`, not authorized on the record, may not read it (404). A
/// conditional create (`If-None-Exist` on the document's identifier) matches it through the
/// write lookup that lets an author replace or delete, and answers 200 with the lab's whole
/// document.
#[test]
fn an_unauthorized_author_does_not_read_a_document_through_if_none_exist() {
    let two = Two::new(App::start());
    let app = &two.app;
    let feeder = two.token(&Caller::feeding_system());
    let mut body = document(&two.a, "lab-hiv", "11", &[], Some(&two.p2), None);
    body["description"] = json!("HIV serology: positive");
    let id = id_of(&app.create_as(&feeder, &body));
    let p2 = two.token(&Caller::professional(&two.p2, "10", &two.hospital));
    let read = app.request_as(&p2, "GET", &format!("/DocumentReference/{id}"), &[], None);
    assert_eq!(read.status, 404, "p2 may not read it: {}", read.body);
    let mut probe = document(&two.a, "lab-hiv", "11", &[], Some(&two.p2), None);
    probe["description"] = json!("probe");
    let criteria = format!("identifier={DOCUMENT_ID}|lab-hiv");
    let reply = app.send_as(
        &p2,
        "POST",
        "/DocumentReference",
        &probe,
        &[("If-None-Exist", &criteria)],
    );
    assert!(
        !reply.body.contains("positive"),
        "If-None-Exist answered the hidden document: {} {}",
        reply.status,
        reply.body
    );
}

/// Same hole through PATCH: an empty JSON Patch (a no-op replacement, which an author may
/// make) answers the whole current document, which the author may not read.
#[test]
fn an_unauthorized_author_does_not_read_a_document_through_an_empty_patch() {
    let two = Two::new(App::start());
    let app = &two.app;
    let feeder = two.token(&Caller::feeding_system());
    let mut body = document(&two.a, "lab-hiv", "11", &[], Some(&two.p2), None);
    body["description"] = json!("HIV serology: positive");
    let id = id_of(&app.create_as(&feeder, &body));
    let p2 = two.token(&Caller::professional(&two.p2, "10", &two.hospital));
    let path = format!("/DocumentReference/{id}");
    assert_eq!(app.request_as(&p2, "GET", &path, &[], None).status, 404);
    let reply = app.request_as(
        &p2,
        "PATCH",
        &path,
        &[("Content-Type", "application/json-patch+json")],
        Some(b"[]"),
    );
    assert!(
        !reply.body.contains("positive"),
        "an empty patch answered the hidden document: {} {}",
        reply.status,
        reply.body
    );
}

/// §3 (`MASQUE_PS` is set by the patient and hides the document from every professional but
/// its author), §5 ("change visibility labels": `MASQUE_PS` by the patient or guardian only;
/// a feeding system only `INVISIBLE_*` on what it wrote): the lab deletes its document after
/// the patient masked it, then writes over the deletion (`PUT` on the same id), which is
/// decided as a creation with no labels before: the same document, same id and history, is
/// unmasked for the general practitioner. The lab removed the patient's `MASQUE_PS`.
#[test]
fn a_feeding_system_does_not_unmask_a_document_by_writing_over_its_deletion() {
    let app = App::start();
    let provisioning = app.token(&Caller::provisioning());
    let hospital = id_of(&app.create_as(&provisioning, &organization("750000010")));
    let gp = id_of(&app.create_as(&provisioning, &practitioner("10000000001")));
    let p = id_of(&app.create_as(
        &provisioning,
        &patient("284021234567890", Some("1984-02-29"), Some(&gp)),
    ));
    let gp = app.token(&Caller::professional(&gp, "10", &hospital));
    let feeder = app.token(&Caller::feeding_system());
    let holder = app.token(&Caller::patient(&p));
    let body = document(&p, "psy-report", "11", &[], None, None);
    let id = id_of(&app.create_as(&feeder, &body));
    let path = format!("/DocumentReference/{id}");
    assert_eq!(app.request_as(&gp, "GET", &path, &[], None).status, 200);
    // The patient masks it from professionals.
    let mut masked = app.request_as(&holder, "GET", &path, &[], None).json();
    crate::consent::set_labels(&mut masked, &["MASQUE_PS"]);
    let relabel = app.send_as(&holder, "PUT", &path, &masked, &[]);
    assert_eq!(relabel.status, 200, "{}", relabel.body);
    assert_eq!(app.request_as(&gp, "GET", &path, &[], None).status, 404);
    // The lab deletes it and writes it again, unlabelled, under the same id.
    assert_eq!(
        app.request_as(&feeder, "DELETE", &path, &[], None).status,
        204
    );
    let mut again = body.clone();
    again["id"] = json!(id);
    let revived = app.send_as(&feeder, "PUT", &path, &again, &[]);
    let seen = app.request_as(&gp, "GET", &path, &[], None);
    assert_eq!(
        seen.status, 404,
        "the lab's write over the deletion ({} {}) unmasked the document for the GP",
        revived.status, revived.body
    );
}

/// Two records whose headers share a local patient number (`1000`, under two hospitals'
/// identifier systems), each with a document, and `Patient/{doctor}` their general
/// practitioner. Returns the App, the hospital, the doctor and the two record ids.
fn shared_number() -> (App, String, String, Vec<String>) {
    let app = App::start();
    let provisioning = app.token(&Caller::provisioning());
    let hospital = id_of(&app.create_as(&provisioning, &organization("750000010")));
    let doctor = id_of(&app.create_as(&provisioning, &practitioner("10000000001")));
    let mut ids = Vec::new();
    for (nir, system) in [
        ("284021234567890", "urn:oid:1.2.250.1.71.4.2.7.1"),
        ("190017512345678", "urn:oid:1.2.250.1.71.4.2.7.2"),
    ] {
        let mut header = patient(nir, Some("1984-02-29"), Some(&doctor));
        header["identifier"]
            .as_array_mut()
            .unwrap()
            .push(json!({"system": system, "value": "1000"}));
        ids.push(id_of(&app.create_as(&provisioning, &header)));
    }
    let feeder = app.token(&Caller::feeding_system().client("test-feeder-other"));
    for (i, id) in ids.iter().enumerate() {
        app.create_as(
            &feeder,
            &document(id, &format!("report-{i}"), "11", &[], None, None),
        );
    }
    (app, hospital, doctor, ids)
}

/// §5: "A professional's search must name one patient ... a cross-patient search by a
/// professional is refused." `patient.identifier=` counts as naming one patient when it has
/// one value, but a value without a system matches that value in every identifier system: two
/// records that share a local number come back in one search.
#[test]
fn a_professional_s_search_by_identifier_reaches_one_patient_only() {
    let (app, hospital, doctor, ids) = shared_number();
    let doctor = app.token(&Caller::professional(&doctor, "10", &hospital));
    let reply = app.request_as(
        &doctor,
        "GET",
        "/DocumentReference?patient.identifier=1000",
        &[],
        None,
    );
    let found: Vec<&String> = ids
        .iter()
        .filter(|id| reply.body.contains(id.as_str()))
        .collect();
    assert!(
        reply.status != 200 || found.len() <= 1,
        "one search answered the records of {} patients: {}",
        found.len(),
        reply.body
    );
}

/// d470e28 (README "Access control"): a feeding system finds the header of a record it has no
/// business in only when it names it (`Patient?identifier=` one INS, §2 "the Patient is found
/// by its INS"); any other Patient search is a listing. `Patient?identifier=1000` (one value,
/// no system) is taken as naming one record, yet lists the headers (name, INS, birth date) of
/// every person whose identifiers in any system have that value: here two people the lab
/// never fed.
#[test]
fn a_named_header_lookup_finds_one_record_only() {
    let (app, _, _, ids) = shared_number();
    let lab = app.token(&Caller::feeding_system());
    let reply = app.request_as(&lab, "GET", "/Patient?identifier=1000", &[], None);
    let found: Vec<&String> = ids
        .iter()
        .filter(|id| reply.body.contains(id.as_str()))
        .collect();
    assert!(
        found.len() <= 1,
        "a lookup by one identifier value listed {} records the lab never fed: {}",
        found.len(),
        reply.body
    );
}

/// §3: "A hidden document is absent everywhere: ... List entries". The lab files a report
/// marked `INVISIBLE_PATIENT` (the diagnosis is not announced yet) with its SubmissionSet
/// (a List whose entry points to it, IHE MHD). The patient may not read the report (404), but
/// reads the List, whose entry names the hidden document.
#[test]
fn a_hidden_document_is_absent_from_list_entries() {
    let two = Two::new(App::start());
    let app = &two.app;
    let feeder = two.token(&Caller::feeding_system());
    let hidden = id_of(&app.create_as(
        &feeder,
        &document(&two.a, "oncology", "11", &["INVISIBLE_PATIENT"], None, None),
    ));
    let holder = two.token(&Caller::patient(&two.a));
    let read = app.request_as(
        &holder,
        "GET",
        &format!("/DocumentReference/{hidden}"),
        &[],
        None,
    );
    assert_eq!(read.status, 404, "{}", read.body);
    let submission = json!({
        "resourceType": "List",
        "status": "current",
        "mode": "working",
        "code": {"coding": [{"system": "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes",
            "code": "submissionset"}]},
        "subject": {"reference": format!("Patient/{}", two.a)},
        "entry": [{"item": {"reference": format!("DocumentReference/{hidden}")}}],
    });
    let list = id_of(&app.create_as(&feeder, &submission));
    for path in [format!("/List/{list}"), format!("/List?subject={}", two.a)] {
        let reply = app.request_as(&holder, "GET", &path, &[], None);
        assert!(
            !reply.body.contains(&hidden),
            "GET {path} names the hidden document: {} {}",
            reply.status,
            reply.body
        );
    }
}

/// §8: "Guardian access ends by itself at the minor's 18th birthday (from Patient.birthDate)",
/// and the reference policy's own rule: "without a birth date nobody can show the person is
/// still a minor, so the guardianship does not hold". A birth date known to the year only
/// (`birthDate = "2008"`, valid FHIR) is read as the *last* day of that year: a person born in
/// 2008 may have been an adult since January 1st of this year, and nobody can show they are
/// still a minor, yet their parent keeps reading the record until December 31st. (On December
/// 31st itself this test cannot tell.)
#[test]
fn a_guardianship_ends_when_the_minor_may_be_an_adult() {
    let app = App::start();
    let provisioning = app.token(&Caller::provisioning());
    let year: i32 = crate::consent::paris_date(-18, 0)[..4].parse().unwrap();
    let maybe_adult = id_of(&app.create_as(
        &provisioning,
        &patient("208037512345678", Some(&year.to_string()), None),
    ));
    let feeder = app.token(&Caller::feeding_system());
    let report = id_of(&app.create_as(
        &feeder,
        &document(&maybe_adult, "contraception", "11", &[], None, None),
    ));
    let rp = id_of(&app.create_as(&provisioning, &guardian_link(&maybe_adult)));
    let guardian = app.token(&Caller::guardian(&rp));
    let reply = app.request_as(
        &guardian,
        "GET",
        &format!("/DocumentReference/{report}"),
        &[],
        None,
    );
    assert_eq!(
        reply.status, 404,
        "the guardian of someone born in {year} still reads their record: {}",
        reply.body
    );
}

/// §5 "change visibility labels": an authorized professional sets `INVISIBLE_*`; an "other
/// professional" (not authorized on the record) changes none ("—"). §3: `INVISIBLE_PATIENT`
/// hides a document from the patient "until a diagnosis is announced". The lab's report names
/// `p2` its author; the authorized general practitioner hides it from the patient until the
/// announcement; `p2`, who is not authorized on the record (and cannot even read the report),
/// removes the label with a JSON Patch, and the patient reads the diagnosis.
#[test]
fn an_unauthorized_professional_does_not_change_visibility_labels() {
    let app = App::start();
    let provisioning = app.token(&Caller::provisioning());
    let hospital = id_of(&app.create_as(&provisioning, &organization("750000010")));
    let gp = id_of(&app.create_as(&provisioning, &practitioner("10000000001")));
    let p2 = id_of(&app.create_as(&provisioning, &practitioner("10000000002")));
    let p = id_of(&app.create_as(
        &provisioning,
        &patient("284021234567890", Some("1984-02-29"), Some(&gp)),
    ));
    let feeder = app.token(&Caller::feeding_system());
    let mut body = document(&p, "biopsy", "11", &[], Some(&p2), None);
    body["description"] = json!("biopsy: malignant");
    let id = id_of(&app.create_as(&feeder, &body));
    let path = format!("/DocumentReference/{id}");
    let gp = app.token(&Caller::professional(&gp, "10", &hospital));
    let mut hidden = app.request_as(&gp, "GET", &path, &[], None).json();
    crate::consent::set_labels(&mut hidden, &["INVISIBLE_PATIENT"]);
    let relabel = app.send_as(&gp, "PUT", &path, &hidden, &[]);
    assert_eq!(relabel.status, 200, "the GP hides it: {}", relabel.body);
    let holder = app.token(&Caller::patient(&p));
    assert_eq!(app.request_as(&holder, "GET", &path, &[], None).status, 404);
    let p2 = app.token(&Caller::professional(&p2, "10", &hospital));
    assert_eq!(app.request_as(&p2, "GET", &path, &[], None).status, 404);
    let unhide = app.request_as(
        &p2,
        "PATCH",
        &path,
        &[("Content-Type", "application/json-patch+json")],
        Some(br#"[{"op": "remove", "path": "/securityLabel"}]"#),
    );
    let seen = app.request_as(&holder, "GET", &path, &[], None);
    assert_eq!(
        seen.status, 404,
        "p2's patch ({} {}) showed the patient the unannounced diagnosis",
        unhide.status, unhide.body
    );
}

/// §2: an opposed record — "every feed is refused (403, OperationOutcome saying the record
/// does not accept data)"; §10: feeds give the subject "as a conditional reference
/// `Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|{NIR}`". A document naming the opposed
/// person that way is accepted (201) and stored: the conditional reference is never resolved,
/// so the document lands outside any record, where neither the opposition nor a closure is
/// consulted (a closed record is fed the same way).
#[test]
fn a_feed_naming_an_opposed_record_by_ins_is_refused() {
    let two = Two::new(App::start());
    let app = &two.app;
    let provisioning = two.token(&Caller::provisioning());
    let opposition =
        crate::consent::consent(&two.a, &crate::consent::Rule::Opposition, (None, None));
    app.create_as(&provisioning, &opposition);
    let feeder = two.token(&Caller::feeding_system());
    let direct = app.send_as(
        &feeder,
        "POST",
        "/DocumentReference",
        &document(&two.a, "direct", "11", &[], None, None),
        &[],
    );
    assert_eq!(direct.status, 403, "{}", direct.body);
    let mut by_ins = document(&two.a, "by-ins", "11", &[], None, None);
    by_ins["subject"] = json!({"reference": format!(
        "Patient?identifier={}|284021234567890",
        crate::consent::INS_NIR
    )});
    let reply = app.send_as(&feeder, "POST", "/DocumentReference", &by_ins, &[]);
    // §2 says 403 "the record does not accept data"; any refusal closes the hole, as long as
    // nothing is stored.
    assert!(
        (400..500).contains(&reply.status),
        "a feed naming the opposed record by its INS was accepted: {} {}",
        reply.status,
        reply.body
    );
    let stored = app.request_as(
        &feeder,
        "GET",
        &format!("/DocumentReference?identifier={DOCUMENT_ID}|by-ins"),
        &[],
        None,
    );
    assert_eq!(stored.json()["total"], 0, "stored: {}", stored.body);
}

/// Interfaces "Record lifecycle": a record is opposed when the person has an active general
/// opt-out Consent "written by the person or by a provisioning client"; §2: then "every feed
/// is refused"; `consent::facts`: a privacy Consent Carnet cannot enforce exactly is "refused
/// rather than stored and ignored". Provisioning records an opposition naming the person the
/// way the register knows them, by INS (`Consent.patient` =
/// `Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|{NIR}`): 201, yet the record is not
/// opposed — the Consent landed outside any record and the lab keeps feeding it.
#[test]
fn an_opposition_the_server_accepts_is_enforced() {
    let two = Two::new(App::start());
    let app = &two.app;
    let provisioning = two.token(&Caller::provisioning());
    let mut opposition =
        crate::consent::consent(&two.a, &crate::consent::Rule::Opposition, (None, None));
    opposition["patient"] = json!({"reference": format!(
        "Patient?identifier={}|284021234567890",
        crate::consent::INS_NIR
    )});
    let recorded = app.send_as(&provisioning, "POST", "/Consent", &opposition, &[]);
    if !(200..300).contains(&recorded.status) {
        return; // refused: nothing was promised
    }
    let feeder = two.token(&Caller::feeding_system());
    let feed = app.send_as(
        &feeder,
        "POST",
        "/DocumentReference",
        &document(&two.a, "after-opposition", "11", &[], None, None),
        &[],
    );
    assert_eq!(
        feed.status, 403,
        "the opposition was accepted ({}) but the record still takes feeds: {}",
        recorded.status, feed.body
    );
}

/// §4 "block a professional: ... reads and writes nothing in the record, even with an
/// authorization"; `consent::facts`: a privacy Consent Carnet cannot enforce is refused
/// rather than stored and ignored. The patient writes a block of their general practitioner
/// and leaves out `Consent.patient` (0..1 in R4; the portal knows whose record it is): 201,
/// stored outside any record, and the blocked doctor keeps reading.
#[test]
fn a_block_the_server_accepts_is_enforced() {
    let app = App::start();
    let provisioning = app.token(&Caller::provisioning());
    let hospital = id_of(&app.create_as(&provisioning, &organization("750000010")));
    let gp = id_of(&app.create_as(&provisioning, &practitioner("10000000001")));
    let p = id_of(&app.create_as(
        &provisioning,
        &patient("284021234567890", Some("1984-02-29"), Some(&gp)),
    ));
    let feeder = app.token(&Caller::feeding_system());
    let report = id_of(&app.create_as(&feeder, &document(&p, "report", "11", &[], None, None)));
    let path = format!("/DocumentReference/{report}");
    let doctor = app.token(&Caller::professional(&gp, "10", &hospital));
    assert_eq!(app.request_as(&doctor, "GET", &path, &[], None).status, 200);
    let holder = app.token(&Caller::patient(&p));
    let mut block =
        crate::consent::consent(&p, &crate::consent::Rule::Block(gp.clone()), (None, None));
    block.as_object_mut().unwrap().remove("patient");
    let recorded = app.send_as(&holder, "POST", "/Consent", &block, &[]);
    if !(200..300).contains(&recorded.status) {
        return; // refused: nothing was promised
    }
    let read = app.request_as(&doctor, "GET", &path, &[], None);
    assert_eq!(
        read.status, 404,
        "the block was accepted ({}) but the blocked GP still reads: {}",
        recorded.status, read.body
    );
}
