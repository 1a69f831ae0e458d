//! The layout a PostgreSQL distributed by patient (Citus) needs: every table holding record data
//! has the patient id NOT NULL and in every key; and on PostgreSQL hash-partitioned by patient
//! id (`CARNET_POSTGRES__PARTITIONS`, as `.ci/run` runs the suite a second time), every query
//! shape the builder emits about one patient reads one partition of each table it touches.

use crate::consent::document;
use crate::harness::{self, Server};
use carnet::auth::principal::{Principal, Purpose};
use carnet::auth::scopes::{parse_scopes, Interaction};
use carnet::auth::Access;
use carnet::consent::{Engine, Restriction};
use carnet::search::{query, record, sql, Position};
use carnet::store::partitions::{OTHER_TABLES, RECORD_TABLES};
use carnet::store::search::{Dialect, Sql};
use carnet::store::{HistoryScope, Store};
use diesel::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

const NIR: &str = "urn:oid:1.2.250.1.213.1.4.8";

#[test]
fn every_record_table_keys_on_a_not_null_patient_id() {
    let s = Server::start();
    let sqlite = harness::dialect(&s) == Dialect::Sqlite;
    let tables = s.select_texts(match sqlite {
        true => {
            "SELECT name AS v FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite_%'"
        }
        false => {
            "SELECT CAST(c.relname AS TEXT) AS v FROM pg_class c \
                  JOIN pg_namespace n ON n.oid = c.relnamespace \
                  WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
        }
    });
    for table in tables.iter().flatten() {
        assert!(
            RECORD_TABLES.contains(&table.as_str()) || OTHER_TABLES.contains(&table.as_str()),
            "{table} is neither a record table (keyed by patient) nor a known other table"
        );
    }
    for table in RECORD_TABLES {
        let not_null = s.select_texts(&match sqlite {
            true => format!(
                "SELECT CAST(\"notnull\" AS TEXT) AS v FROM pragma_table_info('{table}') \
                 WHERE name = 'patient_id'"
            ),
            false => format!(
                "SELECT CAST(is_nullable AS TEXT) AS v FROM information_schema.columns \
                 WHERE table_name = '{table}' AND column_name = 'patient_id'"
            ),
        });
        let expected = if sqlite { "1" } else { "NO" };
        assert_eq!(
            not_null,
            vec![Some(expected.to_owned())],
            "{table}.patient_id"
        );
        let keys = s.select_texts(&match sqlite {
            true => {
                format!("SELECT name AS v FROM pragma_index_list('{table}') WHERE \"unique\" = 1")
            }
            false => format!(
                "SELECT CAST(indexrelid::regclass AS TEXT) AS v FROM pg_index \
                 WHERE indrelid = '{table}'::regclass AND indisunique"
            ),
        });
        for key in keys.iter().flatten() {
            let columns = s.select_texts(&match sqlite {
                true => format!("SELECT name AS v FROM pragma_index_info('{key}')"),
                false => format!(
                    "SELECT CAST(a.attname AS TEXT) AS v FROM pg_index i \
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                     WHERE i.indexrelid = '{key}'::regclass"
                ),
            });
            assert!(
                columns.contains(&Some("patient_id".to_owned())),
                "{table}: the unique key {key} {columns:?} lacks the patient id"
            );
        }
        if sqlite {
            // A rowid alias (INTEGER PRIMARY KEY) is a key that no index lists.
            let primary = s.select_texts(&format!(
                "SELECT name AS v FROM pragma_table_info('{table}') WHERE pk > 0"
            ));
            assert!(
                primary.is_empty() || primary.contains(&Some("patient_id".to_owned())),
                "{table}: primary key {primary:?} lacks the patient id"
            );
        }
    }
}

