//! Content negotiation (`Accept`, `_format`, `_pretty`) and request parameters.

use super::error::ApiError;
use actix_web::HttpRequest;

/// The FHIR JSON media type.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// How to render a response.
#[derive(Debug, Clone, Copy)]
pub struct Format {
    /// The Content-Type of the response.
    pub content_type: &'static str,
    pub pretty: bool,
}

/// Query parameters, in order, decoded.
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// Decodes the request's query string.
    pub fn of(req: &HttpRequest) -> Result<Params, ApiError> {
        serde_urlencoded::from_str(req.query_string())
            .map(Params)
            .map_err(|e| ApiError::new(400, "invalid", format!("Malformed query string: {e}")))
    }

    /// The single value of `name`; a repeated parameter is an error.
    pub fn one(&self, name: &str) -> Result<Option<&str>, ApiError> {
        let mut values = self
            .0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(
                ApiError::new(400, "invalid", format!("Parameter {name} is repeated")).at(name),
            );
        }
        Ok(first)
    }

    /// Refuses any parameter outside `allowed` (strict handling: nothing is silently ignored).
    pub fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        match self.0.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            Some((k, _)) => Err(ApiError::new(
                400,
                "not-supported",
                format!("Parameter {k} is not supported by this interaction"),
            )
            .at(k.clone())),
            None => Ok(()),
        }
    }
}

/// Parameters every interaction accepts.
pub const FORMAT_PARAMS: [&str; 2] = ["_format", "_pretty"];

/// Picks the response format from `_format` (which wins) or `Accept`; 406 when nothing fits.
pub fn negotiate(req: &HttpRequest, params: &Params) -> Result<Format, ApiError> {
    let pretty = match params.one("_pretty")? {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::new(
                400,
                "invalid",
                format!("_pretty must be true or false, not {other:?}"),
            )
            .at("_pretty"))
        }
    };
    let requested: Vec<String> = match params.one("_format")? {
        Some(f) => vec![f.to_owned()],
        None => match req.headers().get("Accept") {
            None => vec![],
            Some(h) => h
                .to_str()
                .map_err(|_| ApiError::new(400, "invalid", "The Accept header is not readable"))?
                .split(',')
                .map(essence)
                .filter(|m| !m.is_empty())
                .collect(),
        },
    };
    if requested.is_empty() {
        return Ok(Format {
            content_type: FHIR_JSON,
            pretty,
        });
    }
    for media in &requested {
        let content_type = match media.as_str() {
            // `+` in an unencoded `_format=application/fhir+json` arrives as a space.
            "application/fhir+json"
            | "application/fhir json"
            | "json"
            | "application/json+fhir"
            | "application/*"
            | "*/*" => FHIR_JSON,
            "application/json" => "application/json; charset=utf-8",
            _ => continue,
        };
        return Ok(Format {
            content_type,
            pretty,
        });
    }
    Err(ApiError::new(
        406,
        "not-supported",
        format!(
            "Cannot answer in {}; Carnet speaks application/fhir+json",
            requested.join(", ")
        ),
    ))
}

/// A media type without its parameters, lower case (`Application/JSON; q=1` → `application/json`).
fn essence(media: &str) -> String {
    media
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Media types that mean FHIR JSON in a request or an `Accept` header.
fn is_fhir_json(media: &str) -> bool {
    matches!(
        media,
        "application/fhir+json" | "application/json" | "application/json+fhir"
    )
}

/// The request body's media type (without parameters), lower case.
pub fn body_media_type(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get("Content-Type")
        .and_then(|h| h.to_str().ok())
        .map(essence)
}

/// Whether a Binary read asks for the FHIR JSON form (`_format`, or FHIR JSON named in
/// `Accept`) rather than the raw content.
pub fn wants_fhir_binary(req: &HttpRequest, params: &Params) -> bool {
    if params.0.iter().any(|(k, _)| k == "_format") {
        return true;
    }
    req.headers()
        .get("Accept")
        .and_then(|h| h.to_str().ok())
        .is_some_and(|accept| accept.split(',').map(essence).any(|m| is_fhir_json(&m)))
}

/// Checks that a request body is FHIR JSON (415 otherwise).
pub fn require_json_body(req: &HttpRequest) -> Result<(), ApiError> {
    match body_media_type(req).as_deref() {
        Some(media) if is_fhir_json(media) => Ok(()),
        Some(other) => Err(ApiError::new(
            415,
            "not-supported",
            format!("Content-Type {other} is not supported; send application/fhir+json"),
        )),
        None => Err(ApiError::new(
            415,
            "not-supported",
            "Content-Type is required; send application/fhir+json",
        )),
    }
}
