//! `GET Patient/[id]/$everything` (issue 12): the patient and their compartment, paged, for the
//! holder, a guardian and authorized professionals, filtered by the same decision as every
//! other search. The oracle for "everything the caller may see" is the union of the
//! compartment searches `GET Patient/[id]/[type]`, plus explicit checks of the labels.

use crate::consent::{
    assert_like_missing, consent, document, guardian_link, id_of, organization, paris_date,
    patient, practitioner, set_labels, Rule,
};
use crate::harness::{Reply, Server};
use crate::inprocess::{App, Caller, Pages};
use serde_json::Value;
use std::collections::BTreeMap;

/// The types of the patient compartment served here, the Patient first (the order of the
/// operation's Bundle).
const COMPARTMENT: [&str; 9] = [
    "Patient",
    "AllergyIntolerance",
    "Appointment",
    "AuditEvent",
    "Communication",
    "Consent",
    "DocumentReference",
    "List",
    "RelatedPerson",
];

/// An adult `P` who authorizes `authorized` (not `stranger`) and blocks `blocked`, a minor `M` whose guardian is
/// `guardian`, and another adult `Q`; the lab feeds documents into each, one of P's hidden
/// from the patient and one masked from professionals by the holder.
struct Seed {
    app: App,
    records: BTreeMap<&'static str, String>,
    /// Document name → id.
    documents: BTreeMap<&'static str, String>,
    practitioners: BTreeMap<&'static str, String>,
    hospital: String,
    guardian: String,
}

/// P's documents: name and TRE_A07 labels set by the lab.
const P_DOCUMENTS: [(&str, &[&str]); 5] = [
    ("lab", &[]),
    ("scan", &[]),
    ("letter", &[]),
    ("hidden from patient", &["INVISIBLE_PATIENT"]),
    ("masked", &[]),
];

impl Seed {
    fn new() -> Seed {
        let app = App::start();
        let provisioning = app.token(&Caller::provisioning());
        let hospital = id_of(&app.create_as(&provisioning, &organization("750000010")));
        let mut practitioners = BTreeMap::new();
        for (i, name) in ["authorized", "stranger", "blocked"]
            .into_iter()
            .enumerate()
        {
            let rpps = format!("2000000000{i}");
            practitioners.insert(
                name,
                id_of(&app.create_as(&provisioning, &practitioner(&rpps))),
            );
        }
        let mut records = BTreeMap::new();
        let minor_birth = paris_date(-10, 0);
        for (name, nir, birth) in [
            ("P", "284021234567890", "1984-02-29"),
            ("M", "216071234567891", minor_birth.as_str()),
            ("Q", "178031234567892", "1978-03-01"),
        ] {
            let created = app.create_as(&provisioning, &patient(nir, Some(birth), None));
            records.insert(name, id_of(&created));
        }
        let guardian = id_of(&app.create_as(&provisioning, &guardian_link(&records["M"])));
        let p = records["P"].clone();
        let holder = app.token(&Caller::patient(&p));
        for rule in [
            Rule::Authorize(practitioners["authorized"].clone()),
            Rule::Block(practitioners["blocked"].clone()),
        ] {
            app.create_as(&holder, &consent(&p, &rule, (None, None)));
        }
        let feeder = app.token(&Caller::feeding_system());
        let mut documents = BTreeMap::new();
        for (name, labels) in P_DOCUMENTS {
            let created = app.create_as(&feeder, &document(&p, name, "11", labels, None, None));
            documents.insert(name, id_of(&created));
            if name == "masked" {
                let mut relabelled = created.clone();
                set_labels(&mut relabelled, &["MASQUE_PS"]);
                let id = id_of(&created);
                let reply = app.send_as(
                    &holder,
                    "PUT",
                    &format!("/DocumentReference/{id}"),
                    &relabelled,
                    &[],
                );
                assert_eq!(reply.status, 200, "the holder masks it: {}", reply.body);
            }
        }
        for (name, record) in [("minor lab", "M"), ("other lab", "Q")] {
            let body = document(&records[record], name, "11", &[], None, None);
            documents.insert(name, id_of(&app.create_as(&feeder, &body)));
        }
        Seed {
            app,
            records,
            documents,
            practitioners,
            hospital,
            guardian,
        }
    }

