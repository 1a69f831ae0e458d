//! The consent engine seen from outside (issue 12): for each rule of the domain (§2–§5, §8)
//! and each access path, the party the rule allows sees the resource and every other party
//! sees nothing and cannot infer it. Written from `shared/carnet-domain.md`,
//! `shared/interfaces.md` and the reference policy (`carnet::consent::policy`, whose doc
//! comments settle what the spec leaves open), not from the engine.
//!
//! Most tests share one seeded record set ([`Seed`]) and a table of who sees which document
//! ([`DOCUMENTS`]) and which record header ([`HEADERS`]); each test loops over every principal
//! and one family of paths, on its own in-process App.

use crate::harness::Reply;
use crate::inprocess::{App, Caller, Pages};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

pub const TRE_A07: &str = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument";
pub const TRE_A03: &str =
    "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument";
pub const INS_NIR: &str = "urn:oid:1.2.250.1.213.1.4.8";
/// The business identifier of each test document (its name), for conditional operations.
pub const DOCUMENT_ID: &str = "urn:carnet:test:document";
/// A type coding unique to each test document (its name), so that a search can aim at it.
pub const DOCUMENT_TYPE: &str = "urn:carnet:test:document-type";
const CONSENT_SCOPE: &str = "http://terminology.hl7.org/CodeSystem/consentscope";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";

// ---- Resources -------------------------------------------------------------------------

/// A record header: a Patient with an INS-NIR, optionally a birth date and a general
/// practitioner.
pub fn patient(nir: &str, birth_date: Option<&str>, gp: Option<&str>) -> Value {
    let mut patient = json!({
        "resourceType": "Patient",
        "identifier": [{"system": INS_NIR, "value": nir}],
        "name": [{"family": "Martin", "given": ["Camille"]}],
    });
    if let Some(birth_date) = birth_date {
        patient["birthDate"] = json!(birth_date);
    }
    if let Some(gp) = gp {
        patient["generalPractitioner"] = json!([{"reference": format!("Practitioner/{gp}")}]);
    }
    patient
}

pub fn practitioner(rpps: &str) -> Value {
    json!({
        "resourceType": "Practitioner",
        "identifier": [{"system": "https://rpps.esante.gouv.fr", "value": rpps}],
        "name": [{"family": "Bernard", "given": ["Alix"]}],
    })
}

pub fn organization(finess: &str) -> Value {
    json!({
        "resourceType": "Organization",
        "identifier": [{"system": "https://finess.esante.gouv.fr", "value": finess}],
        "name": format!("Établissement {finess}"),
    })
}

/// The legal guardian of `Patient/{minor}`.
pub fn guardian_link(minor: &str) -> Value {
    json!({
        "resourceType": "RelatedPerson",
        "active": true,
        "patient": {"reference": format!("Patient/{minor}")},
        "relationship": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
            "code": "GUARD"
        }]}],
        "name": [{"family": "Martin", "given": ["Dominique"]}],
    })
}

/// A document of `Patient/{patient}` named `name` (its identifier and a type coding),
/// of TRE_A03 class `class`, with TRE_A07 `labels`, an optional author and an optional
/// attachment URL.
pub fn document(
    patient: &str,
    name: &str,
    class: &str,
    labels: &[&str],
    author: Option<&str>,
    url: Option<&str>,
) -> Value {
    let mut document = json!({
        "resourceType": "DocumentReference",
        "identifier": [{"system": DOCUMENT_ID, "value": name}],
        "status": "current",
        "type": {"coding": [{"system": DOCUMENT_TYPE, "code": name}]},
        "category": [{"coding": [{"system": TRE_A03, "code": class}]}],
        "subject": {"reference": format!("Patient/{patient}")},
        "date": "2026-11-30T09:15:00+01:00",
        "content": [{"attachment": {
            "contentType": "application/pdf",
            "url": url.unwrap_or("https://documents.example/none.pdf")
        }}],
    });
    set_labels(&mut document, labels);
    if let Some(author) = author {
        document["author"] = json!([{"reference": format!("Practitioner/{author}")}]);
    }
    document
}

/// Replaces a document's TRE_A07 labels (keeping its other security labels).
pub fn set_labels(document: &mut Value, labels: &[&str]) {
    let mut kept: Vec<Value> = document["securityLabel"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|label| label["coding"][0]["system"] != TRE_A07)
        .collect();
    kept.extend(
        labels
            .iter()
            .map(|code| json!({"coding": [{"system": TRE_A07, "code": code}]})),
    );
    match kept.is_empty() {
        true => {
            if let Some(object) = document.as_object_mut() {
                object.remove("securityLabel");
            }
        }
        false => document["securityLabel"] = json!(kept),
    }
}

/// A directive of domain §4, as a Consent provision.
#[derive(Debug, Clone)]
pub enum Rule {
    Authorize(String),
    Block(String),
    BlockOrganization(String),
    RefuseBreakGlass,
    Opposition,
}

/// An active patient-privacy Consent of `Patient/{patient}` stating `rule`, during `period`
/// (FHIR dateTimes) when given.
pub fn consent(patient: &str, rule: &Rule, period: (Option<&str>, Option<&str>)) -> Value {
    let actor = |reference: String| {
        json!([{
            "role": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                "code": "PRCP"
            }]},
            "reference": {"reference": reference}
        }])
    };
    let mut provision = match rule {
        Rule::Authorize(id) => {
            json!({"type": "permit", "actor": actor(format!("Practitioner/{id}"))})
        }
        Rule::Block(id) => json!({"type": "deny", "actor": actor(format!("Practitioner/{id}"))}),
        Rule::BlockOrganization(id) => {
            json!({"type": "deny", "actor": actor(format!("Organization/{id}"))})
        }
        Rule::RefuseBreakGlass => {
            json!({"type": "deny", "purpose": [{"system": ACT_REASON, "code": "BTG"}]})
        }
        Rule::Opposition => json!({"type": "deny"}),
    };
    let mut bounds = serde_json::Map::new();
    if let Some(start) = period.0 {
        bounds.insert("start".into(), json!(start));
    }
    if let Some(end) = period.1 {
        bounds.insert("end".into(), json!(end));
    }
    if !bounds.is_empty() {
        provision["period"] = Value::Object(bounds);
    }
    json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "dateTime": "2026-12-01T10:00:00+01:00",
        "provision": provision,
    })
}

/// Today in Europe/Paris moved by `years` then `days` (negative: into the past), as a FHIR
/// date.
pub fn paris_date(years: i16, days: i32) -> String {
    let paris = jiff::tz::TimeZoneDatabase::bundled()
        .get("Europe/Paris")
        .expect("the bundled tz database");
    let today = paris.to_datetime(jiff::Timestamp::now()).date();
    let date = today
        .checked_add(jiff::Span::new().years(years))
        .and_then(|date| date.checked_add(jiff::Span::new().days(days)))
        .expect("a date in range");
    date.to_string()
}

/// A FHIR dateTime `days` days from now (negative: in the past).
pub fn datetime_in_days(days: i64) -> String {
    let at = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(24 * days))
        .expect("an instant in range");
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

// ---- Answers ---------------------------------------------------------------------------

/// The id of a created resource.
pub fn id_of(resource: &Value) -> String {
    resource["id"].as_str().expect("an id").to_owned()
}

/// The id of what a 201 created, from its `Location` (the body may be left out for a writer
/// who may not read what they wrote).
pub fn created_id(reply: &Reply) -> String {
    let location = reply.header("Location").expect("a Location");
    let path = location.split("/_history").next().unwrap();
    path.rsplit('/').next().unwrap().to_owned()
}

/// An id of the same length as `id` that no resource has.
fn missing_like(id: &str) -> String {
    let first = if id.starts_with('z') { 'y' } else { 'z' };
    std::iter::once(first).chain(id.chars().skip(1)).collect()
}

/// Asserts that `hidden` (an answer about the existing resource `id`) is exactly what
/// `missing` (the same request about the absent `missing_id`) is: a 404 with the same body,
/// the id aside, and the same headers, `Date` aside (domain §3, interfaces "Errors"). A 403
/// is accepted when the missing resource gets it too: a token whose scopes exclude the type
/// (provisioning and clinical data) is refused before any row is looked at.
pub fn assert_like_missing(
    hidden: &Reply,
    missing: &Reply,
    id: &str,
    missing_id: &str,
    what: &str,
) {
    assert!(
        hidden.status == 404 || hidden.status == 403 && missing.status == 403,
        "{what}: a denied read must answer like a missing resource (404); got {} {}",
        hidden.status,
        hidden.body
    );
    assert_eq!(
        missing.status, hidden.status,
        "{what} (missing): {}",
        missing.body
    );
    assert_eq!(
        hidden.body.replace(id, missing_id),
        missing.body,
        "{what}: the body tells a hidden resource from a missing one"
    );
    let headers = |reply: &Reply, from: &str, to: &str| {
        let mut headers: Vec<(String, String)> = reply
            .headers
            .iter()
            .filter(|(name, _)| !name.eq_ignore_ascii_case("date"))
            .map(|(name, value)| (name.to_ascii_lowercase(), value.replace(from, to)))
            .collect();
        headers.sort();
        headers
    };
    assert_eq!(
        headers(hidden, id, missing_id),
        headers(missing, missing_id, missing_id),
        "{what}: the headers tell a hidden resource from a missing one"
    );
}

