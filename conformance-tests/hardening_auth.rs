//! Issue 11, authentication hardening: capped token lifetimes (8), the local issuer's SMART
//! Backend Services token endpoint and honest discovery (19), the SMART `oauth-uris` extension
//! (20) and CORS for browser apps (21).

use crate::harness::{allergy, patient, run_carnet, Reply, Server};
use crate::oidc_issuer::OidcIssuer;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use carnet::auth::local_issuer::LocalIssuer;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
use serde_json::{json, Value};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A lab's feed: an allergy (a Patient is written by provisioning only).
fn create_as(s: &Server, token: &str) -> Reply {
    s.request(
        "POST",
        "/AllergyIntolerance",
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", "application/fhir+json"),
        ],
        Some(&allergy("1840275123456").to_string()),
    )
}

/// A request with no token at all.
fn public(s: &Server, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut all = vec![("Authorization", "")];
    all.extend_from_slice(headers);
    s.request(method, path, &all, None)
}

fn assert_invalid_token(reply: &Reply, case: &str) {
    assert_eq!(reply.status, 401, "{case}: {}", reply.body);
    let issue = reply.outcome(401);
    assert_eq!(issue["code"], "login", "{case}");
    let challenge = reply.header("WWW-Authenticate").unwrap_or_default();
    assert!(challenge.contains("invalid_token"), "{case}: {challenge}");
}

// ---- 8. Token lifetimes ----------------------------------------------------------------------

/// The server's own issuer key, to sign tokens carrying any claims.
fn server_key(s: &Server) -> LocalIssuer {
    LocalIssuer::open(format!("{}/local-issuer", s.base), &s.issuer_key_path()).unwrap()
}

fn signed(s: &Server, change: &dyn Fn(&mut Value)) -> String {
    let key = server_key(s);
    let mut claims = json!({
        "iss": format!("{}/local-issuer", s.base),
        "aud": s.base,
        "exp": now() + 300,
        "client_id": "test-feeder",
        "scope": "system/*.cruds",
    });
    change(&mut claims);
    key.sign(&json!({"alg": "ES256", "kid": key.jwk()["kid"]}), &claims)
        .unwrap()
}

#[test]
fn absurd_and_overlong_token_times_are_refused() {
    let s = Server::start();
    let before = s.version_count();
    assert_eq!(
        s.get_as(&signed(&s, &|_| {}), "/Patient/x").status,
        404,
        "the crafted baseline works"
    );
    let day = 86_400;
    let cases: Vec<(&str, String)> = vec![
        ("exp 1e300", signed(&s, &|c| c["exp"] = json!(1e300))),
        ("exp i64::MAX", signed(&s, &|c| c["exp"] = json!(i64::MAX))),
        ("exp u64::MAX", signed(&s, &|c| c["exp"] = json!(u64::MAX))),
        ("exp negative", signed(&s, &|c| c["exp"] = json!(-1))),
        (
            "exp year 10000",
            signed(&s, &|c| c["exp"] = json!(253_402_300_800i64)),
        ),
        ("nbf 1e300", signed(&s, &|c| c["nbf"] = json!(1e300))),
        ("iat -1e300", signed(&s, &|c| c["iat"] = json!(-1e300))),
        ("iat a string", signed(&s, &|c| c["iat"] = json!("now"))),
        (
            "exp two days ahead",
            signed(&s, &|c| c["exp"] = json!(now() + 2 * day)),
        ),
        (
            "issued two days ago, still valid",
            signed(&s, &|c| c["iat"] = json!(now() - 2 * day)),
        ),
        (
            "issued in the future",
            signed(&s, &|c| c["iat"] = json!(now() + 3600)),
        ),
    ];
    for (case, token) in &cases {
        assert_invalid_token(&s.get_as(token, "/Patient/x"), case);
        assert_invalid_token(&create_as(&s, token), case);
    }
    let too_long = s.get_as(&cases[8].1, "/Patient/x");
    assert!(too_long.body.contains("86400"), "{}", too_long.body);
    let absurd = s.get_as(&cases[0].1, "/Patient/x");
    assert!(absurd.body.contains("exp"), "{}", absurd.body);
    // Nothing was written, and the server still answers.
    assert_eq!(s.version_count(), before);
    assert_eq!(s.get("/metadata").status, 200);
}

#[test]
fn the_lifetime_cap_is_configurable_and_binds_carnet_token() {
    let s = Server::start_with(&[("CARNET_AUTH__MAX_TOKEN_LIFETIME_SECONDS", "3600")]);
    let (ok, _, stderr) = s.carnet(&[
        "token",
        "--client-id",
        "test-feeder",
        "--scope",
        "system/*.rs",
        "--expires-in",
        "3601",
    ]);
    assert!(!ok, "a token beyond the cap was minted");
    assert!(
        stderr.contains("auth.max_token_lifetime_seconds") && stderr.contains("3600"),
        "{stderr}"
    );
    let within = s.token(&[
        "--client-id",
        "test-feeder",
        "--scope",
        "system/*.rs",
        "--expires-in",
        "3600",
    ]);
    assert_eq!(s.get_as(&within, "/Patient/_history").status, 200);
    let refused = s.get_as(
        &signed(&s, &|c| {
            c["iat"] = json!(now());
            c["exp"] = json!(now() + 7200);
        }),
        "/Patient/_history",
    );
    assert_invalid_token(&refused, "two hours with a one-hour cap");
    assert!(refused.body.contains("3600"), "{}", refused.body);
}

