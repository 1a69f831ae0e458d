//! Search: a small French data set (accents, hyphens, INS identifiers, documents of several
//! types, dates and statuses) and, for each parameter type, modifier and prefix, the exact set
//! of resources the server must answer — following every page.

use crate::harness::{patient, Server};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

const NIR: &str = "urn:oid:1.2.250.1.213.1.4.8";
const NIA: &str = "urn:oid:1.2.250.1.213.1.4.9";
const LOINC: &str = "http://loinc.org";

/// The data set, by the short names the assertions use.
struct Data {
    ids: BTreeMap<&'static str, String>,
    last_updated: BTreeMap<&'static str, String>,
}

impl Data {
    fn id(&self, name: &str) -> &str {
        &self.ids[name]
    }

    fn set(&self, names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| self.ids[n].clone()).collect()
    }
}

fn person(
    nir_system: &str,
    ins: &str,
    family: &str,
    given: &[&str],
    gender: &str,
    birth: &str,
) -> Value {
    let mut p = patient(ins);
    p["identifier"][0]["system"] = json!(nir_system);
    p["name"] = json!([{"family": family, "given": given}]);
    p["gender"] = json!(gender);
    p["birthDate"] = json!(birth);
    p
}

fn document(
    subject: &str,
    status: &str,
    loinc: &str,
    display: &str,
    date: &str,
    description: &str,
) -> Value {
    json!({
        "resourceType": "DocumentReference",
        "status": status,
        "type": {"coding": [{"system": LOINC, "code": loinc, "display": display}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "LP173421-1", "display": "Report"}]}],
        "subject": {"reference": format!("Patient/{subject}")},
        "date": date,
        "description": description,
        "content": [{"attachment": {"contentType": "application/pdf", "url": "https://docs.example/x.pdf"}}]
    })
}

impl Data {
    fn add(&mut self, s: &Server, name: &'static str, resource: Value) {
        let created = s.create(&resource);
        self.ids
            .insert(name, created["id"].as_str().unwrap().to_owned());
        let last_updated = created["meta"]["lastUpdated"].as_str().unwrap().to_owned();
        self.last_updated.insert(name, last_updated);
    }
}

fn load(s: &Server) -> Data {
    let mut data = Data {
        ids: BTreeMap::new(),
        last_updated: BTreeMap::new(),
    };
    let mut add = |name: &'static str, resource: Value| data.add(s, name, resource);
    let mut p1 = person(
        NIR,
        "2840275123456",
        "Lévy-Durand",
        &["Éloïse", "Marie"],
        "female",
        "1984-02-29",
    );
    p1["address"] = json!([{"city": "Saint-Étienne", "postalCode": "42000"}]);
    add("p1", p1);
    let mut p2 = person(
        NIR,
        "1500775123456",
        "Lefèvre",
        &["François"],
        "male",
        "1950-07-14",
    );
    p2["identifier"].as_array_mut().unwrap().push(json!({
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
        "system": "urn:oid:1.2.250.1.999.2", "value": "IPP-77"
    }));
    p2["telecom"] = json!([{"system": "phone", "value": "+33 6 12 34 56 78"}, {"system": "email", "value": "f.lefevre@example.fr"}]);
    add("p2", p2);
    add(
        "p3",
        person(
            NIA,
            "2150575123456",
            "Nguyen",
            &["Anh"],
            "female",
            "2015-05-05",
        ),
    );
    add(
        "p4",
        person(
            NIR,
            "1721275123456",
            "Œuvray",
            &["Jean-Noël"],
            "male",
            "1972-12-31",
        ),
    );
    let mut p5 = person(
        NIR,
        "2010175123456",
        "Lévêque",
        &["Zoé"],
        "female",
        "2001-01-01",
    );
    p5["active"] = json!(false);
    add("p5", p5);

    let ids = data.ids.clone();
    let mut add = |name: &'static str, resource: Value| data.add(s, name, resource);
    let (p1, p2, p3, p4) = (&ids["p1"], &ids["p2"], &ids["p3"], &ids["p4"]);
    let mut d1 = document(
        p1,
        "current",
        "11488-4",
        "Consult note",
        "2024-03-05T10:00:00+01:00",
        "Compte rendu de consultation de cardiologie",
    );
    d1["masterIdentifier"] =
        json!({"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.250.1.999.1"});
    // An author known only by RPPS identifier, and the content at its own URL.
    d1["author"] =
        json!([{"identifier": {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "810001234567"}}]);
    d1["content"][0]["attachment"]["url"] = json!("https://docs.example/cardio/d1.pdf");
    add("d1", d1);
    add(
        "d2",
        document(
            p1,
            "superseded",
            "18842-5",
            "Discharge summary",
            "2023-12-31T23:30:00Z",
            "Lettre de sortie",
        ),
    );
    add(
        "d3",
        document(
            p2,
            "current",
            "11502-2",
            "Laboratory report",
            "2024-03-05T08:00:00Z",
            "Bilan sanguin",
        ),
    );
    add(
        "d4",
        document(
            p2,
            "entered-in-error",
            "11502-2",
            "Laboratory report",
            "2022-06-01T12:00:00Z",
            "Bilan erroné",
        ),
    );
    add(
        "d5",
        document(
            p3,
            "current",
            "18748-4",
            "Diagnostic imaging study",
            "2024-01-15T09:00:00Z",
            "Radiographie thoracique",
        ),
    );
    let mut d6 = document(
        p4,
        "current",
        "11488-4",
        "Consult note",
        "2024-03-06T00:30:00+02:00",
        "Consultation de suivi",
    );
    d6["context"] = json!({"period": {"start": "2024-03-01", "end": "2024-03-06"}});
    add("d6", d6);
    data
}