/// Asserts a 4xx OperationOutcome.
pub fn assert_refused(reply: &Reply, what: &str) {
    assert!(
        (400..500).contains(&reply.status),
        "{what}: expected a 4xx refusal, got {} {}",
        reply.status,
        reply.body
    );
    assert_eq!(
        reply.json()["resourceType"],
        "OperationOutcome",
        "{what}: {}",
        reply.body
    );
}

fn sorted(keys: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    keys.into_iter().collect()
}

// ---- The seeded records ----------------------------------------------------------------

/// The records, by name: their NIR, birth date (minor `M`), general practitioner, state.
/// - `P`: an adult's active record; general practitioner `gp`; authorizes `authorized`,
///   `pharmacist`, `unlisted`, `blocked` and `colleague`, and blocks `blocked` and the
///   organization `elsewhere` (where `colleague` works).
/// - `M`: a minor (10 years old) whose guardian is the RelatedPerson `guardian`.
/// - `Q`: an adult's active record that refuses break-glass; no authorization.
/// - `C`: closed (`Patient.active = false`) by its holder; general practitioner `gp`.
/// - `O`: opposed (general opt-out Consent) by its holder; general practitioner `gp`.
const RECORDS: [(&str, &str); 5] = [
    ("P", "284021234567890"),
    ("M", "216071234567891"),
    ("Q", "178031234567892"),
    ("C", "265111234567893"),
    ("O", "290061234567894"),
];

/// Who wrote a seeded document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum By {
    Feeder,
    /// The practitioner `authorized`, naming themselves as author.
    Authorized,
    /// The record's holder.
    Holder,
}

/// The seeded documents: name, record, writer, TRE_A07 class, labels set by the writer, whether
/// the holder then masks it (`MASQUE_PS`), and who reads it (every other principal reads
/// nothing of it). Class `11` is outside the pharmacist's subset of the default matrix, `42`
/// (prescription) inside it.
#[allow(clippy::type_complexity)]
const DOCUMENTS: &[(&str, &str, By, &str, &[&str], bool, &[&str])] = &[
    // §5: authorized professionals per the matrix, break-glass, the writing system, the holder.
    (
        "lab",
        "P",
        By::Feeder,
        "11",
        &[],
        false,
        &[
            "patient P",
            "app P",
            "gp",
            "authorized",
            "emergency",
            "feeder",
        ],
    ),
    // The matrix: a pharmacien sees prescriptions.
    (
        "prescription",
        "P",
        By::Feeder,
        "42",
        &[],
        false,
        &[
            "patient P",
            "app P",
            "gp",
            "authorized",
            "pharmacist",
            "emergency",
            "feeder",
        ],
    ),
    // §3 INVISIBLE_PATIENT: not the patient, not their apps.
    (
        "hidden from patient",
        "P",
        By::Feeder,
        "11",
        &["INVISIBLE_PATIENT"],
        false,
        &["gp", "authorized", "emergency", "feeder"],
    ),
    // §3 MASQUE_PS: no professional, break-glass included; the writing system still reads it.
    (
        "masked",
        "P",
        By::Feeder,
        "11",
        &[],
        true,
        &["patient P", "app P", "feeder"],
    ),
    // §3 MASQUE_PS: except its author.
    (
        "masked by its author",
        "P",
        By::Authorized,
        "11",
        &[],
        true,
        &["patient P", "app P", "authorized"],
    ),
    // §5: a patient-entered document; a feeding system reads only what it wrote.
    (
        "patient-entered",
        "P",
        By::Holder,
        "11",
        &[],
        false,
        &["patient P", "app P", "gp", "authorized", "emergency"],
    ),
    // §8: the guardian acts with the minor's rights.
    // M neither authorizes anyone nor refuses break-glass; P's blocks do not reach it.
    (
        "minor lab",
        "M",
        By::Feeder,
        "11",
        &[],
        false,
        &[
            "patient M",
            "guardian",
            "feeder",
            "emergency",
            "blocked emergency",
            "colleague emergency",
        ],
    ),
    // §3, §8: INVISIBLE_REPRESENTANTS_LEGAUX hides from guardians only.
    (
        "hidden from guardians",
        "M",
        By::Feeder,
        "11",
        &["INVISIBLE_REPRESENTANTS_LEGAUX"],
        false,
        &[
            "patient M",
            "feeder",
            "emergency",
            "blocked emergency",
            "colleague emergency",
        ],
    ),
    // §3, §8: INVISIBLE_PATIENT hides from the minor and the guardians.
    (
        "hidden from the minor",
        "M",
        By::Feeder,
        "11",
        &["INVISIBLE_PATIENT"],
        false,
        &[
            "feeder",
            "emergency",
            "blocked emergency",
            "colleague emergency",
        ],
    ),
    // §4: a refusal of break-glass; a catalogue app reads its launch patient's record.
    (
        "Q lab",
        "Q",
        By::Feeder,
        "11",
        &[],
        false,
        &["patient Q", "app Q", "feeder"],
    ),
    // §2 closed: the holder alone (the writing system and the GP no longer).
    ("C lab", "C", By::Feeder, "11", &[], false, &["patient C"]),
    // §2 opposed: nobody but the person.
    ("O lab", "O", By::Feeder, "11", &[], false, &["patient O"]),
];

/// Every professional the tests use.
const PROFESSIONALS: [&str; 10] = [
    "gp",
    "authorized",
    "pharmacist",
    "unlisted",
    "stranger",
    "emergency",
    "blocked",
    "blocked emergency",
    "colleague",
    "colleague emergency",
];

/// Who reads each record header (the Patient). Policy `may_read`: the holder (and guardian,
/// app) while they may read the record; every professional and feeding system while the
/// record is not opposed, unless a block names them or their organization; provisioning always.
fn header_readers(record: &str) -> Vec<&'static str> {
    let mut readers: Vec<&'static str> = vec!["provisioning"];
    let unblocked_professionals = PROFESSIONALS.iter().copied().filter(|who| {
        record != "P" || !(who.starts_with("blocked") || who.starts_with("colleague"))
    });
    match record {
        "P" => readers.extend(["patient P", "app P"]),
        "M" => readers.extend(["patient M", "guardian"]),
        "Q" => readers.extend(["patient Q", "app Q"]),
        "C" => readers.push("patient C"),
        "O" => readers.push("patient O"),
        _ => unreachable!(),
    }
    if record != "O" {
        readers.extend(unblocked_professionals);
        readers.extend(["feeder", "other feeder"]);
    }
    readers
}

/// One App with the records above.
struct Seed {
    app: App,
    /// Record name → Patient id.
    records: BTreeMap<&'static str, String>,
    /// Document name → id.
    documents: BTreeMap<&'static str, String>,
    /// Document name → its current version.
    versions: BTreeMap<&'static str, u32>,
    practitioners: BTreeMap<&'static str, String>,
    organizations: BTreeMap<&'static str, String>,
    /// The RelatedPerson of the minor's guardian.
    guardian: String,
}

impl Seed {
    fn new() -> Seed {
        let app = App::start();
        let provisioning = app.token(&Caller::provisioning());
        let mut organizations = BTreeMap::new();
        for (name, finess) in [("hospital", "750000010"), ("elsewhere", "750000011")] {
            organizations.insert(
                name,
                id_of(&app.create_as(&provisioning, &organization(finess))),
            );
        }
        let mut practitioners = BTreeMap::new();
        for (i, name) in [
            "gp",
            "authorized",
            "pharmacist",
            "unlisted",
            "stranger",
            "blocked",
            "colleague",
        ]
        .into_iter()
        .enumerate()
        {
            let rpps = format!("1000000000{i}");
            practitioners.insert(
                name,
                id_of(&app.create_as(&provisioning, &practitioner(&rpps))),
            );
        }
        let gp = practitioners["gp"].clone();
        let minor_birth = paris_date(-10, 0);
        let mut records = BTreeMap::new();
        for (name, nir) in RECORDS {
            let (birth, doctor) = match name {
                "M" => (Some(minor_birth.as_str()), None),
                "Q" => (Some("1978-03-01"), None),
                _ => (Some("1984-02-29"), Some(gp.as_str())),
            };
            let created = app.create_as(&provisioning, &patient(nir, birth, doctor));
            records.insert(name, id_of(&created));
        }
        let guardian = id_of(&app.create_as(&provisioning, &guardian_link(&records["M"])));

        // P's directives first, so that `authorized` reads what they write there.
        let p = &records["P"];
        let holder = app.token(&Caller::patient(p));
        let mut rules: Vec<Rule> = [
            "authorized",
            "pharmacist",
            "unlisted",
            "blocked",
            "colleague",
        ]
        .iter()
        .map(|name| Rule::Authorize(practitioners[name].clone()))
        .collect();
        rules.push(Rule::Block(practitioners["blocked"].clone()));
        rules.push(Rule::BlockOrganization(organizations["elsewhere"].clone()));
        for rule in &rules {
            app.create_as(&holder, &consent(p, rule, (None, None)));
        }

        let feeder = app.token(&Caller::feeding_system());
        let authorized = app.token(&Caller::professional(
            &practitioners["authorized"],
            "10",
            &organizations["hospital"],
        ));
        let mut documents = BTreeMap::new();
        let mut versions = BTreeMap::new();
        for (name, record, by, class, labels, masked, _) in DOCUMENTS {
            let patient_id = &records[record];
            let (token, author) = match by {
                By::Feeder => (feeder.clone(), None),
                By::Authorized => (
                    authorized.clone(),
                    Some(practitioners["authorized"].as_str()),
                ),
                By::Holder => (app.token(&Caller::patient(patient_id)), None),
            };
            let body = document(patient_id, name, class, labels, author, None);
            let created = app.create_as(&token, &body);
            let id = id_of(&created);
            let mut version = 1;
            if *masked {
                let holder = app.token(&Caller::patient(patient_id));
                let mut relabelled = created.clone();
                set_labels(&mut relabelled, &["MASQUE_PS"]);
                let reply = app.send_as(
                    &holder,
                    "PUT",
                    &format!("/DocumentReference/{id}"),
                    &relabelled,
                    &[],
                );
                assert_eq!(reply.status, 200, "the holder masks {name}: {}", reply.body);
                version = 2;
            }
            documents.insert(*name, id);
            versions.insert(*name, version);
        }

        let q = &records["Q"];
        app.create_as(
            &app.token(&Caller::patient(q)),
            &consent(q, &Rule::RefuseBreakGlass, (None, None)),
        );
        let o = &records["O"];
        app.create_as(
            &app.token(&Caller::patient(o)),
            &consent(o, &Rule::Opposition, (None, None)),
        );
        let c = &records["C"];
        let mut closed = patient(RECORDS[3].1, Some("1984-02-29"), Some(&gp));
        closed["id"] = json!(c);
        closed["active"] = json!(false);
        let reply = app.send_as(
            &app.token(&Caller::patient(c)),
            "PUT",
            &format!("/Patient/{c}"),
            &closed,
            &[],
        );
        assert_eq!(reply.status, 200, "the holder closes C: {}", reply.body);

        Seed {
            app,
            records,
            documents,
            versions,
            practitioners,
            organizations,
            guardian,
        }
    }

