//! In-process harness: the same actix App as `carnet serve` (`carnet::app` over
//! `carnet::build_state`: access log, CORS, edges, panics, routes), called with
//! `actix_web::test` on a private runtime, against a real database of its own: a new SQLite
//! file, or a new PostgreSQL database when `CARNET_TEST_DATABASE_URL=postgres://…` is set
//! (created and dropped like the black-box harness does). Tokens are minted in-process by the
//! local issuer, through `carnet::mint_token`, the code behind `carnet token`.
//!
//! When to use which:
//! - **In-process** (this file) for large matrices of who may see what: many principals × many
//!   resources × many interactions. No process, port or socket per test; a token costs a
//!   signature (~0.2 ms) instead of a `carnet token` process (20–60 ms); a request saves the
//!   loopback round trip but still pays the handler, the token check and the database, so per
//!   read the gain is modest and varies with the load (figures: run
//!   `in_process_reads_are_timed_against_the_black_box_harness` with `--nocapture`).
//!   Principals: [`Caller`]; every kind has a registered test client.
//! - **Black-box** (`harness.rs`) for what lives below or outside the App: the HTTP/1 codec and
//!   the connection wrapper (malformed heads, 408/431, keep-alive; `HEAD` is only imitated here),
//!   timeouts on a real socket, the CLI, start-up and shutdown, crashes and restarts, external
//!   issuers over HTTP, and anything whose claim is "the binary does X". New public behaviour
//!   keeps at least one black-box test; the in-process harness multiplies cases, it does not
//!   replace the end-to-end proof.
//!
//! An [`App`] is not `Send`: keep it on the test's thread. Answers are [`harness::Reply`], so
//! `json()` checks resources against the official FHIR R4 schema as in the black-box suite.

use crate::harness::{self, Reply};
use actix_service::boxed::BoxService;
use actix_service::{Service, ServiceExt};
use actix_web::body::BoxBody;
use actix_web::dev::ServiceResponse;
use actix_web::test::TestRequest;
use carnet::auth::principal::Claims;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The FHIR base every in-process App answers for (it is never listened on).
pub const BASE: &str = "http://carnet.inprocess/fhir";

/// Clients registered on top of [`harness::TEST_CLIENTS`]: a second feeding system, from
/// another organization, for "a feeder sees only what it wrote".
pub const MORE_CLIENTS: &str = r#"
[[clients]]
client_id = "test-feeder-other"
kind = "feeder"
organization = "https://finess.esante.gouv.fr|750000002"
scopes = "system/*.cruds user/*.cruds"
"#;

/// Who a token is for: the claims `carnet token` would be given. The constructors pick the
/// registered test client of each principal kind and its widest scopes; [`Caller::scope`] and
/// the other setters narrow or vary them.
#[derive(Debug, Clone)]
pub struct Caller {
    pub claims: Claims,
}

impl Caller {
    fn of(client_id: &str, scope: &str) -> Caller {
        Caller {
            claims: Claims {
                client_id: Some(client_id.to_owned()),
                scope: scope.to_owned(),
                ..Claims::default()
            },
        }
    }

    /// The record holder `Patient/{id}`, through the portal.
    pub fn patient(id: &str) -> Caller {
        let mut caller = Caller::of("test-portal", "patient/*.cruds user/*.cruds");
        caller.claims.fhir_user = Some(format!("Patient/{id}"));
        caller
    }

    /// The guardian `RelatedPerson/{id}`, through the portal.
    pub fn guardian(related_person_id: &str) -> Caller {
        let mut caller = Caller::of("test-portal", "patient/*.cruds user/*.cruds");
        caller.claims.fhir_user = Some(format!("RelatedPerson/{related_person_id}"));
        caller
    }

    /// `Practitioner/{practitioner_id}` with ANS TRE_G15 `profession`, acting for
    /// `Organization/{organization_id}`, through clinical software.
    pub fn professional(practitioner_id: &str, profession: &str, organization_id: &str) -> Caller {
        let mut caller = Caller::of("test-feeder", "user/*.cruds");
        caller.claims.fhir_user = Some(format!("Practitioner/{practitioner_id}"));
        caller.claims.profession = Some(profession.to_owned());
        caller.claims.organization = Some(format!("Organization/{organization_id}"));
        caller
    }

