//! Property: on random data and random queries, the server's search answers exactly what a
//! naive in-memory evaluation of the FHIR rules answers. The suite runs on SQLite and on
//! PostgreSQL, so both backends are held to the same oracle (and so to each other).
//!
//! The oracle is written independently of the server's code: its own accent folding, its own
//! date ranges, and a plain loop over the data.

use crate::harness::Server;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use time::{Date, Month};

/// A small deterministic generator (xorshift64*): the same seed gives the same data and queries.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const FAMILIES: [&str; 10] = [
    "Lévy-Durand",
    "Lefèvre",
    "Lévêque",
    "Œuvray",
    "Dupont",
    "Nguyen",
    "Duval",
    "Lebœuf",
    "Müller",
    "D'Arcy",
];
const GENDERS: [&str; 3] = ["female", "male", "other"];
const STATUSES: [&str; 3] = ["current", "superseded", "entered-in-error"];
const TYPES: [&str; 4] = ["11488-4", "18842-5", "11502-2", "18748-4"];

struct Person {
    id: String,
    family: &'static str,
    gender: &'static str,
    birth: Date,
}

struct Document {
    id: String,
    patient: usize,
    status: &'static str,
    loinc: &'static str,
    /// Seconds since the epoch (the `date` instant, second precision).
    at: i64,
}

/// Lower case without accents, for the names above.
fn fold(text: &str) -> String {
    text.to_lowercase()
        .replace(['é', 'è', 'ê'], "e")
        .replace('œ', "oe")
        .replace('ü', "u")
}

/// `[low, high)` in seconds of a `YYYY`, `YYYY-MM` or `YYYY-MM-DD` value.
fn range(text: &str) -> (i64, i64) {
    let parts: Vec<i32> = text.split('-').map(|p| p.parse().unwrap()).collect();
    let start = |y: i32, m: u8, d: u8| {
        Date::from_calendar_date(y, Month::try_from(m).unwrap(), d)
            .unwrap()
            .midnight()
            .assume_utc()
            .unix_timestamp()
    };
    match parts[..] {
        [y] => (start(y, 1, 1), start(y + 1, 1, 1)),
        [y, 12] => (start(y, 12, 1), start(y + 1, 1, 1)),
        [y, m] => (start(y, m as u8, 1), start(y, m as u8 + 1, 1)),
        [y, m, d] => {
            let low = start(y, m as u8, d as u8);
            (low, low + 86_400)
        }
        _ => unreachable!(),
    }
}

/// The R4 prefix table, literally, on `[low, high)` ranges: the resource's range `r`, the
/// search value's `q`.
fn date_matches(prefix: &str, (rl, rh): (i64, i64), (ql, qh): (i64, i64)) -> bool {
    // q contains r.
    let eq = rl >= ql && rh <= qh;
    // The range above q (below q) overlaps r.
    let above = rh > qh;
    let below = rl < ql;
    match prefix {
        "eq" => eq,
        "ne" => !eq,
        "gt" => above,
        "lt" => below,
        "ge" => above || eq,
        "le" => below || eq,
        "sa" => rl >= qh,
        "eb" => rh <= ql,
        _ => unreachable!(),
    }
}

fn random_date_value(rng: &mut Rng, from_year: i32, years: usize) -> String {
    let year = from_year + rng.below(years) as i32;
    match rng.below(3) {
        0 => format!("{year}"),
        1 => format!("{year}-{:02}", 1 + rng.below(12)),
        _ => format!("{year}-{:02}-{:02}", 1 + rng.below(12), 1 + rng.below(28)),
    }
}

type PatientTest = Box<dyn Fn(&Person) -> bool>;

/// One random criterion on patients: its query text and which patients it selects.
fn patient_criterion(rng: &mut Rng, people: &[Person]) -> (String, PatientTest) {
    match rng.below(5) {
        0 => {
            let name = fold(rng.pick::<&str>(&FAMILIES));
            let prefix: String = name.chars().take(1 + rng.below(4)).collect();
            let q = format!("family={prefix}");
            (
                q,
                Box::new(move |p: &Person| fold(p.family).starts_with(&prefix)),
            )
        }
        1 => {
            let name = *rng.pick(&FAMILIES);
            (
                format!("family:exact={name}"),
                Box::new(move |p: &Person| p.family == name),
            )
        }
        2 => {
            let name = fold(rng.pick::<&str>(&FAMILIES));
            let start = rng.below(name.chars().count().saturating_sub(2).max(1));
            let part: String = name.chars().skip(start).take(3).collect();
            (
                format!("family:contains={part}"),
                Box::new(move |p: &Person| fold(p.family).contains(&part)),
            )
        }
        3 => {
            let (a, b) = (*rng.pick(&GENDERS), *rng.pick(&GENDERS));
            match rng.below(2) {
                0 => (
                    format!("gender={a},{b}"),
                    Box::new(move |p: &Person| p.gender == a || p.gender == b),
                ),
                _ => (
                    format!("gender:not={a}"),
                    Box::new(move |p: &Person| p.gender != a),
                ),
            }
        }
        _ => {
            let prefix = *rng.pick(&["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"]);
            let value = random_date_value(rng, 1940, 80);
            let wanted = range(&value);
            let _ = people;
            (
                format!("birthdate={prefix}{value}"),
                Box::new(move |p: &Person| {
                    let low = p.birth.midnight().assume_utc().unix_timestamp();
                    date_matches(prefix, (low, low + 86_400), wanted)
                }),
            )
        }
    }
}