    /// Every principal of the tables, by name.
    fn callers(&self) -> Vec<(&'static str, Caller)> {
        let pro = |name: &str, profession: &str, organization: &str| {
            Caller::professional(
                &self.practitioners[name],
                profession,
                &self.organizations[organization],
            )
        };
        let mut callers = vec![
            ("guardian", Caller::guardian(&self.guardian)),
            ("gp", pro("gp", "10", "hospital")),
            ("authorized", pro("authorized", "10", "hospital")),
            ("pharmacist", pro("pharmacist", "21", "hospital")),
            // A profession outside the matrix sees nothing, even authorized (§5).
            ("unlisted", pro("unlisted", "99", "hospital")),
            ("stranger", pro("stranger", "10", "hospital")),
            (
                "emergency",
                pro("stranger", "10", "hospital").break_glass("unconscious at admission"),
            ),
            ("blocked", pro("blocked", "10", "hospital")),
            (
                "blocked emergency",
                pro("blocked", "10", "hospital").break_glass("unconscious at admission"),
            ),
            ("colleague", pro("colleague", "10", "elsewhere")),
            (
                "colleague emergency",
                pro("colleague", "10", "elsewhere").break_glass("unconscious at admission"),
            ),
            ("feeder", Caller::feeding_system()),
            (
                "other feeder",
                Caller::feeding_system().client("test-feeder-other"),
            ),
            ("app P", Caller::catalogue_app(&self.records["P"])),
            ("app Q", Caller::catalogue_app(&self.records["Q"])),
            ("provisioning", Caller::provisioning()),
        ];
        for (record, name) in [
            ("P", "patient P"),
            ("M", "patient M"),
            ("Q", "patient Q"),
            ("C", "patient C"),
            ("O", "patient O"),
        ] {
            callers.push((name, Caller::patient(&self.records[record])));
        }
        callers
    }

    /// `DocumentReference/{id}` of the documents of `record` that `who` reads.
    fn visible(&self, who: &str, record: &str) -> BTreeSet<String> {
        DOCUMENTS
            .iter()
            .filter(|(_, r, .., readers)| *r == record && readers.contains(&who))
            .map(|(name, ..)| format!("DocumentReference/{}", self.documents[name]))
            .collect()
    }

    /// `DocumentReference/{id}` of every document `who` reads.
    fn visible_anywhere(&self, who: &str) -> BTreeSet<String> {
        RECORDS
            .iter()
            .flat_map(|(record, _)| self.visible(who, record))
            .collect()
    }

    fn reads_header(&self, who: &str, record: &str) -> bool {
        header_readers(record).contains(&who)
    }

    /// A seeded document as stored (labels and author included), without its `meta`.
    fn body(&self, name: &str) -> Value {
        let (_, record, by, class, labels, masked, _) =
            DOCUMENTS.iter().find(|(n, ..)| *n == name).unwrap();
        let mut labels = labels.to_vec();
        if *masked {
            labels.push("MASQUE_PS");
        }
        let author = (*by == By::Authorized).then(|| self.practitioners["authorized"].as_str());
        let mut body = document(&self.records[record], name, class, &labels, author, None);
        body["id"] = json!(self.documents[name]);
        body
    }

    fn nir(record: &str) -> &'static str {
        RECORDS.iter().find(|(r, _)| *r == record).unwrap().1
    }
}

fn is_professional(who: &str) -> bool {
    PROFESSIONALS.contains(&who)
}

/// Asserts that a search answered exactly `expected` (its `match` entries), with every page's
/// total equal to their number where the page gives one; when nothing is expected, a 4xx
/// OperationOutcome is accepted too, provided that the same search about a record that does
/// not exist (`missing`) answers the same status, so that the refusal tells nothing.
fn assert_search(
    app: &App,
    token: &str,
    (path, form): (&str, Option<&str>),
    missing: (&str, Option<&str>),
    expected: &BTreeSet<String>,
    what: &str,
) {
    let method = if form.is_some() { "POST" } else { "GET" };
    match app.pages(token, method, path, form) {
        Ok(pages) => check_pages(&pages, expected, what),
        Err(reply) => {
            assert!(
                expected.is_empty(),
                "{what}: {method} {path} should list {expected:?}: {} {}",
                reply.status,
                reply.body
            );
            assert_refused(&reply, what);
            let other = app
                .pages(token, method, missing.0, missing.1)
                .err()
                .map(|r| r.status);
            assert_eq!(
                other,
                Some(reply.status),
                "{what}: refused for an existing record but not for a missing one"
            );
        }
    }
}

fn check_pages(pages: &Pages, expected: &BTreeSet<String>, what: &str) {
    let matches = pages.with_mode("match");
    let found = sorted(matches.iter().cloned());
    assert_eq!(
        matches.len(),
        found.len(),
        "{what}: an entry is served twice"
    );
    assert_eq!(&found, expected, "{what}: the matches differ");
    for total in pages.totals.iter().flatten() {
        assert_eq!(
            *total as usize,
            expected.len(),
            "{what}: the total counts hidden resources"
        );
    }
}

// ---- Direct reads ----------------------------------------------------------------------

/// §3: read, vread (every version) and instance history of every seeded document answer
/// the allowed parties, and every other party exactly as for a document that does not exist.
#[test]
fn documents_are_read_only_by_the_parties_allowed_and_otherwise_answer_like_missing_ones() {
    let seed = Seed::new();
    let app = &seed.app;
    for (who, caller) in seed.callers() {
        let token = app.token(&caller);
        for (name, record, .., readers) in DOCUMENTS {
            let id = &seed.documents[name];
            let missing = missing_like(id);
            let allowed = readers.contains(&who);
            let mut paths = vec![
                "/DocumentReference/{}".to_owned(),
                "/DocumentReference/{}/_history".to_owned(),
            ];
            for version in 1..=seed.versions[name] {
                paths.push(format!("/DocumentReference/{{}}/_history/{version}"));
            }
            for template in paths {
                let what = format!("{who} on {name} (record {record}): GET {template}");
                let reply = app.get_as(&token, &template.replace("{}", id));
                if allowed {
                    assert_eq!(reply.status, 200, "{what}: {}", reply.body);
                    let body = reply.json();
                    if body["resourceType"] == "Bundle" {
                        let entries = crate::inprocess::bundle_entries(&body);
                        assert_eq!(entries.len() as u32, seed.versions[name], "{what}: {body}");
                    } else {
                        assert_eq!(body["id"], json!(id), "{what}");
                    }
                } else {
                    let absent = app.get_as(&token, &template.replace("{}", &missing));
                    assert_like_missing(&reply, &absent, id, &missing, &what);
                }
            }
        }
    }
}

/// §2 and policy `may_read` ("the record header"): who reads each Patient resource. An
/// opposed record's header is read by nobody but the person (and provisioning).
#[test]
fn record_headers_are_read_per_record_state_and_directives() {
    let seed = Seed::new();
    let app = &seed.app;
    for (who, caller) in seed.callers() {
        let token = app.token(&caller);
        for (record, _) in RECORDS {
            let id = &seed.records[record];
            let missing = missing_like(id);
            let what = format!("{who} reading the header of {record}");
            let reply = app.get_as(&token, &format!("/Patient/{id}"));
            if seed.reads_header(who, record) {
                assert_eq!(reply.status, 200, "{what}: {}", reply.body);
            } else {
                let absent = app.get_as(&token, &format!("/Patient/{missing}"));
                assert_like_missing(&reply, &absent, id, &missing, &what);
            }
        }
    }
}

// ---- Searches --------------------------------------------------------------------------