#[test]
fn the_lifetime_cap_applies_to_external_issuers_too() {
    let issuer = OidcIssuer::start_with_ttl(&["test-feeder"], Some(7200));
    let s = Server::start_configured(
        &format!("[[auth.issuers]]\nurl = \"{}\"\n", issuer.url),
        &[("CARNET_AUTH__MAX_TOKEN_LIFETIME_SECONDS", "3600")],
    );
    let before = s.version_count();
    let token = issuer.token("test-feeder", "system/*.cruds", &s.base, &[]);
    assert_invalid_token(
        &s.get_as(&token, "/Patient/_history"),
        "external, two hours",
    );
    assert_invalid_token(&create_as(&s, &token), "external, two hours");
    assert_eq!(s.version_count(), before);

    // 20. With an external issuer, the CapabilityStatement names its endpoints.
    let discovery: Value = ureq::get(&format!("{}/.well-known/openid-configuration", issuer.url))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    let cs = public(&s, "GET", "/metadata", &[]).json();
    let uris = oauth_uris(&cs);
    assert_eq!(uris["token"], discovery["token_endpoint"]);
    assert_eq!(uris["authorize"], discovery["authorization_endpoint"]);
    let smart: Value =
        serde_json::from_str(&public(&s, "GET", "/.well-known/smart-configuration", &[]).body)
            .unwrap();
    assert_eq!(smart["token_endpoint"], discovery["token_endpoint"]);
    assert_eq!(
        smart["authorization_endpoint"],
        discovery["authorization_endpoint"]
    );
    let grants = smart["grant_types_supported"].as_array().unwrap();
    assert!(grants.contains(&json!("authorization_code")), "{smart}");
}

// ---- 19. SMART Backend Services at the local issuer -----------------------------------------

/// A test-only RSA key (PKCS#1 DER, made with `openssl genpkey`), for RS384 assertions.
const RSA_CLIENT_KEY: &str = concat!(
    "MIIEpAIBAAKCAQEAryEgr/6L17yGGEodYsz1J217KqOdmn6YzBeHKM5y8Boxj8ZISehGn2RiKs7ZHV2Q+Y2NaHPVIAchhfVTxMYD",
    "lrbpPy4QKCxsE4MFFGbNMTk32QyFwdWCgkNceRSsok5iBIeTJrd8dJdzdI3higUaJTIIKKN93+9BQFg/H2JQ7mHmzEnLIKNUKzmt",
    "Fn0CroPevpvg2LGWrtJpJVCXgvKm26ecrjUzr9bg25tZl404/B90KZtjSBXFJgYZjVFlPBV60MhkyZmS1TkeRm1pdEyd3QUV03UE",
    "R+YtDRfZsdWaa+pFVYfGVp4S2Nyg9MhKZuHFqA8NI/T8DrAYlb4O159W9wIDAQABAoIBAD0vPTzPmSrbrhuxVRfuFF5chRHuDMNr",
    "pFV1iN6MViKlfBhHhXzwvi+0wglDsB3u0RYmyrcp9NVWOHOVNNmD9sACknXk0Xc/odilRzKMAfdHDshxdA+22PxKrXWN8Axahyse",
    "9J2rsDsJqKgZY6k1RB+nnasZB4Kjk6/3xMHhtvW5QJwspIzF/RLwfDQWw30U9sOMvO287Rt4QJgsmUtX0DfnjJ6ozfScuIsjEwcT",
    "ljWLLyFVO80BPiGkBtlQimFjFEetpKfe+zI/B4HmpQoVrPGI9aCh0aczm4hzWZKcBatrTeEV5NvVxF+/LcS0oHC+zKLy/rXUAPMT",
    "S2PFaIAyzdkCgYEA7YD3xCWYGPTL/03gFFqF0S/k5rI4Q1Aagl54/z4nmGRuXd2vUbA9ElO/ldIW6InmVIcwsXl0yN1TSmjLEZbs",
    "WPtlMnwVHFFRAMzox6oxpd1PHyLlvxxYktDbOmUtWeOBdwBrAuA1hoBlCqXim8P140TD8EWkD3VdHQrXUoCwR6kCgYEAvMSfhL4d",
    "LCoEY10fJY0xkeo+9SiJ1IaLtuVf5738Vy7QaKf6EmUueEdFhBhk4sdCb2is4hJfXTjtH1l7ytPAVUjS8FHIBweL2rcYKDOtWjVN",
    "G9egM0ORA/zdmjffBJI3F9G1IqiQVpJVH1AShVvH/tWhwZXOex0KtHz6WtkNTZ8CgYEA0j6LloBtHxJ9D5lBluL3eNG8ARidQ8FC",
    "Zkv5MoI0DOxC4yceTuMDfRjUDW14SAvi8MroKQNKhZGfbMxNj1maCb8pu0IqcfHuEhZSroWUA69gnkCHPuF56yWmHBB60ArcjZq6",
    "IEaYO2OnjoCAlMEpBzHVffo4HFMZxV7Wc7tl0VkCgYBhXdoaEiXh/do9lm7WY7nJ1dWbhslxQeUW9cE+O5TJM3B0SxCGJIKPr9N/",
    "i0WeY8E0zf0+rtNZtl846GMd/5MZanLDWqueVJoiuoZPVjh4az3WuqX7S0Kll+yF+4OhS/n240hXFDM/NEOL3zVubCUAoRjKTYcv",
    "oY9AAabw7TwbaQKBgQCLGf1XwXQCVZjPMpFVWTqGryJblhFqXk5wK7P8d1HrcdcSV7MMV5DTNpGyXOG7Mn1x1ga8LvSYhgZsEJsa",
    "BniRKn5WYv2rq2ZF1+tw5qJGERKGnm69b/v6rIHwqX+PT4QASWSyb9ArECBWacYsdK0SJhUmpN8/8rdo3exs+sbj3g==",
);

