//! Twelfth hostile review, against `fold-facts`: 1a40951 (a search pinned to one record asks
//! the record's facts — opposition, blocks, authorizations, break-glass refusals, guardianship,
//! "fed by" — as subqueries of the pinned id inside its own page, count and include
//! statements) and a323cc4 (a first version is one statement on PostgreSQL; a record's row
//! and directives are one LEFT JOIN read).
//!
//! Each test checks a pinned or folded path against an independent one: the same search
//! unpinned (a bare id, a chain without its system), the reads by id (which never pin), or
//! the rows the write left. Directives here have periods that ended, have not begun, or are
//! in force, which the shared consent seed (`consent.rs`) only reads by id.

use crate::consent::{
    consent, datetime_in_days, document, guardian_link, id_of, organization, paris_date, patient,
    practitioner, set_labels, Rule, INS_NIR,
};
use crate::harness::Server;
use crate::inprocess::{App, Caller, Pages, MORE_CLIENTS};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

// ---- A seed with directives in and out of their periods --------------------------------

/// Records: name, NIR, birth date, whether `gp` is their general practitioner.
const RECORDS: [(&str, &str, &str, bool); 9] = [
    // Authorizations in force, ended, not begun; blocks in force and ended; an organization
    // block not begun.
    ("A", "284021234567890", "1984-02-29", true),
    // A refusal of break-glass in force.
    ("Q", "178031234567892", "1978-03-01", false),
    // A refusal of break-glass that ended.
    ("R", "178031234567895", "1978-03-01", false),
    // An opposition that ended.
    ("O", "290061234567894", "1990-06-01", true),
    // An opposition not begun.
    ("F", "290061234567896", "1990-06-01", true),
    // An opposition in force (bounded).
    ("X", "290061234567897", "1990-06-01", true),
    // A minor, two guardians (one whose guardianship ended).
    ("M", "216071234567891", "", false),
    // The lab's organization blocked.
    ("B", "265111234567898", "1965-11-01", true),
    // Closed by its holder.
    ("C", "265111234567893", "1965-11-01", true),
];

/// The patient id of a record whose Patient is never provisioned.
const GHOST: &str = "ghost-fold-12";

struct Fold {
    app: App,
    /// Record name → Patient id.
    records: BTreeMap<&'static str, String>,
    /// Record name → its documents' ids.
    documents: BTreeMap<&'static str, Vec<String>>,
    practitioners: BTreeMap<&'static str, String>,
    organizations: BTreeMap<&'static str, String>,
    guardian: String,
    lapsed_guardian: String,
}

