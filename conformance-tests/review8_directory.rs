//! Eighth hostile review, of 8a38afe (reads by id bind the record their id lookup names) and
//! 80c2085 (the directory — Organization, Practitioner, PractitionerRole — in tables of its
//! own). Each test is a defect found there, or a check that passed; run on SQLite, on
//! PostgreSQL, and on PostgreSQL with `CARNET_POSTGRES__PARTITIONS=8`.
//!
//! Finding (failing): the SQLite directory lacks the records' `(resource_type, id, param)`
//! reference index. Checks (passing): chains, `_has`, includes (iterate, mixed targets),
//! `_sort`, `_total`, `:missing` reaching the directory; reads, vread, histories (system union
//! paged one by one, `_since`), conditional update/create by identifier and `_id`; the
//! migration down and up again on a database with data (also partitioned); `carnet reindex`;
//! odd requests (`$everything?_type=Practitioner`, `_type=` across both sets, wildcard
//! includes, deleted Organization) answer no 5xx.

use crate::consent::{document, organization, practitioner};
use crate::harness::{self, Server};
use serde_json::{json, Value};

fn ids(bundle: &Value, kind: &str) -> Vec<String> {
    let mut ids: Vec<String> = bundle["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|e| e["resource"]["resourceType"] == kind)
        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn ok(s: &Server, path: &str) -> Value {
    let reply = s.get(path);
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
    reply.json()
}

fn role(practitioner: &str, organization: &str) -> Value {
    json!({
        "resourceType": "PractitionerRole",
        "identifier": [{"system": "urn:carnet:test:role", "value": format!("{practitioner}@{organization}")}],
        "practitioner": {"reference": format!("Practitioner/{practitioner}")},
        "organization": {"reference": format!("Organization/{organization}")},
    })
}

/// Every search path that reaches the directory from a record or the directory from itself
/// finds the directory's rows where they now live.
#[test]
fn searches_reach_the_directory_in_its_own_tables() {
    let s = Server::start();
    let holder = s.create(&harness::patient("284027512340011"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let dr = s.create(&practitioner("810000000011"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = s.create(&practitioner("810000000022"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let org = s.create(&organization("750000011"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let role = s.create(&role(&dr, &org))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let doc = s.create(&document(&holder, "d1", "11", &[], Some(&dr), None))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let checks: Vec<(String, &str, Vec<String>)> = vec![
        (
            format!("/DocumentReference?author.identifier=https://rpps.esante.gouv.fr|810000000011&patient=Patient/{holder}"),
            "DocumentReference",
            vec![doc.clone()],
        ),
        (
            format!("/DocumentReference?author:Practitioner.name=Bernard&patient=Patient/{holder}"),
            "DocumentReference",
            vec![doc.clone()],
        ),
        (
            "/PractitionerRole?practitioner.identifier=https://rpps.esante.gouv.fr|810000000011".into(),
            "PractitionerRole",
            vec![role.clone()],
        ),
        (
            format!("/Practitioner?_has:PractitionerRole:practitioner:organization=Organization/{org}"),
            "Practitioner",
            vec![dr.clone()],
        ),
        (
            format!("/PractitionerRole?organization=Organization/{org}&_include=PractitionerRole:practitioner"),
            "Practitioner",
            vec![dr.clone()],
        ),
        (
            format!("/Organization?_id={org}&_revinclude=PractitionerRole:organization&_include:iterate=PractitionerRole:practitioner"),
            "Practitioner",
            vec![dr.clone()],
        ),
        (
            format!("/DocumentReference?patient=Patient/{holder}&_include=DocumentReference:author"),
            "Practitioner",
            vec![dr.clone()],
        ),
        (
            "/DocumentReference?status=current&_include=DocumentReference:author&_include=DocumentReference:subject".to_owned(),
            "Practitioner",
            vec![dr.clone()],
        ),
        (
            format!("/DocumentReference?patient=Patient/{holder}&_include=DocumentReference:author&_include:iterate=PractitionerRole:practitioner"),
            "Practitioner",
            vec![dr.clone()],
        ),
        (
            format!("/Practitioner?_id={dr}&_revinclude=DocumentReference:author"),
            "DocumentReference",
            vec![doc.clone()],
        ),
        (
            "/Practitioner?name=Bernard&_sort=-identifier&_total=accurate".into(),
            "Practitioner",
            { let mut v = vec![dr.clone(), other.clone()]; v.sort(); v },
        ),
        (
            "/Practitioner?identifier:missing=false".into(),
            "Practitioner",
            { let mut v = vec![dr.clone(), other.clone()]; v.sort(); v },
        ),
        (
            "/Organization?name:contains=750000011".into(),
            "Organization",
            vec![org.clone()],
        ),
    ];
    let mut failures = Vec::new();
    for (path, kind, expected) in &checks {
        let reply = s.get(path);
        if reply.status != 200 {
            failures.push(format!("GET {path}: {} {}", reply.status, reply.body));
            continue;
        }
        let found = ids(&reply.json(), kind);
        if &found != expected {
            failures.push(format!(
                "GET {path}: {kind} {found:?}, expected {expected:?}"
            ));
        }
    }
    let sorted = ok(&s, "/Practitioner?_sort=-identifier&_total=accurate");
    if sorted["total"] != 2 {
        failures.push(format!("Practitioner total {}", sorted["total"]));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Reads, histories and conditional interactions of the directory.
#[test]
fn the_directory_reads_writes_and_histories_from_its_own_tables() {
    let s = Server::start();
    let mut created = s.create(&organization("750000022"));
    let org = created["id"].as_str().unwrap().to_owned();
    created["name"] = "Renamed".into();
    let reply = s.send("PUT", &format!("/Organization/{org}"), &created, &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    ok(&s, &format!("/Organization/{org}"));
    ok(&s, &format!("/Organization/{org}/_history/1"));
    let history = ok(&s, &format!("/Organization/{org}/_history"));
    assert_eq!(
        history["entry"].as_array().map(Vec::len),
        Some(2),
        "{history}"
    );
    let history = ok(&s, "/Organization/_history");
    assert_eq!(
        history["entry"].as_array().map(Vec::len),
        Some(2),
        "{history}"
    );
    s.create(&harness::allergy("sys-1"));
    // System history mixes both sets, newest first, with one total, paged one by one.
    let mut seen = Vec::new();
    let mut page = ok(&s, "/_history?_count=1");
    loop {
        for e in page["entry"].as_array().cloned().unwrap_or_default() {
            seen.push(format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap_or("deleted"),
                e["resource"]["id"].as_str().unwrap_or("")
            ));
        }
        match harness::next_link(&page) {
            Some(next) => page = ok(&s, &next),
            None => break,
        }
    }
    assert!(
        seen.iter()
            .filter(|e| e.starts_with("Organization/"))
            .count()
            == 2,
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|e| e.starts_with("AllergyIntolerance/")),
        "{seen:?}"
    );
    // Conditional update and delete by identifier.
    let reply = s.send(
        "PUT",
        "/Organization?identifier=https://finess.esante.gouv.fr|750000022",
        &json!({"resourceType": "Organization", "identifier": [{"system": "https://finess.esante.gouv.fr", "value": "750000022"}], "name": "Again"}),
        &[],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = s.send(
        "POST",
        "/Organization",
        &organization("750000022"),
        &[(
            "If-None-Exist",
            "identifier=https://finess.esante.gouv.fr|750000022",
        )],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = s.send(
        "PUT",
        &format!("/Organization?_id={org}"),
        &json!({"resourceType": "Organization", "id": org, "name": "By id"}),
        &[],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let since = ok(&s, "/_history?_since=2000-01-01T00:00:00Z");
    assert!(
        since["entry"].as_array().map(Vec::len).unwrap_or(0) >= 5,
        "{since}"
    );
}

/// The indexes of `table`, each as its column list (names left out: they differ by prefix).
fn index_columns(s: &Server, table: &str) -> Vec<String> {
    let rows = match harness::dialect(s) {
        carnet::store::search::Dialect::Sqlite => s.select_texts(&format!(
            "SELECT (SELECT group_concat(name, ',') FROM (SELECT ii.name AS name \
             FROM pragma_index_info(m.name) ii ORDER BY ii.seqno)) AS v \
             FROM sqlite_master m WHERE m.type = 'index' AND m.tbl_name = '{table}' \
             AND m.sql IS NOT NULL"
        )),
        carnet::store::search::Dialect::Postgres => s.select_texts(&format!(
            "SELECT substring(indexdef from '\\((.*)\\)') AS v FROM pg_indexes \
             WHERE schemaname = 'public' AND tablename = '{table}' \
             AND indexdef NOT LIKE '%UNIQUE%'"
        )),
    };
    let mut columns: Vec<String> = rows
        .into_iter()
        .flatten()
        .map(|c| c.replace(' ', ""))
        .collect();
    columns.sort();
    columns
}

/// The commit says the directory's tables have "the same columns, collations, indexes and
/// statistics" as the records' (80c2085): true on PostgreSQL (`LIKE … INCLUDING ALL`), but
/// the SQLite migration lists the indexes by hand and leaves out
/// `search_references_source (resource_type, id, param)`, which the patient keys' migration
/// added (after review7) so that a forward `_include` from a page across records and `_has`
/// find the page's reference rows by their ids (migrations/sqlite/
/// 2026-12-11-000001_directory_tables/up.sql:83-91). From the directory
/// (`PractitionerRole?…&_include=PractitionerRole:practitioner`,
/// `Practitioner?_has:PractitionerRole:practitioner:…`) SQLite is left to a skip-scan of
/// `directory_references_resource` over its constant patient id, which it only plans once
/// ANALYZE has run. Low severity: a schema drift between the backends, seen by no answer.
#[test]
fn the_directory_tables_have_the_indexes_of_the_records_tables() {
    let s = Server::start();
    let mut missing = Vec::new();
    for (records, directory) in [
        ("resources", "directory_resources"),
        ("resource_versions", "directory_versions"),
        ("search_tokens", "directory_tokens"),
        ("search_strings", "directory_strings"),
        ("search_dates", "directory_dates"),
        ("search_references", "directory_references"),
        ("search_uris", "directory_uris"),
    ] {
        let theirs = index_columns(&s, records);
        let ours = index_columns(&s, directory);
        assert!(!theirs.is_empty(), "no index read on {records}");
        for index in theirs {
            if !ours.contains(&index) {
                missing.push(format!("{directory} ({index}) of {records}"));
            }
        }
    }
    assert!(missing.is_empty(), "the directory lacks: {missing:?}");
}

/// The directory's migration on a database with data (on PostgreSQL with
/// `CARNET_POSTGRES__PARTITIONS=8`, on partitioned records' tables): the directory as the
/// previous release filed it is put back by the down migration, the server restarts, and every
/// read of the directory and every search reaching it answers as before.
#[test]
fn the_directory_migration_keeps_what_every_read_answers() {
    let mut s = Server::start();
    let holder = s.create(&harness::patient("284027512340055"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let dr = s.create(&practitioner("810000000055"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let org = s.create(&organization("750000055"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let role = s.create(&role(&dr, &org))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut renamed = s.get(&format!("/Organization/{org}")).json();
    renamed["name"] = "Renamed".into();
    let reply = s.send("PUT", &format!("/Organization/{org}"), &renamed, &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    s.create(&document(&holder, "m1", "11", &[], Some(&dr), None));
    let paths = [
        format!("/Organization/{org}"),
        format!("/Organization/{org}/_history/1"),
        format!("/Organization/{org}/_history"),
        "/Organization/_history".to_owned(),
        format!("/Practitioner/{dr}"),
        "/Practitioner?identifier=https://rpps.esante.gouv.fr|810000000055".to_owned(),
        "/Organization?name=Renamed".to_owned(),
        format!("/PractitionerRole/{role}"),
        format!("/Practitioner?_has:PractitionerRole:practitioner:organization=Organization/{org}"),
        format!("/DocumentReference?patient=Patient/{holder}&_include=DocumentReference:author"),
        "/DocumentReference?author.identifier=https://rpps.esante.gouv.fr|810000000055".to_owned(),
    ];
    let answer = |s: &Server, path: &str| {
        let reply = s.get(path);
        let mut body: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
        if let Some(object) = body.as_object_mut() {
            object.remove("id");
            object.remove("meta");
            object.remove("link");
        }
        (reply.status, body)
    };
    let before: Vec<_> = paths.iter().map(|p| answer(&s, p)).collect();
    let down = match harness::dialect(&s) {
        carnet::store::search::Dialect::Sqlite => {
            include_str!("../migrations/sqlite/2026-12-11-000001_directory_tables/down.sql")
        }
        carnet::store::search::Dialect::Postgres => {
            include_str!("../migrations/postgres/2026-12-11-000001_directory_tables/down.sql")
        }
    };
    for statement in down
        .split(';')
        .map(|t| {
            t.lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .filter(|t| !t.trim().is_empty())
    {
        s.execute_sql(&statement);
    }
    s.execute_sql("DELETE FROM __diesel_schema_migrations WHERE version = '20261211000001'");
    s.crash_and_restart();
    let left = s.select_texts(
        "SELECT resource_type AS v FROM resources \
         WHERE resource_type IN ('Organization', 'Practitioner', 'PractitionerRole')",
    );
    assert!(left.is_empty(), "left in the records' table: {left:?}");
    let mut differ = Vec::new();
    for (path, was) in paths.iter().zip(&before) {
        let now = answer(&s, path);
        if &now != was {
            differ.push(format!("GET {path}: {was:?}\n  now {now:?}"));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

/// `carnet reindex` rebuilds the directory's index rows in the directory's tables.
#[test]
fn carnet_reindex_rebuilds_the_directory_s_index_rows() {
    let s = Server::start();
    let dr = s.create(&practitioner("810000000066"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let org = s.create(&organization("750000066"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let role = s.create(&role(&dr, &org))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for table in [
        "directory_tokens",
        "directory_strings",
        "directory_dates",
        "directory_references",
        "directory_uris",
    ] {
        s.execute_sql(&format!("DELETE FROM {table}"));
    }
    let (ok, _, stderr) = s.carnet(&["reindex"]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("3 resources reindexed"), "{stderr}");
    let found = ok_ids(
        &s,
        "/Practitioner?identifier=https://rpps.esante.gouv.fr|810000000066",
        "Practitioner",
    );
    assert_eq!(found, vec![dr.clone()]);
    let found = ok_ids(
        &s,
        &format!("/PractitionerRole?organization=Organization/{org}"),
        "PractitionerRole",
    );
    assert_eq!(found, vec![role]);
    let records = s.select_texts(
        "SELECT resource_type AS v FROM search_tokens \
         WHERE resource_type IN ('Organization', 'Practitioner', 'PractitionerRole')",
    );
    assert!(records.is_empty(), "{records:?}");
}

fn ok_ids(s: &Server, path: &str, kind: &str) -> Vec<String> {
    ids(&ok(s, path), kind)
}

/// Odd requests reaching the directory answer without a server error.
#[test]
fn odd_requests_reaching_the_directory_are_no_server_error() {
    let s = Server::start();
    let holder = s.create(&harness::patient("284027512340077"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let dr = s.create(&practitioner("810000000077"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let org = s.create(&organization("750000077"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let role = s.create(&role(&dr, &org))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.create(&document(&holder, "o1", "11", &[], Some(&dr), None));
    let reply = s.request("DELETE", &format!("/Organization/{org}"), &[], None);
    assert!(reply.status < 500, "{} {}", reply.status, reply.body);
    let paths = [
        format!("/Patient/{holder}/$everything?_type=Practitioner,DocumentReference"),
        format!("/Patient/{holder}/$everything"),
        format!("/Patient/{holder}/DocumentReference?_include=DocumentReference:author"),
        format!("/Patient/{holder}/Practitioner"),
        "/?_type=Practitioner,Organization,PractitionerRole&_count=1".to_owned(),
        "/?_type=Practitioner,DocumentReference&_include=DocumentReference:author".to_owned(),
        "/_search?_type=Organization".to_owned(),
        format!("/Organization/{org}"),
        format!("/Organization/{org}/_history"),
        format!("/Organization/{org}/_history/2"),
        format!("/PractitionerRole?_id={role}&_include=PractitionerRole:organization&_include=PractitionerRole:practitioner"),
        "/PractitionerRole?_include=*".to_owned(),
        "/Organization?_revinclude=*".to_owned(),
        "/PractitionerRole?_include:iterate=PractitionerRole:practitioner&_revinclude:iterate=DocumentReference:author".to_owned(),
        "/Practitioner?_revinclude=PractitionerRole:practitioner&_revinclude:iterate=DocumentReference:author&_include:iterate=PractitionerRole:organization".to_owned(),
        "/Practitioner?_sort=name,-_lastUpdated,identifier&_count=1".to_owned(),
        "/Practitioner?_has:PractitionerRole:practitioner:_id=x&_total=accurate".to_owned(),
        "/Practitioner?_has:DocumentReference:author:status=current".to_owned(),
        "/Organization?_has:PractitionerRole:organization:practitioner.name=Bernard".to_owned(),
        "/DocumentReference?author:PractitionerRole.organization.name=Renamed".to_owned(),
        "/List?item=Practitioner/x".to_owned(),
        "/_history?_count=1&_since=2001-01-01".to_owned(),
        "/Practitioner/_history?_count=1".to_owned(),
    ];
    let mut errors = Vec::new();
    for path in &paths {
        let reply = s.get(path);
        if reply.status >= 500 {
            errors.push(format!("GET {path}: {} {}", reply.status, reply.body));
        }
        if let Some(next) = (reply.status == 200)
            .then(|| reply.json())
            .as_ref()
            .and_then(harness::next_link)
        {
            let reply = s.get(&next);
            if reply.status >= 500 {
                errors.push(format!("GET {next}: {} {}", reply.status, reply.body));
            }
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}
