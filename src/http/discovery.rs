//! The public documents a client reads before it has a token: the SMART configuration and the
//! local issuer's OpenID Connect discovery document and key set.

use super::error::ApiError;
use super::AppState;
use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

/// `GET /.well-known/smart-configuration`
#[utoipa::path(get, path = "/fhir/.well-known/smart-configuration", tag = "system", security(()),
    responses((status = 200, description = "SMART App Launch configuration: issuer, keys, endpoints, capabilities, scopes", body = serde_json::Value, content_type = "application/json")))]
pub async fn smart_configuration(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let authenticator = state.authenticator.clone();
    let provider = web::block(move || authenticator.primary_provider()).await?;
    let mut document = json!({
        "capabilities": [
            "context-standalone-patient",
            "permission-patient",
            "permission-user",
            "permission-v1",
            "permission-v2",
        ],
        "scopes_supported": [
            "openid", "fhirUser", "launch/patient",
            "patient/*.cruds", "patient/*.rs", "user/*.cruds", "user/*.rs", "system/*.cruds",
            "system/*.rs",
        ],
        "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": ["authorization_code", "client_credentials"],
    });
    if let Some(provider) = provider {
        let fields = document.as_object_mut().expect("an object");
        fields.insert("issuer".into(), json!(provider.issuer));
        fields.insert("jwks_uri".into(), json!(provider.jwks_uri));
        if let Some(endpoint) = provider.authorization_endpoint {
            fields.insert("authorization_endpoint".into(), json!(endpoint));
        }
        if let Some(endpoint) = provider.token_endpoint {
            fields.insert("token_endpoint".into(), json!(endpoint));
        }
    }
    Ok(json_response(&document))
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