/// The ids of every match, following `next` links to the end; asserts no page repeats an id.
fn found(s: &Server, query: &str) -> BTreeSet<String> {
    let (ids, _) = walk(s, query, "next");
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "{query}: an id came twice");
    unique
}

/// Follows `relation` links from `url`; returns the match ids in page order and the last URL.
fn walk(s: &Server, url: &str, relation: &str) -> (Vec<String>, String) {
    let mut ids = Vec::new();
    let mut url = url.to_owned();
    loop {
        let reply = s.get(&url);
        assert_eq!(reply.status, 200, "{url}: {}", reply.body);
        let bundle = reply.json();
        assert_eq!(bundle["type"], "searchset");
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            if entry["search"]["mode"] == "match" {
                ids.push(entry["resource"]["id"].as_str().unwrap().to_owned());
            }
        }
        let link = bundle["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == relation)
            .map(|l| l["url"].as_str().unwrap().to_owned());
        match link {
            Some(link) => url = link,
            None => return (ids, url),
        }
    }
}

fn check(s: &Server, data: &Data, cases: &[(&str, &[&str])]) {
    for (query, expected) in cases {
        let query = query
            .replace("{p1}", data.id("p1"))
            .replace("{p2}", data.id("p2"));
        assert_eq!(found(s, &query), data.set(expected), "{query}");
    }
}

#[test]
fn patients_by_string_token_and_date() {
    let s = Server::start();
    let data = load(&s);
    check(
        &s,
        &data,
        &[
            ("/Patient?family=levy", &["p1"]),
            ("/Patient?family=LÉV", &["p1", "p5"]),
            ("/Patient?family=lévy-durand", &["p1"]),
            ("/Patient?family=oeuvray", &["p4"]),
            ("/Patient?family:exact=Lévy-Durand", &["p1"]),
            ("/Patient?family:exact=levy-durand", &[]),
            ("/Patient?name:contains=fevr", &["p2"]),
            ("/Patient?name=eloise", &["p1"]),
            ("/Patient?given=jean-noel", &["p4"]),
            ("/Patient?name=nguyen,zoe", &["p3", "p5"]),
            ("/Patient?address-city=saint-etienne", &["p1"]),
            (&format!("/Patient?identifier={NIR}|2840275123456"), &["p1"]),
            ("/Patient?identifier=2840275123456", &["p1"]),
            (&format!("/Patient?identifier={NIA}|"), &["p3"]),
            ("/Patient?identifier=|2840275123456", &[]),
            ("/Patient?gender=female", &["p1", "p3", "p5"]),
            ("/Patient?gender:not=female", &["p2", "p4"]),
            ("/Patient?active=false", &["p5"]),
            ("/Patient?birthdate=1984-02-29", &["p1"]),
            ("/Patient?birthdate=lt1960", &["p2"]),
            ("/Patient?birthdate=ge2001", &["p3", "p5"]),
            ("/Patient?birthdate=ge1970&birthdate=lt2000", &["p1", "p4"]),
            ("/Patient?birthdate=1972-12", &["p4"]),
            ("/Patient?phone=%2B33%206%2012%2034%2056%2078", &["p2"]),
            ("/Patient?telecom:missing=false", &["p2"]),
            ("/Patient?_id={p1},{p2}", &["p1", "p2"]),
            (
                "/Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|IPP-77",
                &["p2"],
            ),
            ("/Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|IPP-78", &[]),
        ],
    );
    // The access log names paths, never the identifiers in query strings.
    assert!(!s.log().contains("2840275123456"), "{}", s.log());
}

