//! A real external OpenID Connect provider on loopback: the Node.js `oidc-provider` package run
//! by `conformance-tests/oidc/issuer.mjs`, issuing JWT access tokens for `client_credentials`.
//! Its npm dependencies are installed on first use (`npm ci`, from the committed lock file).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::LazyLock;
use std::time::Duration;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/conformance-tests/oidc");

/// Installs the issuer's npm packages once per test run.
static INSTALLED: LazyLock<()> = LazyLock::new(|| {
    if PathBuf::from(DIR)
        .join("node_modules/oidc-provider")
        .exists()
    {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--prefix", DIR])
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("npm is needed for the external issuer tests: {e}"));
    assert!(status.success(), "npm ci in {DIR} failed");
});

/// The secret of every client the issuer knows.
pub const SECRET: &str = "test-secret";

/// A running issuer.
pub struct OidcIssuer {
    pub url: String,
    port: u16,
    /// A folder of its own, holding its key file; removed when it is dropped.
    dir: PathBuf,
    keys_file: PathBuf,
    clients: String,
    /// Lifetime of its access tokens in seconds (its default, 300, when `None`).
    ttl: Option<u64>,
    child: Option<Child>,
    agent: ureq::Agent,
}

impl OidcIssuer {
    /// Starts an issuer knowing `client_ids` (all with [`SECRET`]), its keys generated into
    /// a key file of its own.
    pub fn start(client_ids: &[&str]) -> OidcIssuer {
        OidcIssuer::start_with_ttl(client_ids, None)
    }

    /// [`OidcIssuer::start`], its access tokens living `ttl` seconds.
    pub fn start_with_ttl(client_ids: &[&str], ttl: Option<u64>) -> OidcIssuer {
        LazyLock::force(&INSTALLED);
        let dir =
            std::env::temp_dir().join(format!("carnet_oidc_{}", uuid::Uuid::new_v4().simple()));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let clients: Vec<serde_json::Value> = client_ids
            .iter()
            .map(|id| serde_json::json!({"client_id": id, "client_secret": SECRET}))
            .collect();
        let mut issuer = OidcIssuer {
            url: format!("http://127.0.0.1:{port}"),
            port,
            keys_file: dir.join("keys.json"),
            dir,
            clients: serde_json::Value::from(clients).to_string(),
            ttl,
            child: None,
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(20))
                .build(),
        };
        issuer.launch();
        issuer
    }

    fn launch(&mut self) {
        let mut command = Command::new("node");
        if let Some(ttl) = self.ttl {
            command.env("TTL", ttl.to_string());
        }
        let mut child = command
            .arg(format!("{DIR}/issuer.mjs"))
            .env("PORT", self.port.to_string())
            .env("KEYS_FILE", &self.keys_file)
            .env("CLIENTS", &self.clients)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("node is needed for the external issuer tests: {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            format!("ready {}", self.url),
            "the issuer did not start"
        );
        self.child = Some(child);
    }

    /// Stops the issuer, lets `change` act on its key file, and starts it again on the same
    /// port (same issuer URL).
    pub fn restart(&mut self, change: impl FnOnce(&PathBuf)) {
        self.stop();
        change(&self.keys_file);
        self.launch();
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A `client_credentials` token for `resource` (the audience) with `scope` and extra claims.
    pub fn token(
        &self,
        client_id: &str,
        scope: &str,
        resource: &str,
        claims: &[(&str, &str)],
    ) -> String {
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", SECRET),
            ("scope", scope),
            ("resource", resource),
        ];
        form.extend_from_slice(claims);
        let reply = self
            .agent
            .post(&format!("{}/token", self.url))
            .send_form(&form)
            .unwrap_or_else(|e| panic!("token request refused: {e}"));
        let body: serde_json::Value = reply.into_json().unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }
}

impl Drop for OidcIssuer {
    fn drop(&mut self) {
        self.stop();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