/// A backend client and its private key.
struct TestClient {
    id: String,
    signer: Signer,
    kid: String,
}

enum Signer {
    Es384(EcdsaKeyPair),
    Rs384(RsaKeyPair),
}

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

impl TestClient {
    fn es384(id: &str) -> TestClient {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        TestClient {
            id: id.to_owned(),
            signer: Signer::Es384(key),
            kid: format!("{id}-es384"),
        }
    }

    fn rs384(id: &str) -> TestClient {
        let der = STANDARD.decode(RSA_CLIENT_KEY).unwrap();
        TestClient {
            id: id.to_owned(),
            signer: Signer::Rs384(RsaKeyPair::from_der(&der).unwrap()),
            kid: format!("{id}-rs384"),
        }
    }

    /// The public key as a JWK, as the client registers or publishes it.
    fn jwk(&self) -> Value {
        match &self.signer {
            Signer::Es384(key) => {
                let point = key.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-384", "kid": self.kid,
                    "x": URL_SAFE_NO_PAD.encode(&point[1..49]),
                    "y": URL_SAFE_NO_PAD.encode(&point[49..97])})
            }
            Signer::Rs384(key) => {
                let parts: ring::rsa::PublicKeyComponents<Vec<u8>> = key.public().into();
                json!({"kty": "RSA", "kid": self.kid, "alg": "RS384",
                    "n": URL_SAFE_NO_PAD.encode(&parts.n), "e": URL_SAFE_NO_PAD.encode(&parts.e)})
            }
        }
    }

    /// The claims SMART asks for, for the token endpoint at `aud`.
    fn claims(&self, aud: &str) -> Value {
        json!({"iss": self.id, "sub": self.id, "aud": aud, "exp": now() + 240,
            "jti": uuid::Uuid::new_v4().to_string()})
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let signature = match &self.signer {
            Signer::Es384(key) => key.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
            Signer::Rs384(key) => {
                let mut signature = vec![0; key.public().modulus_len()];
                key.sign(
                    &ring::signature::RSA_PKCS1_SHA384,
                    &rng,
                    input.as_bytes(),
                    &mut signature,
                )
                .unwrap();
                signature
            }
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    fn assertion(&self, claims: &Value) -> String {
        let alg = match self.signer {
            Signer::Es384(_) => "ES384",
            Signer::Rs384(_) => "RS384",
        };
        self.sign(&json!({"alg": alg, "kid": self.kid, "typ": "JWT"}), claims)
    }
}

/// Serves `jwks` at a loopback URL for as long as the test runs.
fn serve_jwks(jwks: &Value) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let body = jwks.to_string();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = Vec::new();
            let mut chunk = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&chunk[..n]),
                }
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

fn token_request(s: &Server, form: &[(&str, &str)]) -> Reply {
    s.request(
        "POST",
        "/local-issuer/token",
        &[
            ("Authorization", ""),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        Some(&serde_urlencoded::to_string(form).unwrap()),
    )
}

fn grant_form<'a>(scope: &'a str, assertion: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "client_credentials"),
        ("scope", scope),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion),
    ]
}

/// Asserts an OAuth error answer (RFC 6749 §5.2) and returns its description.
fn assert_oauth_error(reply: &Reply, status: u16, error: &str, case: &str) -> String {
    assert_eq!(reply.status, status, "{case}: {}", reply.body);
    let body: Value = serde_json::from_str(&reply.body)
        .unwrap_or_else(|e| panic!("{case}: not JSON ({e}): {}", reply.body));
    assert_eq!(body["error"], error, "{case}: {body}");
    assert!(body.get("access_token").is_none(), "{case}");
    assert_eq!(reply.header("Cache-Control"), Some("no-store"), "{case}");
    body["error_description"].as_str().unwrap().to_owned()
}

const ORGANIZATION: &str = "https://finess.esante.gouv.fr|750000002";