impl Fold {
    fn new() -> Fold {
        let app = App::start();
        let provisioning = app.token(&Caller::provisioning());
        let mut organizations = BTreeMap::new();
        // `lab` is the FINESS the feeding system `test-feeder` is registered with.
        for (name, finess) in [
            ("hospital", "750000010"),
            ("elsewhere", "750000011"),
            ("lab", "750000001"),
        ] {
            organizations.insert(
                name,
                id_of(&app.create_as(&provisioning, &organization(finess))),
            );
        }
        let mut practitioners = BTreeMap::new();
        for (i, name) in [
            "gp",
            "authorized",
            "lapsed",
            "future",
            "expired",
            "blocked",
            "colleague",
            "stranger",
        ]
        .into_iter()
        .enumerate()
        {
            practitioners.insert(
                name,
                id_of(&app.create_as(&provisioning, &practitioner(&format!("2000000000{i}")))),
            );
        }
        let gp = practitioners["gp"].clone();
        let minor_birth = paris_date(-10, 0);
        let mut records = BTreeMap::new();
        for (name, nir, birth, has_gp) in RECORDS {
            let birth = if name == "M" { &minor_birth } else { birth };
            let doctor = has_gp.then_some(gp.as_str());
            let created = app.create_as(&provisioning, &patient(nir, Some(birth), doctor));
            records.insert(name, id_of(&created));
        }
        let m = records["M"].clone();
        let guardian = id_of(&app.create_as(&provisioning, &guardian_link(&m)));
        let (yesterday, tomorrow) = (datetime_in_days(-1), datetime_in_days(1));
        let mut lapsed = guardian_link(&m);
        lapsed["period"] = json!({"start": "2020-01-01T00:00:00Z", "end": yesterday});
        let lapsed_guardian = id_of(&app.create_as(&provisioning, &lapsed));

        // A record with no Patient (no `records` row): its directives alone.
        records.insert("G", GHOST.to_owned());

        // Documents first: some directives below stop the lab from feeding.
        let feeder = app.token(&Caller::feeding_system());
        let other = app.token(&Caller::feeding_system().client("test-feeder-other"));
        let mut documents: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
        for name in RECORDS.iter().map(|(name, ..)| *name).chain(["G"]) {
            let id = &records[name];
            let mut made = vec![
                id_of(&app.create_as(&feeder, &document(id, "lab", "11", &[], None, None))),
                id_of(&app.create_as(&feeder, &document(id, "rx", "42", &[], None, None))),
                id_of(&app.create_as(
                    &feeder,
                    &document(id, "hidden", "11", &["INVISIBLE_PATIENT"], None, None),
                )),
                id_of(&app.create_as(&other, &document(id, "other", "11", &[], None, None))),
            ];
            if name == "M" {
                made.push(id_of(&app.create_as(
                    &feeder,
                    &document(
                        id,
                        "guardians",
                        "11",
                        &["INVISIBLE_REPRESENTANTS_LEGAUX"],
                        None,
                        None,
                    ),
                )));
            }
            if name == "A" {
                // Masked by the holder.
                let created =
                    app.create_as(&feeder, &document(id, "masked", "11", &[], None, None));
                let mut relabelled = created.clone();
                set_labels(&mut relabelled, &["MASQUE_PS"]);
                let holder = app.token(&Caller::patient(id));
                let path = format!("/DocumentReference/{}", id_of(&created));
                let reply = app.send_as(&holder, "PUT", &path, &relabelled, &[]);
                assert_eq!(reply.status, 200, "masking: {}", reply.body);
                made.push(id_of(&created));
            }
            documents.insert(name, made);
        }

        let holder = |name: &str| app.token(&Caller::patient(&records[name]));
        let say = |name: &str, rule: Rule, period: (Option<&str>, Option<&str>)| {
            app.create_as(&holder(name), &consent(&records[name], &rule, period));
        };
        let p = |name: &str| practitioners[name].clone();
        let always = (None, None);
        let now = (Some(yesterday.as_str()), Some(tomorrow.as_str()));
        let ended = (Some("2020-01-01T00:00:00Z"), Some(yesterday.as_str()));
        let later = (Some(tomorrow.as_str()), None);
        say("A", Rule::Authorize(p("authorized")), always);
        say("A", Rule::Authorize(p("lapsed")), always);
        say("A", Rule::Block(p("lapsed")), ended);
        say("A", Rule::Authorize(p("future")), later);
        say("A", Rule::Authorize(p("expired")), ended);
        say("A", Rule::Authorize(p("blocked")), always);
        say("A", Rule::Block(p("blocked")), now);
        say("A", Rule::Authorize(p("colleague")), always);
        say(
            "A",
            Rule::BlockOrganization(organizations["elsewhere"].clone()),
            later,
        );
        say("G", Rule::Authorize(p("authorized")), always);
        say("G", Rule::Authorize(p("blocked")), always);
        say("G", Rule::Block(p("blocked")), now);
        say("G", Rule::RefuseBreakGlass, now);
        say("Q", Rule::RefuseBreakGlass, now);
        say("R", Rule::RefuseBreakGlass, ended);
        say("O", Rule::Opposition, ended);
        say("F", Rule::Opposition, later);
        say("X", Rule::Opposition, now);
        say(
            "B",
            Rule::BlockOrganization(organizations["lab"].clone()),
            now,
        );
        let c = &records["C"];
        let mut closed = patient(RECORDS[8].1, Some(RECORDS[8].2), Some(&gp));
        closed["id"] = json!(c);
        closed["active"] = json!(false);
        let reply = app.send_as(&holder("C"), "PUT", &format!("/Patient/{c}"), &closed, &[]);
        assert_eq!(reply.status, 200, "closing C: {}", reply.body);

        Fold {
            app,
            records,
            documents,
            practitioners,
            organizations,
            guardian,
            lapsed_guardian,
        }
    }

