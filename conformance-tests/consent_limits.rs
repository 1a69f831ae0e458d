//! Domain §5: a professional reading more distinct patients' records in an hour than
//! `[consent] professional_patients_per_hour` is slowed down (429 with `Retry-After`).

use crate::harness;
use crate::inprocess::{App, Caller};
use serde_json::json;

/// Three patients with Dr House as general practitioner, each with one allergy fed by the lab.
fn seed(app: &App) -> Vec<(String, String)> {
    let provisioning = app.token(&Caller::provisioning());
    let lab = app.token(&Caller::feeding_system());
    ["184021234567891", "184021234567892", "184021234567893"]
        .iter()
        .map(|nir| {
            let mut patient = harness::patient(nir);
            patient["generalPractitioner"] = json!([{"reference": "Practitioner/house"}]);
            let id = app.create_as(&provisioning, &patient)["id"]
                .as_str()
                .unwrap()
                .to_owned();
            let allergy = app.create_as(
                &lab,
                &json!({"resourceType": "AllergyIntolerance", "code": {"text": "arachide"},
                    "patient": {"reference": format!("Patient/{id}")}}),
            );
            (id, allergy["id"].as_str().unwrap().to_owned())
        })
        .collect()
}

#[test]
fn a_professional_over_the_hourly_patient_limit_is_slowed_down() {
    let app = App::start_configured("[consent]\nprofessional_patients_per_hour = 2\n");
    let records = seed(&app);
    let house = app.token(&Caller::professional("house", "10", "hospital"));
    for (patient, allergy) in &records[..2] {
        assert_eq!(
            app.get_as(&house, &format!("/AllergyIntolerance/{allergy}"))
                .status,
            200
        );
        let search = app.get_as(&house, &format!("/AllergyIntolerance?patient={patient}"));
        assert_eq!(search.status, 200, "{}", search.body);
    }
    // A third patient's record, by read or by search: 429, and nothing of it in the answer.
    let (third_patient, third_allergy) = &records[2];
    for path in [
        format!("/AllergyIntolerance/{third_allergy}"),
        format!("/AllergyIntolerance?patient={third_patient}"),
        format!("/Patient/{third_patient}"),
    ] {
        let reply = app.get_as(&house, &path);
        let issue = reply.outcome(429);
        assert_eq!(issue["code"], "throttled", "{path}");
        assert!(!reply.body.contains(third_allergy.as_str()), "{path}");
        let retry_after: u64 = reply
            .header("Retry-After")
            .expect("Retry-After")
            .parse()
            .unwrap();
        assert!((1..=3600).contains(&retry_after), "{retry_after}");
    }
    // The patients already read this hour stay readable; a search that finds nothing for a
    // new patient touches no record.
    let (first_patient, first_allergy) = &records[0];
    assert_eq!(
        app.get_as(&house, &format!("/AllergyIntolerance/{first_allergy}"))
            .status,
        200
    );
    assert_eq!(
        app.get_as(
            &house,
            &format!("/AllergyIntolerance?patient={first_patient}")
        )
        .status,
        200
    );
    // Others are not slowed: another professional, and the lab.
    let wilson = app.token(&Caller::professional("wilson", "10", "hospital"));
    let lab = app.token(&Caller::feeding_system());
    for token in [&wilson, &lab] {
        assert_ne!(
            app.get_as(token, &format!("/AllergyIntolerance/{third_allergy}"))
                .status,
            429
        );
    }
}
