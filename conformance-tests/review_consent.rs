//! Hostile review of the consent engine (issue 12): each test is a way a caller sees, infers or
//! alters what the rules of `shared/carnet-domain.md` (and the reference policy,
//! `carnet::consent::policy`) deny, found by reading the engine. Each asserts the behaviour
//! the rules ask for, so it fails while the hole is open.

use crate::consent::{
    consent, created_id, document, guardian_link, id_of, organization, patient, practitioner, Rule,
};
use crate::inprocess::{App, Caller};
use serde_json::{json, Value};

/// A record `P` (an adult, general practitioner `gp`), a hospital, the practitioners `gp` and
/// `stranger`, and a document of `P` by the feeding system whose bytes are a Binary.
struct World {
    app: App,
    hospital: String,
    gp: String,
    stranger: String,
    p: String,
    binary: String,
    document: String,
}

impl World {
    fn new(app: App) -> World {
        let provisioning = app.token(&Caller::provisioning());
        let feeder = app.token(&Caller::feeding_system());
        let hospital = id_of(&app.create_as(&provisioning, &organization("750000010")));
        let gp = id_of(&app.create_as(&provisioning, &practitioner("10000000001")));
        let stranger = id_of(&app.create_as(&provisioning, &practitioner("10000000002")));
        let p = id_of(&app.create_as(
            &provisioning,
            &patient("284021234567890", Some("1984-02-29"), Some(&gp)),
        ));
        let reply = app.request_as(
            &feeder,
            "POST",
            "/Binary",
            &[("Content-Type", "application/pdf")],
            Some(b"%PDF-1.4 secret report"),
        );
        assert_eq!(reply.status, 201, "{}", reply.body);
        let binary = id_of(&reply.json());
        let document = id_of(&app.create_as(
            &feeder,
            &document(
                &p,
                "report",
                "11",
                &[],
                None,
                Some(&format!("Binary/{binary}")),
            ),
        ));
        World {
            app,
            hospital,
            gp,
            stranger,
            p,
            binary,
            document,
        }
    }

    fn gp(&self) -> Caller {
        Caller::professional(&self.gp, "10", &self.hospital)
    }

    fn status(&self, caller: &Caller, method: &str, path: &str, body: Option<&Value>) -> u16 {
        let token = self.app.token(caller);
        match body {
            Some(body) => self.app.send_as(&token, method, path, body, &[]).status,
            None => self.app.request_as(&token, method, path, &[], None).status,
        }
    }
}

/// A DocumentReference in no record (no `subject`) whose attachment points to `Binary/{id}`.
fn pointer_outside_any_record(binary: &str) -> Value {
    json!({
        "resourceType": "DocumentReference",
        "status": "current",
        "content": [{"attachment": {"contentType": "application/pdf", "url": format!("Binary/{binary}")}}],
    })
}

