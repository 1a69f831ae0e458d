//! Twelfth hostile review (1a40951), the partitioned layout: the record's facts are now
//! subqueries of a pinned search's own statements. `scale_out.rs` checks the shapes of a
//! feeding system, a professional and the patient; the guardian's facts (a guardianship joined
//! to the minor's record row) and the catalogue app's (the record's state) were asked in a
//! statement of their own before, and are checked here: each statement of their pinned
//! searches is planned on one partition of each record table and reads one.

use crate::consent::{document, guardian_link, id_of, paris_date, patient};
use crate::harness::{self, Server};
use crate::scale_out::{partitions_of, pinned_search};
use carnet::auth::principal::Principal;
use carnet::auth::scopes::parse_scopes;
use carnet::auth::Access;
use carnet::consent::Engine;
use carnet::search::{sql, Position};
use carnet::store::search::Dialect;
use carnet::store::Store;

#[test]
fn a_guardian_s_and_an_app_s_pinned_searches_are_planned_on_one_partition() {
    let partitions = harness::partitions();
    if partitions < 2 {
        eprintln!("skipped: needs PostgreSQL partitioned by patient id");
        return;
    }
    let s = Server::start();
    let minor_birth = paris_date(-10, 0);
    let mut records = Vec::new();
    for i in 0..6 {
        let nir = format!("21607123456{i:02}");
        let id = id_of(&s.create(&patient(&nir, Some(&minor_birth), None)));
        for name in ["11488-4", "34133-9"] {
            s.create(&document(&id, name, "11", &[], None, None));
        }
        records.push((id, nir));
    }
    let (minor, nir) = &records[3];
    let guardian = id_of(&s.create(&guardian_link(minor)));
    let store = Store::open(s.database_url(), partitions).unwrap();
    let engine = Engine::default();
    let callers = [
        (
            "guardian",
            Principal::Guardian {
                related_person_id: guardian,
            },
            "patient/*.rs",
        ),
        (
            "app",
            Principal::CatalogueApp {
                client_id: "test-app".into(),
                patient_id: minor.clone(),
            },
            "patient/*.rs",
        ),
    ];
    let searches = [
        (
            "DocumentReference",
            format!("patient=Patient/{minor}&status=current"),
        ),
        (
            "DocumentReference",
            format!("patient.identifier=urn:oid:1.2.250.1.213.1.4.8|{nir}"),
        ),
        (
            "Patient",
            format!("_id={minor}&_revinclude=DocumentReference:patient"),
        ),
        (
            "DocumentReference",
            format!("subject=Patient/{minor}&_include=DocumentReference:patient&_sort=-date"),
        ),
    ];
    let mut failures = Vec::new();
    let mut checked = 0;
    for (who, principal, scopes) in callers {
        let access = Access {
            principal,
            scopes: parse_scopes(scopes).unwrap(),
        };
        for (kind, text) in &searches {
            let (search, pinned) = pinned_search(&engine, &store, &access, (kind, text, None));
            let mut statements = vec![
                (
                    "page",
                    sql::page(
                        &search,
                        &pinned,
                        &s.base,
                        &Position::Start,
                        21,
                        Dialect::Postgres,
                    ),
                ),
                (
                    "count",
                    sql::count(&search, &pinned, &s.base, Dialect::Postgres),
                ),
            ];
            for include in &search.includes {
                let from: Vec<String> = vec![minor.clone()];
                statements.push((
                    "include",
                    sql::included(include, &pinned, kind, &from, 100, Dialect::Postgres),
                ));
            }
            for (part, statement) in statements {
                for analyze in [false, true] {
                    let read = partitions_of(s.database_url(), statement.sql(), analyze);
                    if read.len() > 1 {
                        failures.push(format!(
                            "{who}: {kind}?{text} ({part}, analyze {analyze}) reads partitions \
                             {read:?}:\n{}",
                            statement.sql().text
                        ));
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 16, "{checked}");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