/// The partitions (their remainders) of record tables that `sql` reads when it runs, from
/// `EXPLAIN ANALYZE`: partitions pruned when planning are absent, those pruned when running
/// (a patient found by a lookup) are "never executed".
fn partitions_read(database_url: &str, sql: &Sql) -> BTreeSet<u32> {
    partitions_of(database_url, sql, true)
}

/// The partitions of record tables that the plan of `sql` holds: those the planner could not
/// prune from the values it was given. Each one costs planning time on every run (and on a
/// distributed database, a statement not routed to one shard).
fn partitions_planned(database_url: &str, sql: &Sql) -> BTreeSet<u32> {
    partitions_of(database_url, sql, false)
}

/// The partitions of record tables `sql` plans (or, with `analyze`, reads).
pub(crate) fn partitions_of(database_url: &str, sql: &Sql, analyze: bool) -> BTreeSet<u32> {
    #[derive(QueryableByName)]
    struct Plan {
        #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
        json: String,
    }
    let mut conn = PgConnection::establish(database_url).unwrap();
    let query = harness::bind_pg(
        diesel::sql_query(format!(
            "EXPLAIN (ANALYZE {analyze}, FORMAT JSON) {}",
            sql.text
        ))
        .into_boxed(),
        &sql.binds,
    );
    let plans: Vec<Plan> = query
        .load(&mut conn)
        .unwrap_or_else(|e| panic!("{e}: {}", sql.text));
    let plan: Value = serde_json::from_str(&plans[0].json).unwrap();
    let mut read = BTreeSet::new();
    collect(&plan[0]["Plan"], analyze, &mut read);
    read
}

fn collect(node: &Value, analyze: bool, read: &mut BTreeSet<u32>) {
    let executed = !analyze || node["Actual Loops"].as_u64().unwrap_or(0) > 0;
    if let (true, Some(relation)) = (executed, node["Relation Name"].as_str()) {
        if let Some((table, remainder)) = relation.rsplit_once("_p") {
            if RECORD_TABLES.contains(&table) {
                read.insert(remainder.parse().unwrap());
            }
        }
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        collect(child, analyze, read);
    }
}

fn access(principal: Principal, scopes: &str) -> Access {
    Access {
        principal,
        scopes: parse_scopes(scopes).unwrap(),
    }
}

/// A search as `Records::search` runs it: decided, then pinned to the record it names.
/// `compartment`: the search runs in that patient's compartment (`Patient/{id}/{kind}`).
pub(crate) fn pinned_search(
    engine: &Engine,
    store: &Store,
    access: &Access,
    (kind, text, compartment): (&str, &str, Option<&str>),
) -> (query::Search, Restriction) {
    let params: Vec<(String, String)> = serde_urlencoded::from_str(text).unwrap();
    let mut search = query::parse(kind, &params, true, 20, 100).unwrap();
    search
        .criteria
        .extend(compartment.and_then(|patient| query::patient_compartment(kind, patient)));
    let (search, restriction) = engine.decide_search(access, search).unwrap();
    match record::named(&search) {
        Some((_, record::Named::Id(id))) => {
            let pinned = restriction.in_record(&id, false);
            (search, pinned)
        }
        Some((
            index,
            record::Named::Identifier {
                system,
                value,
                chained,
            },
        )) => {
            let (id, pinned) = engine
                .in_record_of_identifier(store, &restriction, (&system, &value), chained)
                .unwrap()
                .expect("one patient has the identifier");
            (record::by_id(search, index, &id), pinned)
        }
        None => panic!("{kind}?{text} ({compartment:?}) names no record"),
    }
}

