//! Starts the real `carnet` binary on a free loopback port with a fresh database and talks
//! HTTP to it. The backend comes from `CARNET_TEST_DATABASE_URL`: unset → a new SQLite file;
//! `postgres://…` → a new database created on that server for this test and dropped after it.
//!
//! Each server gets a `carnet.toml` registering the test clients below and runs its local
//! issuer; requests carry a feeding-system token with `system/*.cruds` unless they set their
//! own `Authorization` header (an empty value sends none).

use diesel::prelude::*;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// A running server and the database it owns.
pub struct Server {
    pub base: String,
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    /// The host part of `listen` (loopback unless a test asks for every interface).
    listen_host: &'static str,
    database_url: String,
    postgres_admin: Option<(String, String)>,
    extra_env: Vec<(String, String)>,
    agent: ureq::Agent,
    /// The token sent when a request sets no `Authorization` header (the lab's; see
    /// `default_token_for`).
    pub default_token: String,
    /// The provisioning client's token, sent by default with writes of records and the
    /// directory.
    pub provisioning_token: String,
}

/// The client registry every test server starts with.
pub const TEST_CLIENTS: &str = r#"
[[clients]]
client_id = "test-feeder"
kind = "feeder"
organization = "https://finess.esante.gouv.fr|750000001"
scopes = "system/*.cruds user/*.cruds"

[[clients]]
client_id = "test-portal"
kind = "portal"
scopes = "patient/*.cruds user/*.cruds"

[[clients]]
client_id = "test-app"
kind = "app"
scopes = "patient/*.rs"

[[clients]]
client_id = "test-provisioning"
kind = "provisioning"
scopes = "system/*.cruds"
"#;

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body as text (lossy for binary content).
    pub body: String,
    pub bytes: Vec<u8>,
}

/// The official FHIR R4 JSON schema, compiled once per test run; `None` when the HL7 files
/// are absent (they are not part of the repository), which is said once on stderr.
static FHIR_SCHEMA: LazyLock<Option<jsonschema::Validator>> = LazyLock::new(|| {
    let path = carnet::fhir::hl7_source::dir("JSON-schema validation of responses")?
        .join("fhir.schema.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read the FHIR JSON schema {}: {e}", path.display()));
    let mut schema: Value = serde_json::from_str(&text).unwrap();
    add_fhir_version_4_0_1(&mut schema);
    Some(jsonschema::draft6::new(&schema).expect("the FHIR schema compiles"))
});

/// The published R4 schema's FHIR version enums stop at 4.0.0 (a known defect of the 4.0.1
/// release files): add 4.0.1 wherever 4.0.0 is listed, and nothing else.
fn add_fhir_version_4_0_1(schema: &mut Value) {
    match schema {
        Value::Object(fields) => {
            if let Some(Value::Array(values)) = fields.get_mut("enum") {
                if values.iter().any(|v| v == "4.0.0") && !values.iter().any(|v| v == "4.0.1") {
                    values.push(Value::String("4.0.1".into()));
                }
            }
            fields.values_mut().for_each(add_fhir_version_4_0_1);
        }
        Value::Array(items) => items.iter_mut().for_each(add_fhir_version_4_0_1),
        _ => {}
    }
}

/// The first schema errors of `resource` against the official FHIR R4 JSON schema, or
/// `None` when the schema is absent and the check skipped.
pub fn schema_errors(resource: &Value) -> Option<Vec<String>> {
    let schema = FHIR_SCHEMA.as_ref()?;
    Some(
        schema
            .iter_errors(resource)
            .take(5)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect(),
    )
}

/// Panics unless `resource` is valid against the official FHIR R4 JSON schema (when present).
pub fn assert_schema_valid(resource: &Value) {
    let errors = schema_errors(resource).unwrap_or_default();
    assert!(
        errors.is_empty(),
        "not valid FHIR R4 JSON: {errors:?}\n{resource}"
    );
}