/// §3, §5: every way of searching one record's documents lists exactly what the caller may
/// read, with an exact `_total` and `_summary=count`.
#[test]
fn document_searches_list_exactly_the_visible_documents_with_exact_totals() {
    let seed = Seed::new();
    let app = &seed.app;
    for (who, caller) in seed.callers() {
        let token = app.token(&caller);
        for (record, nir) in RECORDS {
            let id = &seed.records[record];
            let expected = seed.visible(who, record);
            let chain = format!("{INS_NIR}|{nir}");
            let variants: Vec<(String, Option<String>, String, Option<String>)> = vec![
                (
                    format!("/DocumentReference?patient={id}&_total=accurate"),
                    None,
                    "/DocumentReference?patient=absent&_total=accurate".into(),
                    None,
                ),
                (
                    format!("/DocumentReference?subject=Patient/{id}&_total=accurate"),
                    None,
                    "/DocumentReference?subject=Patient/absent&_total=accurate".into(),
                    None,
                ),
                (
                    format!("/DocumentReference?patient.identifier={chain}&_total=accurate"),
                    None,
                    format!("/DocumentReference?patient.identifier={INS_NIR}|100000000000000&_total=accurate"),
                    None,
                ),
                (
                    "/DocumentReference/_search".into(),
                    Some(format!("patient={id}&_total=accurate")),
                    "/DocumentReference/_search".into(),
                    Some("patient=absent&_total=accurate".into()),
                ),
                (
                    format!("/?_type=DocumentReference&patient={id}&_total=accurate"),
                    None,
                    "/?_type=DocumentReference&patient=absent&_total=accurate".into(),
                    None,
                ),
                (
                    "/_search".into(),
                    Some(format!("_type=DocumentReference&patient={id}&_total=accurate")),
                    "/_search".into(),
                    Some("_type=DocumentReference&patient=absent&_total=accurate".into()),
                ),
                (
                    format!("/DocumentReference?patient={id}&_sort=-date&_total=accurate"),
                    None,
                    "/DocumentReference?patient=absent&_sort=-date&_total=accurate".into(),
                    None,
                ),
                (
                    format!("/DocumentReference?patient={id}&_elements=status,content&_total=accurate"),
                    None,
                    "/DocumentReference?patient=absent&_elements=status,content&_total=accurate"
                        .into(),
                    None,
                ),
            ];
            for (path, form, missing, missing_form) in &variants {
                let what = format!("{who} searching record {record}: {path} {form:?}");
                assert_search(
                    app,
                    &token,
                    (path, form.as_deref()),
                    (missing, missing_form.as_deref()),
                    &expected,
                    &what,
                );
            }
            let what = format!("{who} counting record {record}");
            let reply = app.get_as(
                &token,
                &format!("/DocumentReference?patient={id}&_summary=count"),
            );
            if reply.status == 200 {
                let bundle = reply.json();
                assert_eq!(bundle["total"], json!(expected.len()), "{what}: {bundle}");
                assert!(
                    bundle["entry"].as_array().is_none_or(Vec::is_empty),
                    "{what}"
                );
            } else {
                assert!(
                    expected.is_empty(),
                    "{what}: {} {}",
                    reply.status,
                    reply.body
                );
                assert_refused(&reply, &what);
            }
        }
    }
}

/// Issue 12: the compartment search `Patient/{id}/DocumentReference` names the patient and is
/// filtered like any other.
#[test]
fn compartment_searches_list_exactly_the_visible_documents() {
    let seed = Seed::new();
    let app = &seed.app;
    for (who, caller) in seed.callers() {
        let token = app.token(&caller);
        for (record, _) in RECORDS {
            let id = &seed.records[record];
            let what = format!("{who} searching the compartment of {record}");
            assert_search(
                app,
                &token,
                (
                    &format!("/Patient/{id}/DocumentReference?_total=accurate"),
                    None,
                ),
                (
                    &format!(
                        "/Patient/{}/DocumentReference?_total=accurate",
                        missing_like(id)
                    ),
                    None,
                ),
                &seed.visible(who, record),
                &what,
            );
        }
    }
}

/// Issue 12: pages of one entry, followed through their `next` links, show no hidden entry,
/// never an empty page that a hidden one would leave, and an exact total on every page.
#[test]
fn paging_shows_no_hidden_entry_and_every_page_total_is_exact() {
    let seed = Seed::new();
    let app = &seed.app;
    for (who, caller) in seed.callers() {
        let token = app.token(&caller);
        for (record, _) in RECORDS {
            let id = &seed.records[record];
            let expected = seed.visible(who, record);
            for sort in ["date", "-date"] {
                let path = format!(
                    "/DocumentReference?patient={id}&_count=1&_sort={sort}&_total=accurate"
                );
                let what = format!("{who} paging record {record} by {sort}");
                match app.pages(&token, "GET", &path, None) {
                    Ok(pages) => {
                        check_pages(&pages, &expected, &what);
                        assert_eq!(
                            pages.totals.len(),
                            expected.len().max(1),
                            "{what}: the number of pages counts hidden entries"
                        );
                    }
                    Err(reply) => {
                        assert!(
                            expected.is_empty(),
                            "{what}: {} {}",
                            reply.status,
                            reply.body
                        );
                        assert_refused(&reply, &what);
                    }
                }
            }
        }
    }
}

/// Issue 12: `_include`, `_revinclude` and `:iterate` bring in only what the caller reads.
#[test]
fn includes_and_revincludes_bring_in_only_visible_resources() {
    let seed = Seed::new();
    let app = &seed.app;
    for (who, caller) in seed.callers() {
        let token = app.token(&caller);
        for (record, _) in RECORDS {
            let id = &seed.records[record];
            let header = format!("Patient/{id}");
            let visible = seed.visible(who, record);
            let reads_header = seed.reads_header(who, record);

            // From the documents to their subject, and back from it to every document.
            let path = format!(
                "/DocumentReference?patient={id}&_include=DocumentReference:subject\
                 &_revinclude:iterate=DocumentReference:subject&_total=accurate"
            );
            let what = format!("{who} including from record {record}'s documents");
            match app.pages(&token, "GET", &path, None) {
                Ok(pages) => {
                    check_pages(&pages, &visible, &what);
                    for (key, _) in &pages.entries {
                        if key.starts_with("DocumentReference/") {
                            assert!(visible.contains(key), "{what}: {key} is hidden");
                        } else {
                            assert!(
                                *key == header && reads_header,
                                "{what}: {key} is not a resource the caller reads"
                            );
                        }
                    }
                    let included = pages.with_mode("include").contains(&header);
                    assert_eq!(
                        included,
                        reads_header && !visible.is_empty(),
                        "{what}: the subject is included when, and only when, it is read"
                    );
                }
                Err(reply) => {
                    assert!(
                        visible.is_empty(),
                        "{what}: {} {}",
                        reply.status,
                        reply.body
                    );
                    assert_refused(&reply, &what);
                }
            }

            // From the record header to the documents that name it.
            for name in ["_revinclude", "_revinclude:iterate"] {
                let path = format!("/Patient?_id={id}&{name}=DocumentReference:subject");
                let what = format!("{who} revincluding into record {record} with {name}");
                match app.pages(&token, "GET", &path, None) {
                    Ok(pages) => {
                        let expected_match: BTreeSet<String> =
                            reads_header.then(|| header.clone()).into_iter().collect();
                        assert_eq!(sorted(pages.with_mode("match")), expected_match, "{what}");
                        let expected_included = if reads_header {
                            visible.clone()
                        } else {
                            BTreeSet::new()
                        };
                        assert_eq!(
                            sorted(pages.with_mode("include")),
                            expected_included,
                            "{what}"
                        );
                    }
                    // Decision left to the engine: whether `_id` names the one patient a
                    // professional must name; a refusal is then acceptable. Provisioning's
                    // scopes exclude clinical types whatever the record.
                    Err(reply) => {
                        assert!(
                            is_professional(who) || who == "provisioning" || !reads_header,
                            "{what}: {} {}",
                            reply.status,
                            reply.body
                        );
                        assert_refused(&reply, &what);
                    }
                }
            }
        }
    }
}