type DocumentTest = Box<dyn Fn(&Document, &[Person]) -> bool>;

/// One random criterion on documents.
fn document_criterion(rng: &mut Rng, people: &[Person]) -> (String, DocumentTest) {
    match rng.below(5) {
        0 => {
            let (a, b) = (*rng.pick(&STATUSES), *rng.pick(&STATUSES));
            (
                format!("status={a},{b}"),
                Box::new(move |d: &Document, _: &[Person]| d.status == a || d.status == b),
            )
        }
        1 => {
            let code = *rng.pick(&TYPES);
            let q = match rng.below(2) {
                0 => format!("type=http://loinc.org|{code}"),
                _ => format!("type={code}"),
            };
            (
                q,
                Box::new(move |d: &Document, _: &[Person]| d.loinc == code),
            )
        }
        2 => {
            let prefix = *rng.pick(&["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"]);
            let value = random_date_value(rng, 2020, 6);
            let wanted = range(&value);
            (
                format!("date={prefix}{value}"),
                Box::new(move |d: &Document, _: &[Person]| {
                    date_matches(prefix, (d.at, d.at + 1), wanted)
                }),
            )
        }
        3 => {
            let patient = rng.below(people.len());
            let id = people[patient].id.clone();
            (
                format!("patient=Patient/{id}"),
                Box::new(move |d: &Document, _: &[Person]| d.patient == patient),
            )
        }
        _ => {
            let name = fold(rng.pick::<&str>(&FAMILIES));
            let prefix: String = name.chars().take(2).collect();
            (
                format!("patient.family={prefix}"),
                Box::new(move |d: &Document, people: &[Person]| {
                    fold(people[d.patient].family).starts_with(&prefix)
                }),
            )
        }
    }
}

/// Every match id, following `next` links.
fn search(s: &Server, query: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut url = query.to_owned();
    loop {
        let reply = s.get(&url);
        assert_eq!(reply.status, 200, "{url}: {}", reply.body);
        let bundle = reply.json();
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            assert!(ids.insert(entry["resource"]["id"].as_str().unwrap().to_owned()));
        }
        match bundle["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
        {
            Some(next) => url = next["url"].as_str().unwrap().to_owned(),
            None => return ids,
        }
    }
}

#[test]
fn random_searches_agree_with_a_naive_evaluation() {
    let s = Server::start();
    let mut rng = Rng(0x5eed_ca7e_2024_0001);
    let mut people = Vec::new();
    for i in 0..30 {
        let family = *rng.pick(&FAMILIES);
        let gender = *rng.pick(&GENDERS);
        let birth = Date::from_calendar_date(
            1940 + rng.below(80) as i32,
            Month::try_from(1 + rng.below(12) as u8).unwrap(),
            1 + rng.below(28) as u8,
        )
        .unwrap();
        let created = s.create(&json!({
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": format!("1{i:012}")}],
            "name": [{"family": family, "given": ["Camille"]}],
            "gender": gender,
            "birthDate": birth.to_string(),
        }));
        people.push(Person {
            id: created["id"].as_str().unwrap().to_owned(),
            family,
            gender,
            birth,
        });
    }
    let mut documents = Vec::new();
    for _ in 0..60 {
        let patient = rng.below(people.len());
        let status = *rng.pick(&STATUSES);
        let loinc = *rng.pick(&TYPES);
        let at = 1_577_836_800 + (rng.next() % (6 * 365 * 86_400)) as i64;
        let when = time::OffsetDateTime::from_unix_timestamp(at).unwrap();
        let date = when
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let created: Value = s.create(&json!({
            "resourceType": "DocumentReference",
            "status": status,
            "type": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
            "subject": {"reference": format!("Patient/{}", people[patient].id)},
            "date": date,
            "content": [{"attachment": {"contentType": "application/pdf", "url": "https://docs.example/x.pdf"}}]
        }));
        documents.push(Document {
            id: created["id"].as_str().unwrap().to_owned(),
            patient,
            status,
            loinc,
            at,
        });
    }
    for round in 0..150 {
        let criteria = 1 + rng.below(3);
        let page = 1 + rng.below(9);
        if round % 2 == 0 {
            let mut texts = Vec::new();
            let mut tests = Vec::new();
            for _ in 0..criteria {
                let (text, test) = patient_criterion(&mut rng, &people);
                texts.push(text);
                tests.push(test);
            }
            let query = format!("/Patient?_count={page}&{}", texts.join("&"));
            let expected: BTreeSet<String> = people
                .iter()
                .filter(|p| tests.iter().all(|t| t(p)))
                .map(|p| p.id.clone())
                .collect();
            assert_eq!(search(&s, &query), expected, "{query}");
        } else {
            let mut texts = Vec::new();
            let mut tests = Vec::new();
            for _ in 0..criteria {
                let (text, test) = document_criterion(&mut rng, &people);
                texts.push(text);
                tests.push(test);
            }
            let query = format!("/DocumentReference?_count={page}&{}", texts.join("&"));
            let expected: BTreeSet<String> = documents
                .iter()
                .filter(|d| tests.iter().all(|t| t(d, &people)))
                .map(|d| d.id.clone())
                .collect();
            assert_eq!(search(&s, &query), expected, "{query}");
        }
    }
}
