//! The public documents a client reads before it has a token: the SMART configuration and the
//! local issuer's OpenID Connect discovery document and key set.

use super::error::ApiError;
use super::AppState;
use crate::auth::backend_services::SIGNING_ALGORITHMS;
use crate::auth::issuers::Provider;
use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

/// `GET /.well-known/smart-configuration`: the endpoints of the issuer clients get tokens from
/// (as its discovery document gives them), and only the grant types that really work there.
#[utoipa::path(get, path = "/fhir/.well-known/smart-configuration", tag = "system", security(()),
    responses((status = 200, description = "SMART App Launch configuration: issuer, keys, endpoints, capabilities, scopes", body = serde_json::Value, content_type = "application/json")))]
pub async fn smart_configuration(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let authenticator = state.authenticator.clone();
    let provider = web::block(move || authenticator.primary_provider()).await?;
    let local = provider
        .as_ref()
        .is_some_and(|p| Some(&p.issuer) == state.local_issuer.as_ref().map(|i| &i.url));
    Ok(json_response(&smart_document(provider.as_ref(), local)))
}

/// The SMART configuration for `provider` (`local`: the built-in issuer and its Backend
/// Services token endpoint).
fn smart_document(provider: Option<&Provider>, local: bool) -> Value {
    let mut capabilities = vec![
        "permission-patient",
        "permission-user",
        "permission-v1",
        "permission-v2",
    ];
    let mut document = json!({
        "scopes_supported": [
            "openid", "fhirUser", "launch/patient",
            "patient/*.cruds", "patient/*.rs", "user/*.cruds", "user/*.rs", "system/*.cruds",
            "system/*.rs",
        ],
        "code_challenge_methods_supported": ["S256"],
    });
    let fields = document.as_object_mut().expect("an object");
    let mut grant_types: Vec<&str> = Vec::new();
    if let Some(provider) = provider {
        let offers = |grant: &str| provider.grant_types.iter().any(|g| g == grant);
        fields.insert("issuer".into(), json!(provider.issuer));
        fields.insert("jwks_uri".into(), json!(provider.jwks_uri));
        if let Some(endpoint) = &provider.authorization_endpoint {
            fields.insert("authorization_endpoint".into(), json!(endpoint));
            if offers("authorization_code") {
                grant_types.push("authorization_code");
                capabilities.push("launch-standalone");
                capabilities.push("context-standalone-patient");
            }
        }
        if let Some(endpoint) = &provider.token_endpoint {
            fields.insert("token_endpoint".into(), json!(endpoint));
            if offers("client_credentials") {
                grant_types.push("client_credentials");
            }
        }
        if local {
            // Backend Services clients act for themselves: system scopes are all it grants.
            fields.insert(
                "scopes_supported".into(),
                json!(["system/*.cruds", "system/*.rs"]),
            );
            fields.insert(
                "token_endpoint_auth_methods_supported".into(),
                json!(["private_key_jwt"]),
            );
            fields.insert(
                "token_endpoint_auth_signing_alg_values_supported".into(),
                json!(SIGNING_ALGORITHMS),
            );
            capabilities.push("client-confidential-asymmetric");
        }
    }
    fields.insert("grant_types_supported".into(), json!(grant_types));
    fields.insert("capabilities".into(), json!(capabilities));
    document
}

/// The CapabilityStatement with the token (and authorize) endpoints of the issuer clients get
/// tokens from, which may need its discovery document (fetched once, then cached).
pub async fn capability_statement(state: &web::Data<AppState>) -> Result<Value, ApiError> {
    let authenticator = state.authenticator.clone();
    let provider = web::block(move || authenticator.primary_provider()).await?;
    Ok(crate::fhir::capability::with_oauth_uris(
        &state.capability_statement,
        provider.as_ref().and_then(|p| p.token_endpoint.as_deref()),
        provider
            .as_ref()
            .and_then(|p| p.authorization_endpoint.as_deref()),
    ))
}

/// `GET /local-issuer/.well-known/openid-configuration`
#[utoipa::path(get, path = "/fhir/local-issuer/.well-known/openid-configuration", tag = "system", security(()),
    responses((status = 200, description = "Discovery document of the built-in issuer", body = serde_json::Value, content_type = "application/json"),
        (status = 404, description = "The local issuer is off (OperationOutcome)", body = serde_json::Value)))]
pub async fn local_issuer_discovery(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let issuer = local_issuer(&state)?;
    Ok(json_response(&issuer.discovery()))
}

/// `GET /local-issuer/jwks`
#[utoipa::path(get, path = "/fhir/local-issuer/jwks", tag = "system", security(()),
    responses((status = 200, description = "Public signing key of the built-in issuer", body = serde_json::Value, content_type = "application/json"),
        (status = 404, description = "The local issuer is off (OperationOutcome)", body = serde_json::Value)))]
pub async fn local_issuer_jwks(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let issuer = local_issuer(&state)?;
    Ok(json_response(&issuer.jwks()))
}

fn local_issuer(state: &AppState) -> Result<&crate::auth::local_issuer::LocalIssuer, ApiError> {
    state
        .local_issuer
        .as_deref()
        .ok_or_else(|| ApiError::new(404, "not-found", "The local issuer is off on this server"))
}

fn json_response(document: &Value) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(authorize: bool, grants: &[&str]) -> Provider {
        Provider {
            issuer: "https://idp.example".into(),
            jwks_uri: "https://idp.example/jwks".into(),
            authorization_endpoint: authorize.then(|| "https://idp.example/auth".into()),
            token_endpoint: Some("https://idp.example/token".into()),
            grant_types: grants.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn only_grant_types_with_an_endpoint_are_advertised() {
        let both = smart_document(
            Some(&provider(
                true,
                &["authorization_code", "client_credentials"],
            )),
            false,
        );
        assert_eq!(
            both["grant_types_supported"],
            json!(["authorization_code", "client_credentials"])
        );
        assert_eq!(both["authorization_endpoint"], "https://idp.example/auth");
        let no_authorize = smart_document(
            Some(&provider(
                false,
                &["authorization_code", "client_credentials"],
            )),
            false,
        );
        assert_eq!(
            no_authorize["grant_types_supported"],
            json!(["client_credentials"])
        );
        assert!(no_authorize.get("authorization_endpoint").is_none());
        let local = smart_document(
            Some(&Provider {
                issuer: "https://fhir.example/fhir/local-issuer".into(),
                grant_types: vec!["client_credentials".into()],
                authorization_endpoint: None,
                ..provider(false, &[])
            }),
            true,
        );
        // The local issuer grants system scopes only: `openid` or `patient/*.rs` are never
        // granted there, so they are not offered.
        assert_eq!(
            local["scopes_supported"],
            json!(["system/*.cruds", "system/*.rs"])
        );
        assert_eq!(
            local["grant_types_supported"],
            json!(["client_credentials"])
        );
        let none = smart_document(None, false);
        assert_eq!(none["grant_types_supported"], json!([]));
    }
}