#[test]
fn backend_services_clients_get_tokens_with_a_signed_assertion() {
    let es = TestClient::es384("lab-es384");
    let rs = TestClient::rs384("lab-rs384");
    let app = TestClient::es384("backend-app");
    let jwks_url = serve_jwks(&json!({"keys": [rs.jwk()]}));
    let s = Server::start_configured(
        &format!(
            "[[clients]]\nclient_id = \"lab-es384\"\nkind = \"feeder\"\norganization = \"{ORGANIZATION}\"\n\
             scopes = \"system/*.rs\"\njwk = '{}'\n\n\
             [[clients]]\nclient_id = \"lab-rs384\"\nkind = \"feeder\"\norganization = \"{ORGANIZATION}\"\n\
             scopes = \"system/*.cruds\"\njwks_url = \"{jwks_url}\"\n\n\
             [[clients]]\nclient_id = \"backend-app\"\nkind = \"app\"\nscopes = \"patient/*.rs\"\njwk = '{}'\n",
            es.jwk(),
            app.jwk()
        ),
        &[],
    );
    let token_url = format!("{}/local-issuer/token", s.base);
    let smart: Value =
        serde_json::from_str(&public(&s, "GET", "/.well-known/smart-configuration", &[]).body)
            .unwrap();
    assert_eq!(smart["token_endpoint"], token_url);
    assert_eq!(
        smart["grant_types_supported"],
        json!(["client_credentials"])
    );
    assert!(smart.get("authorization_endpoint").is_none(), "{smart}");
    assert_eq!(
        smart["token_endpoint_auth_methods_supported"],
        json!(["private_key_jwt"])
    );
    let algorithms = smart["token_endpoint_auth_signing_alg_values_supported"]
        .as_array()
        .unwrap();
    assert!(algorithms.contains(&json!("RS384")) && algorithms.contains(&json!("ES384")));
    assert!(smart["capabilities"]
        .as_array()
        .unwrap()
        .contains(&json!("client-confidential-asymmetric")));
    let discovery: Value = serde_json::from_str(
        &public(
            &s,
            "GET",
            "/local-issuer/.well-known/openid-configuration",
            &[],
        )
        .body,
    )
    .unwrap();
    assert_eq!(discovery["token_endpoint"], token_url);
    assert_eq!(
        discovery["token_endpoint_auth_methods_supported"],
        json!(["private_key_jwt"])
    );
    let before = s.version_count();

    // ES384 with a registered JWK: the scopes asked are narrowed to the registration.
    let assertion = es.assertion(&es.claims(&token_url));
    let granted = token_request(
        &s,
        &grant_form("system/Patient.cruds system/Observation.rs", &assertion),
    );
    assert_eq!(granted.status, 200, "{}", granted.body);
    assert_eq!(granted.header("Cache-Control"), Some("no-store"));
    let body: Value = serde_json::from_str(&granted.body).unwrap();
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["scope"], "system/Patient.rs system/Observation.rs");
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(s.get_as(access, "/Patient/_history").status, 200);
    create_as(&s, access).outcome(403);

    // The same assertion again is a replay.
    let replay = token_request(&s, &grant_form("system/Patient.rs", &assertion));
    let why = assert_oauth_error(&replay, 401, "invalid_client", "replay");
    assert!(why.contains("jti"), "{why}");

    // RS384 with keys published at a URL.
    let granted = token_request(
        &s,
        &grant_form(
            "system/AllergyIntolerance.cruds",
            &rs.assertion(&rs.claims(&token_url)),
        ),
    );
    assert_eq!(granted.status, 200, "{}", granted.body);
    let body: Value = serde_json::from_str(&granted.body).unwrap();
    let created = create_as(&s, body["access_token"].as_str().unwrap());
    assert_eq!(created.status, 201, "{}", created.body);
    let before = before + 1;
    assert_eq!(s.version_count(), before);

    // Every refusal is an OAuth error, and grants nothing.
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = es.claims(&token_url);
        change(&mut claims);
        es.assertion(&claims)
    };
    let good = || with(&|_| {});
    let hmac_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "kid": es.kid}).to_string()),
        URL_SAFE_NO_PAD.encode(es.claims(&token_url).to_string())
    );
    let hmac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, es.jwk().to_string().as_bytes()),
        hmac_input.as_bytes(),
    );
    let hmac_assertion = format!("{hmac_input}.{}", URL_SAFE_NO_PAD.encode(hmac.as_ref()));
    let mut forged_claims = es.claims(&token_url);
    forged_claims["iss"] = json!("lab-es384");
    let forged = app.sign(&json!({"alg": "ES384", "kid": es.kid}), &forged_claims);
    let unregistered = TestClient::es384("nobody");
    let keyless = TestClient::es384("test-feeder");
    let scope = "system/Patient.rs";
    let cases: Vec<(&str, Form, u16, &str)> = vec![
        (
            "password grant",
            vec![("grant_type", "password".into())],
            400,
            "unsupported_grant_type",
        ),
        (
            "no grant type",
            vec![("scope", scope.into())],
            400,
            "invalid_request",
        ),
        (
            "no client authentication",
            vec![
                ("grant_type", "client_credentials".into()),
                ("scope", scope.into()),
            ],
            401,
            "invalid_client",
        ),
        (
            "wrong audience",
            form(scope, with(&|c| c["aud"] = json!(s.base))),
            401,
            "invalid_client",
        ),
        (
            "an hour ahead",
            form(scope, with(&|c| c["exp"] = json!(now() + 3600))),
            401,
            "invalid_client",
        ),
        (
            "expired",
            form(scope, with(&|c| c["exp"] = json!(now() - 3600))),
            401,
            "invalid_client",
        ),
        (
            "exp 1e300",
            form(scope, with(&|c| c["exp"] = json!(1e300))),
            401,
            "invalid_client",
        ),
        (
            "no jti",
            form(
                scope,
                with(&|c| {
                    c.as_object_mut().unwrap().remove("jti");
                }),
            ),
            401,
            "invalid_client",
        ),
        (
            "sub is not the client",
            form(scope, with(&|c| c["sub"] = json!("someone"))),
            401,
            "invalid_client",
        ),
        (
            "signed by another key",
            form(scope, forged),
            401,
            "invalid_client",
        ),
        (
            "HMAC with the public key",
            form(scope, hmac_assertion),
            401,
            "invalid_client",
        ),
        (
            "garbage assertion",
            form(scope, "not.a.jwt".into()),
            401,
            "invalid_client",
        ),
        (
            "unregistered client",
            form(
                scope,
                unregistered.assertion(&unregistered.claims(&token_url)),
            ),
            401,
            "invalid_client",
        ),
        (
            "client without a key",
            form(scope, keyless.assertion(&keyless.claims(&token_url))),
            401,
            "invalid_client",
        ),
        (
            "patient scope for a system",
            form("patient/*.rs", good()),
            400,
            "invalid_scope",
        ),
        (
            "nothing registered",
            form("system/Patient.d", good()),
            400,
            "invalid_scope",
        ),
        (
            "malformed scope",
            form("nonsense", good()),
            400,
            "invalid_scope",
        ),
        ("no scope", form("", good()), 400, "invalid_scope"),
        (
            "scope parameters",
            form("system/Observation.rs?category=laboratory", good()),
            400,
            "invalid_scope",
        ),
        (
            "an app acts for a person",
            form("patient/*.rs", app.assertion(&app.claims(&token_url))),
            400,
            "unauthorized_client",
        ),
        (
            "a parameter twice",
            [form(scope, good()), vec![("scope", scope.into())]].concat(),
            400,
            "invalid_request",
        ),
    ];
    for (case, fields, status, error) in &cases {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_oauth_error(&token_request(&s, &fields), *status, error, case);
    }
    let json_body = s.request(
        "POST",
        "/local-issuer/token",
        &[("Authorization", ""), ("Content-Type", "application/json")],
        Some(&json!({"grant_type": "client_credentials"}).to_string()),
    );
    assert_oauth_error(&json_body, 400, "invalid_request", "JSON body");
    public(&s, "GET", "/local-issuer/token", &[]).outcome(405);
    // Nothing changed, and the server still answers and grants.
    assert_eq!(s.version_count(), before);
    let again = token_request(&s, &grant_form(scope, &good()));
    assert_eq!(again.status, 200, "{}", again.body);
}

