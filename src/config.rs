//! Configuration: one TOML file (`--config`, default `./carnet.toml` when present), every key
//! overridable by a `CARNET_*` environment variable (`[limits] binary_max_bytes` →
//! `CARNET_LIMITS__BINARY_MAX_BYTES`). Defaults run a working server with no file at all.

use crate::auth::principal::Client;
use crate::consent::matrix::ProfessionMatrix;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The whole server configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address and port the HTTP server binds to.
    pub listen: String,
    /// Public FHIR base URL, used in `Location` headers and Bundle links.
    pub base_url: String,
    /// `sqlite://PATH` or `postgres://…`.
    pub database_url: String,
    /// Whether `PUT [type]/[id]` may create a resource with a client-chosen id.
    pub update_create: bool,
    /// Request size limits.
    pub limits: Limits,
    /// Search and history paging.
    pub search: Search,
    /// Token issuers and audience.
    pub auth: Auth,
    /// Cross-origin access for browser apps.
    pub cors: Cors,
    /// The consent engine's settings.
    pub consent: Consent,
    /// PostgreSQL storage layout.
    pub postgres: Postgres,
    /// The client registry: an unregistered `client_id` gets nothing.
    #[serde(skip_serializing)]
    pub clients: Vec<Client>,
}

/// Who may issue access tokens, and for which audience.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Auth {
    /// The built-in issuer (`carnet token`); unset means on with SQLite, off with PostgreSQL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_issuer: Option<bool>,
    /// The `aud` tokens must carry; empty means `base_url`.
    pub audience: String,
    /// Where the local issuer's private key lives; empty means next to the SQLite database
    /// (`./data/` with PostgreSQL).
    pub local_issuer_key: String,
    /// Fewest seconds between two fetches of an issuer's keys, however many unknown `kid`s
    /// arrive: an attacker cannot turn tokens into a flood of requests to the issuer.
    pub jwks_min_refresh_seconds: u64,
    /// The longest a token may live (from now, and from its `iat`), whoever issued it.
    pub max_token_lifetime_seconds: u64,
    /// Trusted external OpenID Connect issuers.
    pub issuers: Vec<Issuer>,
}

/// One trusted external OpenID Connect issuer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Issuer {
    /// The issuer URL; discovery is at `{url}/.well-known/openid-configuration`.
    pub url: String,
}

/// Cross-origin resource sharing: which browser origins may call the API.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cors {
    /// Exact origins (`scheme://host[:port]`); empty turns CORS off.
    pub allowed_origins: Vec<String>,
}

/// The consent engine's settings (`[consent]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Consent {
    /// Distinct patients a professional may touch in an hour; beyond, 429 and an alert.
    pub professional_patients_per_hour: u32,
    /// Who sees which documents and resource types; a configured matrix replaces the default
    /// as a whole. From the file only: a table of tables has no one-variable form.
    #[serde(skip_serializing)]
    pub profession_matrix: ProfessionMatrix,
}

/// PostgreSQL storage layout (`[postgres]`); SQLite ignores it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Postgres {
    /// Hash partitions by patient id of every table holding record data (0: none). Applied
    /// once, when the server or `carnet migrate` starts; a different count later is refused.
    /// The single-machine rehearsal of a database distributed by patient (docs/scale-out.md).
    pub partitions: u32,
}

/// Request size limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Any request body above this size is refused with 413.
    pub body_max_bytes: u64,
    /// One Binary above this size is refused with 413.
    pub binary_max_bytes: u64,
    /// Most entries accepted in one Bundle.
    pub bundle_max_entries: u64,
    /// Seconds a client has to send a request's head; then 408 and the connection closes.
    pub header_timeout_seconds: u64,
    /// Seconds a client has, from its request's head, to send the whole body; then 408.
    pub body_timeout_seconds: u64,
}

