//! Property (issue 12): on random records, directives, labels, writers, guardianships,
//! principals and queries, every search answers exactly the documents that the reference
//! policy (`carnet::consent::policy::may_read`) lets the caller read, with exact totals on
//! every page. The reference is given the facts extracted (by `carnet::consent::facts`) from
//! the very bodies the test sent, and the default profession matrix.
//!
//! A failing case prints its seed; `CARNET_CONSENT_SEED=<seed>` replays it alone.

use crate::consent::{
    consent, created_id, datetime_in_days, document, guardian_link, id_of, organization,
    paris_date, patient, practitioner, set_labels, Rule, INS_NIR,
};
use crate::inprocess::{App, Caller, BASE};
use carnet::auth::principal::{derive, Principal};
use carnet::consent::facts;
use carnet::consent::matrix::{ProfessionMatrix, Visible};
use carnet::consent::model::{Code, Facts, Labels, Writer};
use carnet::consent::policy::{self, Professions, World};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

/// Cases per run: each is one App with a few records (a few seconds on SQLite in debug).
const CASES: u64 = 12;
const FIRST_SEED: u64 = 0x00c0_ffee_5eed_0012;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The default profession matrix as the reference policy consults it.
struct DefaultMatrix(ProfessionMatrix);

impl Professions for DefaultMatrix {
    fn sees_document(&self, profession: &str, classes: &[Code]) -> bool {
        match self.0.documents(profession) {
            Visible::All => true,
            Visible::Only(codes) => classes.iter().any(|class| codes.contains(class)),
            Visible::Nothing => false,
        }
    }

    fn sees_type(&self, profession: &str, resource_type: &str) -> bool {
        self.0.resources(profession, resource_type)
    }
}

/// Classes inside and outside the subsets of the default matrix (42: prescription; 31:
/// imaging; 44: care plan; 11: outside every subset).
const CLASSES: [&str; 4] = ["11", "42", "31", "44"];
/// Professions: the five of the default matrix and one outside it.
const PROFESSIONS: [&str; 6] = ["10", "21", "40", "50", "60", "99"];
/// Organizations: the two test feeders' (so that a block of one stops that feeder) and a
/// hospital.
const FINESS: [&str; 3] = ["750000001", "750000002", "750000020"];

#[test]
fn search_results_equal_the_reference_policy_on_random_records() {
    let seeds: Vec<u64> = match std::env::var("CARNET_CONSENT_SEED") {
        Ok(seed) => vec![seed.parse().expect("CARNET_CONSENT_SEED is a number")],
        Err(_) => (0..CASES)
            .map(|case| FIRST_SEED.wrapping_add(case))
            .collect(),
    };
    for seed in seeds {
        if let Err(failure) = catch_unwind(AssertUnwindSafe(|| run_case(seed))) {
            eprintln!(
                "consent property failed with seed {seed} (replay: CARNET_CONSENT_SEED={seed})"
            );
            resume_unwind(failure);
        }
    }
}

/// One created document and what the reference knows of it.
struct Row {
    facts: Facts,
}