    fn callers(&self) -> Vec<(String, Caller)> {
        let pro = |name: &str, organization: &str| {
            Caller::professional(
                &self.practitioners[name],
                "10",
                &self.organizations[organization],
            )
        };
        let mut callers: Vec<(String, Caller)> = vec![
            ("guardian".into(), Caller::guardian(&self.guardian)),
            (
                "lapsed guardian".into(),
                Caller::guardian(&self.lapsed_guardian),
            ),
            ("app A".into(), Caller::catalogue_app(&self.records["A"])),
            ("app X".into(), Caller::catalogue_app(&self.records["X"])),
            ("app C".into(), Caller::catalogue_app(&self.records["C"])),
            ("feeder".into(), Caller::feeding_system()),
            (
                "other feeder".into(),
                Caller::feeding_system().client("test-feeder-other"),
            ),
            ("provisioning".into(), Caller::provisioning()),
        ];
        for name in [
            "gp",
            "authorized",
            "lapsed",
            "future",
            "expired",
            "blocked",
            "stranger",
        ] {
            callers.push((name.into(), pro(name, "hospital")));
            if matches!(name, "blocked" | "stranger" | "expired") {
                callers.push((
                    format!("{name} emergency"),
                    pro(name, "hospital").break_glass("unconscious at admission"),
                ));
            }
        }
        callers.push(("colleague".into(), pro("colleague", "elsewhere")));
        callers.push((
            "colleague emergency".into(),
            pro("colleague", "elsewhere").break_glass("unconscious at admission"),
        ));
        for name in RECORDS.iter().map(|(name, ..)| *name).chain(["G"]) {
            callers.push((
                format!("patient {name}"),
                Caller::patient(&self.records[name]),
            ));
        }
        callers
    }
}

/// What a search answered: its matches, includes and totals, or the status of its refusal.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Found {
        matches: BTreeSet<String>,
        included: BTreeSet<String>,
        /// The distinct totals of its pages.
        totals: BTreeSet<u64>,
    },
    Refused(u16),
}

fn answer(app: &App, token: &str, path: &str) -> Answer {
    match app.pages(token, "GET", path, None) {
        Ok(Pages { entries, totals }) => {
            let of = |mode: &str| {
                entries
                    .iter()
                    .filter(|(_, m)| m.as_deref() == Some(mode))
                    .map(|(key, _)| key.clone())
                    .collect::<BTreeSet<String>>()
            };
            Answer::Found {
                matches: of("match"),
                included: of("include"),
                totals: totals.into_iter().flatten().collect(),
            }
        }
        Err(reply) => Answer::Refused(reply.status),
    }
}

fn who_is_professional(caller: &Caller) -> bool {
    caller
        .claims
        .fhir_user
        .as_deref()
        .is_some_and(|user| user.starts_with("Practitioner/"))
}

fn found(matches: BTreeSet<String>) -> Answer {
    let totals = [matches.len() as u64].into_iter().collect();
    Answer::Found {
        matches,
        included: BTreeSet::new(),
        totals,
    }
}

