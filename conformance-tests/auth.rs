//! Authentication and scope enforcement with the built-in local issuer: who gets in, who is
//! refused and how, and which scope letter each interaction needs.

use crate::harness::{allergy, patient, run_carnet, Reply, Server};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use carnet::auth::local_issuer::LocalIssuer;
use serde_json::{json, Value};

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn send_as(s: &Server, token: &str, method: &str, path: &str, body: &Value) -> Reply {
    s.request(
        method,
        path,
        &[
            ("Authorization", &bearer(token)),
            ("Content-Type", "application/fhir+json"),
        ],
        Some(&body.to_string()),
    )
}

fn no_token(s: &Server, method: &str, path: &str, body: Option<&str>) -> Reply {
    let mut headers = vec![("Authorization", "")];
    if body.is_some() {
        headers.push(("Content-Type", "application/fhir+json"));
    }
    s.request(method, path, &headers, body)
}

/// The server's own issuer key, loaded from its data directory, to craft tokens it must refuse.
fn server_key(s: &Server) -> LocalIssuer {
    LocalIssuer::open(format!("{}/local-issuer", s.base), &s.issuer_key_path()).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn feeder_claims(s: &Server) -> Value {
    json!({
        "iss": format!("{}/local-issuer", s.base),
        "aud": s.base,
        "exp": now() + 300,
        "nbf": now() - 5,
        "client_id": "test-feeder",
        "scope": "system/*.cruds",
    })
}

fn header_of(key: &LocalIssuer) -> Value {
    json!({"alg": "ES256", "typ": "at+jwt", "kid": key.jwk()["kid"]})
}

/// Asserts a 401 `invalid_token` answer with an OperationOutcome.
fn assert_invalid_token(reply: &Reply, case: &str) {
    assert_eq!(reply.status, 401, "{case}: {}", reply.body);
    reply.outcome(401);
    let challenge = reply.header("WWW-Authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer") && challenge.contains("invalid_token"),
        "{case}: {challenge}"
    );
}

#[test]
fn metadata_and_discovery_documents_need_no_token() {
    let s = Server::start();
    let cs = no_token(&s, "GET", "/metadata", None);
    assert_eq!(cs.status, 200, "{}", cs.body);
    let security = &cs.json()["rest"][0]["security"];
    assert_eq!(security["service"][0]["coding"][0]["code"], "SMART-on-FHIR");

    let smart = no_token(&s, "GET", "/.well-known/smart-configuration", None);
    assert_eq!(smart.status, 200, "{}", smart.body);
    let smart: Value = serde_json::from_str(&smart.body).unwrap();
    assert_eq!(smart["issuer"], format!("{}/local-issuer", s.base));
    assert_eq!(smart["code_challenge_methods_supported"], json!(["S256"]));
    assert!(smart["capabilities"]
        .as_array()
        .unwrap()
        .contains(&json!("permission-v2")));
    assert_eq!(
        smart["scopes_supported"],
        json!(["system/*.cruds", "system/*.rs"])
    );

    let discovery = no_token(
        &s,
        "GET",
        "/local-issuer/.well-known/openid-configuration",
        None,
    );
    assert_eq!(discovery.status, 200);
    let discovery: Value = serde_json::from_str(&discovery.body).unwrap();
    assert_eq!(discovery["issuer"], smart["issuer"]);
    let jwks = no_token(&s, "GET", discovery["jwks_uri"].as_str().unwrap(), None);
    let jwks: Value = serde_json::from_str(&jwks.body).unwrap();
    assert_eq!(jwks["keys"][0]["kid"], server_key(&s).jwk()["kid"]);
    assert!(jwks["keys"][0].get("d").is_none(), "the private key leaked");
}