    fn professional(&self, name: &str) -> Caller {
        Caller::professional(&self.practitioners[name], "10", &self.hospital)
    }

    fn document(&self, name: &str) -> String {
        format!("DocumentReference/{}", self.documents[name])
    }

    /// Every page of `$everything` on `record` as `caller`, with `query` appended.
    fn everything(&self, caller: &Caller, record: &str, query: &str) -> Result<Pages, Reply> {
        let token = self.app.token(caller);
        let path = format!("/Patient/{}/$everything{query}", self.records[record]);
        self.app.pages(&token, "GET", &path, None)
    }

    /// What the compartment searches of `record` give `caller`, type after type in the
    /// operation's order (each type's search pages by id, as the operation's do).
    fn compartment(&self, caller: &Caller, record: &str) -> Vec<String> {
        let token = self.app.token(caller);
        let mut all = Vec::new();
        for kind in COMPARTMENT {
            let path = format!("/Patient/{}/{kind}?_count=100", self.records[record]);
            let pages = self
                .app
                .pages(&token, "GET", &path, None)
                .unwrap_or_else(|r| panic!("{path}: {} {}", r.status, r.body));
            all.extend(pages.with_mode("match"));
        }
        all
    }
}

/// Checks that every page of `pages` carries the same exact total: the number of entries.
fn assert_exact_totals(pages: &Pages, what: &str) {
    let matches = pages.with_mode("match").len() as u64;
    assert!(!pages.totals.is_empty(), "{what}: no page");
    for total in &pages.totals {
        assert_eq!(*total, Some(matches), "{what}: totals {:?}", pages.totals);
    }
}

#[test]
fn everything_is_what_each_caller_may_see_of_the_compartment() {
    let seed = Seed::new();
    let patient_of = |record: &str| format!("Patient/{}", seed.records[record]);
    let cases = [
        ("holder", Caller::patient(&seed.records["P"]), "P"),
        ("guardian", Caller::guardian(&seed.guardian), "M"),
        (
            "authorized professional",
            seed.professional("authorized"),
            "P",
        ),
        ("app", Caller::catalogue_app(&seed.records["P"]), "P"),
    ];
    for (who, caller, record) in cases {
        let pages = seed
            .everything(&caller, record, "")
            .unwrap_or_else(|r| panic!("{who}: {} {}", r.status, r.body));
        let served = pages.with_mode("match");
        assert_eq!(served, seed.compartment(&caller, record), "{who}");
        assert_eq!(served.first(), Some(&patient_of(record)), "{who}");
        assert_exact_totals(&pages, who);
        for (other, of) in [("other lab", "Q"), ("minor lab", "M"), ("lab", "P")] {
            let expected = of == record;
            assert_eq!(
                served.contains(&seed.document(other)),
                expected,
                "{who}: {other} in {served:?}"
            );
        }
    }
    // Labels: the holder does not see INVISIBLE_PATIENT, professionals do not see MASQUE_PS.
    let holder = seed
        .everything(&Caller::patient(&seed.records["P"]), "P", "")
        .unwrap()
        .with_mode("match");
    assert!(!holder.contains(&seed.document("hidden from patient")));
    assert!(holder.contains(&seed.document("masked")));
    assert!(holder.iter().any(|key| key.starts_with("Consent/")));
    let professional = seed
        .everything(&seed.professional("authorized"), "P", "")
        .unwrap()
        .with_mode("match");
    assert!(!professional.contains(&seed.document("masked")));
    assert!(professional.contains(&seed.document("hidden from patient")));
}

#[test]
fn an_unauthorized_professional_gets_the_record_header_only() {
    let seed = Seed::new();
    // The header is what any professional reads to find a record (policy::may_read); the
    // record's content needs an authorization.
    let pages = seed
        .everything(&seed.professional("stranger"), "P", "")
        .unwrap();
    assert_eq!(
        pages.with_mode("match"),
        vec![format!("Patient/{}", seed.records["P"])]
    );
    assert_exact_totals(&pages, "stranger");
}

