//! The servers under measurement (this commit's `carnet serve`, and optionally a baseline
//! binary) on the same database, and the local-issuer tokens both accept.

use carnet::auth::principal::Claims;
use carnet::config::Config;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The base URL both servers are configured with: tokens name it (issuer and audience), so
/// one token is valid on both. Each server listens on a port of its own.
pub const BASE: &str = "http://127.0.0.1:18090/fhir";

/// The shared configuration: a feeding system (whose professionals act through it) and the
/// patients' portal.
const CLIENTS: &str = "[[clients]]\nclient_id = \"bench\"\nkind = \"feeder\"\n\
    organization = \"https://finess.esante.gouv.fr|750000001\"\n\
    scopes = \"system/*.crs user/*.rs\"\n\n\
    [[clients]]\nclient_id = \"portal\"\nkind = \"portal\"\nscopes = \"patient/*.rs\"\n";

/// The per-run folder: configuration and the local issuer's key, shared by both servers.
pub struct Setup {
    pub dir: PathBuf,
    database: String,
    partitions: u32,
}

impl Setup {
    /// `partitions`: PostgreSQL hash partitions by patient id (`[postgres] partitions`).
    pub fn new(database: &str, partitions: u32) -> Setup {
        let dir = std::env::temp_dir().join(format!("carnet-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("carnet.toml"), CLIENTS).unwrap();
        Setup {
            dir,
            database: database.to_owned(),
            partitions,
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        [
            ("CARNET_BASE_URL", BASE.to_owned()),
            ("CARNET_DATABASE_URL", self.database.clone()),
            ("CARNET_POSTGRES__PARTITIONS", self.partitions.to_string()),
            ("CARNET_AUTH__LOCAL_ISSUER", "true".to_owned()),
            (
                "CARNET_AUTH__LOCAL_ISSUER_KEY",
                self.dir.join("key.p8").display().to_string(),
            ),
            ("CARNET_LOG", "warn".to_owned()),
            // A professional may read 200 distinct patients an hour by default; the benchmark
            // samples thousands for each general practitioner.
            (
                "CARNET_CONSENT__PROFESSIONAL_PATIENTS_PER_HOUR",
                "4000000000".to_owned(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Starts `binary serve` on `port` and waits until it answers; `database` replaces the
    /// shared one (a baseline whose schema differs runs on a copy of the data of its own).
    pub fn start(
        &self,
        name: &'static str,
        binary: &Path,
        port: u16,
        database: Option<&str>,
    ) -> Server {
        let log = std::fs::File::create(
            std::env::temp_dir().join(format!("carnet-bench-{}-{name}.log", std::process::id())),
        )
        .unwrap();
        let child = Command::new(binary)
            .arg("serve")
            .current_dir(&self.dir)
            .envs(self.env())
            .env("CARNET_LISTEN", format!("127.0.0.1:{port}"))
            .envs(database.map(|d| ("CARNET_DATABASE_URL", d)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
        let server = Server {
            name,
            child,
            url: format!("http://127.0.0.1:{port}/fhir"),
        };
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(5))
            .build();
        let deadline = Instant::now() + Duration::from_secs(300);
        while agent
            .get(&format!("{}/metadata", server.url))
            .call()
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "the {name} server did not start (see its log in {})",
                std::env::temp_dir().display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// This build's server (called `name`), then the baseline's when `baseline` names its
    /// binary (on `baseline_database` when its schema differs). This build first: it creates
    /// the local issuer's key the other one then reads.
    pub fn start_both(
        &self,
        name: &'static str,
        baseline: Option<&Path>,
        baseline_database: Option<&str>,
    ) -> (Server, Option<Server>) {
        let current = self.start(name, env!("CARGO_BIN_EXE_carnet").as_ref(), 18090, None);
        let baseline =
            baseline.map(|binary| self.start("baseline", binary, 18091, baseline_database));
        (current, baseline)
    }

    /// The configuration the server reads, for minting tokens in process.
    pub fn config(&self) -> Config {
        Config::load(Some(self.dir.join("carnet.toml").as_path()), self.env())
            .expect("configuration")
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub struct Server {
    pub name: &'static str,
    child: Child,
    /// Where it listens (its links name [`BASE`]).
    pub url: String,
}

impl Server {
    /// The server process's resident memory, in KiB (Linux), if it can be read.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Mints local-issuer tokens (valid for the whole run) the way `carnet token` does.
pub struct Minter(Config);

impl Minter {
    pub fn new(setup: &Setup) -> Minter {
        Minter(setup.config())
    }

    fn mint(&self, claims: Claims) -> String {
        carnet::mint_token(&self.0, &claims, 86_400).expect("a token")
    }

    /// The feeding system itself.
    pub fn feeder(&self) -> String {
        self.mint(Claims {
            client_id: Some("bench".to_owned()),
            scope: "system/*.rs".to_owned(),
            ..Claims::default()
        })
    }

    /// The feeding system, creating documents.
    pub fn writer(&self) -> String {
        self.mint(Claims {
            client_id: Some("bench".to_owned()),
            scope: "system/DocumentReference.c".to_owned(),
            ..Claims::default()
        })
    }

    /// General practitioner `gp{k}`, a médecin acting for an organization.
    pub fn professional(&self, k: usize) -> String {
        self.mint(Claims {
            client_id: Some("bench".to_owned()),
            scope: "user/*.rs".to_owned(),
            fhir_user: Some(format!("Practitioner/gp{k}")),
            profession: Some("10".to_owned()),
            organization: Some("Organization/cabinet-1".to_owned()),
            ..Claims::default()
        })
    }

    /// Patient `p{i}` through the portal.
    pub fn patient(&self, i: usize) -> String {
        self.mint(Claims {
            client_id: Some("portal".to_owned()),
            scope: "patient/*.rs".to_owned(),
            fhir_user: Some(format!("Patient/p{i}")),
            ..Claims::default()
        })
    }
}