#[test]
fn a_query_about_one_patient_reads_one_partition() {
    let partitions = harness::partitions();
    if partitions < 2 {
        eprintln!(
            "skipped: needs PostgreSQL partitioned by patient id \
             (CARNET_TEST_DATABASE_URL=postgres://… CARNET_POSTGRES__PARTITIONS=8, as .ci/run)"
        );
        return;
    }
    let s = Server::start();
    // Several records, so that other partitions hold rows a query could wrongly read.
    let mut records = Vec::new();
    for i in 0..6 {
        let nir = format!("28402751234{i:02}");
        let mut holder = harness::patient(&nir);
        holder["generalPractitioner"] = json!([{"reference": "Practitioner/dr-house"}]);
        let id = s.create(&holder)["id"].as_str().unwrap().to_owned();
        let mut documents = Vec::new();
        for name in ["11488-4", "34133-9"] {
            let created = s.create(&document(&id, name, "11", &[], Some("dr-house"), None));
            documents.push(created["id"].as_str().unwrap().to_owned());
        }
        let mut allergy = harness::allergy(&format!("a-{i}"));
        allergy["patient"] = json!({"reference": format!("Patient/{id}")});
        s.create(&allergy);
        records.push((id, nir, documents));
    }
    let (patient, nir, documents) = &records[2];
    let store = Store::open(s.database_url(), partitions).unwrap();
    let engine = Engine::default();
    let dialect = Dialect::Postgres;
    let base = s.base.clone();
    let organization = "https://finess.esante.gouv.fr|750000001".to_owned();
    let callers = [
        access(
            Principal::FeedingSystem {
                client_id: "test-feeder".into(),
                organization: organization.clone(),
            },
            "system/*.cruds",
        ),
        access(
            Principal::Professional {
                practitioner_id: "dr-house".into(),
                profession: "10".into(),
                organization,
                purpose: Purpose::Treatment,
            },
            "user/*.cruds",
        ),
        access(
            Principal::Patient {
                id: patient.clone(),
            },
            "patient/*.cruds",
        ),
    ];
    let searches = [
        (
            "DocumentReference",
            format!("patient=Patient/{patient}&status=current"),
        ),
        (
            "DocumentReference",
            format!("patient=Patient/{patient}&_sort=-date"),
        ),
        (
            "DocumentReference",
            format!("subject=Patient/{patient}&type=http://loinc.org|11488-4&date=ge2020-01-01"),
        ),
        (
            "DocumentReference",
            format!("patient.identifier={NIR}|{nir}&status=current"),
        ),
        (
            "DocumentReference",
            format!("patient=Patient/{patient}&_include=DocumentReference:patient"),
        ),
        ("AllergyIntolerance", format!("patient=Patient/{patient}")),
        (
            "Patient",
            format!("_id={patient}&_revinclude=DocumentReference:patient"),
        ),
        ("Patient", format!("identifier={NIR}|{nir}")),
        // Compartment searches, of which `$everything` is made.
        ("DocumentReference", "status=current".to_owned()),
        ("AllergyIntolerance", String::new()),
    ];
    let mut checked = 0;
    let mut check = |shape: &str, sql: &Sql| {
        let read = partitions_read(s.database_url(), sql);
        assert!(
            read.len() <= 1,
            "{shape} reads partitions {read:?}:\n{}",
            sql.text
        );
        let planned = partitions_planned(s.database_url(), sql);
        assert!(
            planned.len() <= 1,
            "{shape} is planned over partitions {planned:?}:\n{}",
            sql.text
        );
        checked += 1;
    };
    for caller in &callers {
        let who = caller.principal.kind_name();
        for (i, (kind, text)) in searches.iter().enumerate() {
            let compartment = (i >= searches.len() - 2).then_some(patient.as_str());
            let (search, restriction) =
                pinned_search(&engine, &store, caller, (kind, text, compartment));
            let shape = match compartment {
                Some(_) => format!("{who}: Patient/{patient}/{kind}?{text}"),
                None => format!("{who}: {kind}?{text}"),
            };
            let page = sql::page(&search, &restriction, &base, &Position::Start, 21, dialect);
            check(&format!("{shape} (page)"), page.sql());
            check(
                &format!("{shape} (count)"),
                sql::count(&search, &restriction, &base, dialect).sql(),
            );
            for include in &search.includes {
                let from: Vec<String> = match include.reverse {
                    true => vec![patient.clone()],
                    false => documents.clone(),
                };
                let included = sql::included(include, &restriction, kind, &from, 100, dialect);
                check(&format!("{shape} (include)"), included.sql());
            }
        }
        let kind = carnet::fhir::registry::lookup("DocumentReference").unwrap();
        let reading = engine.decide(caller, kind, &[Interaction::Read]).unwrap();
        let document = &documents[0];
        let filed = store.filed("DocumentReference", document).unwrap();
        assert_eq!(filed.key(), patient);
        let instance =
            HistoryScope::Instance("DocumentReference".into(), document.clone(), filed.clone());
        let direct = [
            (
                "read",
                sql::current(&reading, "DocumentReference", document, &filed, dialect),
            ),
            (
                "vread",
                sql::version(&reading, "DocumentReference", document, 1, &filed, dialect),
            ),
            (
                "history",
                sql::history(&reading, &instance, None, None, 10, dialect),
            ),
            (
                "history total",
                sql::history_count(&reading, &instance, None, dialect),
            ),
            (
                "conditional by id",
                sql::conditional(
                    &reading,
                    "DocumentReference",
                    sql::Criteria::Id(document, &filed),
                    2,
                    dialect,
                ),
            ),
        ];
        for (shape, compiled) in &direct {
            check(&format!("{who}: {shape}"), compiled.sql());
        }
    }
    // Not checked here, because they may reach several records by nature (docs/scale-out.md):
    // a List's entries, chains and `_has`, `$everything`, type and system history.
    assert!(checked > 60, "{checked} shapes checked");
    // The check can fail: a search across records reads the partitions of several.
    let (search, restriction) = engine
        .decide_search(
            &callers[0],
            query::parse(
                "DocumentReference",
                &[("status".into(), "current".into())],
                true,
                20,
                100,
            )
            .unwrap(),
        )
        .unwrap();
    let across = sql::page(&search, &restriction, &base, &Position::Start, 21, dialect);
    assert!(partitions_read(s.database_url(), across.sql()).len() > 1);
}