/// §3, §4: a Binary is visible "only through a document the caller may see" — but the caller
/// chooses which Binary its own documents point to. A professional the patient blocked, who
/// had read the document (and so knows its Binary's id) before the block, writes a
/// DocumentReference outside any record (no subject: no record, so no block applies; visible
/// to its writer) pointing to that Binary, and reads the bytes again.
#[test]
fn a_blocked_professional_does_not_read_a_binary_through_a_document_of_their_own() {
    let world = World::new(App::start());
    let (app, gp) = (&world.app, world.gp());
    let binary_path = format!("/Binary/{}", world.binary);
    assert_eq!(
        world.status(&gp, "GET", &binary_path, None),
        200,
        "the general practitioner reads the bytes before the block"
    );
    let patient = app.token(&Caller::patient(&world.p));
    app.create_as(
        &patient,
        &consent(&world.p, &Rule::Block(world.gp.clone()), (None, None)),
    );
    assert_eq!(
        world.status(&gp, "GET", &binary_path, None),
        404,
        "blocked: the bytes are gone"
    );
    let reply = app.send_as(
        &app.token(&gp),
        "POST",
        "/DocumentReference",
        &pointer_outside_any_record(&world.binary),
        &[],
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let read = app.get_as(&app.token(&gp), &binary_path);
    assert_eq!(
        read.status, 404,
        "a blocked professional reads the record's Binary again through a DocumentReference \
         of their own pointing to it: {}",
        read.body
    );
}

/// §3: `MASQUE_PS` hides a document *and its Binary* from every professional but its author.
/// The general practitioner read the document before the patient masked it; afterwards they
/// add a document of their own to the record (any professional may add) pointing to the same
/// Binary, which they see, and through it the masked bytes.
#[test]
fn masking_a_document_hides_its_binary_even_from_a_professional_who_knows_its_id() {
    let world = World::new(App::start());
    let (app, gp) = (&world.app, world.gp());
    let patient = app.token(&Caller::patient(&world.p));
    let binary_path = format!("/Binary/{}", world.binary);
    assert_eq!(world.status(&gp, "GET", &binary_path, None), 200);
    let path = format!("/DocumentReference/{}", world.document);
    let mut masked = app.get_as(&patient, &path).json();
    masked["securityLabel"] = json!([{"coding": [{
        "system": crate::consent::TRE_A07, "code": "MASQUE_PS"}]}]);
    let reply = app.send_as(&patient, "PUT", &path, &masked, &[]);
    assert_eq!(reply.status, 200, "the patient masks: {}", reply.body);
    assert_eq!(world.status(&gp, "GET", &binary_path, None), 404, "masked");
    app.create_as(
        &app.token(&gp),
        &document(
            &world.p,
            "gp note",
            "11",
            &[],
            None,
            Some(&format!("Binary/{}", world.binary)),
        ),
    );
    let read = app.get_as(&app.token(&gp), &binary_path);
    assert_eq!(
        read.status, 404,
        "the masked document's bytes are read through the professional's own document: {}",
        read.body
    );
}

/// A patient of another record, given (or guessing) a Binary id, reads it by pointing a
/// document of their own record at it.
#[test]
fn a_patient_does_not_read_another_record_s_binary_through_their_own_document() {
    let world = World::new(App::start());
    let app = &world.app;
    let provisioning = app.token(&Caller::provisioning());
    let q = id_of(&app.create_as(
        &provisioning,
        &patient("178031234567892", Some("1978-03-01"), None),
    ));
    let other = Caller::patient(&q);
    let binary_path = format!("/Binary/{}", world.binary);
    assert_eq!(world.status(&other, "GET", &binary_path, None), 404);
    app.create_as(
        &app.token(&other),
        &document(
            &q,
            "mine",
            "11",
            &[],
            None,
            Some(&format!("Binary/{}", world.binary)),
        ),
    );
    let read = app.get_as(&app.token(&other), &binary_path);
    assert_eq!(
        read.status, 404,
        "Q reads P's lab report bytes: {}",
        read.body
    );
}

/// §5 "delete / replace: only its author / only what it wrote": writing over a deletion is a
/// creation (the engine decides it as one), yet the store keeps the deleted resource's
/// `writer`. The patient's new content is then recorded as written by the feeding system: the
/// feeding system reads it (it "reads what it wrote"), and the patient may not delete their
/// own entry.
#[test]
fn writing_over_a_deletion_records_the_new_writer() {
    let world = World::new(App::start());
    let app = &world.app;
    let feeder = Caller::feeding_system();
    let patient = Caller::patient(&world.p);
    let path = format!("/DocumentReference/{}", world.document);
    assert!(matches!(
        world.status(&feeder, "DELETE", &path, None),
        200 | 204
    ));
    let mut mine = document(&world.p, "my own note", "11", &[], None, None);
    mine["id"] = json!(world.document);
    mine["description"] = json!("written by the patient, about something private");
    let put = world.status(&patient, "PUT", &path, Some(&mine));
    assert!(
        matches!(put, 200 | 201),
        "the patient writes over the deletion: {put}"
    );
    let read = app.get_as(&app.token(&feeder), &path);
    assert_eq!(
        read.status, 404,
        "the feeding system reads the patient's new entry as if it had written it: {}",
        read.body
    );
    let deleted = world.status(&patient, "DELETE", &path, None);
    assert!(
        matches!(deleted, 200 | 204),
        "the patient may not delete the entry they wrote: {deleted}"
    );
}

/// Policy `reaches` (and `may_write`'s doc, step 1): "for a professional a row they authored in
/// an active record where no block names them: §5 lets any professional replace or delete
/// their own documents". The write path looks the row up with the read restriction
/// (`WriteContext::current` → `sql::current`), which hides it from an unauthorized author: the
/// SQL and the policy disagree, and the author answers as if their document did not exist.
#[test]
fn an_unauthorized_professional_replaces_and_deletes_their_own_document() {
    let world = World::new(App::start());
    let app = &world.app;
    let stranger = Caller::professional(&world.stranger, "10", &world.hospital);
    let body = document(&world.p, "stranger's", "11", &[], None, None);
    let reply = app.send_as(
        &app.token(&stranger),
        "POST",
        "/DocumentReference",
        &body,
        &[],
    );
    assert_eq!(reply.status, 201, "any professional adds: {}", reply.body);
    let id = created_id(&reply);
    let path = format!("/DocumentReference/{id}");
    let mut amended = body.clone();
    amended["id"] = json!(id);
    amended["description"] = json!("amended by its author");
    assert_eq!(
        world.status(&stranger, "PUT", &path, Some(&amended)),
        200,
        "the author replaces their own document (policy::reaches)"
    );
    assert!(
        matches!(world.status(&stranger, "DELETE", &path, None), 200 | 204),
        "the author deletes their own document (policy::reaches)"
    );
}

/// The record holder may update their Patient (close the record, choose the general
/// practitioner), but the INS is the record's national identity, found by feeds
/// (`Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|{NIR}`, domain §2): a patient who takes
/// another person's NIR receives that person's feeds. Identity is provisioning's.
#[test]
fn the_holder_does_not_take_another_person_s_ins() {
    let world = World::new(App::start());
    let app = &world.app;
    let patient = Caller::patient(&world.p);
    let path = format!("/Patient/{}", world.p);
    let mut header = app.get_as(&app.token(&patient), &path).json();
    header["identifier"] = json!([{"system": crate::consent::INS_NIR, "value": "299129912345678"}]);
    let status = world.status(&patient, "PUT", &path, Some(&header));
    assert_eq!(
        status, 403,
        "the holder rewrote the INS-NIR of their record to someone else's"
    );
    let feeder = app.token(&Caller::feeding_system());
    let found = app
        .get_as(
            &feeder,
            &format!(
                "/Patient?identifier={}|299129912345678",
                crate::consent::INS_NIR
            ),
        )
        .json();
    assert_eq!(found["total"], 0, "a feed looking up that NIR finds P");
}

/// §8: guardianship ends by itself at the minor's 18th birthday, from `Patient.birthDate`. A
/// guardian may update the minor's Patient (it is holder-side: policy `may_replace`), and so
/// move the birth date and keep the record past the birthday.
#[test]
fn a_guardian_does_not_move_the_minor_s_birth_date() {
    let app = App::start();
    let provisioning = app.token(&Caller::provisioning());
    let birth = crate::consent::paris_date(-18, 1);
    let minor = id_of(&app.create_as(
        &provisioning,
        &patient("207031234567891", Some(&birth), None),
    ));
    let guardian = id_of(&app.create_as(&provisioning, &guardian_link(&minor)));
    let token = app.token(&Caller::guardian(&guardian));
    let path = format!("/Patient/{minor}");
    let mut header = app.get_as(&token, &path).json();
    header["birthDate"] = json!(crate::consent::paris_date(-10, 0));
    let reply = app.send_as(&token, "PUT", &path, &header, &[]);
    assert_eq!(
        reply.status, 403,
        "the guardian pushed the 18th birthday eight years away: {}",
        reply.body
    );
}

/// §1, §8: a guardian is a RelatedPerson that links a *legal guardian* to a minor. Any active
/// RelatedPerson of a minor (here an emergency contact, v3-RoleCode `ECON`) makes its holder a
/// guardian (`facts::guardian_of` ignores `relationship`), with the minor's rights.
#[test]
fn an_emergency_contact_of_a_minor_is_not_their_guardian() {
    let app = App::start();
    let provisioning = app.token(&Caller::provisioning());
    let feeder = app.token(&Caller::feeding_system());
    let minor = id_of(&app.create_as(
        &provisioning,
        &patient(
            "207031234567891",
            Some(&crate::consent::paris_date(-10, 0)),
            None,
        ),
    ));
    let mut contact = guardian_link(&minor);
    contact["relationship"] = json!([{"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "ECON"}]}]);
    let contact = id_of(&app.create_as(&provisioning, &contact));
    let report = id_of(&app.create_as(&feeder, &document(&minor, "report", "11", &[], None, None)));
    let read = app.get_as(
        &app.token(&Caller::guardian(&contact)),
        &format!("/DocumentReference/{report}"),
    );
    assert_eq!(
        read.status, 404,
        "an emergency contact reads the minor's record: {}",
        read.body
    );
}

/// With client-assigned ids (`update_create = true`), `PUT DocumentReference/{id}` of a
/// document the caller may not see is decided as a creation (the lookup under the restriction
/// finds nothing), whose insert then collides with the hidden row: four retries and a 409
/// "changed concurrently; retry". A missing id gives 201. The status tells a hidden document
/// from a missing one (domain §3), for any id a caller guesses.
#[test]
fn update_as_create_over_a_hidden_id_reveals_nothing_but_that_the_id_is_taken() {
    let world = World::new(App::start_configured("update_create = true"));
    let app = &world.app;
    let provisioning = app.token(&Caller::provisioning());
    let q = id_of(&app.create_as(
        &provisioning,
        &patient("178031234567892", Some("1978-03-01"), None),
    ));
    let other = app.token(&Caller::patient(&q));
    let put = |id: &str| {
        let mut body = document(&q, "mine", "11", &[], None, None);
        body["id"] = json!(id);
        app.send_as(
            &other,
            "PUT",
            &format!("/DocumentReference/{id}"),
            &body,
            &[],
        )
    };
    let hidden = put(&world.document);
    let missing = put("never-used-id-000000000000000000");
    // Decision: with client-assigned ids, ids are one namespace, so an id someone else holds
    // cannot be created; the answer says only that (one 409, nothing of the resource), and
    // update_create stays off by default (README).
    assert_eq!(missing.status, 201, "{}", missing.body);
    let issue = hidden.outcome(409);
    assert_eq!(issue["code"], "conflict");
    assert!(
        issue["diagnostics"]
            .as_str()
            .unwrap()
            .contains("not available"),
        "{issue}"
    );
    assert!(
        !hidden.body.contains("mine") && !hidden.body.contains("Patient/"),
        "{}",
        hidden.body
    );
}

/// §5: the patient deletes and replaces "own entries"; §3: `INVISIBLE_PATIENT` is a
/// professional's label for what professionals produced ("until a diagnosis is announced").
/// Policy `may_relabel` lets an authorized professional relabel anything they see, so the
/// general practitioner hides the patient's own entry from the patient, who can then neither
/// read nor delete what they wrote.
#[test]
fn a_professional_does_not_hide_the_patient_s_own_entry_from_them() {
    let world = World::new(App::start());
    let app = &world.app;
    let patient = app.token(&Caller::patient(&world.p));
    let entry = id_of(&app.create_as(
        &patient,
        &document(&world.p, "my diary", "11", &[], None, None),
    ));
    let path = format!("/DocumentReference/{entry}");
    let gp = app.token(&world.gp());
    let mut hidden = app.get_as(&gp, &path).json();
    hidden["securityLabel"] = json!([{"coding": [{
        "system": crate::consent::TRE_A07, "code": "INVISIBLE_PATIENT"}]}]);
    let reply = app.send_as(&gp, "PUT", &path, &hidden, &[]);
    assert_eq!(
        reply.status, 403,
        "the general practitioner hid the patient's own entry from them: {}",
        reply.body
    );
    assert_eq!(app.get_as(&patient, &path).status, 200);
}

/// §4 "block an establishment: the same for everyone acting for that Organization" (policy: a
/// feeding system acts for its registered organization). The blocked feeding system no longer
/// reads its document, but the document's bytes are a Binary outside any record, visible to
/// its writer whatever the record says.
#[test]
fn a_blocked_feeding_system_does_not_read_the_bytes_of_its_document() {
    let world = World::new(App::start());
    let app = &world.app;
    let provisioning = app.token(&Caller::provisioning());
    // The feeding system's registered organization (FINESS 750000001).
    let lab = id_of(&app.create_as(&provisioning, &organization("750000001")));
    let patient = app.token(&Caller::patient(&world.p));
    app.create_as(
        &patient,
        &consent(&world.p, &Rule::BlockOrganization(lab), (None, None)),
    );
    let feeder = Caller::feeding_system();
    assert_eq!(
        world.status(
            &feeder,
            "GET",
            &format!("/DocumentReference/{}", world.document),
            None
        ),
        404,
        "blocked: the document is gone"
    );
    let read = app.get_as(&app.token(&feeder), &format!("/Binary/{}", world.binary));
    assert_eq!(
        read.status, 404,
        "the blocked feeding system still reads the document's bytes: {}",
        read.body
    );
}

/// §2: a closed record accepts no feed (403, "does not accept data"). The document's bytes
/// are a Binary outside any record, so its writer replaces them after the record is closed,
/// and the closed record's document now serves other bytes.
#[test]
fn a_closed_record_s_document_bytes_are_not_replaced() {
    let world = World::new(App::start());
    let app = &world.app;
    let patient = app.token(&Caller::patient(&world.p));
    let path = format!("/Patient/{}", world.p);
    let mut header = app.get_as(&patient, &path).json();
    header["active"] = json!(false);
    let reply = app.send_as(&patient, "PUT", &path, &header, &[]);
    assert_eq!(reply.status, 200, "the holder closes: {}", reply.body);
    let feeder = app.token(&Caller::feeding_system());
    let reply = app.request_as(
        &feeder,
        "PUT",
        &format!("/Binary/{}", world.binary),
        &[("Content-Type", "application/pdf")],
        Some(b"%PDF-1.4 rewritten after closing"),
    );
    // Refused: the bytes now belong to the closed record, which its former feeder no longer
    // reaches (answered as a missing id would be), and a document's bytes are never rewritten.
    assert!(
        (403..=405).contains(&reply.status),
        "the feeding system rewrote the bytes of a closed record's document: {} {}",
        reply.status,
        reply.body
    );
    let holder_reads = app.request_as(
        &patient,
        "GET",
        &format!("/Binary/{}", world.binary),
        &[],
        None,
    );
    assert!(
        !holder_reads.body.contains("rewritten"),
        "{}",
        holder_reads.body
    );
}

/// §5 profession matrix: a pharmacien sees prescriptions (TRE_A03 `42`), not consultation
/// reports (`10`). The restriction judges a document by its *current* class terms, and vread
/// and history serve every version under it: a report first filed as a consultation, then
/// refiled as a prescription, shows the pharmacien its consultation version.
#[test]
fn a_profession_does_not_read_an_earlier_version_of_a_class_it_may_not_see() {
    let world = World::new(App::start());
    let app = &world.app;
    let provisioning = app.token(&Caller::provisioning());
    let pharmacist = id_of(&app.create_as(&provisioning, &practitioner("10000000003")));
    let patient = app.token(&Caller::patient(&world.p));
    app.create_as(
        &patient,
        &consent(&world.p, &Rule::Authorize(pharmacist.clone()), (None, None)),
    );
    let feeder = app.token(&Caller::feeding_system());
    let mut report = document(&world.p, "consultation", "10", &[], None, None);
    report["description"] = json!("psychiatric consultation");
    let id = id_of(&app.create_as(&feeder, &report));
    let path = format!("/DocumentReference/{id}");
    let pharmacist = app.token(&Caller::professional(&pharmacist, "21", &world.hospital));
    assert_eq!(app.get_as(&pharmacist, &path).status, 404, "a consultation");
    let mut refiled = document(&world.p, "consultation", "42", &[], None, None);
    refiled["id"] = json!(id);
    refiled["description"] = json!("prescription");
    // Decision: a document's class and type are fixed once written (every version is judged
    // by them); refiling is publishing a replacement document.
    let reply = app.send_as(&feeder, "PUT", &path, &refiled, &[]);
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(
        app.get_as(&pharmacist, &path).status,
        404,
        "still a consultation"
    );
    let old = app.get_as(&pharmacist, &format!("{path}/_history/1"));
    assert_eq!(
        old.status, 404,
        "the pharmacien reads the consultation version: {}",
        old.body
    );
}

/// §5 "no cross-patient search, the record cannot be downloaded in one block", §2 "the Patient
/// is found by its INS": a feeding system finds one record by INS, or reads it by id, but a
/// listing (`GET Patient`, type and system history, `_type`, a conditional match on another
/// criterion) shows only the headers of the records it fed.
#[test]
fn a_feeding_system_does_not_list_every_record_header() {
    let world = World::new(App::start());
    let app = &world.app;
    let provisioning = app.token(&Caller::provisioning());
    let q = id_of(&app.create_as(
        &provisioning,
        &patient("178031234567892", Some("1978-03-01"), None),
    ));
    let feeder = app.token(&Caller::feeding_system());
    for path in [
        "/Patient",
        "/Patient?birthdate=1978-03-01",
        "/Patient?identifier:not=284021234567890",
        "/Patient/_history",
        "/_history",
        "/?_type=Patient",
    ] {
        let reply = app.get_as(&feeder, path);
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
        assert!(
            !reply.body.contains(&q),
            "GET {path} as a feeding system lists the header of a record it did not feed: {}",
            reply.body
        );
        if !path.contains("birthdate") && !path.contains(":not") {
            assert!(
                reply.body.contains(&world.p),
                "GET {path}: the header of the record the feeding system fed is listed: {}",
                reply.body
            );
        }
    }
    // Named, the record is found: by INS, by id.
    for path in [
        "/Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|178031234567892".to_owned(),
        format!("/Patient?_id={q}"),
        format!("/Patient/{q}"),
    ] {
        let reply = app.get_as(&feeder, &path);
        assert!(
            reply.status == 200 && reply.body.contains(&q),
            "GET {path} as a feeding system finds the record it names ({}): {}",
            reply.status,
            reply.body
        );
    }
    // A conditional create matching on another criterion does not answer with the header.
    let reply = app.request_as(
        &feeder,
        "POST",
        "/Patient",
        &[
            ("Content-Type", "application/fhir+json"),
            ("If-None-Exist", "gender=male"),
        ],
        Some(
            patient("199991234567899", None, None)
                .to_string()
                .as_bytes(),
        ),
    );
    assert!(
        !reply.body.contains(&q),
        "If-None-Exist: gender=male answers Q's header ({}): {}",
        reply.status,
        reply.body
    );
}

/// A search that names one patient must not let its iterated includes walk out of the
/// record: from P's header to its general practitioner, and back to every Patient that
/// practitioner follows (name, INS, birth date of each).
#[test]
fn a_feeding_system_lists_no_header_through_iterated_includes() {
    let world = World::new(App::start());
    let app = &world.app;
    let provisioning = app.token(&Caller::provisioning());
    let q = id_of(&app.create_as(
        &provisioning,
        &patient("178031234567892", Some("1978-03-01"), Some(&world.gp)),
    ));
    let path = "/Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|284021234567890\
                &_include=Patient:general-practitioner\
                &_revinclude:iterate=Patient:general-practitioner";
    for caller in [
        Caller::feeding_system(),
        Caller::professional(&world.stranger, "10", &world.hospital),
    ] {
        let reply = app.get_as(&app.token(&caller), path);
        assert_eq!(reply.status, 200, "{caller:?}: {}", reply.body);
        assert!(
            reply.body.contains(&world.p) && reply.body.contains(&world.gp),
            "{caller:?}: the named record and its practitioner are found: {}",
            reply.body
        );
        assert!(
            !reply.body.contains(&q),
            "GET {path} as {caller:?} lists Q's header: {}",
            reply.body
        );
    }
    // Their general practitioner counts as authorized on both records: they see both.
    let reply = app.get_as(&app.token(&world.gp()), path);
    assert!(
        reply.status == 200 && reply.body.contains(&q),
        "the general practitioner lists their patients ({}): {}",
        reply.status,
        reply.body
    );
}