impl Reply {
    /// The body as JSON (panics with the body when it is not); every FHIR resource the
    /// server returns is also checked against the official R4 JSON schema.
    pub fn json(&self) -> Value {
        let value: Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body));
        if value.get("resourceType").is_some() {
            assert_schema_valid(&value);
        }
        value
    }

    /// A header value, case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts the status and that the body is an OperationOutcome; returns its first issue.
    pub fn outcome(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "body: {}", self.body);
        let json = self.json();
        assert_eq!(json["resourceType"], "OperationOutcome", "{}", self.body);
        let issue = json["issue"][0].clone();
        assert!(
            issue["severity"].is_string() && issue["code"].is_string(),
            "{}",
            self.body
        );
        assert!(issue["diagnostics"].is_string(), "{}", self.body);
        issue
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// Starts a server with default settings.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts a server with extra `CARNET_*` settings.
    pub fn start_with(env: &[(&str, &str)]) -> Server {
        Server::start_configured("", env)
    }

    /// Starts a server listening on every IPv4 interface (`0.0.0.0`), reached on loopback.
    pub fn start_on_every_interface() -> Server {
        Server::start_listening("0.0.0.0", "", &[])
    }

    /// Starts a server whose `carnet.toml` is [`TEST_CLIENTS`] followed by `extra_toml`.
    pub fn start_configured(extra_toml: &str, env: &[(&str, &str)]) -> Server {
        Server::start_listening("127.0.0.1", extra_toml, env)
    }

    fn start_listening(
        listen_host: &'static str,
        extra_toml: &str,
        env: &[(&str, &str)],
    ) -> Server {
        let name = format!("carnet_t_{}", uuid::Uuid::new_v4().simple());
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let (database_url, postgres_admin) = test_database(&name, &dir);
        std::fs::write(
            dir.join("carnet.toml"),
            format!("{TEST_CLIENTS}\n{extra_toml}"),
        )
        .unwrap();
        let port = free_port();
        let mut extra_env: Vec<(String, String)> = vec![
            // On by default with SQLite only: the tests use it on both backends.
            ("CARNET_AUTH__LOCAL_ISSUER".into(), "true".into()),
            (
                "CARNET_AUTH__LOCAL_ISSUER_KEY".into(),
                dir.join("issuer-key.p8").display().to_string(),
            ),
        ];
        extra_env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut server = Server {
            base: format!("http://127.0.0.1:{port}/fhir"),
            child: None,
            dir,
            port,
            listen_host,
            database_url,
            postgres_admin,
            extra_env,
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(60))
                .build(),
            default_token: String::new(),
            provisioning_token: String::new(),
        };
        let mut attempts = 0;
        while let Err(reason) = server.launch() {
            attempts += 1;
            assert!(attempts < 5, "{reason}");
            server.port = free_port();
            server.base = format!("http://127.0.0.1:{}/fhir", server.port);
        }
        server.default_token =
            server.token(&["--client-id", "test-feeder", "--scope", "system/*.cruds"]);
        server.provisioning_token = server.token(&[
            "--client-id",
            "test-provisioning",
            "--scope",
            "system/*.cruds",
        ]);
        server
    }

    /// Runs `carnet token ARGS` against this server's configuration and returns the JWT.
    pub fn token(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.carnet(&[&["token"], args].concat());
        assert!(ok, "carnet token {args:?} failed: {stderr}");
        let token = stdout.trim().to_owned();
        assert_eq!(token.split('.').count(), 3, "not a JWT: {stdout}");
        token
    }

    /// Runs `carnet ARGS` with this server's directory, configuration and environment; returns
    /// exit success, standard output and standard error.
    pub fn carnet(&self, args: &[&str]) -> (bool, String, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_carnet"))
            .args(args)
            .current_dir(&self.dir)
            .env("CARNET_BASE_URL", &self.base)
            .env("CARNET_DATABASE_URL", &self.database_url)
            .envs(self.extra_env.iter().cloned())
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// The server's database.
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// Runs one SQL statement directly on the server's database (to simulate damage).
    pub fn execute_sql(&self, statement: &str) {
        match self.database_url.strip_prefix("sqlite://") {
            Some(path) => {
                let mut conn = diesel::SqliteConnection::establish(path).unwrap();
                diesel::sql_query(statement).execute(&mut conn).unwrap();
            }
            None => {
                let mut conn = PgConnection::establish(&self.database_url).unwrap();
                diesel::sql_query(statement).execute(&mut conn).unwrap();
            }
        }
    }

    /// On PostgreSQL, ends every other session on the server's database, as a restart or an
    /// administrator would: the server's pooled connections are lost.
    pub fn drop_database_connections(&self) {
        self.execute_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        );
    }

    /// The text column `v` of every row `statement` selects, read directly from the server's
    /// database (to check what is stored beside the bodies).
    pub fn select_texts(&self, statement: &str) -> Vec<Option<String>> {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
            v: Option<String>,
        }
        let rows: Vec<Row> = match self.database_url.strip_prefix("sqlite://") {
            Some(path) => {
                let mut conn = diesel::SqliteConnection::establish(path).unwrap();
                diesel::sql_query(statement).load(&mut conn).unwrap()
            }
            None => {
                let mut conn = PgConnection::establish(&self.database_url).unwrap();
                diesel::sql_query(statement).load(&mut conn).unwrap()
            }
        };
        rows.into_iter().map(|r| r.v).collect()
    }

    /// The server's working directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Where the server keeps its local issuer's private key.
    pub fn issuer_key_path(&self) -> PathBuf {
        self.dir.join("issuer-key.p8")
    }

    /// Starts the binary on `self.port`; `Err` when another process answers on that port (two
    /// tests picked the same free port), in which case the caller picks another.
    fn launch(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_carnet"))
            .arg("serve")
            .current_dir(&self.dir)
            .env(
                "CARNET_LISTEN",
                format!("{}:{}", self.listen_host, self.port),
            )
            .env("CARNET_BASE_URL", &self.base)
            .env("CARNET_DATABASE_URL", &self.database_url)
            .envs(self.extra_env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self
                .agent
                .get(&format!("{}/local-issuer/jwks", self.base))
                .call()
            {
                if r.status() == 200 {
                    // Each server has its own key: the key set tells whether this one answered.
                    let served: Value = r.into_json().unwrap();
                    let ours = carnet::auth::local_issuer::LocalIssuer::open(
                        String::new(),
                        &self.issuer_key_path(),
                    )
                    .unwrap()
                    .jwk();
                    if served["keys"][0]["kid"] == ours["kid"] {
                        return Ok(());
                    }
                    let mut child = self.child.take().unwrap();
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("port {} answers for another server", self.port));
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let log = self.log();
                if log.contains("in use") {
                    self.child = None;
                    return Err(format!("port {} is taken", self.port));
                }
                panic!("carnet exited with {status}: {log}");
            }
            assert!(
                Instant::now() < deadline,
                "carnet did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server process's id (to read its memory use in `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server is running").id()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the server to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        child.wait().unwrap()
    }

    /// `kill -9` the server, then start it again on the same database.
    pub fn crash_and_restart(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        self.launch()
            .expect("the restarted server gets its port back");
    }

    /// `GET path` with `token` instead of the default one.
    pub fn get_as(&self, token: &str, path: &str) -> Reply {
        let authorization = format!("Bearer {token}");
        self.request("GET", path, &[("Authorization", &authorization)], None)
    }

    /// The token a request without its own `Authorization` is sent with. Like a deployment, the
    /// suite acts as two registered clients: the provisioning client creates and updates the
    /// records and the directory (Patient, RelatedPerson, Practitioner, PractitionerRole,
    /// Organization), and the lab (`test-feeder`) feeds and reads everything else.
    fn default_token_for(&self, method: &str, path: &str) -> &str {
        let path = path.strip_prefix(&self.base).unwrap_or(path);
        let mut segments = path.trim_start_matches('/').split(['/', '?']);
        let first = segments.next().unwrap_or_default();
        // A record is never deleted (it is closed): a DELETE is the lab's, and refused there.
        let writes = !matches!(method, "GET" | "HEAD" | "DELETE");
        let provisioned = matches!(
            first,
            "Patient" | "RelatedPerson" | "Practitioner" | "PractitionerRole" | "Organization"
        );
        // Listing people is the registry's: a feeding system lists only the records it fed.
        // Includes and `_has` reach clinical data, which is the lab's.
        let route = path.split('?').next().unwrap_or_default();
        let second = route.trim_start_matches('/').split('/').nth(1);
        let clinical = ["_has", "_include", "_revinclude"]
            .iter()
            .any(|key| path.contains(key));
        let lists_people = matches!(method, "GET" | "HEAD")
            && first == "Patient"
            && matches!(second, None | Some("" | "_search" | "_history"))
            && !clinical;
        match (writes && provisioned) || lists_people {
            true => &self.provisioning_token,
            false => &self.default_token,
        }
    }

    /// The server's `host:port`, for tests that speak raw HTTP over a socket.
    pub fn authority(&self) -> &str {
        let rest = self.base.trim_start_matches("http://");
        rest.split('/').next().unwrap_or(rest)
    }

    /// Sends a request; `path` is relative to the FHIR base (or absolute when it starts with http).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        self.request_bytes(method, path, headers, body.map(str::as_bytes))
    }

    /// Like [`Server::request`], with a body of raw bytes.
    pub fn request_bytes(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        let mut request = self.agent.request(method, &url);
        let own_authorization = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("Authorization"));
        if !own_authorization {
            request = request.set(
                "Authorization",
                &format!("Bearer {}", self.default_token_for(method, path)),
            );
        }
        for (k, v) in headers {
            if k.eq_ignore_ascii_case("Authorization") && v.is_empty() {
                continue;
            }
            request = request.set(k, v);
        }
        let result = match body {
            Some(b) => request.send_bytes(b),
            None => request.call(),
        };
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {url}: {e}"),
        };
        let status = response.status();
        let headers = response
            .headers_names()
            .into_iter()
            .map(|n| {
                let v = response.header(&n).unwrap_or_default().to_owned();
                (n, v)
            })
            .collect();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut response.into_reader(), &mut bytes).unwrap();
        let body = String::from_utf8_lossy(&bytes).into_owned();
        Reply {
            status,
            headers,
            body,
            bytes,
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], None)
    }

    /// POST/PUT FHIR JSON.
    pub fn send(&self, method: &str, path: &str, body: &Value, headers: &[(&str, &str)]) -> Reply {
        let mut all = vec![("Content-Type", "application/fhir+json")];
        all.extend_from_slice(headers);
        self.request(method, path, &all, Some(&body.to_string()))
    }

    /// Creates a resource and returns its JSON (asserting 201).
    pub fn create(&self, resource: &Value) -> Value {
        let kind = resource["resourceType"].as_str().unwrap();
        let reply = self.send("POST", &format!("/{kind}"), resource, &[]);
        assert_eq!(reply.status, 201, "{}", reply.body);
        reply.json()
    }

    /// How many versions the whole server holds, the records' and the directory's (to prove a
    /// refused request changed nothing), read from the database: no caller sees every record.
    pub fn version_count(&self) -> i64 {
        let count = self.select_texts(
            "SELECT CAST((SELECT COUNT(*) FROM resource_versions) \
             + (SELECT COUNT(*) FROM directory_versions) AS TEXT) AS v",
        );
        count[0].as_deref().unwrap().parse().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        drop_test_database(&self.postgres_admin);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A database of one test's own: a new PostgreSQL database `name` when
/// `CARNET_TEST_DATABASE_URL=postgres://…` is set (with the admin URL and name to drop it),
/// migrated as `carnet migrate` leaves it (a copy of [`migrated_template`]), else a SQLite
/// file in `dir`.
pub fn test_database(name: &str, dir: &std::path::Path) -> (String, Option<(String, String)>) {
    match std::env::var("CARNET_TEST_DATABASE_URL") {
        Ok(admin) if admin.starts_with("postgres") => {
            let template = migrated_template(&admin);
            let mut conn = PgConnection::establish(&admin)
                .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {admin}: {e}"));
            diesel::sql_query(format!("CREATE DATABASE {name} TEMPLATE {template}"))
                .execute(&mut conn)
                .unwrap();
            (database_at(&admin, name), Some((admin, name.to_owned())))
        }
        _ => (format!("sqlite://{}/carnet.db", dir.display()), None),
    }
}

/// The URL of database `name` on the server of `admin`.
fn database_at(admin: &str, name: &str) -> String {
    let (prefix, _) = admin.rsplit_once('/').expect("a database URL with a path");
    format!("{prefix}/{name}")
}

/// The name of a PostgreSQL database that `carnet migrate` prepared (partitioned as
/// `CARNET_POSTGRES__PARTITIONS` says), made once per test process and dropped when it exits:
/// each test's database is a copy of it. Copying takes ~0.3 s; migrating a database
/// partitioned by patient id took ~2 s, for each of the suite's hundreds of servers.
fn migrated_template(admin: &str) -> &'static str {
    static TEMPLATE: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    extern "C" fn drop_template() {
        if let Some((admin, name)) = TEMPLATE.get() {
            drop_test_database(&Some((admin.clone(), name.clone())));
        }
    }
    let (_, name) = TEMPLATE.get_or_init(|| {
        let name = format!("carnet_template_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::establish(admin)
            .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {admin}: {e}"));
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .unwrap();
        let url = database_at(admin, &name);
        // The environment's CARNET_POSTGRES__PARTITIONS reaches the child, as it reaches servers.
        let (ok, stderr) = run_carnet(&["migrate"], &[("CARNET_DATABASE_URL", &url)]);
        if !ok {
            drop_test_database(&Some((admin.to_owned(), name)));
            panic!("carnet migrate of the template database: {stderr}");
        }
        // SAFETY: a plain function with no argument, which runs once `TEMPLATE` is set.
        assert_eq!(unsafe { libc::atexit(drop_template) }, 0);
        (admin.to_owned(), name)
    });
    name
}

/// The URL of a Bundle's `next` page, if it has one.
pub fn next_link(bundle: &Value) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")
        .and_then(|l| l["url"].as_str())
        .map(str::to_owned)
}

