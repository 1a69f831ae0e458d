//! The authentication gate: every request under `/fhir` except the public documents passes
//! here, and reaches a handler only with an [`Access`] in its extensions.

use super::error::ApiError;
use super::AppState;
use crate::auth::{Access, Denial};
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};

/// Middleware: authenticates the bearer token, or answers 401/403 without calling the handler.
pub async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .expect("AppState is registered");
    // An unreadable (non-ASCII) header becomes an empty one, and two headers are refused
    // rather than one of them chosen: both are refused as malformed.
    let mut headers = req
        .headers()
        .get_all(actix_web::http::header::AUTHORIZATION);
    let header = match (headers.next(), headers.next()) {
        (None, _) => None,
        (Some(value), None) => Some(value.to_str().unwrap_or_default().to_owned()),
        (Some(_), Some(_)) => Some(String::new()),
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    // Off the executor only when the issuer's keys may have to be fetched.
    let decided = match state
        .authenticator
        .authenticate_at_once(header.as_deref(), now)
    {
        Some(decided) => decided,
        None => web::block(move || state.authenticator.authenticate(header.as_deref(), now))
            .await
            .map_err(ApiError::from)?,
    };
    match decided {
        Ok(access) => {
            req.extensions_mut().insert(access);
            Ok(next.call(req).await?.map_into_left_body())
        }
        // Answered here (not as an error) so that the access log records it like any other.
        Err(denial) => {
            let response = actix_web::ResponseError::error_response(&refused(denial));
            Ok(req.into_response(response).map_into_right_body())
        }
    }
}

/// The answer to a refused token: RFC 6750's `WWW-Authenticate` and an OperationOutcome.
pub fn refused(denial: Denial) -> ApiError {
    match denial {
        Denial::Unauthenticated { error, message } => {
            let challenge = match error {
                None => r#"Bearer realm="carnet""#.to_owned(),
                Some(code) => format!(
                    r#"Bearer realm="carnet", error="{code}", error_description="{}""#,
                    quoted(&message)
                ),
            };
            ApiError::new(401, "login", message).challenging(challenge)
        }
        Denial::Incomplete { message } => ApiError::new(400, "invalid", message),
        Denial::Forbidden { message } => {
            let challenge = format!(
                r#"Bearer realm="carnet", error="insufficient_scope", error_description="{}""#,
                quoted(&message)
            );
            ApiError::new(403, "forbidden", message).challenging(challenge)
        }
    }
}

/// A header quoted-string may not hold `"` or `\` unescaped, nor non-ASCII.
fn quoted(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii() && !c.is_ascii_control())
        .map(|c| if c == '"' || c == '\\' { '\'' } else { c })
        .collect()
}

/// A refusal of the consent engine: 403 with its text.
impl From<crate::consent::Denied> for ApiError {
    fn from(denied: crate::consent::Denied) -> ApiError {
        refused(Denial::Forbidden { message: denied.0 })
    }
}

/// Handlers take the caller as an argument; outside the gate there is none, and the request is
/// refused rather than served anonymously.
impl FromRequest for Access {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Access, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(req.extensions().get::<Access>().cloned().ok_or_else(|| {
            refused(Denial::Unauthenticated {
                error: None,
                message: "this request needs an access token".to_owned(),
            })
        }))
    }
}