#[test]
fn a_request_without_a_token_is_401_and_changes_nothing() {
    let s = Server::start();
    let before = s.version_count();
    let created = no_token(
        &s,
        "POST",
        "/Patient",
        Some(&patient("1840275123456").to_string()),
    );
    created.outcome(401);
    assert_eq!(
        created.header("WWW-Authenticate"),
        Some(r#"Bearer realm="carnet""#)
    );
    for path in [
        "/Patient/x",
        "/Patient/_history",
        "/_history",
        "/Nothing/here",
    ] {
        no_token(&s, "GET", path, None).outcome(401);
    }
    let basic = s.request(
        "GET",
        "/Patient/x",
        &[("Authorization", "Basic dXNlcjpwdw==")],
        None,
    );
    basic.outcome(401);
    assert!(basic
        .header("WWW-Authenticate")
        .unwrap()
        .contains("invalid_request"));
    assert_eq!(s.version_count(), before);
}

#[test]
fn two_authorization_headers_are_refused() {
    use std::io::{Read, Write};
    let s = Server::start();
    let address = s.authority().to_owned();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    let token = &s.default_token;
    write!(
        stream,
        "GET /fhir/Patient/x HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Authorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}

#[test]
fn forged_and_out_of_date_tokens_are_refused() {
    let s = Server::start();
    let key = server_key(&s);
    let good = key.sign(&header_of(&key), &feeder_claims(&s)).unwrap();
    assert_eq!(
        s.get_as(&good, "/Patient/nobody").status,
        404,
        "the crafted baseline works"
    );

    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = feeder_claims(&s);
        change(&mut claims);
        key.sign(&header_of(&key), &claims).unwrap()
    };
    let other_key_dir = s.dir().join("other-key");
    let stranger_key = LocalIssuer::open(
        format!("{}/local-issuer", s.base),
        &other_key_dir.join("key.p8"),
    )
    .unwrap();
    let (signing_input, _) = good.rsplit_once('.').unwrap();
    let other_signature = stranger_key
        .sign(&header_of(&key), &feeder_claims(&s))
        .unwrap()
        .rsplit_once('.')
        .unwrap()
        .1
        .to_owned();
    let public_jwk = key.jwk().to_string();
    let hmac_header = json!({"alg": "HS256", "typ": "JWT", "kid": key.jwk()["kid"]});
    let hmac_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(hmac_header.to_string()),
        URL_SAFE_NO_PAD.encode(feeder_claims(&s).to_string())
    );
    let hmac_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, public_jwk.as_bytes());
    let hmac_signature = ring::hmac::sign(&hmac_key, hmac_input.as_bytes());
    let none_token = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none"}).to_string()),
        URL_SAFE_NO_PAD.encode(feeder_claims(&s).to_string())
    );
    let cases: Vec<(&str, String)> = vec![
        ("expired", with(&|c| c["exp"] = json!(now() - 3600))),
        ("not yet valid", with(&|c| c["nbf"] = json!(now() + 3600))),
        (
            "wrong audience",
            with(&|c| c["aud"] = json!("https://elsewhere.example/fhir")),
        ),
        (
            "wrong issuer",
            with(&|c| c["iss"] = json!("https://evil.example")),
        ),
        (
            "no expiry",
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
        ),
        (
            "bad signature",
            format!("{signing_input}.{other_signature}"),
        ),
        (
            "unknown kid",
            stranger_key
                .mint(&Default::default(), &s.base, now(), 300)
                .unwrap(),
        ),
        ("alg none", none_token),
        (
            "HMAC signed with the public key",
            format!(
                "{hmac_input}.{}",
                URL_SAFE_NO_PAD.encode(hmac_signature.as_ref())
            ),
        ),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    for (case, token) in &cases {
        assert_invalid_token(&s.get_as(token, "/Patient/nobody"), case);
    }
    let log = s.log();
    let refusals = log.matches("authentication refused").count();
    assert!(
        refusals >= cases.len(),
        "{refusals} refusals logged:\n{log}"
    );
    assert!(
        log.contains(&format!("failures={}", cases.len())),
        "refusals are counted:\n{log}"
    );
    for (case, token) in &cases {
        let signature = token.rsplit('.').next().unwrap();
        assert!(
            signature.len() < 8 || !log.contains(signature),
            "{case}: the token appears in the log"
        );
    }
}