fn run_case(seed: u64) {
    let mut rng = Rng::new(seed);
    let app = App::start();
    let provisioning = app.token(&Caller::provisioning());
    let (yesterday, tomorrow) = (datetime_in_days(-1), datetime_in_days(1));

    // The directory.
    let mut organizations: HashMap<String, Vec<String>> = HashMap::new();
    let mut organization_ids = Vec::new();
    for finess in FINESS {
        let id = id_of(&app.create_as(&provisioning, &organization(finess)));
        organizations
            .entry(format!("https://finess.esante.gouv.fr|{finess}"))
            .or_default()
            .push(id.clone());
        organization_ids.push(id);
    }
    let practitioners: Vec<String> = (0..4)
        .map(|i| id_of(&app.create_as(&provisioning, &practitioner(&format!("2000000000{i}")))))
        .collect();

    // Records: adults, minors, no birth date; with or without a general practitioner.
    let mut patients: Vec<(String, Value)> = Vec::new();
    for i in 0..rng.below(2) + 3 {
        let birth = match rng.below(3) {
            0 => None,
            1 => Some("1980-05-17".to_owned()),
            _ => Some(paris_date(-(rng.below(16) as i16 + 1), 0)),
        };
        let gp = rng.chance(40).then(|| rng.pick(&practitioners).clone());
        let body = patient(
            &format!("1800{i}1234567890"),
            birth.as_deref(),
            gp.as_deref(),
        );
        let id = id_of(&app.create_as(&provisioning, &body));
        patients.push((id, body));
    }
    let mut guardianships = HashMap::new();
    let mut related_people = Vec::new();
    for (id, _) in &patients {
        if rng.chance(60) {
            let body = guardian_link(id);
            let rp = id_of(&app.create_as(&provisioning, &body));
            if let Some(guardianship) = facts::guardian_of(&body, BASE) {
                guardianships.insert(rp.clone(), guardianship);
            }
            related_people.push(rp);
        }
    }

    // Documents, while every record is open and without directives, by various writers.
    let mut rows: Vec<Row> = Vec::new();
    for (patient_id, _) in &patients {
        for n in 0..rng.below(4) + 2 {
            let (caller, writer) = match rng.below(4) {
                0 => (
                    Caller::feeding_system(),
                    Writer::System("test-feeder".into()),
                ),
                1 => (
                    Caller::feeding_system().client("test-feeder-other"),
                    Writer::System("test-feeder-other".into()),
                ),
                2 => {
                    let who = rng.pick(&practitioners).clone();
                    (
                        Caller::professional(&who, "10", rng.pick(&organization_ids).as_str()),
                        Writer::Practitioner(who),
                    )
                }
                _ => (
                    Caller::patient(patient_id),
                    Writer::Patient(patient_id.clone()),
                ),
            };
            let principal = principal_of(&app, &caller);
            let settable = policy::settable(&principal, "DocumentReference");
            let labels: Vec<&str> = Labels::ALL
                .iter()
                .filter(|(label, _)| settable.contains(*label) && rng.chance(30))
                .map(|(_, code)| *code)
                .collect();
            let author = match &writer {
                Writer::Practitioner(id) => Some(id.clone()),
                _ => rng.chance(30).then(|| rng.pick(&practitioners).clone()),
            };
            let name = format!("doc-{n}");
            let class = CLASSES[rng.below(CLASSES.len())];
            let body = document(patient_id, &name, class, &labels, author.as_deref(), None);
            let reply = app.send_as(
                &app.token(&caller),
                "POST",
                "/DocumentReference",
                &body,
                &[],
            );
            assert_eq!(
                reply.status, 201,
                "seed {seed}: {caller:?} writing {body}: {}",
                reply.body
            );
            let id = created_id(&reply);
            let mut facts = Facts {
                resource_type: "DocumentReference".into(),
                id: id.clone(),
                patient_id: Some(patient_id.clone()),
                labels: facts::labels_of(&body),
                writer: Some(writer),
                authors: facts::authors_of(&body, BASE),
                classes: facts::classes_of(&body),
            };
            // The holder masks some of what they see.
            if !facts.labels.contains(Labels::INVISIBLE_PATIENT)
                && !facts.labels.contains(Labels::MASQUE_PS)
                && rng.chance(25)
            {
                let mut masked = body.clone();
                masked["id"] = json!(id);
                let mut codes = labels.clone();
                codes.push("MASQUE_PS");
                set_labels(&mut masked, &codes);
                let holder = app.token(&Caller::patient(patient_id));
                let reply = app.send_as(
                    &holder,
                    "PUT",
                    &format!("/DocumentReference/{id}"),
                    &masked,
                    &[],
                );
                assert_eq!(
                    reply.status, 200,
                    "seed {seed}: masking {id}: {}",
                    reply.body
                );
                facts.labels = facts::labels_of(&masked);
            }
            rows.push(Row { facts });
        }
    }

    // Closures, then directives of the four shapes with periods around now.
    let mut records = HashMap::new();
    for (patient_id, body) in &patients {
        let holder = app.token(&Caller::patient(patient_id));
        let mut header = body.clone();
        if rng.chance(20) {
            header["id"] = json!(patient_id);
            header["active"] = json!(false);
            let reply = app.send_as(
                &holder,
                "PUT",
                &format!("/Patient/{patient_id}"),
                &header,
                &[],
            );
            assert_eq!(
                reply.status, 200,
                "seed {seed}: closing {patient_id}: {}",
                reply.body
            );
        }
        let mut record = facts::record_of(&header, patient_id, BASE);
        for _ in 0..rng.below(4) {
            let rule = match rng.below(9) {
                0..=2 => Rule::Authorize(rng.pick(&practitioners).clone()),
                3 | 4 => Rule::Block(rng.pick(&practitioners).clone()),
                5 => Rule::BlockOrganization(rng.pick(&organization_ids).clone()),
                6 | 7 => Rule::RefuseBreakGlass,
                _ => Rule::Opposition,
            };
            let period = match rng.below(5) {
                0 => (None, None),
                1 => (Some(yesterday.as_str()), None),
                2 => (None, Some(yesterday.as_str())),
                3 => (Some(tomorrow.as_str()), None),
                _ => (Some(yesterday.as_str()), Some(tomorrow.as_str())),
            };
            let body = consent(patient_id, &rule, period);
            let reply = app.send_as(&holder, "POST", "/Consent", &body, &[]);
            assert_eq!(reply.status, 201, "seed {seed}: {rule:?}: {}", reply.body);
            let directives = facts::directives_of(&body, BASE).unwrap_or_else(|e| {
                panic!("seed {seed}: the test's Consent is not understood: {e}")
            });
            record.directives.extend(directives);
        }
        records.insert(patient_id.clone(), record);
    }

    // Principals of every kind.
    let mut callers: Vec<Caller> = patients.iter().map(|(id, _)| Caller::patient(id)).collect();
    callers.extend(related_people.iter().map(|rp| Caller::guardian(rp)));
    for who in &practitioners {
        let profession = PROFESSIONS[rng.below(PROFESSIONS.len())];
        let mut caller =
            Caller::professional(who, profession, rng.pick(&organization_ids).as_str());
        if rng.chance(35) {
            caller = caller.break_glass("emergency admission");
        }
        callers.push(caller);
    }
    callers.push(Caller::feeding_system());
    callers.push(Caller::feeding_system().client("test-feeder-other"));
    callers.push(Caller::catalogue_app(&rng.pick(&patients).0));
    callers.push(Caller::provisioning());

    let now = micros_now();
    let world = World {
        records,
        guardianships,
        organizations,
        professions: DefaultMatrix(ProfessionMatrix::default()),
        now,
    };
    for caller in &callers {
        let principal = principal_of(&app, caller);
        let token = app.token(caller);
        let readable = |patient: Option<&str>| -> BTreeSet<String> {
            rows.iter()
                .filter(|row| patient.is_none_or(|p| row.facts.patient_id.as_deref() == Some(p)))
                .filter(|row| policy::may_read(&principal, &world, &row.facts))
                .map(|row| format!("DocumentReference/{}", row.facts.id))
                .collect()
        };
        // Each query names a patient's record (by id, or through the header by INS: then
        // only if the caller may list that header), or none.
        let mut queries: Vec<(String, Option<&str>, bool)> = Vec::new();
        for (id, body) in &patients {
            let nir = body["identifier"][0]["value"].as_str().expect("a NIR");
            queries.push((
                format!("/DocumentReference?patient=Patient/{id}&_total=accurate"),
                Some(id.as_str()),
                false,
            ));
            queries.push((
                format!("/DocumentReference?patient.identifier={INS_NIR}|{nir}&_total=accurate"),
                Some(id.as_str()),
                true,
            ));
        }
        let paged = &rng.pick(&patients).0;
        queries.push((
            format!("/DocumentReference?patient={paged}&_count=2&_sort=date&_total=accurate"),
            Some(paged.as_str()),
            false,
        ));
        queries.push((
            format!("/DocumentReference?subject=Patient/{paged}&_count=2&_total=accurate"),
            Some(paged.as_str()),
            false,
        ));
        queries.push(("/DocumentReference?_total=accurate".into(), None, false));
        queries.push((
            "/DocumentReference?_count=2&_total=accurate".into(),
            None,
            false,
        ));
        let mine = carnet::consent::writer_of(&principal);
        for (path, patient, through_header) in queries {
            let listed_header = patient.is_some_and(|id| {
                policy::may_list(&principal, &world, &header_of(id), fed(&rows, &mine, id))
            });
            let expected = match through_header && !listed_header {
                true => BTreeSet::new(),
                false => readable(patient),
            };
            let what = format!("seed {seed}: {principal:?} GET {path}");
            let cross_patient =
                patient.is_none() && matches!(principal, Principal::Professional { .. });
            match app.pages(&token, "GET", &path, None) {
                Ok(pages) => {
                    assert!(
                        !cross_patient,
                        "{what}: a professional's search must name one patient"
                    );
                    let listed = pages.with_mode("match");
                    for key in &listed {
                        let row = rows
                            .iter()
                            .find(|row| format!("DocumentReference/{}", row.facts.id) == *key);
                        assert!(
                            row.is_some_and(|row| policy::may_read(&principal, &world, &row.facts)),
                            "{what}: {key} is returned but the policy denies it"
                        );
                    }
                    let found: BTreeSet<String> = listed.iter().cloned().collect();
                    assert_eq!(
                        listed.len(),
                        found.len(),
                        "{what}: an entry is served twice"
                    );
                    assert_eq!(
                        found, expected,
                        "{what}: the result set differs from the policy's"
                    );
                    for total in pages.totals.iter().flatten() {
                        assert_eq!(*total as usize, expected.len(), "{what}: inexact total");
                    }
                }
                Err(reply) => {
                    assert!(
                        cross_patient || expected.is_empty(),
                        "{what}: refused ({} {}) but the policy reads {expected:?}",
                        reply.status,
                        reply.body
                    );
                    crate::consent::assert_refused(&reply, &what);
                }
            }
        }
        check_headers(&app, &token, &principal, &world, &patients, &rows, seed);
    }
}