/// §3: a hidden document cannot be detected through a parameter aimed at it, a label search,
/// or a `_has` on its record.
#[test]
fn searches_aimed_at_a_hidden_document_find_nothing() {
    let seed = Seed::new();
    let app = &seed.app;
    for (who, caller) in seed.callers() {
        let token = app.token(&caller);
        for (name, record, .., readers) in DOCUMENTS {
            let id = &seed.records[record];
            let seen = readers.contains(&who);
            let key = format!("DocumentReference/{}", seed.documents[name]);
            let expected: BTreeSet<String> = seen.then(|| key.clone()).into_iter().collect();
            let code = name.replace(' ', "%20");
            let what = format!("{who} aiming at {name}");
            assert_search(
                app,
                &token,
                (
                    &format!("/DocumentReference?patient={id}&type={DOCUMENT_TYPE}|{code}&_total=accurate"),
                    None,
                ),
                (
                    &format!("/DocumentReference?patient=absent&type={DOCUMENT_TYPE}|{code}&_total=accurate"),
                    None,
                ),
                &expected,
                &format!("{what} by type"),
            );
            assert_search(
                app,
                &token,
                (
                    &format!("/DocumentReference?patient={id}&identifier={DOCUMENT_ID}|{code}&_total=accurate"),
                    None,
                ),
                (
                    &format!("/DocumentReference?patient=absent&identifier={DOCUMENT_ID}|{code}&_total=accurate"),
                    None,
                ),
                &expected,
                &format!("{what} by identifier"),
            );
            let path = format!(
                "/Patient?_id={id}&_has:DocumentReference:subject:type={DOCUMENT_TYPE}|{code}"
            );
            let what = format!("{what} through _has");
            match app.pages(&token, "GET", &path, None) {
                Ok(pages) => {
                    let expected: BTreeSet<String> = (seen && seed.reads_header(who, record))
                        .then(|| format!("Patient/{id}"))
                        .into_iter()
                        .collect();
                    assert_eq!(sorted(pages.with_mode("match")), expected, "{what}");
                }
                Err(reply) => {
                    assert!(
                        is_professional(who)
                            || who == "provisioning"
                            || !seed.reads_header(who, record),
                        "{what}: {} {}",
                        reply.status,
                        reply.body
                    );
                    assert_refused(&reply, &what);
                }
            }
        }
        for label in [
            "MASQUE_PS",
            "INVISIBLE_PATIENT",
            "INVISIBLE_REPRESENTANTS_LEGAUX",
        ] {
            for (record, _) in RECORDS {
                let expected: BTreeSet<String> = DOCUMENTS
                    .iter()
                    .filter(|(_, r, _, _, labels, masked, readers)| {
                        *r == record
                            && readers.contains(&who)
                            && (labels.contains(&label) || (*masked && label == "MASQUE_PS"))
                    })
                    .map(|(name, ..)| format!("DocumentReference/{}", seed.documents[name]))
                    .collect();
                let id = &seed.records[record];
                assert_search(
                    app,
                    &token,
                    (
                        &format!("/DocumentReference?patient={id}&security-label={TRE_A07}|{label}&_total=accurate"),
                        None,
                    ),
                    (
                        &format!("/DocumentReference?patient=absent&security-label={TRE_A07}|{label}&_total=accurate"),
                        None,
                    ),
                    &expected,
                    &format!("{who} searching record {record} for {label}"),
                );
            }
        }
    }
}

/// Issue 12: history at the type and system levels lists only versions of resources the caller
/// reads (or is refused with an OperationOutcome where the caller may not list them).
#[test]
fn type_and_system_history_list_only_visible_resources() {
    let seed = Seed::new();
    let app = &seed.app;
    let headers: BTreeMap<String, &str> = seed
        .records
        .iter()
        .map(|(record, id)| (format!("Patient/{id}"), *record))
        .collect();
    let seeded: BTreeSet<String> = seed
        .documents
        .values()
        .map(|id| format!("DocumentReference/{id}"))
        .collect();
    for (who, caller) in seed.callers() {
        let token = app.token(&caller);
        let visible = seed.visible_anywhere(who);
        for path in ["/DocumentReference/_history", "/_history"] {
            let what = format!("{who}: GET {path}");
            match app.pages(&token, "GET", path, None) {
                Ok(pages) => {
                    let listed: BTreeSet<String> = pages
                        .entries
                        .iter()
                        .map(|(key, _)| key.clone())
                        .filter(|key| seeded.contains(key))
                        .collect();
                    assert_eq!(listed, visible, "{what}: the documents listed differ");
                    for (key, _) in &pages.entries {
                        if let Some(record) = headers.get(key) {
                            assert!(seed.reads_header(who, record), "{what}: {key} is listed");
                        }
                    }
                }
                Err(reply) => {
                    // Patients, guardians, apps and feeding systems list their own documents'
                    // history; a professional may be refused a listing that spans records.
                    assert!(
                        is_professional(who) || who == "provisioning" || path == "/_history",
                        "{what}: {} {}",
                        reply.status,
                        reply.body
                    );
                    assert_refused(&reply, &what);
                }
            }
        }
    }
}

// ---- Directives that change ------------------------------------------------------------

/// §4: revoking an authorization (deleting it, or making it inactive) and adding a block take
/// effect on the very next request.
#[test]
fn directives_take_effect_on_the_very_next_request() {
    let seed = Seed::new();
    let app = &seed.app;
    let p = &seed.records["P"];
    let holder = app.token(&Caller::patient(p));
    let lab = format!("/DocumentReference/{}", seed.documents["lab"]);
    let search = format!("/DocumentReference?patient={p}&_total=accurate");
    let pro = |name: &str| {
        app.token(&Caller::professional(
            &seed.practitioners[name],
            "10",
            &seed.organizations["hospital"],
        ))
    };
    let stranger = pro("stranger");
    let reads = |token: &str| {
        let read = app.get_as(token, &lab).status;
        let found = app
            .pages(token, "GET", &search, None)
            .map(|pages| pages.with_mode("match").len())
            .unwrap_or(0);
        (read, found)
    };
    assert_eq!(reads(&stranger), (404, 0), "before any authorization");

    let granted = app.create_as(
        &holder,
        &consent(
            p,
            &Rule::Authorize(seed.practitioners["stranger"].clone()),
            (None, None),
        ),
    );
    let (status, found) = reads(&stranger);
    assert_eq!(status, 200, "right after the authorization");
    assert!(found > 0);

    let reply = app.request_as(
        &holder,
        "DELETE",
        &format!("/Consent/{}", id_of(&granted)),
        &[],
        None,
    );
    assert!(matches!(reply.status, 200 | 204), "{}", reply.body);
    assert_eq!(
        reads(&stranger),
        (404, 0),
        "right after deleting the authorization"
    );

    let mut again = app.create_as(
        &holder,
        &consent(
            p,
            &Rule::Authorize(seed.practitioners["stranger"].clone()),
            (None, None),
        ),
    );
    assert_eq!(reads(&stranger).0, 200, "authorized again");
    again["status"] = json!("inactive");
    let reply = app.send_as(
        &holder,
        "PUT",
        &format!("/Consent/{}", id_of(&again)),
        &again,
        &[],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reads(&stranger),
        (404, 0),
        "right after making the authorization inactive"
    );

    // The general practitioner, then a block naming them: the block wins at once.
    let gp = pro("gp");
    assert_eq!(reads(&gp).0, 200);
    app.create_as(
        &holder,
        &consent(
            p,
            &Rule::Block(seed.practitioners["gp"].clone()),
            (None, None),
        ),
    );
    assert_eq!(
        reads(&gp),
        (404, 0),
        "right after blocking the general practitioner"
    );
}

/// §4: a directive applies during its `provision.period` only.
#[test]
fn directives_apply_only_during_their_period() {
    let seed = Seed::new();
    let app = &seed.app;
    let p = &seed.records["P"];
    let holder = app.token(&Caller::patient(p));
    let (yesterday, tomorrow) = (datetime_in_days(-1), datetime_in_days(1));
    let lab = format!("/DocumentReference/{}", seed.documents["lab"]);
    let pro = |name: &str| {
        app.token(&Caller::professional(
            &seed.practitioners[name],
            "10",
            &seed.organizations["hospital"],
        ))
    };
    // An authorization that ended, one that has not begun, one in force.
    let stranger = seed.practitioners["stranger"].clone();
    app.create_as(
        &holder,
        &consent(
            p,
            &Rule::Authorize(stranger.clone()),
            (Some("2020-01-01"), Some(&yesterday)),
        ),
    );
    app.create_as(
        &holder,
        &consent(
            p,
            &Rule::Authorize(stranger.clone()),
            (Some(&tomorrow), None),
        ),
    );
    assert_eq!(
        app.get_as(&pro("stranger"), &lab).status,
        404,
        "outside both periods"
    );
    app.create_as(
        &holder,
        &consent(
            p,
            &Rule::Authorize(stranger),
            (Some(&yesterday), Some(&tomorrow)),
        ),
    );
    assert_eq!(
        app.get_as(&pro("stranger"), &lab).status,
        200,
        "within the period"
    );

    // A block that ended no longer blocks; one that has not begun does not yet.
    app.create_as(
        &holder,
        &consent(
            p,
            &Rule::Block(seed.practitioners["gp"].clone()),
            (None, Some(&yesterday)),
        ),
    );
    app.create_as(
        &holder,
        &consent(
            p,
            &Rule::Block(seed.practitioners["gp"].clone()),
            (Some(&tomorrow), None),
        ),
    );
    assert_eq!(
        app.get_as(&pro("gp"), &lab).status,
        200,
        "blocks out of their period"
    );
    app.create_as(
        &holder,
        &consent(
            p,
            &Rule::Block(seed.practitioners["authorized"].clone()),
            (Some(&yesterday), Some(&tomorrow)),
        ),
    );
    assert_eq!(
        app.get_as(&pro("authorized"), &lab).status,
        404,
        "a block in force"
    );

    // A refusal of break-glass in force, on a record without one.
    let emergency = app.token(
        &Caller::professional(
            &seed.practitioners["stranger"],
            "10",
            &seed.organizations["hospital"],
        )
        .break_glass("cardiac arrest"),
    );
    let m = &seed.records["M"];
    let minor_lab = format!("/DocumentReference/{}", seed.documents["minor lab"]);
    // The minor's record: break-glass reveals it until the guardian refuses it.
    let guardian = app.token(&Caller::guardian(&seed.guardian));
    let doctor = app.token(&Caller::professional(
        &seed.practitioners["gp"],
        "10",
        &seed.organizations["hospital"],
    ));
    assert_eq!(
        app.get_as(&doctor, &minor_lab).status,
        404,
        "no authorization on M"
    );
    assert_eq!(
        app.get_as(&emergency, &minor_lab).status,
        200,
        "break-glass on M"
    );
    app.create_as(
        &guardian,
        &consent(
            m,
            &Rule::RefuseBreakGlass,
            (Some(&yesterday), Some(&tomorrow)),
        ),
    );
    assert_eq!(
        app.get_as(&emergency, &minor_lab).status,
        404,
        "break-glass refused"
    );
}