/// For every caller and record: a search pinned to the record (`subject=Patient/X`, the
/// compartment, `_summary=count`) lists exactly the record's documents the caller reads by id,
/// with exact totals, as the same search unpinned (`patient=X`, a bare id) does; a chain on the
/// INS with its system (pinned) answers as the chain on the bare value (not pinned); a
/// `Patient?_id=X` pinned search revincludes exactly those documents when the caller reads the
/// header, and `_has` finds the header exactly then.
#[test]
fn pinned_searches_agree_with_reads_by_id_and_unpinned_searches_whatever_the_periods() {
    let fold = Fold::new();
    let app = &fold.app;
    let mut differences: Vec<String> = Vec::new();
    let compare = |differences: &mut Vec<String>, what: String, got: Answer, expected: &Answer| {
        if &got != expected {
            differences.push(format!(
                "{what}:\n    got      {got:?}\n    expected {expected:?}"
            ));
        }
    };
    for (who, caller) in fold.callers() {
        let token = app.token(&caller);
        for (record, id) in &fold.records {
            let nir = RECORDS
                .iter()
                .find(|(r, ..)| r == record)
                .map(|(_, nir, ..)| *nir);
            let header = format!("Patient/{id}");
            // The oracle: reads by id, which are never pinned.
            let readable: BTreeSet<String> = fold.documents[record]
                .iter()
                .filter(|doc| {
                    app.get_as(&token, &format!("/DocumentReference/{doc}"))
                        .status
                        == 200
                })
                .map(|doc| format!("DocumentReference/{doc}"))
                .collect();
            let reads_header = app.get_as(&token, &format!("/Patient/{id}")).status == 200;
            let at = |path: &str| format!("{who} on {record}: {path}");

            let unpinned_path = format!("/DocumentReference?patient={id}&_total=accurate");
            let unpinned = answer(app, &token, &unpinned_path);
            let expected = match &unpinned {
                Answer::Refused(status) if readable.is_empty() => Answer::Refused(*status),
                _ => found(readable.clone()),
            };
            compare(&mut differences, at(&unpinned_path), unpinned, &expected);
            for path in [
                format!("/DocumentReference?subject=Patient/{id}&_total=accurate"),
                format!("/DocumentReference?patient=Patient/{id}&status=current&_total=accurate"),
                format!("/Patient/{id}/DocumentReference?_total=accurate"),
                format!("/DocumentReference?subject=Patient/{id}&_count=1&_total=accurate"),
            ] {
                match answer(app, &token, &path) {
                    // A refusal tells nothing when nothing would be listed (the compartment
                    // of another patient, say; `consent.rs` checks it answers as for a
                    // missing record).
                    Answer::Refused(_) if readable.is_empty() => {}
                    got => compare(&mut differences, at(&path), got, &expected),
                }
            }
            let count_path = format!("/DocumentReference?subject=Patient/{id}&_summary=count");
            let reply = app.get_as(&token, &count_path);
            let counted = match reply.status {
                200 => Some(reply.json()["total"].as_u64().unwrap_or(u64::MAX)),
                _ => None,
            };
            if counted != Some(readable.len() as u64) && !(counted.is_none() && readable.is_empty())
            {
                differences.push(format!(
                    "{}: counted {counted:?}, reads by id {}",
                    at(&count_path),
                    readable.len()
                ));
            }

            // The chain on the INS: pinned with its system, unpinned on the bare value.
            if let Some(nir) = nir {
                let pinned_chain = format!(
                    "/DocumentReference?patient.identifier={INS_NIR}|{nir}&_total=accurate"
                );
                let bare_chain =
                    format!("/DocumentReference?patient.identifier={nir}&_total=accurate");
                // A professional must name the patient with the identifier's system: the
                // bare chain is refused them, by design.
                match answer(app, &token, &bare_chain) {
                    Answer::Refused(_) if who_is_professional(&caller) => {}
                    bare => compare(
                        &mut differences,
                        at(&pinned_chain),
                        answer(app, &token, &pinned_chain),
                        &bare,
                    ),
                }
            }

            // Includes through the record reference, pinned and unpinned.
            let pinned_include = format!(
                "/DocumentReference?subject=Patient/{id}&_include=DocumentReference:patient&_total=accurate"
            );
            let unpinned_include = format!(
                "/DocumentReference?patient={id}&_include=DocumentReference:patient&_total=accurate"
            );
            compare(
                &mut differences,
                at(&pinned_include),
                answer(app, &token, &pinned_include),
                &answer(app, &token, &unpinned_include),
            );

            // The header named by id, its documents revincluded.
            let revinclude = format!("/Patient?_id={id}&_revinclude=DocumentReference:patient");
            match answer(app, &token, &revinclude) {
                Answer::Found {
                    matches, included, ..
                } => {
                    let expected_matches: BTreeSet<String> =
                        reads_header.then(|| header.clone()).into_iter().collect();
                    let expected_included = match reads_header {
                        true => readable.clone(),
                        false => BTreeSet::new(),
                    };
                    if matches != expected_matches || included != expected_included {
                        differences.push(format!(
                            "{}: matches {matches:?} included {included:?}, expected \
                             {expected_matches:?} {expected_included:?}",
                            at(&revinclude)
                        ));
                    }
                }
                // A refusal is the engine's to make (scopes, professionals); it must tell
                // nothing, which `consent.rs` checks.
                Answer::Refused(_) => {}
            }
            let has = format!("/Patient?_id={id}&_has:DocumentReference:patient:status=current");
            if let Answer::Found { matches, .. } = answer(app, &token, &has) {
                // `_has` reaches documents as a listing: the ones readable by id are those.
                let expected: BTreeSet<String> = (reads_header && !readable.is_empty())
                    .then(|| header.clone())
                    .into_iter()
                    .collect();
                if matches != expected {
                    differences.push(format!("{}: {matches:?}, expected {expected:?}", at(&has)));
                }
            }
        }
    }
    assert!(
        differences.is_empty(),
        "{} differences:\n{}",
        differences.len(),
        differences.join("\n")
    );
}