#[test]
fn documents_by_reference_token_date_and_text() {
    let s = Server::start();
    let data = load(&s);
    let all = ["d1", "d2", "d3", "d4", "d5", "d6"];
    check(
        &s,
        &data,
        &[
            ("/DocumentReference?patient=Patient/{p1}", &["d1", "d2"]),
            ("/DocumentReference?patient={p1}", &["d1", "d2"]),
            ("/DocumentReference?subject:Patient={p2}", &["d3", "d4"]),
            (
                "/DocumentReference?status=current",
                &["d1", "d3", "d5", "d6"],
            ),
            (
                "/DocumentReference?status=current,superseded",
                &["d1", "d2", "d3", "d5", "d6"],
            ),
            ("/DocumentReference?status:not=current", &["d2", "d4"]),
            (
                &format!("/DocumentReference?type={LOINC}|11488-4"),
                &["d1", "d6"],
            ),
            ("/DocumentReference?type=11502-2", &["d3", "d4"]),
            (&format!("/DocumentReference?type={LOINC}|"), &all),
            ("/DocumentReference?type:text=consult", &["d1", "d6"]),
            (
                "/DocumentReference?identifier=urn:oid:1.2.250.1.999.1",
                &["d1"],
            ),
            ("/DocumentReference?date=2024-03-05", &["d1", "d3", "d6"]),
            ("/DocumentReference?date=2024-03", &["d1", "d3", "d6"]),
            ("/DocumentReference?date=ge2024-03-05", &["d1", "d3", "d6"]),
            ("/DocumentReference?date=gt2024-03-05", &[]),
            ("/DocumentReference?date=lt2024-01-01", &["d2", "d4"]),
            ("/DocumentReference?date=le2023-12-31", &["d2", "d4"]),
            ("/DocumentReference?date=ge2024&date=lt2024-03", &["d5"]),
            ("/DocumentReference?date=ne2024-03-05", &["d2", "d4", "d5"]),
            ("/DocumentReference?date=eb2024", &["d2", "d4"]),
            ("/DocumentReference?date=sa2024-03-05", &[]),
            // Approximately: within a tenth of the distance to today (about 100 days here).
            (
                "/DocumentReference?date=ap2024-03-05",
                &["d1", "d2", "d3", "d5", "d6"],
            ),
            (
                "/DocumentReference?date=2024-03-05T10:00:00%2B01:00",
                &["d1"],
            ),
            ("/DocumentReference?period=ge2024-03-03", &["d6"]),
            ("/DocumentReference?period=2024-03-03", &[]),
            (
                "/DocumentReference?period:missing=true",
                &["d1", "d2", "d3", "d4", "d5"],
            ),
            ("/DocumentReference?description=compte", &["d1"]),
            ("/DocumentReference?description=BILAN", &["d3", "d4"]),
            ("/DocumentReference?description=bilan errone", &["d4"]),
            ("/DocumentReference?description:contains=sanguin", &["d3"]),
            (
                "/DocumentReference?description:exact=Lettre de sortie",
                &["d2"],
            ),
            ("/DocumentReference?description:exact=lettre de sortie", &[]),
            (
                "/DocumentReference?author:identifier=urn:oid:1.2.250.1.71.4.2.1|810001234567",
                &["d1"],
            ),
            (
                "/DocumentReference?location:below=https://docs.example/cardio",
                &["d1"],
            ),
            (
                "/DocumentReference?location:above=https://docs.example/cardio/d1.pdf",
                &["d1"],
            ),
            (
                "/DocumentReference?location=https://docs.example/x.pdf",
                &["d2", "d3", "d4", "d5", "d6"],
            ),
            (
                "/DocumentReference?location:below=https://docs.example",
                &all,
            ),
            ("/DocumentReference?patient={p1}&status=current", &["d1"]),
        ],
    );
    let d6 = &data.last_updated["d6"];
    assert_eq!(
        found(
            &s,
            &format!(
                "/DocumentReference?_lastUpdated=ge{}",
                d6.replace('+', "%2B")
            )
        ),
        data.set(&["d6"])
    );
}

