//! What the one door to the data keeps beside each resource, and the rule it enforces on every
//! write: a resource stays in the patient compartment it was created in.

use crate::harness::{self, Server};
use carnet::store::search::Dialect;
use serde_json::{json, Value};

const TRE_A07: &str = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument";

fn allergy(patient: &str) -> Value {
    json!({"resourceType": "AllergyIntolerance", "code": {"text": "arachide"},
        "patient": {"reference": format!("Patient/{patient}")}})
}

/// The stored `column` of the current row of `kind/id`.
fn current_column(s: &Server, column: &str, kind: &str, id: &str) -> Option<String> {
    current_column_in(s, "resources", column, kind, id)
}

/// [`current_column`] in `table` (the records' `resources` or the directory's).
fn current_column_in(
    s: &Server,
    table: &str,
    column: &str,
    kind: &str,
    id: &str,
) -> Option<String> {
    let rows = s.select_texts(&format!(
        "SELECT CAST({column} AS TEXT) AS v FROM {table} \
         WHERE resource_type = '{kind}' AND id = '{id}'"
    ));
    assert_eq!(rows.len(), 1, "{kind}/{id}");
    rows.into_iter().next().unwrap()
}

#[test]
fn an_update_cannot_move_a_resource_to_another_patient() {
    let s = Server::start();
    let created = s.create(&allergy("a"));
    let id = created["id"].as_str().unwrap();
    let before = s.version_count();
    let mut moved = created.clone();
    moved["patient"] = json!({"reference": "Patient/b"});
    let reply = s.send("PUT", &format!("/AllergyIntolerance/{id}"), &moved, &[]);
    let issue = reply.outcome(422);
    assert_eq!(issue["code"], "business-rule", "{issue}");
    assert!(
        issue["diagnostics"].as_str().unwrap().contains("Patient/a"),
        "{issue}"
    );
    let ops = json!([{"op": "replace", "path": "/patient/reference", "value": "Patient/b"}]);
    let reply = s.request(
        "PATCH",
        &format!("/AllergyIntolerance/{id}"),
        &[("Content-Type", "application/json-patch+json")],
        Some(&ops.to_string()),
    );
    reply.outcome(422);
    assert_eq!(s.version_count(), before);
    let read = s.get(&format!("/AllergyIntolerance/{id}")).json();
    assert_eq!(read["patient"]["reference"], "Patient/a");
    // An update that keeps the patient is accepted.
    let mut kept = created.clone();
    kept["criticality"] = json!("high");
    let reply = s.send("PUT", &format!("/AllergyIntolerance/{id}"), &kept, &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
}

/// The conditional forms find their target by criteria, then apply the same rule: a
/// conditional update or patch that would move the match to another patient is refused and
/// changes nothing.
#[test]
fn a_conditional_update_or_patch_cannot_move_a_resource_to_another_patient() {
    let s = Server::start();
    let mut body = allergy("a");
    body["identifier"] = json!([{"system": "urn:test:allergies", "value": "move-1"}]);
    let created = s.create(&body);
    let id = created["id"].as_str().unwrap().to_owned();
    let before = s.version_count();
    let criteria = "identifier=urn:test:allergies|move-1";
    let mut moved = body.clone();
    moved["patient"] = json!({"reference": "Patient/b"});
    let reply = s.send(
        "PUT",
        &format!("/AllergyIntolerance?{criteria}"),
        &moved,
        &[],
    );
    let issue = reply.outcome(422);
    assert_eq!(issue["code"], "business-rule", "{issue}");
    let ops = json!([{"op": "replace", "path": "/patient/reference", "value": "Patient/b"}]);
    let reply = s.request(
        "PATCH",
        &format!("/AllergyIntolerance?{criteria}"),
        &[("Content-Type", "application/json-patch+json")],
        Some(&ops.to_string()),
    );
    reply.outcome(422);
    assert_eq!(s.version_count(), before, "nothing was written");
    assert_eq!(
        current_column(&s, "patient_id", "AllergyIntolerance", &id).as_deref(),
        Some("a")
    );
}

/// Into a compartment, or out of every compartment: both are moves.
#[test]
fn a_resource_cannot_enter_or_leave_every_compartment() {
    let s = Server::start();
    let mut created = s.create(&json!({"resourceType": "List", "status": "current",
        "mode": "working"}));
    let id = created["id"].as_str().unwrap().to_owned();
    created["subject"] = json!({"reference": "Patient/a"});
    let reply = s.send("PUT", &format!("/List/{id}"), &created, &[]);
    reply.outcome(422);
    // Outside every record: the empty patient id (NOT NULL, as a distribution key must be).
    assert_eq!(
        current_column(&s, "patient_id", "List", &id).as_deref(),
        Some("")
    );
    let mut held = s.create(&json!({"resourceType": "List", "status": "current",
        "mode": "working", "subject": {"reference": "Patient/a"}}));
    let id = held["id"].as_str().unwrap().to_owned();
    held.as_object_mut().unwrap().remove("subject");
    let reply = s.send("PUT", &format!("/List/{id}"), &held, &[]);
    reply.outcome(422);
    assert_eq!(
        current_column(&s, "patient_id", "List", &id).as_deref(),
        Some("a")
    );
}

#[test]
fn a_deletion_stays_in_its_patients_compartment() {
    let s = Server::start();
    let id = s.create(&allergy("a"))["id"].as_str().unwrap().to_owned();
    assert_eq!(
        s.request("DELETE", &format!("/AllergyIntolerance/{id}"), &[], None)
            .status,
        204
    );
    assert_eq!(
        current_column(&s, "patient_id", "AllergyIntolerance", &id).as_deref(),
        Some("a")
    );
    let versions = s.select_texts(&format!(
        "SELECT patient_id AS v FROM resource_versions WHERE id = '{id}' ORDER BY version_id"
    ));
    assert_eq!(versions, vec![Some("a".to_owned()), Some("a".to_owned())]);
    // Coming back over the deletion, it is still that patient's.
    let reply = s.send(
        "PUT",
        &format!("/AllergyIntolerance/{id}"),
        &json!({"resourceType": "AllergyIntolerance", "id": id,
            "code": {"text": "arachide"}, "patient": {"reference": "Patient/b"}}),
        &[],
    );
    reply.outcome(422);
}

/// Tombstones written before the migration had no patient: it gives them back the patient of
/// their resource's last version. Then the patient keys' migration makes every patient id NOT
/// NULL (empty outside records), part of every key, and fills the id lookup; and the
/// directory's migration moves the directory to its own tables.
#[test]
fn the_migration_gives_old_deletions_their_patient() {
    if harness::partitions() > 0 {
        eprintln!(
            "skipped: the down migrations restore keys without the patient id, which a table \
             partitioned by patient id refuses (a database is partitioned after its upgrade)"
        );
        return;
    }
    let mut s = Server::start();
    let id = s.create(&allergy("a"))["id"].as_str().unwrap().to_owned();
    let outside = s.create(&json!({"resourceType": "Organization", "name": "Labo"}));
    let outside = outside["id"].as_str().unwrap().to_owned();
    assert_eq!(
        s.request("DELETE", &format!("/AllergyIntolerance/{id}"), &[], None)
            .status,
        204
    );
    let downs = match harness::dialect(&s) {
        Dialect::Sqlite => [
            include_str!("../migrations/sqlite/2026-12-11-000001_directory_tables/down.sql"),
            include_str!("../migrations/sqlite/2026-12-10-000001_patient_keys/down.sql"),
            include_str!("../migrations/sqlite/2026-12-07-000001_access_facts/down.sql"),
        ],
        Dialect::Postgres => [
            include_str!("../migrations/postgres/2026-12-11-000001_directory_tables/down.sql"),
            include_str!("../migrations/postgres/2026-12-10-000001_patient_keys/down.sql"),
            include_str!("../migrations/postgres/2026-12-07-000001_access_facts/down.sql"),
        ],
    };
    for down in downs {
        for statement in down.split(';').map(str::trim).filter(|t| !t.is_empty()) {
            s.execute_sql(statement);
        }
    }
    s.execute_sql("UPDATE resources SET patient_id = NULL WHERE deleted = TRUE");
    s.execute_sql("UPDATE resource_versions SET patient_id = NULL WHERE deleted = TRUE");
    s.execute_sql(
        "DELETE FROM __diesel_schema_migrations \
         WHERE version IN ('20261207000001', '20261210000001', '20261211000001')",
    );
    assert_eq!(
        current_column(&s, "patient_id", "Organization", &outside),
        None
    );
    s.crash_and_restart();
    assert_eq!(
        current_column_in(
            &s,
            "directory_resources",
            "patient_id",
            "Organization",
            &outside
        )
        .as_deref(),
        Some("")
    );
    let left = s.select_texts(&format!(
        "SELECT id AS v FROM resources WHERE resource_type = 'Organization' AND id = '{outside}'"
    ));
    assert!(left.is_empty(), "the records' table kept {left:?}");
    assert_eq!(
        s.select_texts(&format!(
            "SELECT patient_id AS v FROM resource_ids \
             WHERE resource_type = 'AllergyIntolerance' AND id = '{id}'"
        )),
        vec![Some("a".to_owned())]
    );
    assert_eq!(s.get(&format!("/Organization/{outside}")).status, 200);
    // Its index rows moved with it.
    let found = s.get("/Organization?name=Labo").json();
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(
        current_column(&s, "patient_id", "AllergyIntolerance", &id).as_deref(),
        Some("a")
    );
    let versions = s.select_texts(&format!(
        "SELECT patient_id AS v FROM resource_versions WHERE id = '{id}' ORDER BY version_id"
    ));
    assert_eq!(versions, vec![Some("a".to_owned()), Some("a".to_owned())]);
}

#[test]
fn the_writer_is_kept_from_the_first_version() {
    let s = Server::start();
    // Dr House is the patient's general practitioner: authorized on the record.
    let mut holder = crate::harness::patient("284022912345678");
    holder["generalPractitioner"] = json!([{"reference": "Practitioner/dr-house"}]);
    let patient = s.create(&holder)["id"].as_str().unwrap().to_owned();
    let id = s.create(&allergy(&patient))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        current_column(&s, "writer", "AllergyIntolerance", &id).as_deref(),
        Some("client/test-feeder")
    );
    // A professional's update (here, hiding it from the patient for now, which the
    // authorized general practitioner may do) does not make them the writer.
    let professional = s.token(&[
        "--client-id",
        "test-feeder",
        "--scope",
        "user/*.cruds",
        "--fhir-user",
        "Practitioner/dr-house",
        "--profession",
        "10",
        "--organization",
        "Organization/7",
    ]);
    let mut next = s.get(&format!("/AllergyIntolerance/{id}")).json();
    next["meta"]["security"] = json!([{"system": TRE_A07, "code": "INVISIBLE_PATIENT"}]);
    let reply = s.request(
        "PUT",
        &format!("/AllergyIntolerance/{id}"),
        &[
            ("Content-Type", "application/fhir+json"),
            ("Authorization", &format!("Bearer {professional}")),
        ],
        Some(&next.to_string()),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        current_column(&s, "writer", "AllergyIntolerance", &id).as_deref(),
        Some("client/test-feeder")
    );
    let created = s.request(
        "POST",
        "/AllergyIntolerance",
        &[
            ("Content-Type", "application/fhir+json"),
            ("Authorization", &format!("Bearer {professional}")),
        ],
        Some(&allergy(&patient).to_string()),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let other = created.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        current_column(&s, "writer", "AllergyIntolerance", &other).as_deref(),
        Some("Practitioner/dr-house")
    );
}

