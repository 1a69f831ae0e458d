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
    if let Some(format) = params.one("_format")? {
        // `+` in an unencoded `_format=application/fhir+json` arrives as a space.
        let content_type = match essence(format).as_str() {
            "application/fhir+json"
            | "application/fhir json"
            | "json"
            | "application/json+fhir" => FHIR_JSON,
            "application/json" => JSON,
            other => return Err(not_acceptable(other)),
        };
        return Ok(Format {
            content_type,
            pretty,
        });
    }
    let ranges = match req.headers().get("Accept") {
        None => vec![],
        Some(h) => accept_ranges(
            h.to_str()
                .map_err(|_| ApiError::new(400, "invalid", "The Accept header is not readable"))?,
        ),
    };
    if ranges.is_empty() {
        return Ok(Format {
            content_type: FHIR_JSON,
            pretty,
        });
    }
    // The offer whose most specific matching range has the highest quality; FHIR JSON on a tie.
    let mut best: Option<(f32, &'static str)> = None;
    for (offer, content_type) in [
        ("application/fhir+json", FHIR_JSON),
        ("application/json", JSON),
    ] {
        let q = quality(&ranges, offer);
        if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
            best = Some((q, content_type));
        }
    }
    match best {
        Some((_, content_type)) => Ok(Format {
            content_type,
            pretty,
        }),
        None => {
            let listed: Vec<&str> = ranges.iter().map(|(m, _)| m.as_str()).collect();
            Err(not_acceptable(&listed.join(", ")))
        }
    }
}

/// Plain JSON, for clients that ask for it by name.
const JSON: &str = "application/json; charset=utf-8";

fn not_acceptable(requested: &str) -> ApiError {
    ApiError::new(
        406,
        "not-supported",
        format!("Cannot answer in {requested}; Carnet speaks application/fhir+json"),
    )
}

/// The media ranges of an `Accept` header with their quality (`q`, 1 by default), FHIR's
/// aliases of FHIR JSON folded into `application/fhir+json`.
fn accept_ranges(header: &str) -> Vec<(String, f32)> {
    header
        .split(',')
        .filter_map(|range| {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            if media.is_empty() {
                return None;
            }
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .map_or(Some(1.0), |(_, v)| v.trim().parse::<f32>().ok())
                .filter(|q| (0.0..=1.0).contains(q))
                .unwrap_or(0.0);
            let media = match media.as_str() {
                "application/json+fhir" | "application/fhir json" | "json" => {
                    "application/fhir+json".to_owned()
                }
                _ => media,
            };
            Some((media, q))
        })
        .collect()
}

/// The quality `ranges` give `offer`: that of the most specific range matching it (RFC 9110
/// 12.5.1), 0 when none does.
fn quality(ranges: &[(String, f32)], offer: &str) -> f32 {
    let kind = offer.split('/').next().unwrap_or("");
    let specificity = |range: &str| {
        if range == offer {
            Some(3)
        } else if range.strip_suffix("/*") == Some(kind) {
            Some(2)
        } else if range == "*/*" {
            Some(1)
        } else {
            None
        }
    };
    ranges
        .iter()
        .filter_map(|(range, q)| specificity(range).map(|s| (s, *q)))
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)))
        .map_or(0.0, |(_, q)| q)
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
pub fn is_fhir_json(media: &str) -> bool {
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

/// The `charset` parameter of the body's Content-Type, lower case, unquoted.
fn body_charset(req: &HttpRequest) -> Option<String> {
    let header = req.headers().get("Content-Type")?.to_str().ok()?;
    header
        .split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
        .map(|(_, v)| v.trim().trim_matches('"').to_ascii_lowercase())
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
        .is_some_and(|accept| {
            accept_ranges(accept)
                .iter()
                .any(|(m, q)| *q > 0.0 && is_fhir_json(m))
        })
}

/// Checks that a request body is FHIR JSON in UTF-8 (415 otherwise).
pub fn require_json_body(req: &HttpRequest) -> Result<(), ApiError> {
    if let Some(charset) = body_charset(req).filter(|c| c != "utf-8" && c != "utf8") {
        return Err(ApiError::new(
            415,
            "not-supported",
            format!("charset {charset} is not supported; FHIR JSON is UTF-8"),
        ));
    }
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