#[test]
fn a_patient_the_caller_may_not_see_answers_like_a_missing_one() {
    let seed = Seed::new();
    let p = &seed.records["P"];
    let first = if p.starts_with('z') { 'y' } else { 'z' };
    let missing: String = std::iter::once(first).chain(p.chars().skip(1)).collect();
    for (who, caller) in [
        ("blocked professional", seed.professional("blocked")),
        ("another patient", Caller::patient(&seed.records["Q"])),
        ("a guardian of another", Caller::guardian(&seed.guardian)),
    ] {
        let token = seed.app.token(&caller);
        let hidden = seed
            .app
            .get_as(&token, &format!("/Patient/{p}/$everything"));
        let absent = seed
            .app
            .get_as(&token, &format!("/Patient/{missing}/$everything"));
        assert_eq!(hidden.status, 404, "{who}: {}", hidden.body);
        assert_like_missing(&hidden, &absent, p, &missing, who);
    }
    let holder = seed.app.token(&Caller::patient(p));
    // The operation's name percent-encoded is the same path.
    let encoded = seed
        .app
        .get_as(&holder, &format!("/Patient/{p}/%24everything"));
    assert_eq!(encoded.status, 200, "{}", encoded.body);
    assert_eq!(encoded.json()["type"], "searchset");
    let absent = seed
        .app
        .get_as(&holder, &format!("/Patient/{missing}/$everything"));
    assert_eq!(absent.status, 404, "{}", absent.body);
    assert_eq!(absent.json()["resourceType"], "OperationOutcome");
}