/// The fields of a token request.
type Form = Vec<(&'static str, String)>;

fn form(scope: &str, assertion: String) -> Form {
    vec![
        ("grant_type", "client_credentials".into()),
        ("scope", scope.to_owned()),
        ("client_assertion_type", ASSERTION_TYPE.into()),
        ("client_assertion", assertion),
    ]
}

#[test]
fn client_keys_are_checked_when_the_configuration_loads() {
    let cases = [
        ("jwk = 'not json'", "jwk"),
        (
            "jwk = '{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}'",
            "private or symmetric",
        ),
        ("jwks_url = \"http://keys.example/jwks\"", "jwks_url"),
        (
            "jwk = '{\"kty\":\"EC\"}'\njwks_url = \"https://keys.example/jwks\"",
            "not both",
        ),
    ];
    for (setting, expected) in cases {
        let dir =
            std::env::temp_dir().join(format!("carnet_keys_{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("carnet.toml");
        std::fs::write(
            &file,
            format!("[[clients]]\nclient_id = \"lab\"\nkind = \"feeder\"\norganization = \"{ORGANIZATION}\"\nscopes = \"system/*.rs\"\n{setting}\n"),
        )
        .unwrap();
        let (ok, stderr) = run_carnet(&["migrate", "--config", file.to_str().unwrap()], &[]);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!ok, "{setting}: accepted");
        assert!(
            stderr.contains(expected) && stderr.contains("lab"),
            "{setting}: {stderr}"
        );
    }
}

// ---- 20. oauth-uris ---------------------------------------------------------------------------

/// The `oauth-uris` extension of a CapabilityStatement, as name → URI.
fn oauth_uris(cs: &Value) -> serde_json::Map<String, Value> {
    let extension = cs["rest"][0]["security"]["extension"]
        .as_array()
        .unwrap_or_else(|| panic!("no security extension: {}", cs["rest"][0]["security"]))
        .iter()
        .find(|e| {
            e["url"] == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
        })
        .expect("the oauth-uris extension");
    extension["extension"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["url"].as_str().unwrap().to_owned(), e["valueUri"].clone()))
        .collect()
}

#[test]
fn the_capability_statement_says_where_tokens_come_from_and_that_cors_is_off() {
    let s = Server::start();
    let cs = public(&s, "GET", "/metadata", &[]).json();
    let security = &cs["rest"][0]["security"];
    assert_eq!(
        security["service"][0]["coding"][0]["system"],
        "http://terminology.hl7.org/CodeSystem/restful-security-service"
    );
    assert_eq!(security["service"][0]["coding"][0]["code"], "SMART-on-FHIR");
    let uris = oauth_uris(&cs);
    assert_eq!(uris["token"], format!("{}/local-issuer/token", s.base));
    assert!(
        !uris.contains_key("authorize"),
        "no authorization endpoint exists"
    );
    // 21. CORS is off by default: no origin is allowed, and preflights are not answered.
    assert_eq!(security["cors"], false);
    let preflight = public(
        &s,
        "OPTIONS",
        "/Patient",
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
    );
    assert!(
        [401, 405].contains(&preflight.status),
        "{}: {}",
        preflight.status,
        preflight.body
    );
    assert!(preflight.header("Access-Control-Allow-Origin").is_none());
    let read = s.request(
        "GET",
        "/metadata",
        &[("Origin", "https://app.example")],
        None,
    );
    assert!(read.header("Access-Control-Allow-Origin").is_none());
}

// ---- 21. CORS ---------------------------------------------------------------------------------

#[test]
fn cors_lets_listed_origins_preflight_and_read_without_a_wildcard() {
    let s = Server::start_with(&[(
        "CARNET_CORS__ALLOWED_ORIGINS",
        "https://app.example,http://localhost:3000",
    )]);
    assert_eq!(
        public(&s, "GET", "/metadata", &[]).json()["rest"][0]["security"]["cors"],
        true
    );
    let before = s.version_count();
    let preflight = |path: &str, origin: &str, method: &str| {
        public(
            &s,
            "OPTIONS",
            path,
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", method),
                (
                    "Access-Control-Request-Headers",
                    "authorization, content-type, if-match",
                ),
            ],
        )
    };
    for (path, method) in [
        ("/Patient", "POST"),
        ("/Patient/some-id", "PUT"),
        ("/Patient/some-id", "PATCH"),
        ("/Patient/some-id", "DELETE"),
        ("/Patient?identifier=x", "GET"),
        ("/metadata", "GET"),
        ("/.well-known/smart-configuration", "GET"),
        ("/local-issuer/token", "POST"),
    ] {
        let answer = preflight(path, "https://app.example", method);
        assert_eq!(answer.status, 204, "{path} {method}: {}", answer.body);
        assert_eq!(
            answer.header("Access-Control-Allow-Origin"),
            Some("https://app.example"),
            "{path}"
        );
        let methods = answer.header("Access-Control-Allow-Methods").unwrap();
        assert!(methods.contains(method), "{path}: {methods}");
        let headers = answer
            .header("Access-Control-Allow-Headers")
            .unwrap()
            .to_ascii_lowercase();
        for needed in [
            "authorization",
            "content-type",
            "if-match",
            "if-none-exist",
            "if-none-match",
            "prefer",
        ] {
            assert!(headers.contains(needed), "{needed} not in {headers}");
        }
        assert!(answer.header("Vary").unwrap().contains("Origin"));
        assert!(answer.header("Access-Control-Allow-Credentials").is_none());
    }
    let second = preflight("/Patient", "http://localhost:3000", "POST");
    assert_eq!(
        second.header("Access-Control-Allow-Origin"),
        Some("http://localhost:3000")
    );
    // An origin not listed (even a near miss) gets no permission.
    for origin in [
        "https://evil.example",
        "https://app.example:443",
        "https://app.example.evil",
        "null",
    ] {
        let refused = preflight("/Patient", origin, "POST");
        assert!(
            refused.header("Access-Control-Allow-Origin").is_none(),
            "{origin}"
        );
        assert!(
            refused.header("Access-Control-Allow-Methods").is_none(),
            "{origin}"
        );
    }

    // Answers, errors included, are readable by the listed origin only.
    let created = s.send(
        "POST",
        "/Patient",
        &patient("1840275123456"),
        &[("Origin", "https://app.example")],
    );
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        created.header("Access-Control-Allow-Origin"),
        Some("https://app.example")
    );
    let exposed = created.header("Access-Control-Expose-Headers").unwrap();
    for header in ["Location", "ETag", "Content-Location", "Last-Modified"] {
        assert!(exposed.contains(header), "{header} not in {exposed}");
    }
    assert!(created.header("Vary").unwrap().contains("Origin"));
    let unauthenticated = public(
        &s,
        "GET",
        "/Patient/x",
        &[("Origin", "https://app.example")],
    );
    unauthenticated.outcome(401);
    assert_eq!(
        unauthenticated.header("Access-Control-Allow-Origin"),
        Some("https://app.example")
    );
    let stranger = s.request(
        "GET",
        "/Patient/_history",
        &[("Origin", "https://evil.example")],
        None,
    );
    assert_eq!(stranger.status, 200);
    assert!(stranger.header("Access-Control-Allow-Origin").is_none());
    assert!(stranger.header("Vary").unwrap().contains("Origin"));
    // Preflights wrote nothing; a plain OPTIONS is still not a FHIR interaction.
    assert_eq!(s.version_count(), before + 1);
    assert_eq!(s.request("OPTIONS", "/Patient", &[], None).status, 405);
}