/// Paging of search and history results.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Search {
    /// Page size when `_count` is absent.
    pub default_count: u64,
    /// Largest page size a client may ask for.
    pub max_count: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            base_url: "http://127.0.0.1:8080/fhir".into(),
            database_url: "sqlite://./data/carnet.db".into(),
            update_create: false,
            limits: Limits::default(),
            search: Search::default(),
            auth: Auth::default(),
            cors: Cors::default(),
            consent: Consent::default(),
            postgres: Postgres::default(),
            clients: Vec::new(),
        }
    }
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            local_issuer: None,
            audience: String::new(),
            local_issuer_key: String::new(),
            jwks_min_refresh_seconds: 10,
            max_token_lifetime_seconds: 86_400,
            issuers: Vec::new(),
        }
    }
}

impl Default for Consent {
    fn default() -> Self {
        Consent {
            professional_patients_per_hour: 200,
            profession_matrix: ProfessionMatrix::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body_max_bytes: 32 * 1024 * 1024,
            binary_max_bytes: 20 * 1024 * 1024,
            bundle_max_entries: 1000,
            header_timeout_seconds: 10,
            body_timeout_seconds: 60,
        }
    }
}

impl Default for Search {
    fn default() -> Self {
        Search {
            default_count: 20,
            max_count: 100,
        }
    }
}

/// A configuration that cannot be used; the message says which key and why.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

/// Partitions past this cost more in planning than they save (PostgreSQL plans every
/// partition a query may reach).
const MAX_PARTITIONS: u32 = 1024;

/// Prefix of the environment variables that override configuration keys.
const ENV_PREFIX: &str = "CARNET_";

impl Config {
    /// Loads the file (explicit path, or `./carnet.toml` if present), then applies the
    /// `CARNET_*` variables of `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let default_path = PathBuf::from("carnet.toml");
        let file = match path {
            Some(p) => Some(p.to_path_buf()),
            None if default_path.exists() => Some(default_path),
            None => None,
        };
        let mut table = match file {
            Some(p) => {
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| ConfigError(format!("cannot read {}: {e}", p.display())))?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError(format!("{}: {e}", p.display())))?
            }
            None => toml::Table::new(),
        };
        let schema = env_schema();
        for (name, value) in env {
            let Some(key) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let path: Vec<String> = key.split("__").map(|s| s.to_ascii_lowercase()).collect();
            match lookup(&schema, &path) {
                Some(default) => set(&mut table, &path, typed(default, &value, &name)?),
                // CARNET_* variables that are not configuration keys (e.g. for the test
                // harness) are left alone, but say so in case of a typo.
                None => tracing::debug!(variable = %name, "not a configuration key; ignored"),
            }
        }
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError(e.message().to_owned()))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        if !self.database_url.starts_with("sqlite://")
            && !self.database_url.starts_with("postgres://")
            && !self.database_url.starts_with("postgresql://")
        {
            return Err(ConfigError(
                "database_url must start with sqlite:// or postgres://".into(),
            ));
        }
        if !self.base_url.starts_with("http://") && !self.base_url.starts_with("https://") {
            return Err(ConfigError("base_url must be an http(s) URL".into()));
        }
        if self.limits.header_timeout_seconds == 0 || self.limits.body_timeout_seconds == 0 {
            return Err(ConfigError(
                "limits.header_timeout_seconds and limits.body_timeout_seconds must be positive"
                    .into(),
            ));
        }
        if self.search.default_count == 0 || self.search.max_count < self.search.default_count {
            return Err(ConfigError(
                "search.default_count must be between 1 and search.max_count".into(),
            ));
        }
        if !(1..=i64::MAX as u64).contains(&self.auth.max_token_lifetime_seconds) {
            return Err(ConfigError(
                "auth.max_token_lifetime_seconds must be a positive number of seconds".into(),
            ));
        }
        if self.postgres.partitions > MAX_PARTITIONS {
            return Err(ConfigError(format!(
                "postgres.partitions must be at most {MAX_PARTITIONS}"
            )));
        }
        if self.consent.professional_patients_per_hour == 0 {
            return Err(ConfigError(
                "consent.professional_patients_per_hour must be at least 1".into(),
            ));
        }
        for issuer in &self.auth.issuers {
            check_fetch_url(&issuer.url)?;
        }
        for origin in &self.cors.allowed_origins {
            check_origin(origin)?;
        }
        let mut seen = std::collections::HashSet::new();
        for client in &self.clients {
            if !seen.insert(client.client_id.as_str()) {
                return Err(ConfigError(format!(
                    "clients: client_id {:?} is registered twice",
                    client.client_id
                )));
            }
            crate::auth::client_keys::check_registration(client).map_err(|reason| {
                ConfigError(format!("clients: client {:?}: {reason}", client.client_id))
            })?;
        }
        Ok(())
    }

    /// The token lifetime cap, in seconds.
    pub fn max_token_lifetime(&self) -> i64 {
        i64::try_from(self.auth.max_token_lifetime_seconds).unwrap_or(i64::MAX)
    }

    /// The base URL without a trailing slash.
    pub fn base(&self) -> &str {
        self.base_url.trim_end_matches('/')
    }

    /// Whether the built-in issuer runs: on by default with SQLite (the embedded, out-of-the-box
    /// setup), off by default with PostgreSQL (production uses real issuers).
    pub fn local_issuer_enabled(&self) -> bool {
        self.auth
            .local_issuer
            .unwrap_or_else(|| self.database_url.starts_with("sqlite://"))
    }

    /// The local issuer's `iss`: under the FHIR base, where its discovery document is served.
    pub fn local_issuer_url(&self) -> String {
        format!("{}/local-issuer", self.base())
    }

    /// The audience every token must name.
    pub fn audience(&self) -> &str {
        match self.auth.audience.trim() {
            "" => self.base(),
            audience => audience,
        }
    }

    /// The local issuer's key file: `auth.local_issuer_key`, else next to the SQLite database,
    /// else `./data/`.
    pub fn local_issuer_key_path(&self) -> PathBuf {
        const FILE: &str = "carnet-issuer-key.p8";
        if !self.auth.local_issuer_key.is_empty() {
            return PathBuf::from(&self.auth.local_issuer_key);
        }
        match self.database_url.strip_prefix("sqlite://") {
            Some(database) => Path::new(database)
                .parent()
                .map(|dir| dir.join(FILE))
                .unwrap_or_else(|| PathBuf::from(FILE)),
            None => Path::new("data").join(FILE),
        }
    }
}

