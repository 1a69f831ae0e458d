//! Second hostile review of the consent engine (issue 12), against the fixes of f2815f5 and the
//! new `Patient/{id}/$everything`. Each test asserts what `shared/carnet-domain.md` asks, so it
//! fails while the hole it is named after is open.

use crate::consent::{document, id_of, organization, patient, practitioner};
use crate::inprocess::{App, Caller};
use serde_json::{json, Value};

/// A record `P` (general practitioner `gp`), a hospital, and the practitioners `gp` and
/// `stranger`.
struct World {
    app: App,
    hospital: String,
    gp: String,
    p: String,
}

impl World {
    fn new(app: App) -> World {
        let provisioning = app.token(&Caller::provisioning());
        let hospital = id_of(&app.create_as(&provisioning, &organization("750000010")));
        let gp = id_of(&app.create_as(&provisioning, &practitioner("10000000001")));
        let p = id_of(&app.create_as(
            &provisioning,
            &patient("284021234567890", Some("1984-02-29"), Some(&gp)),
        ));
        World {
            app,
            hospital,
            gp,
            p,
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

    /// A Binary the feeding system uploads, pointed to by nothing yet.
    fn feeder_binary(&self) -> String {
        let feeder = self.app.token(&Caller::feeding_system());
        let reply = self.app.request_as(
            &feeder,
            "POST",
            "/Binary",
            &[("Content-Type", "application/pdf")],
            Some(b"%PDF-1.4 lab report"),
        );
        assert_eq!(reply.status, 201, "{}", reply.body);
        id_of(&reply.json())
    }
}

/// f2815f5 "a Binary some document points to belongs to that document's record": any caller
/// who may write a document anywhere (here a patient, in their own record) points it at a
/// Binary id they do not own. From then on the Binary's writer neither reads it (its writer
/// rule yields to `pointed_to`, and the foreign document lends it nothing) nor deletes it:
/// anyone can hide and freeze anyone's bytes.
#[test]
fn a_foreign_document_does_not_take_a_binary_from_its_writer() {
    let world = World::new(App::start());
    let app = &world.app;
    let binary = world.feeder_binary();
    let binary_path = format!("/Binary/{binary}");
    let feeder = Caller::feeding_system();
    assert_eq!(world.status(&feeder, "GET", &binary_path, None), 200);
    let patient = app.token(&Caller::patient(&world.p));
    app.create_as(
        &patient,
        &document(
            &world.p,
            "mine",
            "11",
            &[],
            None,
            Some(&format!("Binary/{binary}")),
        ),
    );
    assert_eq!(
        world.status(&feeder, "GET", &binary_path, None),
        200,
        "a patient's document pointing at the feeding system's Binary hides it from its writer"
    );
    assert!(
        matches!(
            world.status(&feeder, "DELETE", &binary_path, None),
            200 | 204
        ),
        "a patient's document pointing at the feeding system's Binary freezes it"
    );
}

/// §5: a professional touching more patients per hour than the limit is slowed (429).
/// `$everything` answers 200 for an existing record and 404 for an unknown id before counting
/// anything (`Everything::holder_visible` is not counted), so a professional over the limit
/// still probes which records exist, without end.
#[test]
fn everything_over_the_hourly_limit_is_slowed_before_saying_whether_a_record_exists() {
    let world = World::new(App::start_configured(
        "[consent]\nprofessional_patients_per_hour = 1\n",
    ));
    let app = &world.app;
    let provisioning = app.token(&Caller::provisioning());
    let q = id_of(&app.create_as(
        &provisioning,
        &patient("178031234567892", Some("1978-03-01"), Some(&world.gp)),
    ));
    let gp = app.token(&world.gp());
    let first = app.get_as(&gp, &format!("/Patient/{}/$everything", world.p));
    assert_eq!(first.status, 200, "{}", first.body);
    let probe = app.get_as(
        &gp,
        &format!("/Patient/{q}/$everything?_type=AllergyIntolerance"),
    );
    let unknown = app.get_as(
        &gp,
        "/Patient/no-such-record/$everything?_type=AllergyIntolerance",
    );
    assert_eq!(
        probe.status, unknown.status,
        "over the limit, $everything still tells an existing record ({}) from an unknown id ({})",
        probe.status, unknown.status
    );
}

/// f2815f5: "the record's identity is provisioning's: the holder's side changes only active
/// and generalPractitioner" — but `only_holder_fields_change` also lets `text` (and `meta`)
/// change. The narrative is what a reader displays: the holder rewrites it to show another
/// person's name and INS-NIR on their record's header.
#[test]
fn the_holder_does_not_rewrite_the_identity_shown_in_the_header_s_narrative() {
    let world = World::new(App::start());
    let app = &world.app;
    let patient = app.token(&Caller::patient(&world.p));
    let path = format!("/Patient/{}", world.p);
    let mut header = app.get_as(&patient, &path).json();
    header["text"] = json!({
        "status": "generated",
        "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Jean DUPONT, NIR 299129912345678</div>"
    });
    let reply = app.send_as(&patient, "PUT", &path, &header, &[]);
    assert_eq!(
        reply.status, 403,
        "the holder replaced the identity the header displays: {}",
        reply.body
    );
}

/// f2815f5 "nobody hides from the patient what the patient's side wrote" guards only
/// INVISIBLE_PATIENT. A guardian is the patient's side too: a professional labels the
/// guardian's own entry INVISIBLE_REPRESENTANTS_LEGAUX and hides from the guardian what the
/// guardian wrote (they may no longer read, correct or delete their own entry).
#[test]
fn a_professional_does_not_hide_from_a_guardian_what_the_guardian_wrote() {
    let app = App::start();
    let provisioning = app.token(&Caller::provisioning());
    let hospital = id_of(&app.create_as(&provisioning, &organization("750000010")));
    let gp = id_of(&app.create_as(&provisioning, &practitioner("10000000001")));
    let minor = id_of(&app.create_as(
        &provisioning,
        &patient(
            "207031234567891",
            Some(&crate::consent::paris_date(-10, 0)),
            Some(&gp),
        ),
    ));
    let guardian = id_of(&app.create_as(&provisioning, &crate::consent::guardian_link(&minor)));
    let guardian = app.token(&Caller::guardian(&guardian));
    let note = id_of(&app.create_as(
        &guardian,
        &document(&minor, "vaccination card", "11", &[], None, None),
    ));
    let path = format!("/DocumentReference/{note}");
    let gp = app.token(&Caller::professional(&gp, "10", &hospital));
    let mut hidden = app.get_as(&gp, &path).json();
    crate::consent::set_labels(&mut hidden, &["INVISIBLE_REPRESENTANTS_LEGAUX"]);
    let put = app.send_as(&gp, "PUT", &path, &hidden, &[]);
    let read = app.get_as(&guardian, &path);
    assert_eq!(
        read.status, 200,
        "the gp (PUT {}) hid the guardian's own entry from the guardian: {}",
        put.status, read.body
    );
}

/// §5 "a professional's search must name one patient": a conditional write searches too. A
/// conditional delete naming no patient is answered differently when some record the
/// professional may read holds a match (403: not its author) than when none does (no match):
/// a cross-patient search by status code, for any criterion.
#[test]
fn a_professional_s_conditional_write_must_name_one_patient() {
    let world = World::new(App::start());
    let app = &world.app;
    let feeder = app.token(&Caller::feeding_system());
    app.create_as(
        &feeder,
        &document(&world.p, "hiv-test", "11", &[], None, None),
    );
    let gp = app.token(&world.gp());
    let path = format!(
        "/DocumentReference?identifier={}|hiv-test",
        crate::consent::DOCUMENT_ID
    );
    let absent = app.request_as(&gp, "DELETE", &path.replace("hiv-test", "none"), &[], None);
    let reply = app.request_as(&gp, "DELETE", &path, &[], None);
    assert!(
        matches!(reply.status, 400 | 403) && reply.body.contains("one patient"),
        "a conditional delete naming no patient was searched across records ({}; {} when \
         nothing matches): {}",
        reply.status,
        absent.status,
        reply.body
    );
}

/// §1, §8: a guardian is the RelatedPerson linking a legal representative to a minor, for as
/// long as `RelatedPerson.period` says: a guardianship that ended (a court withdrew parental
/// authority) or has not begun reads nothing of the minor's record; one in force does.
#[test]
fn a_guardianship_acts_only_during_its_period() {
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
    let report = id_of(&app.create_as(&feeder, &document(&minor, "report", "11", &[], None, None)));
    let next_year = crate::consent::paris_date(1, 0);
    for (period, reads) in [
        (json!({"start": "2018-01-01", "end": "2020-01-01"}), false),
        (json!({"start": next_year}), false),
        (json!({"start": "2018-01-01", "end": next_year}), true),
        (json!({"start": "2018-01-01"}), true),
    ] {
        let mut link = crate::consent::guardian_link(&minor);
        link["period"] = period.clone();
        let guardian = id_of(&app.create_as(&provisioning, &link));
        let token = app.token(&Caller::guardian(&guardian));
        let read = app.get_as(&token, &format!("/DocumentReference/{report}"));
        assert_eq!(
            read.status == 200,
            reads,
            "a guardianship for {period} reads the minor's report ({}): {}",
            read.status,
            read.body
        );
        let write = app.send_as(
            &token,
            "POST",
            "/DocumentReference",
            &document(&minor, "note", "11", &[], None, None),
            &[],
        );
        assert_eq!(
            write.status == 201,
            reads,
            "a guardianship for {period} writes into the minor's record ({}): {}",
            write.status,
            write.body
        );
    }
}