// ---- A record's facts, read for a write decision -----------------------------------------

/// `Unit::record` (one LEFT JOIN since a323cc4) returns the record's row when there is one,
/// and every directive of the record once, whatever else is missing: a record with its
/// Patient and several directives (the general practitioner's authorization among them), a
/// record whose directives were written before its Patient, a closed record without
/// directives, and no record at all.
#[test]
fn a_record_s_row_and_every_directive_are_read_whole() {
    let app = App::start();
    let provisioning = app.token(&Caller::provisioning());
    let gp = id_of(&app.create_as(&provisioning, &practitioner("30000000001")));
    let other = id_of(&app.create_as(&provisioning, &practitioner("30000000002")));
    let hospital = id_of(&app.create_as(&provisioning, &organization("750000020")));
    let full = id_of(&app.create_as(
        &provisioning,
        &patient("284021234567801", Some("1984-02-29"), Some(&gp)),
    ));
    let closed_body = patient("284021234567802", Some("1984-02-29"), None);
    let closed = id_of(&app.create_as(&provisioning, &closed_body));
    let mut closing = closed_body.clone();
    closing["id"] = json!(closed);
    closing["active"] = json!(false);
    let reply = app.send_as(
        &app.token(&Caller::patient(&closed)),
        "PUT",
        &format!("/Patient/{closed}"),
        &closing,
        &[],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    // A record whose holder wrote directives before any Patient was provisioned.
    let ghost = "ghost-record-12";
    let (yesterday, tomorrow) = (datetime_in_days(-1), datetime_in_days(1));
    let mut consents: Vec<(String, String)> = Vec::new();
    for (record, rule, period) in [
        (full.as_str(), Rule::Block(other.clone()), (None, None)),
        (
            full.as_str(),
            Rule::RefuseBreakGlass,
            (Some(yesterday.as_str()), Some(tomorrow.as_str())),
        ),
        (
            full.as_str(),
            Rule::BlockOrganization(hospital.clone()),
            (Some(tomorrow.as_str()), None),
        ),
        (full.as_str(), Rule::Authorize(other.clone()), (None, None)),
        (ghost, Rule::Opposition, (None, Some(tomorrow.as_str()))),
        (ghost, Rule::Block(other.clone()), (None, None)),
    ] {
        let holder = app.token(&Caller::patient(record));
        let reply = app.send_as(
            &holder,
            "POST",
            "/Consent",
            &consent(record, &rule, period),
            &[],
        );
        assert_eq!(reply.status, 201, "{record} {rule:?}: {}", reply.body);
        consents.push((record.to_owned(), id_of(&reply.json())));
    }
    let partitions = crate::harness::partitions();
    let store = carnet::store::Store::open(&app.config().database_url, partitions).unwrap();
    let sorted = |directives: Vec<carnet::consent::model::Directive>| {
        let mut all: Vec<String> = directives.iter().map(|d| format!("{d:?}")).collect();
        all.sort();
        all
    };
    let read = |record: &str| {
        store
            .unit(|unit| -> Result<_, carnet::store::StoreError> {
                let (row, directives) = unit.record(record)?;
                // What each source stored, read one source at a time.
                let mut expected = unit.directives_of(Some(record), "Patient", record)?;
                for (of, id) in &consents {
                    if of == record {
                        expected.extend(unit.directives_of(Some(record), "Consent", id)?);
                    }
                }
                Ok((row, sorted(directives), sorted(expected)))
            })
            .unwrap()
    };
    let (row, directives, expected) = read(&full);
    assert!(row.is_some_and(|r| r.active), "{row:?}");
    // The general practitioner's authorization, the three Consents' four directives.
    assert_eq!(expected.len(), 5, "{expected:?}");
    assert_eq!(directives, expected, "the record with its Patient");
    let (row, directives, expected) = read(ghost);
    assert_eq!(row, None);
    assert_eq!(expected.len(), 2, "{expected:?}");
    assert_eq!(directives, expected, "directives without a Patient");
    let (row, directives, _) = read(&closed);
    assert!(row.is_some_and(|r| !r.active), "{row:?}");
    assert!(directives.is_empty(), "{directives:?}");
    let (row, directives, _) = read("no-such-record");
    assert_eq!((row, directives.len()), (None, 0));

    // And the decisions made of them: the ghost record is opposed, the full one blocks
    // `other` (whose authorization does not lift the block) and not yet the hospital.
    let feeder = app.token(&Caller::feeding_system());
    let reply = app.send_as(
        &feeder,
        "POST",
        "/DocumentReference",
        &document(ghost, "into ghost", "11", &[], None, None),
        &[],
    );
    assert!(
        (400..500).contains(&reply.status),
        "a feed into an opposed record without its Patient: {} {}",
        reply.status,
        reply.body
    );
    let reply = app.send_as(
        &feeder,
        "POST",
        "/DocumentReference",
        &document("ghost-open-12", "into open ghost", "11", &[], None, None),
        &[],
    );
    assert_eq!(
        reply.status, 201,
        "a feed into a record with neither Patient nor directive: {}",
        reply.body
    );
    let as_pro =
        |practitioner: &str| app.token(&Caller::professional(practitioner, "10", &hospital));
    let reply = app.send_as(
        &as_pro(&other),
        "POST",
        "/DocumentReference",
        &document(&full, "by the blocked", "11", &[], Some(&other), None),
        &[],
    );
    assert!(
        (400..500).contains(&reply.status),
        "a blocked professional writes: {} {}",
        reply.status,
        reply.body
    );
    let reply = app.send_as(
        &as_pro(&gp),
        "POST",
        "/DocumentReference",
        &document(&full, "by the gp", "11", &[], Some(&gp), None),
        &[],
    );
    assert_eq!(
        reply.status, 201,
        "the general practitioner writes: {}",
        reply.body
    );
}

// ---- Writes folded into one statement ------------------------------------------------------

/// Row counts of every table of the schema that holds resources, records and lookups.
fn rows(s: &Server) -> BTreeMap<&'static str, i64> {
    carnet::store::partitions::RECORD_TABLES
        .iter()
        .chain(&carnet::store::partitions::OTHER_TABLES)
        .copied()
        .filter(|table| *table != "server_secrets")
        .map(|table| {
            let n = s.select_texts(&format!("SELECT CAST(COUNT(*) AS TEXT) AS v FROM {table}"));
            (table, n[0].as_deref().unwrap().parse().unwrap())
        })
        .collect()
}

