//! A panic inside a handler must never leave a client without an answer: it becomes a 500
//! OperationOutcome carrying a request id, logged with the panic's message.

use super::error::ApiError;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;

/// Middleware: runs the rest of the chain, turning a panic into a 500 OperationOutcome.
pub async fn catch_panics(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    match AssertUnwindSafe(next.call(req)).catch_unwind().await {
        Ok(response) => response.map(ServiceResponse::map_into_boxed_body),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            // Returned as an error: actix renders it with ApiError's OperationOutcome.
            Err(ApiError::internal(format!("panic: {message}")).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{test, web, App, HttpResponse};

    #[actix_web::test]
    async fn a_panicking_handler_answers_500_with_an_operation_outcome() {
        let app = test::init_service(
            App::new()
                .wrap(actix_web::middleware::from_fn(catch_panics))
                .route(
                    "/boom",
                    web::get().to(|| async { panic!("kaboom") as HttpResponse }),
                )
                .route(
                    "/fine",
                    web::get().to(|| async { HttpResponse::Ok().body("ok") }),
                ),
        )
        .await;
        let request = test::TestRequest::get().uri("/boom").to_request();
        // The HTTP dispatcher renders a middleware error with its ResponseError impl.
        let error = test::try_call_service(&app, request)
            .await
            .expect_err("an error");
        let response = error.error_response();
        assert_eq!(response.status(), 500);
        let bytes = actix_web::body::to_bytes(response.into_body())
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["resourceType"], "OperationOutcome");
        assert!(body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("request id"));
        assert!(
            !body.to_string().contains("kaboom"),
            "panic details stay in the log"
        );
        let response =
            test::call_service(&app, test::TestRequest::get().uri("/fine").to_request()).await;
        assert_eq!(response.status(), 200);
    }
}