/// The keys an environment variable may set, with values of the right type. Optional keys are
/// filled in so that their variables are recognised too.
fn env_schema() -> toml::Table {
    let mut config = Config::default();
    config.auth.local_issuer = Some(false);
    toml::Table::try_from(config).expect("defaults serialize")
}

/// Issuers and their keys are reached over HTTPS; plain HTTP only on loopback, where nobody can
/// tamper with the keys on the way. No user info: `http://localhost@evil.example` is not local.
pub fn check_fetch_url(url: &str) -> Result<(), ConfigError> {
    check_fetch_url_of("auth.issuers", url)
}

/// [`check_fetch_url`] for the configuration key `key`, which error messages name.
pub fn check_fetch_url_of(key: &str, url: &str) -> Result<(), ConfigError> {
    let refuse = |why: &str| ConfigError(format!("{key}: {url:?} {why}"));
    let authority = |rest: &str| {
        rest.split(['/', '?', '#'])
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    if url
        .split_once("://")
        .is_some_and(|(_, rest)| authority(rest).contains('@'))
    {
        return Err(refuse("must not carry a user name or password"));
    }
    let rest = if let Some(rest) = url.strip_prefix("https://") {
        rest
    } else if let Some(rest) = url.strip_prefix("http://") {
        let host_port = authority(rest);
        let host_port = host_port.as_str();
        let host = match host_port.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => host_port.rsplit_once(':').map_or(host_port, |(h, _)| h),
        };
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            return Err(refuse(
                "uses plain http:// on a non-loopback host; use https://",
            ));
        }
        rest
    } else {
        return Err(refuse("is not an https:// URL"));
    };
    if rest.is_empty() || rest.contains(['?', '#']) {
        return Err(refuse(
            "must be a plain issuer URL without query or fragment",
        ));
    }
    Ok(())
}