    /// The feeding system `test-feeder` (FINESS 750000001); see also [`Caller::client`].
    pub fn feeding_system() -> Caller {
        Caller::of("test-feeder", "system/*.cruds")
    }

    /// The catalogue app `test-app` launched for `Patient/{patient_id}`.
    pub fn catalogue_app(patient_id: &str) -> Caller {
        let mut caller = Caller::of("test-app", "patient/*.rs");
        caller.claims.patient = Some(patient_id.to_owned());
        caller
    }

    /// The record-provisioning client.
    pub fn provisioning() -> Caller {
        Caller::of("test-provisioning", "system/*.cruds")
    }

    /// The same caller with these scopes instead.
    pub fn scope(mut self, scope: &str) -> Caller {
        self.claims.scope = scope.to_owned();
        self
    }

    /// The same caller through another registered client (e.g. `test-feeder-other`).
    pub fn client(mut self, client_id: &str) -> Caller {
        self.claims.client_id = Some(client_id.to_owned());
        self
    }

    /// The same professional declaring an emergency (`purpose_of_use=BTG`).
    pub fn break_glass(mut self, reason: &str) -> Caller {
        self.claims.purpose_of_use = Some("BTG".to_owned());
        self.claims.break_glass_reason = Some(reason.to_owned());
        self
    }
}

type AppService = BoxService<actix_http::Request, ServiceResponse<BoxBody>, actix_web::Error>;

/// The application in this process, with its own database.
pub struct App {
    runtime: actix_web::rt::Runtime,
    /// `None` once dropped: the pools close before the database is dropped.
    service: Option<AppService>,
    config: carnet::config::Config,
    dir: PathBuf,
    postgres_admin: Option<(String, String)>,
}

impl App {
    /// An App with the test clients and default settings.
    pub fn start() -> App {
        App::start_configured("")
    }