fn server() -> Server {
    Server::start_configured(MORE_CLIENTS, &[("CARNET_UPDATE_CREATE", "true")])
}

/// A first version at an id another writer holds, unseen by the caller — in another record,
/// in the caller's own record, outside records (a Binary) — is a 409 that leaves every table
/// as it was; the holder's resource is unchanged. Then a free id is written whole.
#[test]
fn a_taken_id_is_a_conflict_that_leaves_no_row_behind() {
    let s = server();
    let other = s.token(&[
        "--client-id",
        "test-feeder-other",
        "--scope",
        "system/*.cruds",
    ]);
    let bearer = format!("Bearer {other}");
    let p1 = id_of(&s.create(&patient("284021234567811", Some("1984-02-29"), None)));
    let p2 = id_of(&s.create(&patient("284021234567812", Some("1984-02-29"), None)));
    let put = |path: &str, body: &Value| s.send("PUT", path, body, &[]);
    let mut doc = document(&p1, "taken", "11", &[], None, None);
    doc["id"] = json!("taken-doc");
    assert_eq!(put("/DocumentReference/taken-doc", &doc).status, 201);
    let pdf: Vec<u8> = (0..=255u8).chain([0, 0, 255]).collect();
    let reply = s.request_bytes(
        "PUT",
        "/Binary/taken-bin",
        &[("Content-Type", "application/pdf")],
        Some(&pdf),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let before = rows(&s);
    let versions = s.version_count();

    let attempts = [
        ("another record", "/DocumentReference/taken-doc", {
            let mut d = document(&p2, "mine", "42", &[], None, None);
            d["id"] = json!("taken-doc");
            d
        }),
        ("the same record", "/DocumentReference/taken-doc", {
            let mut d = document(&p1, "mine", "42", &[], None, None);
            d["id"] = json!("taken-doc");
            d
        }),
    ];
    for (what, path, body) in &attempts {
        let reply = s.send("PUT", path, body, &[("Authorization", &bearer)]);
        assert_eq!(reply.status, 409, "{what}: {}", reply.body);
        assert_eq!(rows(&s), before, "{what}: rows were left behind");
    }
    let reply = s.request_bytes(
        "PUT",
        "/Binary/taken-bin",
        &[("Content-Type", "text/plain"), ("Authorization", &bearer)],
        Some(b"not yours"),
    );
    assert_eq!(reply.status, 409, "a Binary: {}", reply.body);
    assert_eq!(rows(&s), before, "a Binary: rows were left behind");
    assert_eq!(s.version_count(), versions);

    // The holder's resources are as they were.
    let read = s.get("/DocumentReference/taken-doc").json();
    assert_eq!(read["meta"]["versionId"], "1");
    assert_eq!(read["subject"]["reference"], json!(format!("Patient/{p1}")));
    assert_eq!(s.get("/Binary/taken-bin").bytes, pdf);

    // A free id: every table the write fills gets its rows, in one go.
    let mut mine = document(&p2, "free", "42", &[], None, None);
    mine["id"] = json!("free-doc");
    let reply = s.send(
        "PUT",
        "/DocumentReference/free-doc",
        &mine,
        &[("Authorization", &bearer)],
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let after = rows(&s);
    for table in ["resources", "resource_versions", "resource_ids"] {
        assert_eq!(after[table], before[table] + 1, "{table}");
    }
    for table in ["access_terms", "search_tokens"] {
        assert!(after[table] > before[table], "{table}");
    }
    let found = s.get_as(
        &other,
        &format!(
            "/DocumentReference?subject=Patient/{p2}&identifier=urn:carnet:test:document|free"
        ),
    );
    assert_eq!(found.json()["total"], 1, "{}", found.body);
}

/// Bytes of every value (NULs included) go through the single-row insert and come back: a
/// create, an update, a deletion and a revival (a version over the deletion), each version
/// read back by vread.
#[test]
fn binary_bytes_survive_create_update_deletion_and_revival() {
    let s = server();
    let one: Vec<u8> = (0..=255u8).collect();
    let two: Vec<u8> = [0u8, 0, 0].into_iter().chain((0..=255u8).rev()).collect();
    let three: Vec<u8> = b"\x00revived\xff\xfe".to_vec();
    let send = |method: &str, path: &str, bytes: &[u8]| {
        s.request_bytes(
            method,
            path,
            &[("Content-Type", "application/octet-stream")],
            Some(bytes),
        )
    };
    let reply = send("POST", "/Binary", &one);
    assert_eq!(reply.status, 201, "{}", reply.body);
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    let path = format!("/Binary/{id}");
    assert_eq!(s.get(&path).bytes, one);
    assert_eq!(send("PUT", &path, &two).status, 200);
    assert_eq!(s.get(&path).bytes, two);
    let deleted = s.request("DELETE", &path, &[], None).status;
    assert!(matches!(deleted, 200 | 204), "{deleted}");
    assert_eq!(s.get(&path).status, 410);
    let reply = send("PUT", &path, &three);
    assert!(matches!(reply.status, 200 | 201), "{}", reply.body);
    assert_eq!(s.get(&path).bytes, three);
    assert_eq!(s.get(&format!("{path}/_history/1")).bytes, one);
    assert_eq!(s.get(&format!("{path}/_history/2")).bytes, two);
    assert_eq!(s.get(&format!("{path}/_history/4")).bytes, three);
    let stored = s.select_texts(&format!(
        "SELECT CAST(COUNT(*) AS TEXT) AS v FROM binary_contents WHERE id = '{id}'"
    ));
    assert_eq!(stored[0].as_deref(), Some("3"));
}

/// A directory resource's versions go to the directory's tables, never the records': a
/// create at a chosen id, an update, a deletion and a revival, searchable after each write.
#[test]
fn directory_writes_stay_in_the_directory_tables() {
    let s = server();
    let path = "/Organization/org-fold";
    let mut body = organization("750000099");
    body["id"] = json!("org-fold");
    let reply = s.send("PUT", path, &body, &[]);
    assert_eq!(reply.status, 201, "{}", reply.body);
    body["name"] = json!("Renamed");
    assert_eq!(s.send("PUT", path, &body, &[]).status, 200);
    let search = "/Organization?identifier=https://finess.esante.gouv.fr|750000099";
    assert_eq!(s.get(search).json()["total"], 1);
    let deleted = s
        .request(
            "DELETE",
            path,
            &[("Authorization", &format!("Bearer {}", s.provisioning_token))],
            None,
        )
        .status;
    // Whether provisioning deletes the directory is the policy's; when it does, a version over
    // the deletion revives the resource.
    let versions = match deleted {
        200 | 204 => {
            assert_eq!(s.get(search).json()["total"], 0);
            body["name"] = json!("Revived");
            let reply = s.send("PUT", path, &body, &[]);
            assert!(matches!(reply.status, 200 | 201), "{}", reply.body);
            assert_eq!(s.get(path).json()["name"], "Revived");
            assert_eq!(s.get(search).json()["total"], 1);
            "4"
        }
        refused => {
            assert!((400..500).contains(&refused), "{refused}");
            "2"
        }
    };
    let count = |table: &str| {
        s.select_texts(&format!(
            "SELECT CAST(COUNT(*) AS TEXT) AS v FROM {table} WHERE id = 'org-fold'"
        ))[0]
            .clone()
            .unwrap()
    };
    assert_eq!(count("directory_versions"), versions);
    assert_eq!(count("directory_resources"), "1");
    assert_eq!(count("resource_versions"), "0");
    assert_eq!(count("resources"), "0");
    assert_eq!(count("resource_ids"), "1");
}