/// Record headers: named by id, each is found as [`policy::may_read`] says; in a listing
/// (`GET Patient`, across records), only those [`policy::may_list`] keeps, with exact totals.
fn check_headers(
    app: &App,
    token: &str,
    principal: &Principal,
    world: &World<DefaultMatrix>,
    patients: &[(String, Value)],
    rows: &[Row],
    seed: u64,
) {
    let header = header_of;
    let mine = carnet::consent::writer_of(principal);
    let fed = |id: &str| fed(rows, &mine, id);
    for (id, _) in patients {
        let path = format!("/Patient?_id={id}&_total=accurate");
        let what = format!("seed {seed}: {principal:?} GET {path}");
        let expected = policy::may_read(principal, world, &header(id));
        let pages = app
            .pages(token, "GET", &path, None)
            .unwrap_or_else(|reply| panic!("{what}: refused {} {}", reply.status, reply.body));
        let found = pages.with_mode("match") == [format!("Patient/{id}")];
        assert_eq!(
            found, expected,
            "{what}: the header is found or not as the policy says"
        );
        for total in pages.totals.iter().flatten() {
            assert_eq!(*total, u64::from(expected), "{what}: inexact total");
        }
    }
    let path = "/Patient?_count=2&_total=accurate";
    let what = format!("seed {seed}: {principal:?} GET {path}");
    let expected: BTreeSet<String> = patients
        .iter()
        .filter(|(id, _)| policy::may_list(principal, world, &header(id), fed(id)))
        .map(|(id, _)| format!("Patient/{id}"))
        .collect();
    match app.pages(token, "GET", path, None) {
        Ok(pages) => {
            let listed = pages.with_mode("match");
            let found: BTreeSet<String> = listed.iter().cloned().collect();
            assert_eq!(
                found, expected,
                "{what}: the listed headers differ from the policy's"
            );
            assert_eq!(
                listed.len(),
                found.len(),
                "{what}: a header is listed twice"
            );
            for total in pages.totals.iter().flatten() {
                assert_eq!(*total as usize, expected.len(), "{what}: inexact total");
            }
        }
        Err(reply) => {
            assert!(
                matches!(principal, Principal::Professional { .. }),
                "{what}: refused ({} {})",
                reply.status,
                reply.body
            );
            crate::consent::assert_refused(&reply, &what);
        }
    }
}

/// The facts of the record header (the Patient) of `id`, as the test writes it.
fn header_of(id: &str) -> Facts {
    Facts {
        resource_type: "Patient".into(),
        id: id.to_owned(),
        patient_id: Some(id.to_owned()),
        labels: Labels::default(),
        writer: None,
        authors: Vec::new(),
        classes: Vec::new(),
    }
}

/// `writer` wrote into the record of `id`.
fn fed(rows: &[Row], writer: &Writer, id: &str) -> bool {
    rows.iter().any(|row| {
        row.facts.patient_id.as_deref() == Some(id) && row.facts.writer.as_ref() == Some(writer)
    })
}

fn principal_of(app: &App, caller: &Caller) -> Principal {
    derive(&caller.claims, &app.config().clients)
        .unwrap_or_else(|e| panic!("{caller:?}: {e}"))
        .0
}

fn micros_now() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(now.as_micros()).expect("a representable instant")
}
