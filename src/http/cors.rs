//! CORS for browser apps (`[cors] allowed_origins`): preflights are answered here, before the
//! authentication gate (a browser never sends a token with them), and answers to a listed
//! origin say it may read them. Only exact, listed origins are echoed: no wildcard, and no
//! credentials (tokens travel in `Authorization`, not in cookies).
//!
//! Written here rather than with actix-cors: the rules are a handful of headers, and this keeps
//! preflights outside the gate with the same origin list the CapabilityStatement reports.

use super::AppState;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

/// Methods of the FHIR API and the token endpoint.
const METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE";
/// Request headers a FHIR client sends beyond the CORS-safelisted ones.
const HEADERS: &str =
    "Authorization, Content-Type, Accept, If-Match, If-None-Exist, If-None-Match, Prefer";
/// Response headers a FHIR client reads.
const EXPOSED: &str = "Location, ETag, Content-Location, Last-Modified";
/// How long a browser may reuse a preflight answer, in seconds.
const MAX_AGE: &str = "600";

/// Middleware: answers preflights and marks answers readable by listed origins. Does nothing
/// when no origin is listed, or outside `/fhir`.
pub async fn cors(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let origins = state
        .as_ref()
        .map(|s| s.config.cors.allowed_origins.as_slice())
        .unwrap_or_default();
    let path = req.path();
    if origins.is_empty() || !(path == "/fhir" || path.starts_with("/fhir/")) {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let origin = req.headers().get(header::ORIGIN).cloned();
    let allowed = origin
        .as_ref()
        .filter(|o| {
            origins
                .iter()
                .any(|listed| listed.as_bytes() == o.as_bytes())
        })
        .cloned();
    let preflight = req.method() == Method::OPTIONS
        && origin.is_some()
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let mut answer = HttpResponse::NoContent();
        answer.append_header((header::VARY, "Origin"));
        if let Some(origin) = allowed {
            answer
                .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
                .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, METHODS))
                .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, HEADERS))
                .insert_header((header::ACCESS_CONTROL_MAX_AGE, MAX_AGE));
        }
        return Ok(req.into_response(answer.finish()).map_into_right_body());
    }
    // Handler errors arrive here as answers already, so refusals are readable too.
    let mut response = next.call(req).await?.map_into_left_body();
    let headers = response.headers_mut();
    // One `Vary` line, whatever the handler already varies on.
    let mut vary: Vec<String> = headers
        .get_all(header::VARY)
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    vary.push("Origin".to_owned());
    if let Ok(value) = HeaderValue::from_str(&vary.join(", ")) {
        headers.insert(header::VARY, value);
    }
    if let Some(origin) = allowed {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED),
        );
    }
    Ok(response)
}
