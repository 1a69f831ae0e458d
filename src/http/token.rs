//! `POST /local-issuer/token`: the local issuer's OAuth 2.0 token endpoint (SMART Backend
//! Services). Answers are OAuth JSON (RFC 6749 §5.1, §5.2), never cached.

use super::error::ApiError;
use super::AppState;
use crate::auth::backend_services::OAuthError;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

/// A token request is a few short parameters and one assertion (at most 16 KB): anything much
/// larger is refused before it is parsed.
const MAX_FORM_BYTES: u64 = 64 * 1024;

/// `POST /local-issuer/token`
#[utoipa::path(post, path = "/fhir/local-issuer/token", tag = "system", security(()),
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "grant_type=client_credentials, scope, client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer, client_assertion (a JWT signed with the client's registered key)"),
    responses((status = 200, description = "An access token (access_token, token_type, expires_in, scope)", body = serde_json::Value, content_type = "application/json"),
        (status = 400, description = "OAuth error: invalid_request, invalid_scope, unauthorized_client, unsupported_grant_type", body = serde_json::Value, content_type = "application/json"),
        (status = 401, description = "OAuth error invalid_client: the client assertion was refused", body = serde_json::Value, content_type = "application/json"),
        (status = 404, description = "The local issuer is off (OperationOutcome)", body = serde_json::Value, content_type = "application/fhir+json")))]
pub async fn token(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Some(service) = state.backend_services.clone() else {
        return Err(ApiError::new(
            404,
            "not-found",
            "The local issuer is off on this server",
        ));
    };
    let form_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_type {
        return Ok(refusal(OAuthError {
            status: 400,
            error: "invalid_request",
            description: "send the parameters as application/x-www-form-urlencoded".into(),
        }));
    }
    let body = match super::body::read(&req, payload, MAX_FORM_BYTES).await {
        Ok(body) => body,
        Err(e) => {
            return Ok(refusal(OAuthError {
                status: e.status.as_u16(),
                error: "invalid_request",
                description: format!(
                    "the form could not be read, or is larger than {MAX_FORM_BYTES} bytes"
                ),
            }))
        }
    };
    let form: Vec<(String, String)> = match serde_urlencoded::from_bytes(&body) {
        Ok(form) => form,
        Err(_) => {
            return Ok(refusal(OAuthError {
                status: 400,
                error: "invalid_request",
                description: "the form cannot be decoded".into(),
            }))
        }
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let answer = web::block(move || service.grant(&form, now)).await?;
    Ok(match answer {
        Ok(grant) => {
            tracing::info!(target: "carnet::auth", client = ?grant.client_id, scope = %grant.scope, expires_in = grant.expires_in, "token issued");
            no_store(HttpResponse::Ok()).body(
                json!({
                    "access_token": grant.access_token,
                    "token_type": "bearer",
                    "expires_in": grant.expires_in,
                    "scope": grant.scope,
                })
                .to_string(),
            )
        }
        Err(error) => refusal(error),
    })
}

fn refusal(error: OAuthError) -> HttpResponse {
    tracing::warn!(target: "carnet::auth", error = error.error, reason = %error.description, "token request refused");
    let status = actix_web::http::StatusCode::from_u16(error.status)
        .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST);
    no_store(HttpResponse::build(status))
        .body(json!({"error": error.error, "error_description": error.description}).to_string())
}

/// Token answers must not be cached (RFC 6749 §5.1).
fn no_store(mut builder: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    builder
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"));
    builder
}
