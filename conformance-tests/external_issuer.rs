//! Tokens from a real external OpenID Connect provider (oidc-provider on loopback): discovery,
//! JWKS, each principal kind, audience and registry checks, and key rotation.

use crate::harness::{patient, Server};
use crate::oidc_issuer::OidcIssuer;
use carnet::auth::local_issuer::LocalIssuer;
use serde_json::json;
use std::time::Duration;

/// Clients the external issuer knows: Carnet's registered test clients and one stranger.
const ISSUER_CLIENTS: [&str; 5] = [
    "test-feeder",
    "test-portal",
    "test-app",
    "test-provisioning",
    "stranger",
];

fn start() -> (OidcIssuer, Server) {
    let issuer = OidcIssuer::start(&ISSUER_CLIENTS);
    let server = Server::start_configured(
        &format!("[[auth.issuers]]\nurl = \"{}\"\n", issuer.url),
        &[("CARNET_AUTH__JWKS_MIN_REFRESH_SECONDS", "1")],
    );
    (issuer, server)
}

#[test]
fn external_tokens_authenticate_every_principal_kind() {
    let (issuer, s) = start();
    // Records are created by the provisioning client.
    let provisioning = issuer.token("test-provisioning", "system/*.cruds", &s.base, &[]);
    let created = s.request(
        "POST",
        "/Patient",
        &[
            ("Authorization", &format!("Bearer {provisioning}")),
            ("Content-Type", "application/fhir+json"),
        ],
        Some(&patient("1840275123456").to_string()),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let path = format!("/Patient/{id}");
    let holder = format!("Patient/{id}");
    let tokens = [
        (
            "feeding system",
            issuer.token("test-feeder", "system/Patient.rs", &s.base, &[]),
        ),
        (
            "professional",
            issuer.token(
                "test-feeder",
                "user/Patient.rs",
                &s.base,
                &[
                    ("fhirUser", "Practitioner/p1"),
                    ("profession", "10"),
                    ("organization", "Organization/o1"),
                ],
            ),
        ),
        (
            "patient",
            issuer.token(
                "test-portal",
                "patient/Patient.rs",
                &s.base,
                &[("fhirUser", &holder)],
            ),
        ),
        (
            "catalogue app",
            issuer.token(
                "test-app",
                "patient/Patient.rs",
                &s.base,
                &[("patient", &id)],
            ),
        ),
        (
            "provisioning",
            issuer.token("test-provisioning", "system/Patient.rs", &s.base, &[]),
        ),
    ];
    for (kind, token) in &tokens {
        assert_eq!(s.get_as(token, &path).status, 200, "{kind}");
    }

    let elsewhere = issuer.token(
        "test-feeder",
        "system/*.cruds",
        "https://elsewhere.example/fhir",
        &[],
    );
    let refused = s.get_as(&elsewhere, &path);
    refused.outcome(401);
    assert!(refused.body.contains("aud"), "{}", refused.body);

    let stranger = issuer.token("stranger", "system/*.cruds", &s.base, &[]);
    let refused = s.get_as(&stranger, &path);
    refused.outcome(403);
    assert!(refused.body.contains("not registered"), "{}", refused.body);

    let smart = s.request(
        "GET",
        "/.well-known/smart-configuration",
        &[("Authorization", "")],
        None,
    );
    let smart: serde_json::Value = serde_json::from_str(&smart.body).unwrap();
    assert_eq!(smart["issuer"], issuer.url);
    assert_eq!(smart["token_endpoint"], format!("{}/token", issuer.url));
}

#[test]
fn key_rotation_at_the_issuer_is_picked_up_at_a_bounded_rate() {
    let (mut issuer, s) = start();
    let before = issuer.token("test-feeder", "system/*.rs", &s.base, &[]);
    assert_eq!(s.get_as(&before, "/Patient/_history").status, 200);

    // The issuer replaces its key: tokens carry a kid the server has never seen.
    issuer.restart(|keys| std::fs::remove_file(keys).unwrap());
    let after = issuer.token("test-feeder", "system/*.rs", &s.base, &[]);
    std::thread::sleep(Duration::from_millis(1100));
    let reply = s.get_as(&after, "/Patient/_history");
    assert_eq!(reply.status, 200, "rotation not picked up: {}", reply.body);
    // The old key is no longer published, so its tokens are refused.
    s.get_as(&before, "/Patient/_history").outcome(401);

    // A flood of unknown kids claiming this issuer does not become a flood of fetches.
    let fetches = |log: &str| log.matches("issuer keys").count();
    let fetched_before = fetches(&s.log());
    let forger_dir = s.dir().join("forger");
    for i in 0..10 {
        let forger =
            LocalIssuer::open(issuer.url.clone(), &forger_dir.join(format!("{i}.p8"))).unwrap();
        let claims = json!({
            "iss": issuer.url, "aud": s.base, "exp": 4_000_000_000i64,
            "client_id": "test-feeder", "scope": "system/*.rs",
        });
        let forged = forger
            .sign(
                &json!({"alg": "ES256", "kid": format!("forged-{i}")}),
                &claims,
            )
            .unwrap();
        s.get_as(&forged, "/Patient/_history").outcome(401);
    }
    let extra_fetches = fetches(&s.log()) - fetched_before;
    assert!(
        extra_fetches <= 2,
        "{extra_fetches} key fetches for 10 forged tokens"
    );
}