#[test]
fn chains_and_reverse_chains() {
    let s = Server::start();
    let data = load(&s);
    check(
        &s,
        &data,
        &[
            (
                &format!("/DocumentReference?patient.identifier={NIR}|2840275123456"),
                &["d1", "d2"],
            ),
            (
                "/DocumentReference?subject:Patient.family=lefevre",
                &["d3", "d4"],
            ),
            (
                "/DocumentReference?patient.gender=male",
                &["d3", "d4", "d6"],
            ),
            (
                "/DocumentReference?patient.gender=male&patient.birthdate=lt1960",
                &["d3", "d4"],
            ),
            (
                &format!(
                    "/DocumentReference?patient.identifier={NIR}|2840275123456&status=current\
                     &type={LOINC}|11488-4&date=ge2024-01-01"
                ),
                &["d1"],
            ),
            (
                "/Patient?_has:DocumentReference:patient:status=entered-in-error",
                &["p2"],
            ),
            (
                "/Patient?_has:DocumentReference:subject:type=11488-4",
                &["p1", "p4"],
            ),
            (
                "/Patient?_has:DocumentReference:patient:patient.family=nguyen",
                &["p3"],
            ),
            (
                "/Patient?_has:DocumentReference:patient:status:not=current",
                &["p1", "p2"],
            ),
        ],
    );
}

/// The match ids in result order, every page.
fn ordered(s: &Server, data: &Data, query: &str) -> Vec<String> {
    let (ids, _) = walk(s, query, "next");
    let names: std::collections::HashMap<&String, &str> =
        data.ids.iter().map(|(name, id)| (id, *name)).collect();
    ids.iter().map(|id| names[id].to_owned()).collect()
}

#[test]
fn sorted_results_page_in_order_both_ways() {
    let s = Server::start();
    let data = load(&s);
    assert_eq!(
        ordered(&s, &data, "/Patient?_sort=family"),
        ["p2", "p5", "p1", "p3", "p4"]
    );
    assert_eq!(
        ordered(&s, &data, "/Patient?_sort=-birthdate&_count=2"),
        ["p3", "p5", "p1", "p4", "p2"]
    );
    let newest_first = ["d6", "d1", "d3", "d5", "d2", "d4"];
    assert_eq!(
        ordered(&s, &data, "/DocumentReference?_sort=-date&_count=4"),
        newest_first
    );
    assert_eq!(
        ordered(&s, &data, "/DocumentReference?_sort=-date&_count=1"),
        newest_first
    );
    assert_eq!(
        ordered(&s, &data, "/DocumentReference?_sort=status,-date&_count=2"),
        ["d6", "d1", "d3", "d5", "d4", "d2"]
    );
    // Back from the last page: the same order, page by page.
    let (forward, last) = walk(&s, "/DocumentReference?_sort=-date&_count=4", "next");
    let (backward, _) = walk(&s, &last, "previous");
    assert_eq!(backward[..2], forward[4..]);
    assert_eq!(backward[2..], forward[..4]);
    // Resources without a value come last, whichever the direction.
    for query in [
        "/DocumentReference?_sort=period&_count=2",
        "/DocumentReference?_sort=-period&_count=2",
    ] {
        let order = ordered(&s, &data, query);
        assert_eq!(order[0], "d6", "{query}");
        assert_eq!(order.len(), 6, "{query}");
    }
    s.get("/Patient?_sort=shoe-size").outcome(400);
}