/// An origin as browsers send it: `scheme://host[:port]` in lowercase, http(s), no path, no
/// wildcard. Origins are compared exactly, so anything else could never match (or match too much).
fn check_origin(origin: &str) -> Result<(), ConfigError> {
    let refuse = |why: &str| {
        ConfigError(format!(
            "cors.allowed_origins: {origin:?} {why} (expected scheme://host[:port], e.g. https://app.example)"
        ))
    };
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or_else(|| refuse("is not an http:// or https:// origin"))?;
    if origin.contains('*') {
        return Err(refuse("contains a wildcard; list each origin"));
    }
    if origin != origin.to_ascii_lowercase() {
        return Err(refuse("must be lowercase, as browsers send it"));
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (address, rest) = v6.split_once(']').ok_or_else(|| refuse("has a bad host"))?;
            if address.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(refuse("has a bad IPv6 address"));
            }
            match rest {
                "" => (address, None),
                _ => (
                    address,
                    Some(rest.strip_prefix(':').ok_or_else(|| refuse("has a path"))?),
                ),
            }
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let host_ok = !host.is_empty()
        && (authority.starts_with('[')
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    if !host_ok {
        return Err(refuse("has a path, a user name or a bad host"));
    }
    if let Some(port) = port {
        if port.parse::<u16>().map_or(true, |p| p == 0) || port.starts_with('0') {
            return Err(refuse("has a bad port"));
        }
    }
    Ok(())
}

fn lookup<'a>(table: &'a toml::Table, path: &[String]) -> Option<&'a toml::Value> {
    let (first, rest) = path.split_first()?;
    let value = table.get(first)?;
    if rest.is_empty() {
        return (!value.is_table()).then_some(value);
    }
    lookup(value.as_table()?, rest)
}

fn set(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let (first, rest) = path.split_first().expect("non-empty path");
    if rest.is_empty() {
        table.insert(first.clone(), value);
        return;
    }
    let entry = table
        .entry(first.clone())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(inner) = entry {
        set(inner, rest, value);
    }
}