#[test]
fn everything_pages_with_sealed_next_links_and_exact_totals() {
    let seed = Seed::new();
    let holder = Caller::patient(&seed.records["P"]);
    let whole = seed.everything(&holder, "P", "").unwrap();
    let paged = seed.everything(&holder, "P", "?_count=2").unwrap();
    assert!(whole.entries.len() > 4, "{:?}", whole.entries);
    assert_eq!(paged.with_mode("match"), whole.with_mode("match"));
    assert_eq!(
        paged.totals.len(),
        whole.entries.len().div_ceil(2),
        "one page per two entries"
    );
    assert_exact_totals(&paged, "paged");
    // A next link is sealed for its query and caller: another caller cannot follow it.
    let token = seed.app.token(&holder);
    let first = seed.app.get_as(
        &token,
        &format!("/Patient/{}/$everything?_count=2", seed.records["P"]),
    );
    let bundle = first.json();
    assert_eq!(bundle["type"], "searchset");
    let next = bundle["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .and_then(|l| l["url"].as_str())
        .expect("a next link")
        .to_owned();
    assert!(next.contains("_cursor="), "{next}");
    let stranger = seed.app.token(&seed.professional("authorized"));
    let replayed = seed.app.get_as(&stranger, &next);
    assert_eq!(replayed.status, 400, "{}", replayed.body);
}

#[test]
fn everything_takes_type_since_and_refuses_unknown_parameters() {
    let seed = Seed::new();
    let p = &seed.records["P"];
    let holder = Caller::patient(p);
    let documents = seed
        .everything(&holder, "P", "?_type=DocumentReference")
        .unwrap();
    let served = documents.with_mode("match");
    assert_eq!(served.len(), 4, "{served:?}");
    assert!(served.iter().all(|k| k.starts_with("DocumentReference/")));
    assert_exact_totals(&documents, "_type");
    let two = seed
        .everything(&holder, "P", "?_type=Consent,Patient")
        .unwrap()
        .with_mode("match");
    assert_eq!(two[0], format!("Patient/{p}"));
    assert_eq!(two.len(), 3, "the Patient and its two directives: {two:?}");

    // `_since`: only what was written at or after the instant.
    let feeder = seed.app.token(&Caller::feeding_system());
    let late = seed
        .app
        .create_as(&feeder, &document(p, "late", "11", &[], None, None));
    let since = late["meta"]["lastUpdated"].as_str().unwrap().to_owned();
    let query = format!("?_since={}", since.replace('+', "%2B"));
    let recent = seed.everything(&holder, "P", &query).unwrap();
    assert_eq!(
        recent.with_mode("match"),
        vec![format!("DocumentReference/{}", id_of(&late))]
    );
    assert_exact_totals(&recent, "_since");

    let token = seed.app.token(&holder);
    let everything = format!("/Patient/{p}/$everything");
    for (query, expression) in [
        ("?status=current", "status"),
        ("?_since=yesterday", "_since"),
        ("?_type=Practitioner", "_type"),
        ("?_type=Nothing", "_type"),
    ] {
        let reply = seed.app.get_as(&token, &format!("{everything}{query}"));
        let issue = reply.outcome(400);
        assert_eq!(issue["expression"][0], expression, "{query}: {issue}");
    }
    let lenient = seed.app.request_as(
        &token,
        "GET",
        &format!("{everything}?status=current&_type=DocumentReference"),
        &[("Prefer", "handling=lenient")],
        None,
    );
    assert_eq!(lenient.status, 200, "{}", lenient.body);
    let bundle = lenient.json();
    assert_eq!(bundle["total"], 5);
    assert!(lenient.body.contains("Parameter status was ignored"));
}

#[test]
fn a_scoped_app_gets_the_types_it_may_search() {
    let seed = Seed::new();
    let p = &seed.records["P"];
    let app = Caller::catalogue_app(p).scope("patient/DocumentReference.rs");
    let pages = seed.everything(&app, "P", "").unwrap();
    let served = pages.with_mode("match");
    assert_eq!(served.len(), 4, "{served:?}");
    assert!(served.iter().all(|k| k.starts_with("DocumentReference/")));
    // Its Patient is still checked: another record is missing to it.
    let token = seed.app.token(&app);
    let other = seed.app.get_as(
        &token,
        &format!("/Patient/{}/$everything", seed.records["Q"]),
    );
    assert_eq!(other.status, 404, "{}", other.body);
    // A type it may not search is left out; naming only such types is refused.
    let refused = seed
        .app
        .get_as(&token, &format!("/Patient/{p}/$everything?_type=Consent"));
    assert_eq!(refused.status, 403, "{}", refused.body);
}

/// End to end through the binary: the route, the holder's Bundle, the CapabilityStatement.
#[test]
fn everything_through_the_server() {
    let s = Server::start();
    let p = id_of(&s.create(&patient("284021234567890", Some("1984-02-29"), None)));
    for name in ["one", "two", "three"] {
        s.create(&document(&p, name, "11", &[], None, None));
    }
    let holder = s.token(&[
        "--client-id",
        "test-portal",
        "--scope",
        "patient/*.rs",
        "--fhir-user",
        &format!("Patient/{p}"),
    ]);
    let mut url = format!("/Patient/{p}/$everything?_count=3");
    let mut served: Vec<Value> = Vec::new();
    loop {
        let reply = s.get_as(&holder, &url);
        assert_eq!(reply.status, 200, "{}", reply.body);
        let bundle = reply.json();
        assert_eq!(bundle["type"], "searchset");
        assert_eq!(bundle["total"], 4, "{bundle}");
        served.extend(bundle["entry"].as_array().cloned().unwrap_or_default());
        match bundle["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
        {
            Some(next) => url = next["url"].as_str().unwrap().to_owned(),
            None => break,
        }
    }
    let types: Vec<&str> = served
        .iter()
        .map(|e| e["resource"]["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "Patient",
            "DocumentReference",
            "DocumentReference",
            "DocumentReference"
        ]
    );
    let missing = s.get_as(&holder, "/Patient/nobody/$everything");
    assert_eq!(missing.status, 404, "{}", missing.body);
    let statement = s.get("/metadata").json();
    let patient_resource = statement["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Patient")
        .unwrap()
        .clone();
    assert_eq!(patient_resource["operation"][0]["name"], "everything");
}
