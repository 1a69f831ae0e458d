//! Errors as HTTP responses: every one is an OperationOutcome.

use crate::fhir::outcome::{operation_outcome, OutcomeIssue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

/// An error answered to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub issues: Vec<OutcomeIssue>,
    /// The methods the target supports, sent as `Allow` with a 405.
    pub allow: Option<&'static str>,
    /// The `WWW-Authenticate` challenge of a 401 or 403.
    pub challenge: Option<String>,
    /// Seconds to wait, sent as `Retry-After` with a 429.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with one issue.
    pub fn new(status: u16, code: &'static str, diagnostics: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::from_u16(status).expect("valid status"),
            issues: vec![OutcomeIssue::error(code, diagnostics)],
            allow: None,
            challenge: None,
            retry_after: None,
        }
    }

    /// An error with the given issues.
    pub fn with_issues(status: u16, issues: Vec<OutcomeIssue>) -> Self {
        ApiError {
            status: StatusCode::from_u16(status).expect("valid status"),
            issues,
            allow: None,
            challenge: None,
            retry_after: None,
        }
    }

    /// Locates the (first) issue at `expression`.
    pub fn at(mut self, expression: impl Into<String>) -> Self {
        if let Some(first) = self.issues.first_mut() {
            first.expression = Some(expression.into());
        }
        self
    }

    /// Sets the `Allow` header of a 405.
    pub fn allowing(mut self, methods: &'static str) -> Self {
        self.allow = Some(methods);
        self
    }

    /// Sets the `WWW-Authenticate` challenge.
    pub fn challenging(mut self, challenge: String) -> Self {
        self.challenge = Some(challenge);
        self
    }

    /// 404 for a resource that does not exist (or that the caller may not know exists).
    pub fn not_found(resource_type: &str, id: &str) -> Self {
        ApiError::new(
            404,
            "not-found",
            format!("{resource_type}/{id} is not known"),
        )
    }

    /// 500: logs the cause under a fresh request id and tells the client only that id.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let request_id = uuid::Uuid::new_v4();
        tracing::error!(%request_id, error = %cause, "request failed");
        ApiError::new(
            500,
            "exception",
            format!("Internal error; request id {request_id}"),
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let first = self.issues.first().map(|i| i.diagnostics.as_str());
        write!(f, "{}: {}", self.status, first.unwrap_or_default())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response.content_type(super::negotiate::FHIR_JSON);
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            // HTTP requires Allow with a 405; reading is what every FHIR path supports.
            response.insert_header(("Allow", self.allow.unwrap_or("GET")));
        }
        if let Some(challenge) = &self.challenge {
            response.insert_header(("WWW-Authenticate", challenge.as_str()));
        }
        if let Some(seconds) = self.retry_after {
            response.insert_header(("Retry-After", seconds.to_string()));
        }
        response.body(operation_outcome(&self.issues).to_string())
    }
}

impl From<crate::store::StoreError> for ApiError {
    /// A busy database is a 503 the client may retry; any other storage failure is a 500.
    fn from(e: crate::store::StoreError) -> Self {
        if e.is_busy() {
            tracing::warn!(error = %e, "database busy");
            return ApiError::new(
                503,
                "transient",
                "The database is busy; nothing was changed, retry shortly",
            );
        }
        ApiError::internal(e)
    }
}

impl From<crate::records::DataError> for ApiError {
    fn from(e: crate::records::DataError) -> Self {
        match e {
            crate::records::DataError::Store(e) => e.into(),
            crate::records::DataError::Slowed(seconds) => {
                let mut error = ApiError::new(
                    429,
                    "throttled",
                    "You have read more patients' records this hour than allowed; retry later",
                );
                error.retry_after = Some(seconds);
                error
            }
        }
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        ApiError::internal(e)
    }
}