/// A compartment search is the record (`search/record.rs`, *decision*): a resource filed in
/// another record that names the patient further down is found in its own record, and still
/// by the parameter that names the patient.
#[test]
fn a_compartment_search_is_the_patient_s_record() {
    let s = Server::start();
    let x = s.create(&harness::patient("2840275123491"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let y = s.create(&harness::patient("2840275123492"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut own = harness::allergy("own");
    own["patient"] = json!({"reference": format!("Patient/{x}")});
    let own = s.create(&own)["id"].as_str().unwrap().to_owned();
    // Y's allergy, which X reported.
    let mut asserted = harness::allergy("asserted");
    asserted["patient"] = json!({"reference": format!("Patient/{y}")});
    asserted["asserter"] = json!({"reference": format!("Patient/{x}")});
    let asserted = s.create(&asserted)["id"].as_str().unwrap().to_owned();
    let ids = |path: &str| -> BTreeSet<String> {
        let bundle = s.get(path).json();
        bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["resource"]["resourceType"] == "AllergyIntolerance")
            .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let only = |id: &str| BTreeSet::from([id.to_owned()]);
    assert_eq!(ids(&format!("/Patient/{x}/AllergyIntolerance")), only(&own));
    assert_eq!(
        ids(&format!("/Patient/{y}/AllergyIntolerance")),
        only(&asserted)
    );
    assert_eq!(ids(&format!("/Patient/{x}/$everything")), only(&own));
    assert_eq!(
        ids(&format!("/AllergyIntolerance?asserter=Patient/{x}")),
        only(&asserted)
    );
}

/// A search that names its patient by identifier finds the record through the identifier
/// lookup (`patient_identifiers`), which follows the Patient's identifiers as they are written,
/// changed, shared by two records and reindexed; an identifier too long to be a key
/// is not looked up, and is still found.
#[test]
fn an_identifier_search_finds_the_record_the_lookup_names() {
    let s = Server::start();
    let lookup = || -> BTreeSet<String> {
        s.select_texts(
            "SELECT system || '|' || value || ' ' || patient_id AS v FROM patient_identifiers",
        )
        .into_iter()
        .flatten()
        .collect()
    };
    let documents_of = |identifier: &str| -> BTreeSet<String> {
        let query = serde_urlencoded::to_string([("patient.identifier", identifier)]).unwrap();
        let reply = s.get(&format!("/DocumentReference?{query}"));
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let set =
        |items: &[&str]| -> BTreeSet<String> { items.iter().map(|i| i.to_string()).collect() };

    let mut holder = harness::patient("2840275123401");
    let p = s.create(&holder)["id"].as_str().unwrap().to_owned();
    let d = s.create(&document(&p, "11488-4", "11", &[], None, None))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(lookup(), set(&[&format!("{NIR}|2840275123401 {p}")]));
    assert_eq!(documents_of(&format!("{NIR}|2840275123401")), set(&[&d]));

    // A new INS replaces the old one; an identifier without a system is not looked up.
    holder["id"] = json!(p);
    holder["identifier"] = json!([
        {"system": NIR, "value": "2840275123402"},
        {"value": "local-7"}
    ]);
    let reply = s.send("PUT", &format!("/Patient/{p}"), &holder, &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(lookup(), set(&[&format!("{NIR}|2840275123402 {p}")]));
    assert!(documents_of(&format!("{NIR}|2840275123401")).is_empty());
    assert_eq!(documents_of(&format!("{NIR}|2840275123402")), set(&[&d]));

    // Two records with one identifier: the search is not pinned, and finds both.
    let q = s.create(&harness::patient("2840275123402"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let e = s.create(&document(&q, "34133-9", "11", &[], None, None))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(lookup().len(), 2);
    assert_eq!(
        documents_of(&format!("{NIR}|2840275123402")),
        set(&[&d, &e])
    );
    // A Patient is closed, never deleted: the second one's INS is corrected instead.
    let mut second = harness::patient("2840275123409");
    second["id"] = json!(q);
    let reply = s.send("PUT", &format!("/Patient/{q}"), &second, &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(documents_of(&format!("{NIR}|2840275123409")), set(&[&e]));
    let both = set(&[
        &format!("{NIR}|2840275123402 {p}"),
        &format!("{NIR}|2840275123409 {q}"),
    ]);
    assert_eq!(lookup(), both);
    assert_eq!(documents_of(&format!("{NIR}|2840275123402")), set(&[&d]));

    // Too long for an index key (and for a B-tree entry, 4 bytes a character): not looked up.
    let long = "𝄞".repeat(800);
    let mut far = harness::patient("2840275123403");
    far["identifier"] = json!([{"system": NIR, "value": long}]);
    let r = s.create(&far)["id"].as_str().unwrap().to_owned();
    let f = s.create(&document(&r, "11488-4", "11", &[], None, None))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(lookup(), both);
    assert_eq!(documents_of(&format!("{NIR}|{long}")), set(&[&f]));

    // `carnet reindex` rebuilds the lookup from the bodies, whatever the index and the lookup
    // hold: here a lost index, a lost lookup row and a stale one.
    s.execute_sql("DELETE FROM search_tokens");
    s.execute_sql(&format!(
        "DELETE FROM patient_identifiers WHERE patient_id = '{q}'"
    ));
    s.execute_sql(&format!(
        "INSERT INTO patient_identifiers VALUES ('{NIR}', '2840275123400', '{p}')"
    ));
    let (ok, _, stderr) = s.carnet(&["reindex"]);
    assert!(ok, "{stderr}");
    assert_eq!(lookup(), both);
}