    /// An App whose `carnet.toml` is `extra_toml` followed by [`harness::TEST_CLIENTS`] and
    /// [`MORE_CLIENTS`] (extra first, so that its top-level keys stay top-level).
    pub fn start_configured(extra_toml: &str) -> App {
        let name = format!("carnet_i_{}", uuid::Uuid::new_v4().simple());
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let (database_url, postgres_admin) = harness::test_database(&name, &dir);
        let file = dir.join("carnet.toml");
        std::fs::write(
            &file,
            format!("{extra_toml}\n{}\n{MORE_CLIENTS}", harness::TEST_CLIENTS),
        )
        .unwrap();
        // The variables the black-box harness gives the binary, given here to the same loader.
        let env = [
            ("CARNET_BASE_URL", BASE.to_owned()),
            ("CARNET_DATABASE_URL", database_url),
            ("CARNET_AUTH__LOCAL_ISSUER", "true".to_owned()),
            (
                "CARNET_AUTH__LOCAL_ISSUER_KEY",
                dir.join("issuer-key.p8").display().to_string(),
            ),
        ];
        // The layout CI runs the PostgreSQL suite on a second time (`.ci/run`), inherited by
        // the black-box harness's processes as a variable, given here like the others.
        let layout = std::env::var("CARNET_POSTGRES__PARTITIONS")
            .ok()
            .map(|v| ("CARNET_POSTGRES__PARTITIONS".to_owned(), v));
        let config = carnet::config::Config::load(
            Some(&file),
            env.into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .chain(layout),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        // From here on, a failure must still drop the database: build the App in place.
        let mut app = App {
            runtime: actix_web::rt::Runtime::new().unwrap(),
            service: None,
            config,
            dir,
            postgres_admin,
        };
        let state = carnet::build_state(app.config.clone()).unwrap_or_else(|e| panic!("{e}"));
        let service = app
            .runtime
            .block_on(actix_web::test::init_service(carnet::app(state)));
        app.service = Some(actix_service::boxed::service(
            service.map(ServiceResponse::map_into_boxed_body),
        ));
        app
    }

    /// An access token for `caller` from this App's local issuer, valid one hour.
    pub fn token(&self, caller: &Caller) -> String {
        carnet::mint_token(&self.config, &caller.claims, 3600)
            .unwrap_or_else(|e| panic!("token for {caller:?}: {e}"))
    }

    /// The configuration the App runs with.
    pub fn config(&self) -> &carnet::config::Config {
        &self.config
    }

    /// Sends a request as `token` (empty: no `Authorization` header); `path` is relative to
    /// the FHIR base, or an absolute URL under it (a Bundle link, a `Location`).
    pub fn request_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        let uri = match path.strip_prefix(BASE) {
            Some(rest) => format!("/fhir{rest}"),
            None => {
                assert!(!path.starts_with("http"), "{path} is not under {BASE}");
                format!("/fhir{path}")
            }
        };
        let mut request = TestRequest::default()
            .method(method.parse().expect("an HTTP method"))
            .uri(&uri)
            .insert_header(("Host", "carnet.inprocess"));
        if !token.is_empty() {
            request = request.insert_header(("Authorization", format!("Bearer {token}")));
        }
        for (name, value) in headers {
            request = request.append_header((*name, *value));
        }
        if let Some(body) = body {
            request = request.set_payload(body.to_vec());
        }
        let service = self.service.as_ref().expect("the App is running");
        self.runtime.block_on(async {
            // What the connection does with an error the App returns: answer it.
            let response = match service.call(request.to_request()).await {
                Ok(response) => response.into_parts().1,
                Err(error) => error.error_response(),
            };
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                .collect();
            let bytes = actix_web::body::to_bytes(response.into_body())
                .await
                .unwrap_or_else(|e| panic!("{method} {path}: the body failed: {e}"))
                .to_vec();
            // The HTTP/1 codec sends a HEAD answer's headers only (the App answers it as GET).
            let bytes = if method.eq_ignore_ascii_case("HEAD") {
                Vec::new()
            } else {
                bytes
            };
            Reply {
                status,
                headers,
                body: String::from_utf8_lossy(&bytes).into_owned(),
                bytes,
            }
        })
    }

    /// `GET path` as `token`.
    pub fn get_as(&self, token: &str, path: &str) -> Reply {
        self.request_as(token, "GET", path, &[], None)
    }

    /// Sends FHIR JSON as `token` (`Content-Type: application/fhir+json` unless `headers` set
    /// one).
    pub fn send_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut all = headers.to_vec();
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("Content-Type"))
        {
            all.push(("Content-Type", "application/fhir+json"));
        }
        self.request_as(token, method, path, &all, Some(body.to_string().as_bytes()))
    }

    /// Creates `resource` as `token` and returns it as stored (asserting 201).
    pub fn create_as(&self, token: &str, resource: &Value) -> Value {
        let kind = resource["resourceType"].as_str().expect("a resourceType");
        let reply = self.send_as(token, "POST", &format!("/{kind}"), resource, &[]);
        assert_eq!(reply.status, 201, "{}", reply.body);
        reply.json()
    }
}

/// Every page of a search or history, from its first request through its `next` links.
#[derive(Debug, Default)]
pub struct Pages {
    /// `Type/id` of every entry, in the order served, with its `search.mode` (`match`,
    /// `include`; `None` in a history).
    pub entries: Vec<(String, Option<String>)>,
    /// Each page's `total` (`None` where a page has none).
    pub totals: Vec<Option<u64>>,
}

impl Pages {
    /// `Type/id` of the entries whose `search.mode` is `mode`.
    pub fn with_mode(&self, mode: &str) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, m)| m.as_deref() == Some(mode))
            .map(|(key, _)| key.clone())
            .collect()
    }
}