/// §8: guardianship ends at 00:00 Europe/Paris on the 18th birthday: the guardian of someone
/// born 18 years ago today reads nothing; of someone whose 18th birthday is tomorrow, the
/// minor's record.
#[test]
fn guardianship_ends_on_the_eighteenth_birthday_in_paris() {
    let app = App::start();
    let provisioning = app.token(&Caller::provisioning());
    let feeder = app.token(&Caller::feeding_system());
    for (nir, birth_date, reads) in [
        ("208121234567801", paris_date(-18, 0), false),
        ("208121234567802", paris_date(-18, 1), true),
        ("208121234567803", paris_date(-18, -1), false),
        // Without a birth date nobody can show the person is a minor (policy: no guardianship).
        ("208121234567804", String::new(), false),
    ] {
        let birth = (!birth_date.is_empty()).then_some(birth_date.as_str());
        let ward = id_of(&app.create_as(&provisioning, &patient(nir, birth, None)));
        let link = id_of(&app.create_as(&provisioning, &guardian_link(&ward)));
        let doc = id_of(&app.create_as(&feeder, &document(&ward, "lab", "11", &[], None, None)));
        let guardian = app.token(&Caller::guardian(&link));
        let what = format!("the guardian of someone born {birth_date:?}");
        let read = app.get_as(&guardian, &format!("/DocumentReference/{doc}"));
        let found = app
            .pages(
                &guardian,
                "GET",
                &format!("/DocumentReference?patient={ward}"),
                None,
            )
            .map(|pages| pages.with_mode("match"))
            .unwrap_or_default();
        if reads {
            assert_eq!(read.status, 200, "{what}: {}", read.body);
            assert_eq!(found, vec![format!("DocumentReference/{doc}")], "{what}");
        } else {
            assert_eq!(read.status, 404, "{what}: {}", read.body);
            assert!(found.is_empty(), "{what}: {found:?}");
        }
    }
}

// ---- Professionals' searches -----------------------------------------------------------

/// §5: a professional's search names one patient; a search across patients is refused with
/// an OperationOutcome, break-glass or not, while the same searches naming a patient work.
#[test]
fn a_professional_search_must_name_one_patient() {
    let seed = Seed::new();
    let app = &seed.app;
    let p = &seed.records["P"];
    for who in ["gp", "authorized", "emergency", "stranger"] {
        let (_, caller) = seed.callers().into_iter().find(|(w, _)| *w == who).unwrap();
        let token = app.token(&caller);
        for path in [
            "/DocumentReference".to_owned(),
            "/DocumentReference?status=current".to_owned(),
            format!("/DocumentReference?type={DOCUMENT_TYPE}|lab"),
            "/DocumentReference?_total=accurate&_summary=count".to_owned(),
            "/AllergyIntolerance".to_owned(),
            "/?_type=DocumentReference".to_owned(),
            "/?_type=DocumentReference,AllergyIntolerance&_summary=count".to_owned(),
            format!("/DocumentReference?patient={p},{}", seed.records["Q"]),
            // A subject that is not a Patient names no record: such documents take their
            // record from their author, so this would search across records.
            "/DocumentReference?subject=Device/pump-1".to_owned(),
            format!("/DocumentReference?subject={p}"),
        ] {
            let reply = app.get_as(&token, &path);
            assert_refused(&reply, &format!("{who}: GET {path}"));
        }
        let reply = app.request_as(
            &token,
            "POST",
            "/DocumentReference/_search",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(b"status=current"),
        );
        assert_refused(&reply, &format!("{who}: POST _search without a patient"));
        if who == "stranger" {
            continue;
        }
        for path in [
            format!("/DocumentReference?patient={p}"),
            format!("/DocumentReference?subject=Patient/{p}"),
            format!(
                "/DocumentReference?patient.identifier={INS_NIR}|{}",
                Seed::nir("P")
            ),
            format!("/Patient/{p}/DocumentReference"),
        ] {
            let reply = app.get_as(&token, &path);
            assert_eq!(reply.status, 200, "{who}: GET {path}: {}", reply.body);
        }
    }
}

/// §1, issue 12: break-glass needs a reason.
#[test]
fn break_glass_without_a_reason_is_refused() {
    let seed = Seed::new();
    let app = &seed.app;
    let mut caller = Caller::professional(
        &seed.practitioners["stranger"],
        "10",
        &seed.organizations["hospital"],
    );
    caller.claims.purpose_of_use = Some("BTG".to_owned());
    for reason in [None, Some("")] {
        caller.claims.break_glass_reason = reason.map(str::to_owned);
        let reply = app.get_as(
            &app.token(&caller),
            &format!("/DocumentReference/{}", seed.documents["lab"]),
        );
        reply.outcome(400);
    }
}

// ---- Binary ----------------------------------------------------------------------------

/// §3: a document's bytes (`Binary`, at its `attachment.url`) are read by whoever reads the
/// document, and by nobody else, who gets the answer for a missing Binary.
#[test]
fn document_bytes_are_read_only_through_a_document_the_caller_reads() {
    let app = App::start();
    let provisioning = app.token(&Caller::provisioning());
    let feeder = app.token(&Caller::feeding_system());
    let hospital = id_of(&app.create_as(&provisioning, &organization("750000010")));
    let gp = id_of(&app.create_as(&provisioning, &practitioner("10000000001")));
    let stranger = id_of(&app.create_as(&provisioning, &practitioner("10000000002")));
    let p = id_of(&app.create_as(
        &provisioning,
        &patient("284021234567890", Some("1984-02-29"), Some(&gp)),
    ));
    let q = id_of(&app.create_as(
        &provisioning,
        &patient("178031234567892", Some("1978-03-01"), None),
    ));
    let upload = |bytes: &[u8]| {
        let reply = app.request_as(
            &feeder,
            "POST",
            "/Binary",
            &[("Content-Type", "application/pdf")],
            Some(bytes),
        );
        assert_eq!(reply.status, 201, "{}", reply.body);
        id_of(&reply.json())
    };
    let open = upload(b"%PDF-1.4 open report");
    let hidden = upload(b"%PDF-1.4 not yet announced");
    app.create_as(
        &feeder,
        &document(&p, "open", "11", &[], None, Some(&format!("Binary/{open}"))),
    );
    app.create_as(
        &feeder,
        &document(
            &p,
            "hidden",
            "11",
            &["INVISIBLE_PATIENT"],
            None,
            Some(&format!("Binary/{hidden}")),
        ),
    );
    let callers = [
        ("patient", Caller::patient(&p), true, false),
        ("app", Caller::catalogue_app(&p), true, false),
        ("gp", Caller::professional(&gp, "10", &hospital), true, true),
        (
            "stranger",
            Caller::professional(&stranger, "10", &hospital),
            false,
            false,
        ),
        ("other patient", Caller::patient(&q), false, false),
        ("feeder", Caller::feeding_system(), true, true),
        (
            "other feeder",
            Caller::feeding_system().client("test-feeder-other"),
            false,
            false,
        ),
        ("provisioning", Caller::provisioning(), false, false),
    ];
    for (who, caller, reads_open, reads_hidden) in callers {
        let token = app.token(&caller);
        for (binary, reads) in [(&open, reads_open), (&hidden, reads_hidden)] {
            let what = format!("{who} reading Binary/{binary}");
            let reply = app.request_as(
                &token,
                "GET",
                &format!("/Binary/{binary}"),
                &[("Accept", "application/pdf")],
                None,
            );
            if reads {
                assert_eq!(reply.status, 200, "{what}: {}", reply.body);
            } else {
                let missing = missing_like(binary);
                let absent = app.request_as(
                    &token,
                    "GET",
                    &format!("/Binary/{missing}"),
                    &[("Accept", "application/pdf")],
                    None,
                );
                assert_like_missing(&reply, &absent, binary, &missing, &what);
            }
        }
    }
}

// ---- Conditional operations ------------------------------------------------------------

