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
    with_origins(origins, req, next).await
}

/// [`cors`] for the listed `origins`.
async fn with_origins(
    origins: &[String],
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
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
    // Handler errors arrive here as answers already; what an inner middleware fails with (a
    // caught panic's 500) is rendered here, so that every refusal is readable too.
    match next.call(req).await {
        Ok(mut response) => {
            mark(response.headers_mut(), allowed);
            Ok(response.map_into_left_body())
        }
        Err(error) => {
            let mut answer = error.error_response();
            mark(answer.headers_mut(), allowed);
            Err(actix_web::error::InternalError::from_response(error, answer).into())
        }
    }
}

/// Adds `Origin` to `Vary` and, for a listed origin, says it may read the answer.
fn mark(headers: &mut header::HeaderMap, allowed: Option<HeaderValue>) {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{test, App};

    #[actix_web::test]
    async fn answers_that_reach_cors_as_errors_are_readable_by_listed_origins() {
        let app = test::init_service(
            App::new()
                .wrap(actix_web::middleware::from_fn(
                    super::super::panics::catch_panics,
                ))
                .wrap(actix_web::middleware::from_fn(|req, next| async move {
                    with_origins(&["https://app.example".to_owned()], req, next).await
                }))
                .route(
                    "/fhir/boom",
                    web::get().to(|| async { panic!("kaboom") as HttpResponse }),
                ),
        )
        .await;
        let request = test::TestRequest::get()
            .uri("/fhir/boom")
            .insert_header((header::ORIGIN, "https://app.example"))
            .to_request();
        let response = match test::try_call_service(&app, request).await {
            Ok(response) => response.into_parts().1.map_into_boxed_body(),
            Err(error) => error.error_response(),
        };
        assert_eq!(response.status(), 500);
        assert_eq!(
            response
                .headers()
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .map(HeaderValue::as_bytes),
            Some(&b"https://app.example"[..]),
            "a browser app must be able to read the 500 OperationOutcome"
        );
    }
}
