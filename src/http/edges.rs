//! What every request goes through before and after its handler: `HEAD` answered as `GET`
//! without a body, a trailing slash ignored, a deadline on the body, and every error answered
//! with an OperationOutcome, whoever raised it (an extractor, the router, actix itself).
//!
//! What actix-http's HTTP/1 codec answers itself before any application code runs (a head that
//! does not parse, too large or too late) is given its OperationOutcome one layer down, on the
//! connection: see `connection`.

use super::error::ApiError;
use super::AppState;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::http::{Method, StatusCode, Uri};
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes};
use actix_web::{HttpMessage, ResponseError};
use futures_util::{FutureExt, Stream};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Middleware: see the module documentation.
pub async fn edges(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // HTTP/1 still knows the request was HEAD: it sends the GET answer's headers, no body.
    if req.method() == Method::HEAD {
        req.head_mut().method = Method::GET;
    }
    trim_trailing_slash(&mut req);
    if let Some(state) = req.app_data::<web::Data<AppState>>() {
        let limit = Duration::from_secs(state.config.limits.body_timeout_seconds);
        let payload = req.take_payload();
        req.set_payload(Payload::Stream {
            payload: Box::pin(Deadline::new(payload, limit)),
        });
    }
    match next.call(req).await {
        Err(error) if error.as_error::<ApiError>().is_some() => Err(error),
        Err(error) => {
            let status = error.as_response_error().status_code();
            Err(outcome_for(status, error.to_string()).into())
        }
        Ok(response) if is_bare_error(response.response()) => {
            let message = response
                .response()
                .error()
                .map(|e| e.to_string())
                .unwrap_or_default();
            let status = response.status();
            let mut answer = outcome_for(status, message).error_response();
            for (name, value) in response.headers() {
                if name != CONTENT_TYPE && name != CONTENT_LENGTH {
                    answer.headers_mut().append(name.clone(), value.clone());
                }
            }
            Ok(response.into_response(answer))
        }
        Ok(response) => Ok(response.map_into_boxed_body()),
    }
}

/// A 4xx/5xx whose body is not JSON. Carnet's own errors are FHIR JSON; the token endpoint's
/// are OAuth errors in plain JSON (RFC 6749 §5.2), which OAuth clients must get as they are.
fn is_bare_error<B>(response: &actix_web::HttpResponse<B>) -> bool {
    let json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|media| media == "application/fhir+json" || media == "application/json");
    (response.status().is_client_error() || response.status().is_server_error()) && !json
}

/// An OperationOutcome for an error raised outside Carnet's handlers.
fn outcome_for(status: StatusCode, message: String) -> ApiError {
    let code = match status.as_u16() {
        404 => "not-found",
        405 | 415 => "not-supported",
        408 => "timeout",
        413 | 414 | 431 => "too-costly",
        500.. => "exception",
        _ => "invalid",
    };
    if status.is_server_error() {
        return ApiError::internal(message);
    }
    let reason = status.canonical_reason().unwrap_or("Error");
    let diagnostics = if message.is_empty() {
        reason.to_owned()
    } else {
        format!("{reason}: {message}")
    };
    ApiError::new(status.as_u16(), code, diagnostics)
}

/// `GET Patient/?…` is `GET Patient?…`: a trailing slash names the same FHIR path.
fn trim_trailing_slash(req: &mut ServiceRequest) {
    let path = req.path();
    if path.len() <= 1 || !path.ends_with('/') {
        return;
    }
    let trimmed = path.trim_end_matches('/');
    let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
    let path_and_query = match req.query_string() {
        "" => trimmed.to_owned(),
        query => format!("{trimmed}?{query}"),
    };
    let mut parts = req.uri().clone().into_parts();
    let Ok(path_and_query) = path_and_query.parse() else {
        return;
    };
    parts.path_and_query = Some(path_and_query);
    let Ok(uri) = Uri::from_parts(parts) else {
        return;
    };
    req.match_info_mut().get_mut().update(&uri);
    req.head_mut().uri = uri;
}