#[test]
fn each_principal_kind_is_recognised() {
    let s = Server::start();
    let holder = s.create(&patient("2840275123456"));
    let holder_id = holder["id"].as_str().unwrap();
    let path = format!("/Patient/{holder_id}");
    let tokens = [
        (
            "feeding system",
            s.token(&["--client-id", "test-feeder", "--scope", "system/Patient.rs"]),
        ),
        (
            "professional",
            s.token(&[
                "--client-id",
                "test-feeder",
                "--scope",
                "user/Patient.rs",
                "--fhir-user",
                "Practitioner/p1",
                "--profession",
                "10",
                "--organization",
                "Organization/o1",
            ]),
        ),
        (
            "professional in break-glass",
            s.token(&[
                "--client-id",
                "test-feeder",
                "--scope",
                "user/Patient.rs",
                "--fhir-user",
                "Practitioner/p1",
                "--profession",
                "10",
                "--organization",
                "Organization/o1",
                "--purpose-of-use",
                "BTG",
                "--break-glass-reason",
                "unconscious patient in the emergency room",
            ]),
        ),
        (
            "patient",
            s.token(&[
                "--client-id",
                "test-portal",
                "--scope",
                "patient/Patient.rs",
                "--fhir-user",
                &format!("Patient/{holder_id}"),
            ]),
        ),
        (
            "guardian",
            s.token(&[
                "--client-id",
                "test-portal",
                "--scope",
                "user/Patient.rs",
                "--fhir-user",
                "RelatedPerson/parent1",
            ]),
        ),
        (
            "catalogue app",
            s.token(&[
                "--client-id",
                "test-app",
                "--scope",
                "patient/Patient.rs",
                "--patient",
                holder_id,
            ]),
        ),
        (
            "provisioning",
            s.token(&[
                "--client-id",
                "test-provisioning",
                "--scope",
                "system/Patient.crus",
            ]),
        ),
    ];
    for (kind, token) in &tokens {
        let reply = s.get_as(token, &path);
        // Recognised, then judged by the consent engine: RelatedPerson/parent1 represents no
        // minor, so the guardian reads nothing there (as if it did not exist).
        let expected = if *kind == "guardian" { 404 } else { 200 };
        assert_eq!(reply.status, expected, "{kind}: {}", reply.body);
    }
    let provisioning = &tokens[6].1;
    let created = send_as(
        &s,
        provisioning,
        "POST",
        "/Patient",
        &patient("1840275123456"),
    );
    assert_eq!(created.status, 201, "{}", created.body);
}

#[test]
fn tokens_that_match_no_principal_are_refused() {
    let s = Server::start();
    let refused = |args: &[&str], status: u16| {
        let token = s.token(args);
        let reply = s.get_as(&token, "/Patient/x");
        reply.outcome(status);
        reply
    };
    let stranger = refused(
        &["--client-id", "stranger", "--scope", "system/*.cruds"],
        403,
    );
    assert!(
        stranger.body.contains("not registered"),
        "{}",
        stranger.body
    );
    refused(&["--scope", "system/*.cruds"], 401);
    // A professional must say what they are and where they act.
    refused(
        &[
            "--client-id",
            "test-feeder",
            "--scope",
            "user/*.rs",
            "--fhir-user",
            "Practitioner/p1",
        ],
        401,
    );
    // A catalogue app acts for its launch patient only, with patient scopes.
    refused(&["--client-id", "test-app", "--scope", "patient/*.rs"], 401);
    refused(
        &[
            "--client-id",
            "test-app",
            "--scope",
            "system/*.rs",
            "--patient",
            "p",
        ],
        403,
    );
    // Break-glass needs a reason, and only professionals have it.
    refused(
        &[
            "--client-id",
            "test-feeder",
            "--scope",
            "user/*.rs",
            "--fhir-user",
            "Practitioner/p1",
            "--profession",
            "10",
            "--organization",
            "Organization/o",
            "--purpose-of-use",
            "BTG",
        ],
        // A declared emergency without its reason: the request is incomplete (issue 12).
        400,
    );
    refused(
        &[
            "--client-id",
            "test-portal",
            "--scope",
            "patient/*.rs",
            "--fhir-user",
            "Patient/p",
            "--purpose-of-use",
            "BTG",
            "--break-glass-reason",
            "x",
        ],
        403,
    );
    // Registered for more than it asks is fine; asking beyond the registration grants nothing.
    refused(
        &[
            "--client-id",
            "test-app",
            "--scope",
            "patient/*.cud",
            "--patient",
            "p",
        ],
        403,
    );
    // Provisioning never reads clinical data, whatever it asks.
    let provisioning = s.token(&[
        "--client-id",
        "test-provisioning",
        "--scope",
        "system/*.cruds",
    ]);
    s.get_as(&provisioning, "/DocumentReference/x").outcome(403);
    // Scope parameters are not honoured yet, so such a token is refused rather than widened.
    let narrowed = refused(
        &[
            "--client-id",
            "test-feeder",
            "--scope",
            "system/Observation.rs?category=laboratory",
        ],
        403,
    );
    assert!(narrowed.body.contains("parameters"), "{}", narrowed.body);
}