#[test]
fn system_search_over_several_types() {
    let s = Server::start();
    let data = load(&s);
    let p1 = data.id("p1");
    check(
        &s,
        &data,
        &[
            ("/?_type=Patient,DocumentReference&_id={p1}", &["p1"]),
            // The lab lists the headers of the records it fed, not p5's.
            (
                "/?_type=DocumentReference,Patient&_count=2",
                &["p1", "p2", "p3", "p4", "d1", "d2", "d3", "d4", "d5", "d6"],
            ),
        ],
    );
    let d6 = data.last_updated["d6"].replace('+', "%2B");
    assert_eq!(
        found(&s, &format!("?_lastUpdated=ge{d6}")),
        data.set(&["d6"])
    );
    let all = s.get("?_type=Patient,DocumentReference&_count=3").json();
    assert_eq!(all["total"], 10);
    // Back from the last page across the type boundary.
    let (forward, last) = walk(&s, "?_type=Patient,DocumentReference&_count=4", "next");
    let (backward, _) = walk(&s, &last, "previous");
    assert_eq!(backward.len(), forward.len());
    assert_eq!(backward[..2], forward[8..]);
    assert_eq!(backward[2..6], forward[4..8]);
    s.get("?_type=Patient,DocumentReference&family=levy")
        .outcome(400);
    s.get("?_type=Patient,DocumentReference&_sort=_lastUpdated")
        .outcome(400);
    s.get("?_type=Nothing").outcome(400);
    let _ = p1;
}