/// `Type/id` of each entry of a Bundle (from its resource, or its `fullUrl` when it has none,
/// as a deleted version in a history), with the entry's `search.mode`.
pub fn bundle_entries(bundle: &Value) -> Vec<(String, Option<String>)> {
    bundle["entry"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|entry| {
            let key = match (
                entry["resource"]["resourceType"].as_str(),
                entry["resource"]["id"].as_str(),
            ) {
                (Some(kind), Some(id)) => format!("{kind}/{id}"),
                _ => {
                    let url = entry["fullUrl"].as_str().unwrap_or_default();
                    let url = url
                        .strip_prefix(BASE)
                        .unwrap_or(url)
                        .trim_start_matches('/');
                    url.split("/_history").next().unwrap_or_default().to_owned()
                }
            };
            let mode = entry["search"]["mode"].as_str().map(str::to_owned);
            (key, mode)
        })
        .collect()
}

impl App {
    /// `method path` as `token` (a GET, or a POST `_search` with a form `body`), then every
    /// `next` link; `Err` with the first answer that is not a 200 Bundle. Stops after 1000
    /// pages, which only a cycle in the links reaches.
    pub fn pages(
        &self,
        token: &str,
        method: &str,
        path: &str,
        form: Option<&str>,
    ) -> Result<Pages, Reply> {
        let mut pages = Pages::default();
        let mut reply = match form {
            Some(form) => self.request_as(
                token,
                method,
                path,
                &[("Content-Type", "application/x-www-form-urlencoded")],
                Some(form.as_bytes()),
            ),
            None => self.request_as(token, method, path, &[], None),
        };
        for _ in 0..1000 {
            if reply.status != 200 {
                return Err(reply);
            }
            let bundle = reply.json();
            if bundle["resourceType"] != "Bundle" {
                return Err(reply);
            }
            pages.entries.extend(bundle_entries(&bundle));
            pages.totals.push(bundle["total"].as_u64());
            let next = bundle["link"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .find(|link| link["relation"] == "next")
                .and_then(|link| link["url"].as_str())
                .map(str::to_owned);
            match next {
                Some(url) => reply = self.get_as(token, &url),
                None => return Ok(pages),
            }
        }
        panic!("{method} {path}: more than 1000 pages");
    }
}

impl Drop for App {
    fn drop(&mut self) {
        drop(self.service.take());
        harness::drop_test_database(&self.postgres_admin);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A signed document about `Patient/{patient_id}`.
fn document(patient_id: &str) -> Value {
    json!({
        "resourceType": "DocumentReference",
        "status": "current",
        "type": {"coding": [
            {"system": "http://loinc.org", "code": "11502-2", "display": "Laboratory report"}
        ]},
        "subject": {"reference": format!("Patient/{patient_id}")},
        "date": "2026-11-30T09:15:00+01:00",
        "content": [{"attachment": {"contentType": "application/pdf", "url": "Binary/b1"}}]
    })
}

#[test]
fn a_feeding_system_creates_a_patient_and_a_document_and_reads_them_back() {
    let app = App::start();
    let feeder = app.token(&Caller::feeding_system());
    let patient = app.create_as(
        &app.token(&Caller::provisioning()),
        &harness::patient("284021234567890"),
    );
    let patient_id = patient["id"].as_str().unwrap();
    let created = app.create_as(&feeder, &document(patient_id));
    let document_id = created["id"].as_str().unwrap();

    let reply = app.get_as(&feeder, &format!("/Patient/{patient_id}"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("ETag"), Some("W/\"1\""));
    let read = reply.json();
    assert_eq!(read["identifier"][0]["value"], "284021234567890");
    assert_eq!(read["name"][0]["family"], "Lévy-Durand");
    let head = app.request_as(
        &feeder,
        "HEAD",
        &format!("/Patient/{patient_id}"),
        &[],
        None,
    );
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    assert_eq!(head.header("ETag"), Some("W/\"1\""));

    let reply = app.get_as(&feeder, &format!("/DocumentReference/{document_id}"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let read = reply.json();
    assert_eq!(read, created);
    assert_eq!(
        read["subject"]["reference"],
        format!("Patient/{patient_id}")
    );
}

#[test]
fn a_token_without_the_scope_is_refused_and_no_token_is_unauthenticated() {
    let app = App::start();
    let feeder = app.token(&Caller::feeding_system());
    let patient = app.create_as(
        &app.token(&Caller::provisioning()),
        &harness::patient("284021234567890"),
    );
    let document = app.create_as(&feeder, &document(patient["id"].as_str().unwrap()));
    let path = format!("/DocumentReference/{}", document["id"].as_str().unwrap());

    let patients_only = app.token(&Caller::feeding_system().scope("system/Patient.rs"));
    app.get_as(&patients_only, &path).outcome(403);
    let reader = app.token(&Caller::feeding_system().scope("system/DocumentReference.rs"));
    assert_eq!(app.get_as(&reader, &path).status, 200);
    let write = app.send_as(&reader, "POST", "/DocumentReference", &document, &[]);
    write.outcome(403);
    // Provisioning may never read clinical data, whatever its registration says.
    let provisioning = app.token(&Caller::provisioning());
    app.get_as(&provisioning, &path).outcome(403);

    let anonymous = app.get_as("", &path);
    anonymous.outcome(401);
    assert!(anonymous
        .header("WWW-Authenticate")
        .is_some_and(|v| v.starts_with("Bearer")));
}

#[test]
fn a_search_returns_the_created_document() {
    let app = App::start();
    let feeder = app.token(&Caller::feeding_system());
    let first = app.create_as(
        &app.token(&Caller::provisioning()),
        &harness::patient("284021234567890"),
    );
    let second = app.create_as(
        &app.token(&Caller::provisioning()),
        &harness::patient("184021234567891"),
    );
    let first_id = first["id"].as_str().unwrap();
    let wanted = app.create_as(&feeder, &document(first_id));
    app.create_as(&feeder, &document(second["id"].as_str().unwrap()));

    let reply = app.get_as(
        &feeder,
        &format!("/DocumentReference?subject=Patient/{first_id}&_total=accurate"),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let bundle = reply.json();
    assert_eq!(bundle["type"], "searchset");
    assert_eq!(bundle["total"], 1, "{bundle}");
    assert_eq!(bundle["entry"][0]["resource"]["id"], wanted["id"]);
    assert_eq!(
        bundle["entry"][0]["fullUrl"],
        format!(
            "{BASE}/DocumentReference/{}",
            wanted["id"].as_str().unwrap()
        )
    );
    // Links are absolute under the base and can be followed as they are.
    let own = bundle["link"][0]["url"].as_str().unwrap();
    assert_eq!(app.get_as(&feeder, own).json()["total"], 1);
}

/// Each constructor names the principal kind it says, and the App takes its token as that
/// caller's: the gate lets it through (no 401, no `WWW-Authenticate` challenge), whatever the
/// policy then answers for the read itself.
#[test]
fn every_principal_kind_gets_a_token_the_app_accepts() {
    let app = App::start();
    let patient = app.create_as(
        &app.token(&Caller::provisioning()),
        &harness::patient("284021234567890"),
    );
    let id = patient["id"].as_str().unwrap();
    let path = format!("/Patient/{id}");
    let callers = [
        (Caller::patient(id), "patient"),
        (Caller::guardian("rp1"), "guardian"),
        (Caller::professional("pr1", "10", "o1"), "professional"),
        (
            Caller::professional("pr1", "10", "o1").break_glass("unconscious at admission"),
            "professional",
        ),
        (Caller::feeding_system(), "feeding system"),
        (
            Caller::feeding_system().client("test-feeder-other"),
            "feeding system",
        ),
        (Caller::catalogue_app(id), "catalogue app"),
        (Caller::provisioning(), "provisioning client"),
    ];
    for (caller, kind) in &callers {
        let (principal, _) = carnet::auth::principal::derive(&caller.claims, &app.config().clients)
            .unwrap_or_else(|e| panic!("{caller:?}: {e}"));
        assert_eq!(principal.kind_name(), *kind, "{caller:?}");
        let reply = app.get_as(&app.token(caller), &path);
        assert!(
            reply.status != 401 && reply.header("WWW-Authenticate").is_none(),
            "{caller:?}: {} {}",
            reply.status,
            reply.body
        );
    }
    // The same claims with an unregistered client are refused at the gate: the tokens above
    // passed for who they name, not merely for being signed.
    let stranger = Caller::feeding_system().client("not-registered");
    let reply = app.get_as(&app.token(&stranger), &path);
    assert!(matches!(reply.status, 401 | 403), "{}", reply.body);
    assert!(reply.header("WWW-Authenticate").is_some(), "{}", reply.body);
}

#[test]
fn each_app_has_its_own_database() {
    let one = App::start();
    let other = App::start();
    let token = one.token(&Caller::provisioning());
    let patient = one.create_as(&token, &harness::patient("284021234567890"));
    let path = format!("/Patient/{}", patient["id"].as_str().unwrap());
    assert_eq!(one.get_as(&token, &path).status, 200);
    let other_token = other.token(&Caller::provisioning());
    other.get_as(&other_token, &path).outcome(404);
    // Each App has its own issuer key too: a token of one is not valid on the other.
    other.get_as(&token, &path).outcome(401);
}

#[test]
fn extra_configuration_reaches_the_app() {
    let app = App::start_configured("update_create = true\n[search]\ndefault_count = 2\n");
    let feeder = app.token(&Caller::provisioning());
    let mut patient = harness::patient("284021234567890");
    patient["id"] = json!("chosen-id");
    let reply = app.send_as(&feeder, "PUT", "/Patient/chosen-id", &patient, &[]);
    assert_eq!(reply.status, 201, "{}", reply.body);
    app.create_as(
        &app.token(&Caller::provisioning()),
        &harness::patient("184021234567891"),
    );
    app.create_as(
        &app.token(&Caller::provisioning()),
        &harness::patient("184021234567892"),
    );
    let page = app.get_as(&feeder, "/Patient").json();
    assert_eq!(page["entry"].as_array().map(Vec::len), Some(2), "{page}");
}

/// Not a benchmark: prints what 200 reads cost here and through the binary (run with
/// `--nocapture`), and asserts only that every read succeeded.
#[test]
fn in_process_reads_are_timed_against_the_black_box_harness() {
    const READS: u32 = 200;
    let started = Instant::now();
    let app = App::start();
    let start_in_process = started.elapsed();
    let feeder = app.token(&Caller::feeding_system());
    let patient = app.create_as(
        &app.token(&Caller::provisioning()),
        &harness::patient("284021234567890"),
    );
    let path = format!("/Patient/{}", patient["id"].as_str().unwrap());
    let started = Instant::now();
    for _ in 0..READS {
        assert_eq!(app.get_as(&feeder, &path).status, 200);
    }
    let in_process = started.elapsed();
    let started = Instant::now();
    for _ in 0..20 {
        app.token(&Caller::patient("p1"));
    }
    let tokens_in_process = started.elapsed() / 20;

    let started = Instant::now();
    let server = harness::Server::start();
    let start_black_box = started.elapsed();
    let patient = server.create(&harness::patient("284021234567890"));
    let path = format!("/Patient/{}", patient["id"].as_str().unwrap());
    let started = Instant::now();
    for _ in 0..READS {
        assert_eq!(server.get(&path).status, 200);
    }
    let black_box = started.elapsed();
    let started = Instant::now();
    server.token(&[
        "--client-id",
        "test-portal",
        "--fhir-user",
        "Patient/p1",
        "--scope",
        "patient/*.rs",
    ]);
    let token_black_box = started.elapsed();

    let per = |total: Duration| total / READS;
    println!(
        "{READS} reads ({}): in-process {in_process:?} ({:?}/read), black-box {black_box:?} \
         ({:?}/read); start: in-process {start_in_process:?}, black-box {start_black_box:?}; \
         one token: in-process {tokens_in_process:?}, black-box {token_black_box:?}",
        match std::env::var("CARNET_TEST_DATABASE_URL") {
            Ok(url) if url.starts_with("postgres") => "PostgreSQL",
            _ => "SQLite",
        },
        per(in_process),
        per(black_box),
    );
}