/// A request body that fails with [`PayloadError::Io`] (`TimedOut`) once its deadline passes:
/// a client trickling its body cannot hold a connection and a handler forever.
struct Deadline {
    inner: Payload,
    timer: Pin<Box<actix_web::rt::time::Sleep>>,
    expired: bool,
}

impl Deadline {
    fn new(inner: Payload, limit: Duration) -> Deadline {
        Deadline {
            inner,
            timer: Box::pin(actix_web::rt::time::sleep(limit)),
            expired: false,
        }
    }
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = Pin::new(&mut this.inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        if this.timer.poll_unpin(cx).is_ready() {
            this.expired = true;
            return Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the body did not arrive in time",
            )))));
        }
        Poll::Pending
    }
}

/// The error answered for a body that could not be read: 408 when it came too slowly.
pub fn payload_error(error: PayloadError) -> ApiError {
    match &error {
        PayloadError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => ApiError::new(
            408,
            "timeout",
            "The request body did not arrive within limits.body_timeout_seconds",
        ),
        _ => ApiError::new(400, "invalid", format!("Cannot read the body: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{test, web, App, HttpResponse};

    /// What a client receives, whether the service answered or failed.
    macro_rules! answer {
        ($app:expr, $method:expr, $uri:expr) => {{
            let request = test::TestRequest::default()
                .method($method)
                .uri($uri)
                .to_request();
            let response = match test::try_call_service(&$app, request).await {
                Ok(response) => response.into_parts().1,
                Err(error) => error.error_response(),
            };
            let content_type = response.headers().get(CONTENT_TYPE).cloned();
            let status = response.status();
            let body = actix_web::body::to_bytes(response.into_body())
                .await
                .unwrap_or_default();
            (status, content_type, body)
        }};
    }

    #[actix_web::test]
    async fn errors_raised_by_actix_itself_become_operation_outcomes() {
        let app = test::init_service(
            App::new()
                .wrap(actix_web::middleware::from_fn(edges))
                .route(
                    "/number/{n}",
                    web::get().to(|n: web::Path<u32>| async move { n.to_string() }),
                )
                .route(
                    "/json",
                    web::post().to(|v: web::Json<serde_json::Value>| async move { v.to_string() }),
                )
                .route(
                    "/oauth",
                    web::post().to(|| async {
                        HttpResponse::Unauthorized()
                            .content_type("application/json")
                            .body(r#"{"error":"invalid_client"}"#)
                    }),
                )
                // No default service: actix answers other methods with a bare 405.
                .service(web::resource("/only-get").route(web::get().to(HttpResponse::Ok))),
        )
        .await;
        for (method, uri, status, code) in [
            (Method::GET, "/number/x", 404, "not-found"),
            (Method::POST, "/json", 400, "invalid"),
            (Method::POST, "/only-get", 405, "not-supported"),
            (Method::GET, "/nowhere", 404, "not-found"),
        ] {
            let (got, content_type, body) = answer!(app, method, uri);
            assert_eq!(got.as_u16(), status, "{uri}");
            assert_eq!(
                content_type.as_ref().and_then(|t| t.to_str().ok()),
                Some(super::super::negotiate::FHIR_JSON),
                "{uri}"
            );
            let outcome: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(outcome["resourceType"], "OperationOutcome", "{uri}");
            assert_eq!(outcome["issue"][0]["code"], code, "{uri}");
        }
        let (status, _, body) = answer!(app, Method::POST, "/oauth");
        assert_eq!(status, 401);
        assert_eq!(
            &body[..],
            br#"{"error":"invalid_client"}"#,
            "an OAuth error stays one"
        );
        let (status, _, body) = answer!(app, Method::HEAD, "/number/7");
        assert_eq!(status, 200, "HEAD is served by the GET route");
        assert_eq!(
            &body[..],
            b"7",
            "(the HTTP/1 codec, not the app, drops a HEAD body)"
        );
        let (status, _, body) = answer!(app, Method::GET, "/number/8/");
        assert_eq!((status.as_u16(), &body[..]), (200, &b"8"[..]));
    }
}
