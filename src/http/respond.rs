//! Building responses that carry one resource version: headers and the `Prefer` header.

use super::error::ApiError;
use super::negotiate::Format;
use crate::fhir::json;
use crate::fhir::outcome::{operation_outcome, OutcomeIssue};
use crate::fhir::resource::{http_date, instant};
use crate::store::Version;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};

/// What the client asked to get back after a write (`Prefer: return=…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Return {
    Minimal,
    Representation,
    OperationOutcome,
}

impl Return {
    /// Reads `Prefer: return=…`; representation by default.
    pub fn of(req: &HttpRequest) -> Result<Return, ApiError> {
        Ok(match preference(req, "return")?.as_deref() {
            Some("minimal") => Return::Minimal,
            Some("OperationOutcome") => Return::OperationOutcome,
            _ => Return::Representation,
        })
    }
}

/// Whether `Prefer: handling=lenient` asks to ignore unknown search parameters (strict, the
/// default, refuses them).
pub fn lenient(req: &HttpRequest) -> Result<bool, ApiError> {
    Ok(preference(req, "handling")?.as_deref() == Some("lenient"))
}

/// The last value of the `Prefer` preference `name`. RFC 7240: parameters after `;` and
/// unknown preferences are ignored.
fn preference(req: &HttpRequest, name: &str) -> Result<Option<String>, ApiError> {
    let mut chosen = None;
    for header in req.headers().get_all("Prefer") {
        let text = header
            .to_str()
            .map_err(|_| ApiError::new(400, "invalid", "The Prefer header is not readable"))?;
        for preference in text.split(',').map(str::trim) {
            let preference = preference.split(';').next().unwrap_or("").trim();
            if let Some((key, value)) = preference.split_once('=') {
                if key.trim() == name {
                    chosen = Some(value.trim().trim_matches('"').to_owned());
                }
            }
        }
    }
    Ok(chosen)
}

/// `W/"{version}"`.
pub fn etag(version_id: i64) -> String {
    format!("W/\"{version_id}\"")
}

/// Reads an `If-Match` header (`W/"3"` or `"3"`); 400 when malformed.
pub fn if_match(req: &HttpRequest) -> Result<Option<i64>, ApiError> {
    let Some(header) = req.headers().get("If-Match") else {
        return Ok(None);
    };
    let bad = || ApiError::new(400, "invalid", "If-Match must be an ETag such as W/\"3\"");
    let text = header.to_str().map_err(|_| bad())?.trim();
    let quoted = text.strip_prefix("W/").unwrap_or(text);
    let inner = quoted
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .ok_or_else(bad)?;
    version_number(inner).map(Some).ok_or_else(bad)
}

/// A version id as the server writes them: digits only (no sign, no spaces).
pub fn version_number(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The body of a stored version, rendered in `format`.
pub fn render_body(version: &Version, format: Format) -> Vec<u8> {
    if format.pretty {
        json::indent(&String::from_utf8_lossy(&version.body)).into_bytes()
    } else {
        version.body.clone()
    }
}

/// A response carrying `version` with its ETag and Last-Modified (and Location when given).
pub fn resource(
    status: StatusCode,
    version: &Version,
    format: Format,
    location: Option<String>,
    returning: Return,
) -> HttpResponse {
    let mut response = HttpResponse::build(status);
    response
        .insert_header(("ETag", etag(version.version_id)))
        .insert_header(("Last-Modified", http_date(version.last_updated)));
    if let Some(location) = location {
        response.insert_header(("Location", location));
    }
    match returning {
        Return::Minimal => response.finish(),
        Return::Representation => response
            .content_type(format.content_type)
            .body(render_body(version, format)),
        Return::OperationOutcome => {
            response
                .content_type(format.content_type)
                .body(information_body(
                    format!(
                        "{}/{} version {} stored at {}",
                        version.resource_type,
                        version.id,
                        version.version_id,
                        instant(version.last_updated)
                    ),
                    format,
                ))
        }
    }
}

/// A 200 carrying one informational OperationOutcome (`Prefer: return=OperationOutcome`).
pub fn information(diagnostics: String, format: Format) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(format.content_type)
        .body(information_body(diagnostics, format))
}

fn information_body(diagnostics: String, format: Format) -> String {
    let outcome = operation_outcome(&[OutcomeIssue {
        severity: "information",
        code: "informational",
        diagnostics,
        expression: None,
    }]);
    json::to_text(&outcome, format.pretty)
}