#[test]
fn cors_origins_are_checked_when_the_configuration_loads() {
    for origin in [
        "*",
        "https://app.example/",
        "https://*.example",
        "https://App.example",
        "app.example",
    ] {
        let (ok, stderr) = run_carnet(&["migrate"], &[("CARNET_CORS__ALLOWED_ORIGINS", origin)]);
        assert!(!ok, "{origin} accepted");
        assert!(
            stderr.contains("cors.allowed_origins"),
            "{origin}: {stderr}"
        );
    }
}

// ---- 19 and 20 with a real SMART client ------------------------------------------------------

const SMART_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/conformance-tests/smart");

/// A Python with SMART's `fhirclient` (pinned in `smart/requirements.txt`), installed into
/// `smart/.venv` on first use.
static SMART_PYTHON: std::sync::LazyLock<std::path::PathBuf> = std::sync::LazyLock::new(|| {
    let venv = std::path::Path::new(SMART_DIR).join(".venv");
    let python = venv.join("bin/python");
    let installed = std::process::Command::new(&python)
        .args(["-c", "import fhirclient"])
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        let created = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap_or_else(|e| panic!("python3 is needed for the SMART client test: {e}"));
        assert!(
            created.success(),
            "python3 -m venv {} failed",
            venv.display()
        );
        let pip = std::process::Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(format!("{SMART_DIR}/requirements.txt"))
            .status()
            .unwrap();
        assert!(
            pip.success(),
            "pip install -r {SMART_DIR}/requirements.txt failed"
        );
    }
    python
});

