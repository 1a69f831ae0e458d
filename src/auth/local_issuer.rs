//! The built-in token issuer: one ES256 key generated at first use, kept in a file only its owner
//! can read, published as a JWKS, and used by `carnet token` to mint access tokens.
//!
//! It exists so that the server runs and is testable with no identity provider at all;
//! production turns it off and trusts real OpenID Connect issuers instead.

use super::principal::Claims;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The local issuer's signing key and identity.
pub struct LocalIssuer {
    /// The `iss` of its tokens.
    pub url: String,
    key: EcdsaKeyPair,
    kid: String,
    rng: SystemRandom,
}

/// Why the key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
#[error("local issuer key {}: {reason}", path.display())]
pub struct KeyError {
    pub path: PathBuf,
    pub reason: String,
}

impl LocalIssuer {
    /// Loads the key at `path`, creating it on first use. Two processes starting together (the
    /// server and `carnet token`) end up with the same key: the file appears atomically, and
    /// whoever loses the race reads the winner's.
    pub fn open(url: String, path: &Path) -> Result<LocalIssuer, KeyError> {
        let fail = |reason: String| KeyError {
            path: path.to_path_buf(),
            reason,
        };
        let rng = SystemRandom::new();
        let pkcs8 = match read_private(path) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => create(path, &rng).map_err(fail)?,
            Err(reason) => return Err(fail(reason)),
        };
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
            .map_err(|e| fail(format!("not a P-256 PKCS#8 key: {e}")))?;
        let kid = thumbprint(&key);
        Ok(LocalIssuer { url, key, kid, rng })
    }

    /// The public key as a JWK (RFC 7517), `kid` being its RFC 7638 thumbprint.
    pub fn jwk(&self) -> Value {
        let (x, y) = coordinates(&self.key);
        json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "use": "sig", "alg": "ES256", "kid": self.kid})
    }

    /// The published key set.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk()] })
    }

    /// The OpenID Connect discovery document. The local issuer has no authorization endpoint:
    /// its token endpoint serves SMART Backend Services (`client_credentials` with
    /// `private_key_jwt`), and `carnet token` mints tokens for tests.
    pub fn discovery(&self) -> Value {
        json!({
            "issuer": self.url,
            "jwks_uri": format!("{}/jwks", self.url),
            "token_endpoint": super::backend_services::token_url(&self.url),
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": super::backend_services::SIGNING_ALGORITHMS,
            "response_types_supported": [],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        })
    }

    /// Mints a compact JWT carrying `claims` for `audience`, valid `lifetime_seconds` from `now`.
    pub fn mint(
        &self,
        claims: &Claims,
        audience: &str,
        now: i64,
        lifetime_seconds: i64,
    ) -> Result<String, String> {
        let mut payload = serde_json::to_value(claims).map_err(|e| e.to_string())?;
        let fields = payload
            .as_object_mut()
            .expect("claims serialize to an object");
        fields.insert("iss".into(), json!(self.url));
        fields.insert("aud".into(), json!(audience));
        fields.insert("iat".into(), json!(now));
        fields.insert("nbf".into(), json!(now));
        fields.insert("exp".into(), json!(now.saturating_add(lifetime_seconds)));
        fields.insert("jti".into(), json!(uuid::Uuid::new_v4().to_string()));
        let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": self.kid});
        self.sign(&header, &payload)
    }

    /// Signs any header and payload; tests use it to craft tokens that must be refused.
    pub fn sign(&self, header: &Value, payload: &Value) -> Result<String, String> {
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        );
        let signature = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| "signing failed".to_owned())?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }
}

/// The key's bytes, or `None` when there is no key yet. A key readable by others is refused:
/// whoever can read it can mint tokens for anyone.
fn read_private(path: &Path) -> Result<Option<Vec<u8>>, String> {
    let metadata = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "is readable by other users (mode {mode:o}); run chmod 600 on it"
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = metadata;
    std::fs::read(path).map(Some).map_err(|e| e.to_string())
}

/// Generates a key into a private temporary file, then links it into place: the link fails if
/// another process got there first, in which case its key is used.
fn create(path: &Path, rng: &SystemRandom) -> Result<Vec<u8>, String> {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, rng)
        .map_err(|_| "key generation failed".to_owned())?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create its directory: {e}"))?;
    }
    let temporary = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    let written = write_private(&temporary, pkcs8.as_ref());
    let linked = written.and_then(|()| std::fs::hard_link(&temporary, path));
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Ok(()) => {
            sync_directory(path);
            tracing::info!(path = %path.display(), "local issuer key created");
            Ok(pkcs8.as_ref().to_vec())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read_private(path)?.ok_or_else(|| "vanished while being created".to_owned())
        }
        Err(e) => Err(format!("cannot write it: {e}")),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes the new directory entry durable, so a key that signed tokens survives a crash.
fn sync_directory(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
}

/// The base64url `x` and `y` of the uncompressed public point (`04 || x || y`).
fn coordinates(key: &EcdsaKeyPair) -> (String, String) {
    let point = key.public_key().as_ref();
    (
        URL_SAFE_NO_PAD.encode(&point[1..33]),
        URL_SAFE_NO_PAD.encode(&point[33..65]),
    )
}

/// RFC 7638: SHA-256 over the required members in lexicographic order.
fn thumbprint(key: &EcdsaKeyPair) -> String {
    let (x, y) = coordinates(key);
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        canonical.as_bytes(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_key_path() -> PathBuf {
        std::env::temp_dir()
            .join(format!("carnet-key-{}", uuid::Uuid::new_v4().simple()))
            .join("key.p8")
    }

    #[test]
    fn the_key_is_created_once_private_and_reused() {
        let path = temp_key_path();
        let first = LocalIssuer::open("https://x/fhir/local-issuer".into(), &path).unwrap();
        let second = LocalIssuer::open("https://x/fhir/local-issuer".into(), &path).unwrap();
        assert_eq!(first.jwk(), second.jwk());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = LocalIssuer::open("u".into(), &path).err().unwrap();
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn concurrent_first_starts_agree_on_one_key() {
        let path = temp_key_path();
        let keys: Vec<Value> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| LocalIssuer::open("u".into(), &path).unwrap().jwk()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.windows(2).all(|w| w[0] == w[1]));
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn minted_tokens_carry_the_registered_claims() {
        let path = temp_key_path();
        let issuer = LocalIssuer::open("https://x/fhir/local-issuer".into(), &path).unwrap();
        let claims = Claims {
            client_id: Some("lab".into()),
            scope: "system/*.cruds".into(),
            ..Claims::default()
        };
        let token = issuer.mint(&claims, "https://x/fhir", 1000, 60).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        let payload: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], issuer.jwk()["kid"]);
        assert_eq!(payload["iss"], "https://x/fhir/local-issuer");
        assert_eq!(payload["aud"], "https://x/fhir");
        assert_eq!(payload["exp"], 1060);
        assert_eq!(payload["client_id"], "lab");
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().len(), 64);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