#[test]
fn visibility_labels_are_stored_with_each_write() {
    let s = Server::start();
    let mut document = s.create(
        &json!({"resourceType": "DocumentReference", "status": "current",
        "subject": {"reference": "Patient/a"},
        "securityLabel": [{"coding": [{"system": TRE_A07, "code": "INVISIBLE_PATIENT"}]}],
        "content": [{"attachment": {"contentType": "application/pdf", "url": "Binary/b1"}}]}),
    );
    let id = document["id"].as_str().unwrap().to_owned();
    assert_eq!(
        current_column(&s, "labels", "DocumentReference", &id).as_deref(),
        Some("2")
    );
    document["securityLabel"] = json!([
        {"coding": [{"system": TRE_A07, "code": "INVISIBLE_PATIENT"}]},
        {"coding": [{"system": TRE_A07, "code": "INVISIBLE_REPRESENTANTS_LEGAUX"}]},
        {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}]}
    ]);
    let reply = s.send("PUT", &format!("/DocumentReference/{id}"), &document, &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        current_column(&s, "labels", "DocumentReference", &id).as_deref(),
        Some("6")
    );
    // A deletion keeps the last labels: a hidden document stays hidden in its history.
    assert_eq!(
        s.request("DELETE", &format!("/DocumentReference/{id}"), &[], None)
            .status,
        204
    );
    assert_eq!(
        current_column(&s, "labels", "DocumentReference", &id).as_deref(),
        Some("6")
    );
}