#[test]
fn smart_python_fhirclient_gets_a_token_from_the_capability_statement() {
    let lab = TestClient::es384("lab-es384");
    let s = Server::start_configured(
        &format!(
            "[[clients]]\nclient_id = \"lab-es384\"\nkind = \"feeder\"\norganization = \"{ORGANIZATION}\"\n\
             scopes = \"system/*.rs\"\njwk = '{}'\n",
            lab.jwk()
        ),
        &[],
    );
    let token_url = format!("{}/local-issuer/token", s.base);
    let settings = json!({
        "app_id": "lab-es384",
        "api_base": format!("{}/", s.base),
        "scope": "system/Patient.rs",
        "jwt_token": lab.assertion(&lab.claims(&token_url)),
    });
    let run = || {
        std::process::Command::new(&*SMART_PYTHON)
            .arg(format!("{SMART_DIR}/backend_client.py"))
            .arg(settings.to_string())
            .output()
            .unwrap()
    };
    let output = run();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "fhirclient failed: {stderr}");
    let found: Value = serde_json::from_str(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .last()
            .unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)));
    assert_eq!(found["token_uri"], token_url);
    assert_eq!(found["ready"], true);
    assert_eq!(found["read"], "Bundle");
    // The library sent the assertion once; sending it again is a replay, and refused.
    assert!(!run().status.success(), "a replayed assertion got a token");
}

/// fhir-kit-client's npm package (locked in `smart/package-lock.json`), installed on first use.
static SMART_NODE: std::sync::LazyLock<()> = std::sync::LazyLock::new(|| {
    if std::path::Path::new(SMART_DIR)
        .join("node_modules/fhir-kit-client")
        .exists()
    {
        return;
    }
    let status = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--prefix", SMART_DIR])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("npm is needed for the fhir-kit-client test: {e}"));
    assert!(status.success(), "npm ci in {SMART_DIR} failed");
});

#[test]
fn fhir_kit_client_finds_the_token_endpoint() {
    std::sync::LazyLock::force(&SMART_NODE);
    let s = Server::start();
    let output = std::process::Command::new("node")
        .arg(format!("{SMART_DIR}/auth_metadata.mjs"))
        .arg(&s.base)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "fhir-kit-client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let found: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)));
    let token_url = format!("{}/local-issuer/token", s.base);
    assert_eq!(found["tokenUrl"], token_url, "{found}");
    assert_eq!(found["capabilityTokenUrl"], token_url, "{found}");
    // No authorization endpoint exists, so none is announced anywhere.
    assert_eq!(found["authorizeUrl"], Value::Null, "{found}");
    assert_eq!(found["capabilityAuthorizeUrl"], Value::Null, "{found}");
}

// ---- Hostile review of the token endpoint -----------------------------------------------------

/// A server with two Backend Services clients registered by their JWK.
fn two_labs(a: &TestClient, b: &TestClient) -> Server {
    Server::start_configured(
        &format!(
            "[[clients]]\nclient_id = \"{}\"\nkind = \"feeder\"\norganization = \"{ORGANIZATION}\"\n\
             scopes = \"system/*.rs\"\njwk = '{}'\n\n\
             [[clients]]\nclient_id = \"{}\"\nkind = \"feeder\"\norganization = \"{ORGANIZATION}\"\n\
             scopes = \"system/*.cruds\"\njwk = '{}'\n",
            a.id,
            a.jwk(),
            b.id,
            b.jwk()
        ),
        &[],
    )
}