/// Issue 12: `If-None-Exist` matches only what the caller reads: a hidden match is never
/// returned; the create goes ahead as if it did not exist.
#[test]
fn conditional_create_never_returns_a_hidden_match() {
    let seed = Seed::new();
    let app = &seed.app;
    let p = &seed.records["P"];
    for (who, caller, name) in [
        ("patient P", Caller::patient(p), "hidden from patient"),
        (
            "stranger",
            Caller::professional(
                &seed.practitioners["stranger"],
                "10",
                &seed.organizations["hospital"],
            ),
            "lab",
        ),
        (
            "gp",
            Caller::professional(
                &seed.practitioners["gp"],
                "10",
                &seed.organizations["hospital"],
            ),
            "masked",
        ),
        (
            "other feeder",
            Caller::feeding_system().client("test-feeder-other"),
            "lab",
        ),
    ] {
        let token = app.token(&caller);
        let hidden = &seed.documents[name];
        let code = name.replace(' ', "%20");
        let condition = format!("identifier={DOCUMENT_ID}|{code}");
        let body = document(p, name, "11", &[], None, None);
        let reply = app.send_as(
            &token,
            "POST",
            "/DocumentReference",
            &body,
            &[("If-None-Exist", &condition)],
        );
        let what = format!("{who} creating if no {name} exists");
        assert!(
            !reply.body.contains(hidden.as_str()),
            "{what}: the hidden match leaks: {}",
            reply.body
        );
        assert_ne!(
            reply.status, 200,
            "{what}: answered as if it matched: {}",
            reply.body
        );
        assert!(
            reply
                .header("Location")
                .is_none_or(|l| !l.contains(hidden.as_str())),
            "{what}"
        );
        assert_eq!(
            reply.status, 201,
            "{what}: the create goes ahead: {}",
            reply.body
        );
    }
}

