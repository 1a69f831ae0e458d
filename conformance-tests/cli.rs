//! The `carnet` command: migrate, refusals at start, graceful shutdown.

use crate::harness::{patient, run_carnet, Server};

#[test]
fn migrate_applies_migrations_and_is_idempotent() {
    let dir =
        std::env::temp_dir().join(format!("carnet_migrate_{}", uuid::Uuid::new_v4().simple()));
    let url = format!("sqlite://{}/nested/carnet.db", dir.display());
    for _ in 0..2 {
        let (ok, stderr) = run_carnet(&["migrate"], &[("CARNET_DATABASE_URL", &url)]);
        assert!(ok, "{stderr}");
    }
    assert!(dir.join("nested/carnet.db").exists());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let mut s = Server::start();
    s.create(&patient("1"));
    let status = s.terminate();
    assert!(status.success(), "exit status {status}");
}

/// Every path to the data is decided by the consent engine: the server may face other
/// machines, and a caller there gets no more than on loopback.
#[test]
fn the_server_listens_on_every_interface_and_still_denies_by_default() {
    let s = Server::start_on_every_interface();
    assert_eq!(s.get("/metadata").status, 200);
    let anonymous = s.request("GET", "/DocumentReference", &[("Authorization", "")], None);
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    // The lab reads what it wrote, nothing else.
    let created = s.create(&crate::harness::allergy("1"));
    let listed = s.get("/AllergyIntolerance").json();
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["entry"][0]["resource"]["id"], created["id"]);
}

#[test]
fn an_address_that_names_nothing_is_refused() {
    let (ok, stderr) = run_carnet(&["serve"], &[("CARNET_LISTEN", "no port here")]);
    assert!(!ok);
    assert!(stderr.contains("listen"), "{stderr}");
}

#[test]
fn durability_unsafe_databases_are_refused() {
    let (ok, stderr) = run_carnet(
        &["migrate"],
        &[("CARNET_DATABASE_URL", "sqlite://:memory:")],
    );
    assert!(!ok);
    assert!(stderr.contains("in-memory"), "{stderr}");
    // On PostgreSQL, a connection with synchronous_commit=off could lose acknowledged writes.
    if let Ok(url) = std::env::var("CARNET_TEST_DATABASE_URL") {
        let unsafe_url = format!("{url}?options=-c%20synchronous_commit%3Doff");
        let (ok, stderr) = run_carnet(&["migrate"], &[("CARNET_DATABASE_URL", &unsafe_url)]);
        assert!(!ok);
        assert!(stderr.contains("synchronous_commit=off"), "{stderr}");
    }
}

#[test]
fn bad_configuration_is_refused_with_the_key() {
    let (ok, stderr) = run_carnet(&["migrate"], &[("CARNET_LIMITS__BODY_MAX_BYTES", "lots")]);
    assert!(!ok);
    assert!(stderr.contains("CARNET_LIMITS__BODY_MAX_BYTES"), "{stderr}");
    let (ok, stderr) = run_carnet(&["serve", "--config", "/nonexistent/carnet.toml"], &[]);
    assert!(!ok);
    assert!(stderr.contains("/nonexistent/carnet.toml"), "{stderr}");
}