/// A resource to act on, and a token carrying `system/*.{letters}`.
fn letters_token(s: &Server, letters: &str) -> String {
    s.token(&[
        "--client-id",
        "test-feeder",
        "--scope",
        &format!("system/*.{letters}"),
    ])
}

fn assert_forbidden(reply: &Reply, case: &str) {
    assert_eq!(reply.status, 403, "{case}: {}", reply.body);
    reply.outcome(403);
    assert!(
        reply
            .header("WWW-Authenticate")
            .is_some_and(|c| c.contains("insufficient_scope")),
        "{case}"
    );
}

#[test]
fn each_scope_letter_is_needed_by_its_interactions() {
    let s = Server::start_with(&[("CARNET_UPDATE_CREATE", "true")]);
    let existing = s.create(&allergy("1840275123456"));
    let id = existing["id"].as_str().unwrap().to_owned();
    let instance = format!("/AllergyIntolerance/{id}");
    let mut updated = existing.clone();
    updated["criticality"] = json!("high");
    let json_patch = r#"[{"op": "add", "path": "/criticality", "value": "low"}]"#;
    let patch_as = |token: &str, path: &str| {
        s.request(
            "PATCH",
            path,
            &[
                ("Authorization", &bearer(token)),
                ("Content-Type", "application/json-patch+json"),
            ],
            Some(json_patch),
        )
    };
    let delete_as = |token: &str, path: &str| {
        s.request("DELETE", path, &[("Authorization", &bearer(token))], None)
    };
    let by_identifier = "/AllergyIntolerance?identifier=urn:oid:1.2.250.1.999|1840275123456";

    let all_but = |letter: char| letters_token(&s, &"cruds".replace(letter, ""));
    let no_c = all_but('c');
    assert_forbidden(
        &send_as(
            &s,
            &no_c,
            "POST",
            "/AllergyIntolerance",
            &allergy("2840275123456"),
        ),
        "create",
    );
    let mut fresh = allergy("2840275123457");
    fresh["id"] = json!("chosen-id");
    assert_forbidden(
        &send_as(&s, &no_c, "PUT", "/AllergyIntolerance/chosen-id", &fresh),
        "update-as-create",
    );
    let conditional_create = s.request(
        "POST",
        "/AllergyIntolerance",
        &[
            ("Authorization", &bearer(&all_but('s'))),
            ("Content-Type", "application/fhir+json"),
            (
                "If-None-Exist",
                "identifier=urn:oid:1.2.250.1.999|1840275123456",
            ),
        ],
        Some(&allergy("1840275123456").to_string()),
    );
    assert_forbidden(&conditional_create, "conditional create searches");

    let no_r = all_but('r');
    assert_forbidden(&s.get_as(&no_r, &instance), "read");
    assert_forbidden(&s.get_as(&no_r, &format!("{instance}/_history/1")), "vread");
    assert_forbidden(
        &s.get_as(&no_r, &format!("{instance}/_history")),
        "instance history",
    );

    let no_u = all_but('u');
    assert_forbidden(&send_as(&s, &no_u, "PUT", &instance, &updated), "update");
    assert_forbidden(&patch_as(&no_u, &instance), "patch");
    assert_forbidden(
        &send_as(&s, &no_u, "PUT", by_identifier, &updated),
        "conditional update",
    );

    let no_d = all_but('d');
    assert_forbidden(&delete_as(&no_d, &instance), "delete");
    assert_forbidden(&delete_as(&no_d, by_identifier), "conditional delete");

    let no_s = all_but('s');
    assert_forbidden(
        &s.get_as(&no_s, "/AllergyIntolerance/_history"),
        "type history",
    );
    assert_forbidden(&s.get_as(&no_s, "/_history"), "system history");
    assert_forbidden(
        &patch_as(&no_s, by_identifier),
        "conditional patch searches",
    );
    let only_patients = s.token(&[
        "--client-id",
        "test-feeder",
        "--scope",
        "system/Patient.cruds",
    ]);
    assert_forbidden(
        &s.get_as(&only_patients, "/_history"),
        "system history of one type",
    );

    // Nothing was changed by the refused requests…
    assert_eq!(s.get(&instance).json()["meta"]["versionId"], "1");
    assert_eq!(s.get("/_history").json()["total"], 1);
    // …and each letter alone opens its interactions.
    assert_eq!(s.get_as(&letters_token(&s, "r"), &instance).status, 200);
    assert_eq!(
        s.get_as(&letters_token(&s, "s"), "/AllergyIntolerance/_history")
            .status,
        200
    );
    assert_eq!(
        send_as(&s, &letters_token(&s, "u"), "PUT", &instance, &updated).status,
        200
    );
    assert_eq!(patch_as(&letters_token(&s, "u"), &instance).status, 200);
    assert_eq!(
        send_as(
            &s,
            &letters_token(&s, "c"),
            "POST",
            "/AllergyIntolerance",
            &allergy("2840275123456")
        )
        .status,
        201
    );
    assert_eq!(delete_as(&letters_token(&s, "d"), &instance).status, 204);
    // Writing over a deletion brings the resource back: that needs `c` too.
    assert_forbidden(
        &send_as(&s, &no_c, "PUT", &instance, &updated),
        "update over a deletion",
    );
    // v1 scopes map onto the same letters.
    let v1_read = s.token(&["--client-id", "test-feeder", "--scope", "system/*.read"]);
    assert_eq!(
        s.get_as(&v1_read, "/AllergyIntolerance/_history").status,
        200
    );
    assert_forbidden(
        &send_as(
            &s,
            &v1_read,
            "POST",
            "/AllergyIntolerance",
            &allergy("2840275123458"),
        ),
        "v1 read cannot create",
    );
}

#[test]
fn carnet_token_prints_the_jwt_alone_and_needs_the_local_issuer() {
    let s = Server::start();
    let (ok, stdout, stderr) = s.carnet(&[
        "token",
        "--client-id",
        "test-feeder",
        "--scope",
        "system/*.rs",
        "--expires-in",
        "120",
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let payload: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(stdout.trim().split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(payload["aud"], s.base);
    assert_eq!(payload["client_id"], "test-feeder");
    let lifetime = payload["exp"].as_i64().unwrap() - payload["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 120);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = s.issuer_key_path();
        let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the issuer key is readable by others");
    }
    let (ok, _) = run_carnet(
        &["token", "--scope", "system/*.rs"],
        &[("CARNET_AUTH__LOCAL_ISSUER", "false")],
    );
    assert!(!ok, "a disabled local issuer minted a token");
    let (ok, stderr) = run_carnet(&["token"], &[]);
    assert!(!ok && stderr.contains("--scope"), "{stderr}");
}