/// Issue 12: conditional update, patch and delete match only what the caller reads; a hidden
/// match is never altered.
#[test]
fn conditional_update_patch_and_delete_leave_hidden_matches_alone() {
    let seed = Seed::new();
    let app = &seed.app;
    let p = &seed.records["P"];
    let feeder = app.token(&Caller::feeding_system());
    let version_of = |id: &str| {
        let reply = app.get_as(&feeder, &format!("/DocumentReference/{id}"));
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()["meta"]["versionId"].clone()
    };
    let hidden = &seed.documents["hidden from patient"];
    let before = version_of(hidden);
    let holder = app.token(&Caller::patient(p));
    let other_feeder = app.token(&Caller::feeding_system().client("test-feeder-other"));
    let condition = format!("identifier={DOCUMENT_ID}|hidden%20from%20patient");
    for (who, token) in [("patient P", &holder), ("other feeder", &other_feeder)] {
        let patch = app.request_as(
            token,
            "PATCH",
            &format!("/DocumentReference?{condition}"),
            &[("Content-Type", "application/json-patch+json")],
            Some(br#"[{"op": "replace", "path": "/status", "value": "entered-in-error"}]"#),
        );
        assert!(
            !patch.body.contains(hidden.as_str()),
            "{who} PATCH: {}",
            patch.body
        );
        assert!(
            matches!(patch.status, 404 | 412 | 403),
            "{who} PATCH: {} {}",
            patch.status,
            patch.body
        );
        let delete = app.request_as(
            token,
            "DELETE",
            &format!("/DocumentReference?{condition}"),
            &[],
            None,
        );
        assert!(
            !delete.body.contains(hidden.as_str()),
            "{who} DELETE: {}",
            delete.body
        );
        // Last: with no match it may create, and what it creates the caller then sees.
        let mut body = document(p, "hidden from patient", "11", &[], None, None);
        body["description"] = json!("overwritten");
        let put = app.send_as(
            token,
            "PUT",
            &format!("/DocumentReference?{condition}"),
            &body,
            &[],
        );
        assert!(
            !put.body.contains(hidden.as_str()),
            "{who} PUT: {}",
            put.body
        );
        assert_eq!(
            version_of(hidden),
            before,
            "{who}: the hidden match was altered"
        );
    }
    // The direct forms too: the hidden document answers as missing.
    let direct = format!("/DocumentReference/{hidden}");
    let mut body = document(p, "hidden from patient", "11", &[], None, None);
    body["id"] = json!(hidden);
    let put = app.send_as(&holder, "PUT", &direct, &body, &[]);
    assert!((400..500).contains(&put.status), "{}", put.body);
    let delete = app.request_as(&holder, "DELETE", &direct, &[], None);
    assert_eq!(delete.status, 404, "{}", delete.body);
    assert_eq!(
        version_of(hidden),
        before,
        "the hidden document was altered"
    );
}

// ---- Writes (§5, policy::may_write) ------------------------------------------------------

/// Interfaces "Record lifecycle": feeds into a closed or opposed record are refused with 403,
/// `forbidden`, and a text saying the record does not accept data; nothing is stored.
#[test]
fn feeds_into_closed_or_opposed_records_are_refused() {
    let seed = Seed::new();
    let app = &seed.app;
    let gp = Caller::professional(
        &seed.practitioners["gp"],
        "10",
        &seed.organizations["hospital"],
    );
    for record in ["C", "O"] {
        let id = &seed.records[record];
        for (who, caller) in [
            ("feeder", Caller::feeding_system()),
            ("gp", gp.clone()),
            ("emergency", gp.clone().break_glass("stroke")),
        ] {
            let token = app.token(&caller);
            let body = document(id, "late report", "11", &[], None, None);
            let reply = app.send_as(&token, "POST", "/DocumentReference", &body, &[]);
            let issue = reply.outcome(403);
            assert_eq!(
                issue["code"], "forbidden",
                "{who} into {record}: {}",
                reply.body
            );
            let text =
                format!("{} {}", issue["diagnostics"], issue["details"]["text"]).to_lowercase();
            assert!(
                text.contains("accept"),
                "{who} into {record}: the text says why: {text}"
            );
        }
        // Nothing was stored: the holder, who reads everything, still has one document.
        let holder = app.token(&Caller::patient(id));
        let pages = app
            .pages(
                &holder,
                "GET",
                &format!("/DocumentReference?patient={id}&_total=accurate"),
                None,
            )
            .unwrap();
        assert_eq!(pages.with_mode("match").len(), 1, "record {record}");
    }
    // The holder of a closed record adds no document either (it accepts only their Consent
    // and Patient changes), but may reopen it.
    let c = &seed.records["C"];
    let holder = app.token(&Caller::patient(c));
    let reply = app.send_as(
        &holder,
        "POST",
        "/DocumentReference",
        &document(c, "mine", "11", &[], None, None),
        &[],
    );
    assert_eq!(reply.outcome(403)["code"], "forbidden");
    let mut reopened = patient(
        Seed::nir("C"),
        Some("1984-02-29"),
        Some(&seed.practitioners["gp"]),
    );
    reopened["id"] = json!(c);
    reopened["active"] = json!(true);
    let reply = app.send_as(&holder, "PUT", &format!("/Patient/{c}"), &reopened, &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = app.send_as(
        &app.token(&Caller::feeding_system()),
        "POST",
        "/DocumentReference",
        &document(c, "after", "11", &[], None, None),
        &[],
    );
    assert_eq!(
        reply.status, 201,
        "a reopened record accepts feeds: {}",
        reply.body
    );
}

/// §5, policy `enters`: a patient writes only into their own record, an app only into its
/// launch patient's, a blocked professional or establishment nowhere in the record.
#[test]
fn nobody_writes_into_a_record_they_may_not_enter() {
    let seed = Seed::new();
    let app = &seed.app;
    let p = &seed.records["P"];
    let q = &seed.records["Q"];
    let pro = |name: &str, organization: &str| {
        Caller::professional(
            &seed.practitioners[name],
            "10",
            &seed.organizations[organization],
        )
    };
    for (who, caller, record) in [
        ("patient Q", Caller::patient(q), p),
        ("patient P", Caller::patient(p), q),
        ("app P", Caller::catalogue_app(p), q),
        ("guardian of M", Caller::guardian(&seed.guardian), p),
        ("blocked", pro("blocked", "hospital"), p),
        (
            "colleague at a blocked establishment",
            pro("colleague", "elsewhere"),
            p,
        ),
        (
            "blocked in an emergency",
            pro("blocked", "hospital").break_glass("coma"),
            p,
        ),
    ] {
        let token = app.token(&caller);
        let reply = app.send_as(
            &token,
            "POST",
            "/DocumentReference",
            &document(record, "intrusion", "11", &[], None, None),
            &[],
        );
        assert_eq!(reply.status, 403, "{who}: {}", reply.body);
        assert_refused(&reply, who);
    }
    // Any professional adds to an active record without an authorization (§5), and then
    // reads nothing of it for that.
    let stranger = app.token(&pro("stranger", "hospital"));
    let reply = app.send_as(
        &stranger,
        "POST",
        "/DocumentReference",
        &document(p, "referral", "11", &[], None, None),
        &[],
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let id = created_id(&reply);
    let reply = app.get_as(&stranger, &format!("/DocumentReference/{id}"));
    assert_eq!(
        reply.status, 404,
        "the writer's own document gives no read: {}",
        reply.body
    );
}

/// §5 "delete / replace": only the author (or the writing system) replaces or deletes; who
/// does not see the document gets the answer for a missing one.
#[test]
fn only_the_author_replaces_or_deletes_a_document() {
    let seed = Seed::new();
    let app = &seed.app;
    let p = &seed.records["P"];
    let pro = |name: &str| {
        Caller::professional(
            &seed.practitioners[name],
            "10",
            &seed.organizations["hospital"],
        )
    };
    let replace = |caller: &Caller, name: &str| {
        let id = &seed.documents[name];
        let mut body = seed.body(name);
        body["description"] = json!("amended");
        app.send_as(
            &app.token(caller),
            "PUT",
            &format!("/DocumentReference/{id}"),
            &body,
            &[],
        )
        .status
    };
    let delete = |caller: &Caller, name: &str| {
        let id = &seed.documents[name];
        app.request_as(
            &app.token(caller),
            "DELETE",
            &format!("/DocumentReference/{id}"),
            &[],
            None,
        )
        .status
    };
    // (caller, document, expected status of a replacement and of a deletion)
    for (who, caller, name, expected) in [
        ("gp", pro("gp"), "lab", 403),
        ("patient P", Caller::patient(p), "lab", 403),
        ("emergency", pro("stranger").break_glass("coma"), "lab", 403),
        (
            "other feeder",
            Caller::feeding_system().client("test-feeder-other"),
            "lab",
            404,
        ),
        ("stranger", pro("stranger"), "lab", 404),
        ("gp", pro("gp"), "patient-entered", 403),
        ("feeder", Caller::feeding_system(), "patient-entered", 404),
    ] {
        // A hidden document answers as a missing one: a PUT to an unknown id is 405 on this
        // server (it assigns ids), a DELETE 404.
        let replaced = if expected == 404 { 405 } else { expected };
        assert_eq!(replace(&caller, name), replaced, "{who} replacing {name}");
        assert_eq!(delete(&caller, name), expected, "{who} deleting {name}");
    }
    assert_eq!(
        replace(&Caller::feeding_system(), "lab"),
        200,
        "the writing system replaces"
    );
    assert_eq!(
        replace(&Caller::patient(p), "patient-entered"),
        200,
        "the holder replaces their own"
    );
    assert_eq!(
        replace(&pro("authorized"), "masked by its author"),
        200,
        "the author replaces"
    );
    assert!(
        matches!(delete(&Caller::feeding_system(), "lab"), 200 | 204),
        "the writing system deletes"
    );
    assert!(
        matches!(delete(&Caller::patient(p), "patient-entered"), 200 | 204),
        "the holder deletes their own"
    );
}

/// §3, §5 "change visibility labels", policy `settable`: the patient sets `MASQUE_PS` (and
/// `INVISIBLE_REPRESENTANTS_LEGAUX`), professionals and feeding systems the `INVISIBLE_*`
/// labels, apps and provisioning none.
#[test]
fn each_party_changes_only_the_labels_it_may_set() {
    let seed = Seed::new();
    let app = &seed.app;
    let p = &seed.records["P"];
    let relabel = |caller: &Caller, name: &str, labels: &[&str]| {
        let id = &seed.documents[name];
        let feeder = app.token(&Caller::feeding_system());
        let current = app.get_as(&feeder, &format!("/DocumentReference/{id}"));
        let mut body = if current.status == 200 {
            current.json()
        } else {
            let mut body = document(p, name, "11", &[], None, None);
            body["id"] = json!(id);
            body
        };
        set_labels(&mut body, labels);
        let reply = app.send_as(
            &app.token(caller),
            "PUT",
            &format!("/DocumentReference/{id}"),
            &body,
            &[],
        );
        (reply.status, reply.body)
    };
    let pro = |name: &str| {
        Caller::professional(
            &seed.practitioners[name],
            "10",
            &seed.organizations["hospital"],
        )
    };
    for (who, caller, name, labels, expected) in [
        (
            "patient P",
            Caller::patient(p),
            "lab",
            &["INVISIBLE_PATIENT"][..],
            403,
        ),
        ("gp", pro("gp"), "lab", &["MASQUE_PS"][..], 403),
        (
            "feeder",
            Caller::feeding_system(),
            "lab",
            &["MASQUE_PS"][..],
            403,
        ),
        (
            "emergency",
            pro("stranger").break_glass("coma"),
            "lab",
            &["INVISIBLE_PATIENT"][..],
            403,
        ),
        (
            "app P",
            Caller::catalogue_app(p),
            "lab",
            &["MASQUE_PS"][..],
            403,
        ),
        (
            "patient P",
            Caller::patient(p),
            "lab",
            &["MASQUE_PS"][..],
            200,
        ),
        ("patient P", Caller::patient(p), "lab", &[][..], 200),
        (
            "authorized (not its author)",
            pro("authorized"),
            "lab",
            &["INVISIBLE_PATIENT"][..],
            200,
        ),
        ("feeder", Caller::feeding_system(), "lab", &[][..], 200),
        (
            "feeder",
            Caller::feeding_system(),
            "prescription",
            &["INVISIBLE_REPRESENTANTS_LEGAUX"][..],
            200,
        ),
    ] {
        let (status, body) = relabel(&caller, name, labels);
        assert_eq!(
            status, expected,
            "{who} setting {labels:?} on {name}: {body}"
        );
    }
}

/// §4, §5 "write Consent directives", policy `may_change_directives`.
#[test]
fn directives_are_written_by_the_holder_and_professionals_record_only_their_own_authorization() {
    let seed = Seed::new();
    let app = &seed.app;
    let p = &seed.records["P"];
    let m = &seed.records["M"];
    let pro = |name: &str| {
        Caller::professional(
            &seed.practitioners[name],
            "10",
            &seed.organizations["hospital"],
        )
    };
    let stranger = seed.practitioners["stranger"].clone();
    let gp = seed.practitioners["gp"].clone();
    for (who, caller, record, rule, expected) in [
        (
            "patient P",
            Caller::patient(p),
            p,
            Rule::Block(gp.clone()),
            201,
        ),
        (
            "guardian",
            Caller::guardian(&seed.guardian),
            m,
            Rule::Authorize(gp.clone()),
            201,
        ),
        (
            "stranger",
            pro("stranger"),
            p,
            Rule::Authorize(stranger.clone()),
            201,
        ),
        (
            "stranger",
            pro("stranger"),
            p,
            Rule::Authorize(gp.clone()),
            403,
        ),
        ("stranger", pro("stranger"), p, Rule::Block(gp.clone()), 403),
        ("gp", pro("gp"), p, Rule::RefuseBreakGlass, 403),
        (
            "feeder",
            Caller::feeding_system(),
            p,
            Rule::Authorize(stranger.clone()),
            403,
        ),
        (
            "app P",
            Caller::catalogue_app(p),
            p,
            Rule::Authorize(gp.clone()),
            403,
        ),
        (
            "provisioning",
            Caller::provisioning(),
            p,
            Rule::Authorize(gp.clone()),
            403,
        ),
        (
            "provisioning",
            Caller::provisioning(),
            &seed.records["Q"],
            Rule::Opposition,
            201,
        ),
        (
            "patient Q",
            Caller::patient(&seed.records["Q"]),
            p,
            Rule::Authorize(stranger.clone()),
            403,
        ),
    ] {
        let reply = app.send_as(
            &app.token(&caller),
            "POST",
            "/Consent",
            &consent(record, &rule, (None, None)),
            &[],
        );
        assert_eq!(
            reply.status, expected,
            "{who} writing {rule:?}: {}",
            reply.body
        );
    }
    // The authorization the stranger recorded opens the record to them; they revoke their
    // own, not the patient's directives.
    let stranger_token = app.token(&pro("stranger"));
    let lab = format!("/DocumentReference/{}", seed.documents["lab"]);
    assert_eq!(app.get_as(&stranger_token, &lab).status, 200);
    let found = |token: &str, query: &str| {
        app.pages(token, "GET", &format!("/Consent?patient={p}&{query}"), None)
            .map(|pages| pages.with_mode("match"))
            .unwrap_or_default()
    };
    let holder = app.token(&Caller::patient(p));
    let own = found(&holder, &format!("actor=Practitioner/{stranger}"));
    let patients = found(&holder, &format!("actor=Practitioner/{gp}"));
    assert_eq!((own.len(), patients.len()), (1, 1), "{own:?} {patients:?}");
    let reply = app.request_as(
        &stranger_token,
        "DELETE",
        &format!("/{}", patients[0]),
        &[],
        None,
    );
    assert_eq!(
        reply.status, 403,
        "revoking the patient's block: {}",
        reply.body
    );
    let reply = app.request_as(
        &stranger_token,
        "DELETE",
        &format!("/{}", own[0]),
        &[],
        None,
    );
    assert!(
        matches!(reply.status, 200 | 204),
        "revoking their own: {}",
        reply.body
    );
    assert_eq!(app.get_as(&stranger_token, &lab).status, 404, "revoked");
}

/// Interfaces "Client kinds and principals": provisioning writes records and guardianships
/// and no clinical data; nobody else creates records or guardianships.
#[test]
fn records_and_guardianships_are_provisioned_and_provisioning_writes_no_clinical_data() {
    let seed = Seed::new();
    let app = &seed.app;
    let p = &seed.records["P"];
    let provisioning = app.token(&Caller::provisioning());
    let reply = app.send_as(
        &provisioning,
        "POST",
        "/DocumentReference",
        &document(p, "x", "11", &[], None, None),
        &[],
    );
    assert_eq!(reply.status, 403, "{}", reply.body);
    for (who, caller) in [
        ("feeder", Caller::feeding_system()),
        ("patient P", Caller::patient(p)),
        (
            "gp",
            Caller::professional(
                &seed.practitioners["gp"],
                "10",
                &seed.organizations["hospital"],
            ),
        ),
    ] {
        let token = app.token(&caller);
        let reply = app.send_as(
            &token,
            "POST",
            "/Patient",
            &patient("199011234567899", Some("1990-01-01"), None),
            &[],
        );
        assert_eq!(reply.status, 403, "{who} creating a record: {}", reply.body);
        let reply = app.send_as(&token, "POST", "/RelatedPerson", &guardian_link(p), &[]);
        assert_eq!(
            reply.status, 403,
            "{who} making themselves a guardian: {}",
            reply.body
        );
    }
}