/// An assertion meant for several audiences could be replayed here by any of them: SMART names
/// one audience, this token endpoint.
#[test]
fn an_assertion_must_name_this_token_endpoint_alone() {
    let lab = TestClient::es384("lab-a");
    let other = TestClient::es384("lab-b");
    let s = two_labs(&lab, &other);
    let token_url = format!("{}/local-issuer/token", s.base);
    for (case, aud) in [
        (
            "this endpoint and another server",
            json!([token_url, "https://other.example/token"]),
        ),
        (
            "another server first",
            json!(["https://other.example/token", token_url]),
        ),
        ("an empty list", json!([])),
        (
            "https instead of http",
            json!(token_url.replace("http:", "https:")),
        ),
        ("the FHIR base", json!(s.base)),
        ("a number", json!(5)),
    ] {
        let mut claims = lab.claims(&token_url);
        claims["aud"] = aud;
        let refused = token_request(
            &s,
            &grant_form("system/Patient.rs", &lab.assertion(&claims)),
        );
        let why = assert_oauth_error(&refused, 401, "invalid_client", case);
        assert!(why.contains("aud"), "{case}: {why}");
    }
    // The endpoint itself, as a string or a list of one, still works.
    for aud in [json!(token_url), json!([token_url])] {
        let mut claims = lab.claims(&token_url);
        claims["aud"] = aud;
        let granted = token_request(
            &s,
            &grant_form("system/Patient.rs", &lab.assertion(&claims)),
        );
        assert_eq!(granted.status, 200, "{}", granted.body);
    }
}

/// Token requests are read within a small bound and refused as OAuth errors (JSON, not cached),
/// never with the framework's plain-text answer.
#[test]
fn an_oversized_token_request_is_an_oauth_error() {
    let lab = TestClient::es384("lab-a");
    let other = TestClient::es384("lab-b");
    let s = two_labs(&lab, &other);
    let token_url = format!("{}/local-issuer/token", s.base);
    let assertion = lab.assertion(&lab.claims(&token_url));
    let mut form = grant_form("system/Patient.rs", &assertion);
    let padding = "x".repeat(300 * 1024);
    form.push(("padding", &padding));
    let refused = token_request(&s, &form);
    assert_eq!(
        refused.header("Content-Type"),
        Some("application/json"),
        "{}",
        refused.body
    );
    assert_oauth_error(&refused, 413, "invalid_request", "a 300 KB form");
    // The assertion was not used up, and the server still grants.
    let granted = token_request(&s, &grant_form("system/Patient.rs", &assertion));
    assert_eq!(granted.status, 200, "{}", granted.body);
}

/// A national record must be able to tell which client got which token: the log names it.
#[test]
fn every_token_issued_is_logged_with_its_client() {
    let lab = TestClient::es384("lab-a");
    let other = TestClient::es384("lab-b");
    let s = two_labs(&lab, &other);
    let token_url = format!("{}/local-issuer/token", s.base);
    let granted = token_request(
        &s,
        &grant_form(
            "system/Patient.rs",
            &other.assertion(&other.claims(&token_url)),
        ),
    );
    assert_eq!(granted.status, 200, "{}", granted.body);
    let log = s.log();
    let issued = log
        .lines()
        .find(|l| l.contains("token issued"))
        .unwrap_or_else(|| panic!("no issuance logged: {log}"));
    assert!(
        issued.contains("lab-b") && issued.contains("system/Patient.rs"),
        "{issued}"
    );
}

/// Before a caller has proved it holds a registered key, the answer does not tell which client
/// ids are registered or which of them have keys.
#[test]
fn refusals_before_the_signature_do_not_reveal_registered_clients() {
    let lab = TestClient::es384("lab-a");
    let other = TestClient::es384("lab-b");
    let s = two_labs(&lab, &other);
    let token_url = format!("{}/local-issuer/token", s.base);
    let impostor = |id: &str| {
        let mut claims = lab.claims(&token_url);
        claims["iss"] = json!(id);
        claims["sub"] = json!(id);
        other.assertion(&claims)
    };
    let answers: Vec<String> = [
        ("unregistered", impostor("nobody")),
        ("registered without a key", impostor("test-feeder")),
        (
            "registered, signed by another client's key",
            impostor("lab-a"),
        ),
        (
            "registered, unknown kid",
            lab.sign(
                &json!({"alg": "ES384", "kid": "nope"}),
                &lab.claims(&token_url),
            ),
        ),
    ]
    .iter()
    .map(|(case, assertion)| {
        let reply = token_request(&s, &grant_form("system/Patient.rs", assertion));
        assert_oauth_error(&reply, 401, "invalid_client", case)
    })
    .collect();
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "the answers differ: {answers:?}"
    );
    assert!(!answers[0].contains("nobody"), "{}", answers[0]);
    // The log keeps the precise reason for the operator.
    assert!(s.log().contains("not registered"), "{}", s.log());
}

/// Held: thirty copies of one assertion sent at once get exactly one token.
#[test]
fn racing_copies_of_one_assertion_get_one_token() {
    let lab = TestClient::es384("lab-a");
    let other = TestClient::es384("lab-b");
    let s = two_labs(&lab, &other);
    let token_url = format!("{}/local-issuer/token", s.base);
    let assertion = lab.assertion(&lab.claims(&token_url));
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..30)
            .map(|_| {
                scope.spawn(|| {
                    token_request(&s, &grant_form("system/Patient.rs", &assertion)).status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 401),
        "{statuses:?}"
    );
}