/// `query` with `binds` bound, for PostgreSQL (text and numbers: what reads bind).
pub fn bind_pg<'a>(
    mut query: diesel::query_builder::BoxedSqlQuery<
        'a,
        diesel::pg::Pg,
        diesel::query_builder::SqlQuery,
    >,
    binds: &[carnet::store::search::Bind],
) -> diesel::query_builder::BoxedSqlQuery<'a, diesel::pg::Pg, diesel::query_builder::SqlQuery> {
    use carnet::store::search::Bind;
    use diesel::sql_types::{BigInt, Text};
    for bind in binds {
        query = match bind {
            Bind::Text(v) => query.bind::<Text, _>(v.clone()),
            Bind::BigInt(v) => query.bind::<BigInt, _>(*v),
            other => panic!("a read binds no {other:?}"),
        };
    }
    query
}

/// The hash partitions by patient id the PostgreSQL test databases get (`.ci/run` runs the
/// PostgreSQL suite a second time with `CARNET_POSTGRES__PARTITIONS` set); 0 on SQLite.
pub fn partitions() -> u32 {
    let postgres =
        std::env::var("CARNET_TEST_DATABASE_URL").is_ok_and(|u| u.starts_with("postgres"));
    match postgres {
        true => std::env::var("CARNET_POSTGRES__PARTITIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        false => 0,
    }
}

/// Drops what [`test_database`] created on PostgreSQL.
pub fn drop_test_database(postgres_admin: &Option<(String, String)>) {
    if let Some((admin, name)) = postgres_admin {
        if let Ok(mut conn) = PgConnection::establish(admin) {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn);
        }
    }
}