#[test]
fn patient_compartment_search() {
    let s = Server::start();
    let data = load(&s);
    check(
        &s,
        &data,
        &[
            ("/Patient/{p1}/DocumentReference", &["d1", "d2"]),
            ("/Patient/{p1}/DocumentReference?status=current", &["d1"]),
            ("/Patient/{p2}/DocumentReference?_count=1", &["d3", "d4"]),
            ("/Patient/{p2}/Patient", &["p2"]),
        ],
    );
    s.get(&format!("/Patient/{}/Organization", data.id("p1")))
        .outcome(404);
    // A page link of one patient's compartment does not open another's.
    let first = s
        .get(&format!(
            "/Patient/{}/DocumentReference?_count=1",
            data.id("p2")
        ))
        .json();
    let next = first["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(next.contains(&format!("/Patient/{}/DocumentReference?", data.id("p2"))));
    let moved = next.replace(data.id("p2"), data.id("p1"));
    s.get(&moved).outcome(400);
}

#[test]
fn pages_cover_every_match_once_and_cursors_cannot_be_moved() {
    let s = Server::start();
    let data = load(&s);
    let first = s.get("/DocumentReference?_count=2&status=current,superseded,entered-in-error");
    let bundle = first.json();
    assert_eq!(bundle["total"], 6);
    assert_eq!(bundle["entry"].as_array().unwrap().len(), 2);
    assert_eq!(
        found(
            &s,
            "/DocumentReference?_count=2&status=current,superseded,entered-in-error"
        ),
        data.set(&["d1", "d2", "d3", "d4", "d5", "d6"])
    );
    // Back from the last page with `previous` links: the same matches, in the same order.
    let (forward, last) = walk(&s, "/DocumentReference?_count=4&_total=none", "next");
    assert_eq!(forward.len(), 6);
    let last_page: Vec<String> = forward[4..].to_vec();
    let (mut backward, _) = walk(&s, &last, "previous");
    let tail: Vec<String> = backward.drain(..last_page.len()).collect();
    assert_eq!(tail, last_page);
    assert_eq!(backward, forward[..4].to_vec());

    let next = bundle["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let cursor = next
        .split("_cursor=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    // The same cursor on another query, or altered, is refused.
    s.get(&format!(
        "/DocumentReference?_count=2&status=current&_cursor={cursor}"
    ))
    .outcome(400);
    s.get(&format!(
        "/DocumentReference?_count=2&status=current,superseded,entered-in-error&_cursor=A{cursor}"
    ))
    .outcome(400);
    // Another caller cannot replay it either.
    let other = s.token(&["--client-id", "test-feeder", "--scope", "system/*.rs"]);
    let replay = s.request(
        "GET",
        &next,
        &[("Authorization", &format!("Bearer {other}"))],
        None,
    );
    replay.outcome(400);

    // _summary and _elements reduce each match, and say so.
    let summary = s
        .get("/DocumentReference?status=current&_elements=status")
        .json();
    let first = &summary["entry"][0]["resource"];
    assert_eq!(first["status"], "current");
    assert!(first.get("description").is_none());
    assert_eq!(first["meta"]["tag"][0]["code"], "SUBSETTED");

    let count = s
        .get("/DocumentReference?status=current&_summary=count")
        .json();
    assert_eq!(count["total"], 4);
    assert!(count.get("entry").is_none());
    let none = s
        .get("/DocumentReference?status=current&_total=none")
        .json();
    assert!(none.get("total").is_none());
}

#[test]
fn post_search_unknown_parameters_and_scopes() {
    let s = Server::start();
    let data = load(&s);
    let posted = s.request(
        "POST",
        "/DocumentReference/_search",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(&format!("patient={}&status=current", data.id("p1"))),
    );
    assert_eq!(posted.status, 200, "{}", posted.body);
    let bundle = posted.json();
    assert_eq!(bundle["total"], 1);
    assert_eq!(bundle["entry"][0]["resource"]["id"], data.id("d1"));

    let unknown = s.get("/Patient?shoe-size=42");
    let issue = unknown.outcome(400);
    assert_eq!(issue["expression"][0], "shoe-size");
    s.get("/DocumentReference?patient.shoe-size=1").outcome(400);
    s.get("/Patient?_has:DocumentReference:custodian:status=current")
        .outcome(400);
    s.get("/Patient?_has:Nothing:patient:status=current")
        .outcome(400);
    s.get("/Patient?birthdate=yesterday").outcome(400);
    s.get("/Patient?family:sounds-like=levy").outcome(400);
    let lenient = s.request(
        "GET",
        "/Patient?shoe-size=42&family=levy",
        &[("Prefer", "handling=lenient")],
        None,
    );
    assert_eq!(lenient.status, 200, "{}", lenient.body);
    let bundle = lenient.json();
    assert_eq!(bundle["total"], 1);
    let outcome = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["search"]["mode"] == "outcome")
        .expect("the ignored parameter is reported");
    assert_eq!(
        outcome["resource"]["issue"][0]["expression"][0],
        "shoe-size"
    );
    assert!(!bundle["link"][0]["url"]
        .as_str()
        .unwrap()
        .contains("shoe-size"));

    let read_only = s.token(&["--client-id", "test-feeder", "--scope", "system/*.r"]);
    let refused = s.request(
        "GET",
        "/DocumentReference?status=current",
        &[("Authorization", &format!("Bearer {read_only}"))],
        None,
    );
    refused.outcome(403);
}

#[test]
fn carnet_reindex_rebuilds_lost_index_rows() {
    let s = Server::start();
    let data = load(&s);
    for table in [
        "search_strings",
        "search_tokens",
        "search_dates",
        "search_references",
        "search_uris",
    ] {
        s.execute_sql(&format!("DELETE FROM {table}"));
    }
    assert!(found(&s, "/Patient?family=levy").is_empty());
    let (ok, _, stderr) = s.carnet(&["reindex"]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("11 resources reindexed"), "{stderr}");
    assert_eq!(found(&s, "/Patient?family=levy"), data.set(&["p1"]));
    assert_eq!(
        found(
            &s,
            "/DocumentReference?patient={}"
                .replace("{}", data.id("p1"))
                .as_str()
        ),
        data.set(&["d1", "d2"])
    );
    // Conditional writes rely on the same index.
    let by_ins = format!("/Patient?identifier={NIR}|2840275123456");
    assert_eq!(found(&s, &by_ins), data.set(&["p1"]));
}

#[test]
fn the_index_follows_updates_and_deletes() {
    let s = Server::start();
    let data = load(&s);
    let id = data.id("d3").to_owned();
    let mut d3 = s.get(&format!("/DocumentReference/{id}")).json();
    d3["status"] = json!("superseded");
    assert_eq!(
        s.send("PUT", &format!("/DocumentReference/{id}"), &d3, &[])
            .status,
        200
    );
    assert!(!found(&s, "/DocumentReference?status=current").contains(&id));
    assert!(found(&s, "/DocumentReference?status=superseded").contains(&id));
    assert_eq!(
        s.request("DELETE", &format!("/DocumentReference/{id}"), &[], None)
            .status,
        204
    );
    assert!(!found(&s, "/DocumentReference?status=superseded").contains(&id));
    assert!(!found(&s, &format!("/DocumentReference?_id={id}")).contains(&id));
}

/// The IHE MHD ITI-67 searches, as compiled by the server, are served by indexes on both
/// backends: no step of their plan scans a whole table.
#[test]
fn iti_67_searches_use_indexes() {
    use carnet::search::{query, sql, Position};
    let s = Server::start();
    let data = load(&s);
    let base = s.base.clone();
    // As the lab that fed the documents searches them.
    let lab = carnet::auth::Access {
        principal: carnet::auth::principal::Principal::FeedingSystem {
            client_id: "lab".into(),
            organization: "https://finess.esante.gouv.fr|750000001".into(),
        },
        scopes: carnet::auth::scopes::parse_scopes("system/*.cruds").unwrap(),
    };
    let queries = [
        format!("patient.identifier={NIR}|2840275123456&status=current&type={LOINC}|11488-4&date=ge2024-01-01"),
        format!("patient.identifier={NIR}|2840275123456&status=current"),
        format!("patient={}&status=current&category=http://loinc.org|LP173421-1", data.id("p1")),
        format!("patient={}&date=ge2024-01-01&date=lt2025-01-01", data.id("p1")),
    ];
    for text in &queries {
        let params: Vec<(String, String)> = serde_urlencoded::from_str(text).unwrap();
        let search = query::parse("DocumentReference", &params, true, 20, 100).unwrap();
        let (search, restriction) = carnet::consent::Engine::default()
            .decide_search(&lab, search)
            .unwrap();
        let dialect = crate::harness::dialect(&s);
        for compiled in [
            sql::page(&search, &restriction, &base, &Position::Start, 21, dialect),
            sql::count(&search, &restriction, &base, dialect),
        ] {
            let plan = crate::harness::query_plan(&s, compiled.sql());
            // `SCAN m` reads the page's own rows (at most 21), chosen before their versions.
            let scans: Vec<&String> = plan
                .iter()
                .filter(|line| line.contains("Seq Scan") || line.trim_start().starts_with("SCAN "))
                .filter(|line| line.trim() != "SCAN m")
                .collect();
            assert!(
                scans.is_empty(),
                "{text}: full scans in\n{}",
                plan.join("\n")
            );
        }
    }
}

/// The ids of a search's entries in `mode` (`match` or `include`), first page only.
fn entries(s: &Server, query: &str, mode: &str) -> BTreeSet<String> {
    let reply = s.get(query);
    assert_eq!(reply.status, 200, "{query}: {}", reply.body);
    reply.json()["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == mode)
        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn includes_and_reverse_includes() {
    let s = Server::start();
    let data = load(&s);
    let (p1, p2, d1) = (data.id("p1"), data.id("p2"), data.id("d1"));
    let q = format!("/DocumentReference?patient={p1}&_include=DocumentReference:patient");
    assert_eq!(entries(&s, &q, "match"), data.set(&["d1", "d2"]));
    assert_eq!(entries(&s, &q, "include"), data.set(&["p1"]));
    let q = "/DocumentReference?status=current&_include=DocumentReference:subject:Patient";
    assert_eq!(
        entries(&s, q, "include"),
        data.set(&["p1", "p2", "p3", "p4"])
    );
    let q = format!("/Patient?_id={p2}&_revinclude=DocumentReference:patient");
    assert_eq!(entries(&s, &q, "match"), data.set(&["p2"]));
    assert_eq!(entries(&s, &q, "include"), data.set(&["d3", "d4"]));
    // :iterate follows what was included: the patient, then that patient's other documents.
    let q = format!(
        "/DocumentReference?_id={d1}&_include=DocumentReference:patient\
         &_revinclude:iterate=DocumentReference:patient"
    );
    assert_eq!(entries(&s, &q, "include"), data.set(&["p1", "d2"]));
    // Included resources are counted nowhere: total is the matches.
    let q = format!("/Patient?_id={p2}&_revinclude=DocumentReference:patient");
    assert_eq!(s.get(&q).json()["total"], 1);
    s.get("/DocumentReference?_include=DocumentReference:nothing")
        .outcome(400);
    s.get("/DocumentReference?_include=DocumentReference")
        .outcome(400);
}

#[test]
fn includes_and_chains_need_scopes_on_the_other_types() {
    let s = Server::start();
    let data = load(&s);
    let documents_only = s.token(&[
        "--client-id",
        "test-feeder",
        "--scope",
        "system/DocumentReference.rs",
    ]);
    let as_documents_only = |query: &str| {
        s.request(
            "GET",
            query,
            &[("Authorization", &format!("Bearer {documents_only}"))],
            None,
        )
    };
    assert_eq!(
        as_documents_only("/DocumentReference?status=current").status,
        200
    );
    as_documents_only("/DocumentReference?_include=DocumentReference:patient").outcome(403);
    as_documents_only("/DocumentReference?patient.family=levy").outcome(403);
    let patients_only = s.token(&["--client-id", "test-feeder", "--scope", "system/Patient.rs"]);
    let q = format!(
        "/Patient?_id={}&_revinclude=DocumentReference:patient",
        data.id("p1")
    );
    s.request(
        "GET",
        &q,
        &[("Authorization", &format!("Bearer {patients_only}"))],
        None,
    )
    .outcome(403);
    s.request(
        "GET",
        "/Patient?_has:DocumentReference:patient:status=current",
        &[("Authorization", &format!("Bearer {patients_only}"))],
        None,
    )
    .outcome(403);
}

/// Unasked, the first page of a search across records counts its matches up to 1,000 and
/// carries no total past them (counting every match, each checked against the consent rules,
/// took 15 s at 2,000,000 documents: docs/performance.md, session 13); `_total=accurate` and
/// `_summary=count` count them all, and a search within one record always does.
#[test]
fn a_search_across_records_counts_up_to_a_thousand_matches_unless_asked() {
    let s = Server::start();
    let create = |from: usize, to: usize| {
        std::thread::scope(|scope| {
            for thread in 0..8 {
                let s = &s;
                scope.spawn(move || {
                    for i in (from + thread..to).step_by(8) {
                        s.create(&crate::harness::allergy(&format!("count-{i}")));
                    }
                });
            }
        });
    };
    let total = |query: &str| s.get(query).json().get("total").cloned();
    create(0, 1000);
    assert_eq!(total("/AllergyIntolerance?_count=5"), Some(json!(1000)));
    // A search over several types counts them all against the one bound, in either order.
    let both = "/?_type=AllergyIntolerance,DocumentReference&_count=5";
    assert_eq!(total(both), Some(json!(1000)));
    let report = crate::consent::document("p-allergy", "count", "11", &[], None, None);
    s.create(&report);
    assert_eq!(total(both), None);
    assert_eq!(
        total("/?_type=DocumentReference,AllergyIntolerance&_count=5"),
        None
    );
    assert_eq!(total(&format!("{both}&_total=accurate")), Some(json!(1001)));
    create(1000, 1001);
    assert_eq!(total("/AllergyIntolerance?_count=5"), None);
    assert_eq!(
        total("/AllergyIntolerance?_count=5&_total=accurate"),
        Some(json!(1001))
    );
    assert_eq!(
        total("/AllergyIntolerance?_count=5&_total=estimate"),
        Some(json!(1001))
    );
    assert_eq!(
        total("/AllergyIntolerance?_summary=count"),
        Some(json!(1001))
    );
    // Within one record (every allergy is in p-allergy's), the record bounds the count.
    assert_eq!(
        total("/AllergyIntolerance?patient=Patient/p-allergy&_count=5"),
        Some(json!(1001))
    );
}