/// Converts an environment string to the TOML type of the key's default value.
fn typed(default: &toml::Value, raw: &str, name: &str) -> Result<toml::Value, ConfigError> {
    let bad = |what: &str| ConfigError(format!("{name}={raw:?} is not {what}"));
    Ok(match default {
        toml::Value::Integer(_) => {
            toml::Value::Integer(raw.parse().map_err(|_| bad("an integer"))?)
        }
        toml::Value::Boolean(_) => {
            toml::Value::Boolean(raw.parse().map_err(|_| bad("true or false"))?)
        }
        // A list: comma-separated values, blanks dropped (an empty variable is an empty list).
        toml::Value::Array(_) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| toml::Value::String(item.to_owned()))
                .collect(),
        ),
        _ => toml::Value::String(raw.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn timeouts_default_and_override() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(
            (
                c.limits.header_timeout_seconds,
                c.limits.body_timeout_seconds
            ),
            (10, 60)
        );
        let c = Config::load(
            None,
            env(&[
                ("CARNET_LIMITS__HEADER_TIMEOUT_SECONDS", "3"),
                ("CARNET_LIMITS__BODY_TIMEOUT_SECONDS", "4"),
            ]),
        )
        .unwrap();
        assert_eq!(
            (
                c.limits.header_timeout_seconds,
                c.limits.body_timeout_seconds
            ),
            (3, 4)
        );
        assert!(
            Config::load(None, env(&[("CARNET_LIMITS__HEADER_TIMEOUT_SECONDS", "0")])).is_err()
        );
    }

    #[test]
    fn defaults_need_no_file() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert_eq!(c.base_url, "http://127.0.0.1:8080/fhir");
        assert_eq!(c.database_url, "sqlite://./data/carnet.db");
        assert_eq!(c.limits.binary_max_bytes, 20 * 1024 * 1024);
    }

    #[test]
    fn environment_overrides_file_and_nested_keys() {
        let dir = std::env::temp_dir().join(format!("carnet-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("carnet.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\n[limits]\nbody_max_bytes = 10\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&file),
            env(&[
                ("CARNET_LISTEN", "127.0.0.1:9001"),
                ("CARNET_LIMITS__BINARY_MAX_BYTES", "77"),
                ("CARNET_SEARCH__MAX_COUNT", "50"),
                ("CARNET_TEST_SOMETHING", "ignored"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:9001");
        assert_eq!(c.limits.body_max_bytes, 10);
        assert_eq!(c.limits.binary_max_bytes, 77);
        assert_eq!(c.search.max_count, 50);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn wrong_types_and_unknown_keys_are_refused() {
        let err =
            Config::load(None, env(&[("CARNET_LIMITS__BODY_MAX_BYTES", "lots")])).unwrap_err();
        assert!(err.to_string().contains("CARNET_LIMITS__BODY_MAX_BYTES"));
        let dir = std::env::temp_dir().join(format!("carnet-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("carnet.toml");
        std::fs::write(&file, "lisen = \"x\"\n").unwrap();
        assert!(Config::load(Some(&file), env(&[]))
            .unwrap_err()
            .to_string()
            .contains("lisen"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn auth_defaults_follow_the_backend() {
        let sqlite = Config::load(None, env(&[])).unwrap();
        assert!(sqlite.local_issuer_enabled());
        assert_eq!(sqlite.audience(), "http://127.0.0.1:8080/fhir");
        assert_eq!(
            sqlite.local_issuer_key_path(),
            PathBuf::from("./data/carnet-issuer-key.p8")
        );
        let pg = Config::load(None, env(&[("CARNET_DATABASE_URL", "postgres://h/db")])).unwrap();
        assert!(!pg.local_issuer_enabled());
        let forced = Config::load(
            None,
            env(&[
                ("CARNET_DATABASE_URL", "postgres://h/db"),
                ("CARNET_AUTH__LOCAL_ISSUER", "true"),
                ("CARNET_AUTH__AUDIENCE", "https://fhir.example"),
            ]),
        )
        .unwrap();
        assert!(forced.local_issuer_enabled());
        assert_eq!(forced.audience(), "https://fhir.example");
    }

    fn from_file(text: &str) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir().join(format!("carnet-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("carnet.toml");
        std::fs::write(&file, text).unwrap();
        let config = Config::load(Some(&file), env(&[]));
        std::fs::remove_dir_all(dir).unwrap();
        config
    }

    #[test]
    fn clients_and_issuers_load_from_the_file() {
        let c = from_file(
            r#"
[[auth.issuers]]
url = "https://issuer.example/realms/sante"
[[auth.issuers]]
url = "http://127.0.0.1:9999"
[[clients]]
client_id = "lab-biomed-75"
kind = "feeder"
organization = "https://finess.esante.gouv.fr|750000001"
scopes = "system/*.cruds"
"#,
        )
        .unwrap();
        assert_eq!(c.auth.issuers.len(), 2);
        assert_eq!(c.clients[0].client_id, "lab-biomed-75");
    }

    #[test]
    fn unsafe_issuers_and_duplicate_clients_are_refused() {
        for url in [
            "http://localhost:1@evil.example/realm",
            "http://127.0.0.1@evil.example",
            "http://issuer.example",
            "ftp://x",
            "https://x/?a=b",
            "http://10.0.0.1",
        ] {
            let err = from_file(&format!("[[auth.issuers]]\nurl = {url:?}\n")).unwrap_err();
            assert!(err.to_string().contains("auth.issuers"), "{url}: {err}");
        }
        let twice = "[[clients]]\nclient_id = \"a\"\nkind = \"app\"\nscopes = \"patient/*.rs\"\n";
        let err = from_file(&format!("{twice}{twice}")).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
        let bad_scope = "[[clients]]\nclient_id = \"a\"\nkind = \"app\"\nscopes = \"nonsense\"\n";
        assert!(from_file(bad_scope).is_err());
    }

    #[test]
    fn cors_origins_load_from_the_environment_and_are_checked() {
        let c = Config::load(
            None,
            env(&[(
                "CARNET_CORS__ALLOWED_ORIGINS",
                "https://app.example, http://localhost:3000,,http://[::1]:8081",
            )]),
        )
        .unwrap();
        assert_eq!(
            c.cors.allowed_origins,
            [
                "https://app.example",
                "http://localhost:3000",
                "http://[::1]:8081"
            ]
        );
        assert!(Config::load(None, env(&[]))
            .unwrap()
            .cors
            .allowed_origins
            .is_empty());
        for bad in [
            "*",
            "https://*.example",
            "https://app.example/",
            "https://app.example/path",
            "https://App.example",
            "ftp://app.example",
            "app.example",
            "https://user@app.example",
            "https://app.example:0",
            "https://app.example:99999",
            "https://app.example?x",
            "null",
            "https://",
            "http://[::1",
        ] {
            let err = Config::load(None, env(&[("CARNET_CORS__ALLOWED_ORIGINS", bad)]))
                .expect_err(bad)
                .to_string();
            assert!(err.contains("cors.allowed_origins"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_token_lifetime_cap_is_positive() {
        assert_eq!(
            Config::load(None, env(&[])).unwrap().max_token_lifetime(),
            86_400
        );
        let set =
            |v: &str| Config::load(None, env(&[("CARNET_AUTH__MAX_TOKEN_LIFETIME_SECONDS", v)]));
        assert_eq!(set("600").unwrap().max_token_lifetime(), 600);
        assert!(set("0").is_err());
        assert!(set("-1").is_err());
    }

    #[test]
    fn consent_settings_default_and_override() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.consent.professional_patients_per_hour, 200);
        assert_eq!(c.consent.profession_matrix, ProfessionMatrix::default());
        let set = |v: &str| {
            Config::load(
                None,
                env(&[("CARNET_CONSENT__PROFESSIONAL_PATIENTS_PER_HOUR", v)]),
            )
        };
        assert_eq!(
            set("30").unwrap().consent.professional_patients_per_hour,
            30
        );
        for bad in ["0", "-1", "4294967296", "many"] {
            let err = set(bad).expect_err(bad).to_string();
            assert!(
                err.contains("professional_patients_per_hour")
                    || err.contains("CARNET_CONSENT__PROFESSIONAL_PATIENTS_PER_HOUR")
                    || err.contains("u32"),
                "{bad}: {err}"
            );
        }
        let c = from_file("[consent]\nprofessional_patients_per_hour = 5\n").unwrap();
        assert_eq!(c.consent.professional_patients_per_hour, 5);
        assert_eq!(c.consent.profession_matrix, ProfessionMatrix::default());
        assert!(
            from_file("[consent]\nprofessionnal_patients_per_hour = 5\n")
                .unwrap_err()
                .to_string()
                .contains("professionnal_patients_per_hour")
        );
    }

    #[test]
    fn the_profession_matrix_comes_from_the_file_and_is_checked() {
        use crate::consent::matrix::Visible;
        let c = from_file(
            r#"
[consent.profession_matrix.60]
documents = ["http://loinc.org|96163-1"]
resources = ["AllergyIntolerance"]
"#,
        )
        .unwrap();
        let matrix = &c.consent.profession_matrix;
        assert_eq!(matrix.documents("10"), Visible::Nothing);
        assert!(matches!(matrix.documents("60"), Visible::Only(codes) if codes.len() == 1));
        assert!(matrix.resources("60", "AllergyIntolerance"));
        // The documented default loads as a configuration file and changes nothing.
        let documented = from_file(crate::consent::matrix::DEFAULT_TOML).unwrap();
        assert_eq!(
            documented.consent.profession_matrix,
            ProfessionMatrix::default()
        );
        for (text, expected) in [
            (
                "[consent.profession_matrix.x1]\ndocuments = []\nresources = []\n",
                "\"x1\" is not a profession code",
            ),
            (
                "[consent.profession_matrix.10]\ndocuments = []\nresources = []\nreadonly = true\n",
                "readonly",
            ),
        ] {
            let err = from_file(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn database_url_scheme_is_checked() {
        let err = Config::load(None, env(&[("CARNET_DATABASE_URL", "mysql://x")])).unwrap_err();
        assert!(err.to_string().contains("database_url"));
    }
}