/// A clinical resource the lab may write, update and delete: an allergy with an identifier
/// (`urn:oid:1.2.250.1.999|{identifier}`), in the record of a patient that is not stored.
pub fn allergy(identifier: &str) -> Value {
    serde_json::json!({
        "resourceType": "AllergyIntolerance",
        "identifier": [{"system": "urn:oid:1.2.250.1.999", "value": identifier}],
        "code": {"text": "arachide"},
        "patient": {"reference": "Patient/p-allergy"}
    })
}

/// A French patient with an INS-NIR.
pub fn patient(nir: &str) -> Value {
    serde_json::json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": nir}],
        "name": [{"family": "Lévy-Durand", "given": ["Éloïse", "Marie"]}],
        "gender": "female",
        "birthDate": "1984-02-29"
    })
}

/// Runs `carnet ARGS` to completion in a fresh directory with `env`; returns exit success and
/// standard error.
pub fn run_carnet(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("carnet_cli_{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_carnet"))
        .args(args)
        .current_dir(&dir)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The query plan of `sql` on the server's database, one line per step. On PostgreSQL
/// sequential scans are disabled first, so a plan still scanning a table proves that no index
/// can serve the query, whatever the (small) test data size would make the planner prefer.
pub fn query_plan(server: &Server, sql: &carnet::store::search::Sql) -> Vec<String> {
    use carnet::store::search::Bind;
    use diesel::sql_types::{BigInt, Text};
    #[derive(QueryableByName)]
    struct PgLine {
        #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
        line: String,
    }
    #[derive(QueryableByName)]
    struct SqliteLine {
        #[diesel(sql_type = Text)]
        detail: String,
    }
    match server.database_url.strip_prefix("sqlite://") {
        Some(path) => {
            let mut conn = diesel::SqliteConnection::establish(path).unwrap();
            let mut query = diesel::sql_query(format!("EXPLAIN QUERY PLAN {}", sql.text))
                .into_boxed::<diesel::sqlite::Sqlite>();
            for bind in &sql.binds {
                query = match bind {
                    Bind::Text(v) => query.bind::<Text, _>(v.clone()),
                    Bind::BigInt(v) => query.bind::<BigInt, _>(*v),
                    other => panic!("a search binds no {other:?}"),
                };
            }
            let lines: Vec<SqliteLine> = query.load(&mut conn).unwrap();
            lines.into_iter().map(|l| l.detail).collect()
        }
        None => {
            let mut conn = PgConnection::establish(&server.database_url).unwrap();
            diesel::sql_query("SET enable_seqscan = off")
                .execute(&mut conn)
                .unwrap();
            let query = bind_pg(
                diesel::sql_query(format!("EXPLAIN {}", sql.text)).into_boxed(),
                &sql.binds,
            );
            let lines: Vec<PgLine> = query.load(&mut conn).unwrap();
            lines.into_iter().map(|l| l.line).collect()
        }
    }
}

/// The dialect of the server's database.
pub fn dialect(server: &Server) -> carnet::store::search::Dialect {
    match server.database_url.starts_with("sqlite://") {
        true => carnet::store::search::Dialect::Sqlite,
        false => carnet::store::search::Dialect::Postgres,
    }
}
