//! The REST interactions: create, read, vread, update, delete and history.

use super::error::ApiError;
use super::negotiate::{
    body_media_type, negotiate, require_json_body, wants_fhir_binary, Params, FORMAT_PARAMS,
};
use super::respond::{self, Return};
use super::{body, AppState};
use crate::fhir::conditional::{self, Condition};
use crate::fhir::incoming::{self, Incoming};
use crate::fhir::outcome::OutcomeIssue;
use crate::fhir::registry::{self, ResourceKind};
use crate::fhir::resource::{is_valid_id, parse_instant};
use crate::fhir::subset::{self, Subset};
use crate::fhir::writes::{Created, PatchOutcome, WriteError};
use crate::fhir::{binary, bundle, json, patch, validate};
use crate::store::{HistoryScope, Version};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

type Result<T> = std::result::Result<T, ApiError>;

/// The registered kind for a URL type segment; unknown types are 404.
fn kind_of(resource_type: &str) -> Result<&'static ResourceKind> {
    registry::lookup(resource_type).ok_or_else(|| {
        ApiError::new(
            404,
            "not-supported",
            format!("Resource type {resource_type} is not served here"),
        )
    })
}

fn writable(kind: &ResourceKind) -> Result<()> {
    if kind.server_written {
        return Err(ApiError::new(
            405,
            "forbidden",
            format!("{} resources are written by the server only", kind.name),
        ));
    }
    Ok(())
}

/// The criteria of a conditional interaction: the `If-None-Exist` header of a create, or the
/// query of `PUT/DELETE [type]?…` (less the format parameters).
fn condition_of(kind: &ResourceKind, criteria: Vec<(String, String)>) -> Result<Condition> {
    let criteria: Vec<(String, String)> = criteria
        .into_iter()
        .filter(|(k, _)| !FORMAT_PARAMS.contains(&k.as_str()))
        .collect();
    conditional::parse(kind, &criteria).map_err(|issue| ApiError::with_issues(400, vec![issue]))
}

fn if_none_exist(req: &HttpRequest, kind: &ResourceKind) -> Result<Option<Condition>> {
    let Some(header) = req.headers().get("If-None-Exist") else {
        return Ok(None);
    };
    let text = header
        .to_str()
        .map_err(|_| ApiError::new(400, "invalid", "If-None-Exist is not readable"))?;
    let query = text.split_once('?').map_or(text, |(_, q)| q);
    let criteria: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|e| ApiError::new(400, "invalid", format!("If-None-Exist is not a query: {e}")))?;
    condition_of(kind, criteria).map(Some)
}

/// Reads and validates the body of a create or update. A Binary may also come as raw bytes
/// with their own content type.
async fn parse_body(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    kind: &ResourceKind,
    url_id: Option<&str>,
) -> Result<Incoming> {
    let limits = &state.config.limits;
    let media = body_media_type(req);
    let incoming = match media {
        Some(_) if kind.name == "Binary" && require_json_body(req).is_err() => {
            // The whole header (parameters such as charset included) is the contentType.
            let content_type = req
                .headers()
                .get("Content-Type")
                .and_then(|h| h.to_str().ok())
                .map(str::trim)
                .unwrap_or_default()
                .to_owned();
            if !binary::is_media_type(&content_type) {
                return Err(ApiError::new(
                    415,
                    "not-supported",
                    format!("{content_type:?} is not a media type (type/subtype)"),
                ));
            }
            let bytes = body::read(req, payload, limits.binary_max_bytes).await?;
            incoming::raw_binary(&content_type, bytes.to_vec(), url_id.map(str::to_owned))
        }
        _ => {
            require_json_body(req)?;
            let bytes = body::read(req, payload, limits.body_max_bytes).await?;
            let expected = kind.name;
            web::block(move || incoming::parse(&bytes, expected))
                .await?
                .map_err(|r| ApiError::with_issues(r.status, r.issues))?
        }
    };
    if let Some(content) = &incoming.content {
        if content.len() as u64 > limits.binary_max_bytes {
            return Err(ApiError::new(
                413,
                "too-costly",
                format!(
                    "The Binary exceeds the limit of {} bytes",
                    limits.binary_max_bytes
                ),
            )
            .at("Binary.data"));
        }
    }
    Ok(incoming)
}

/// The version as a client sees it: a Binary gets its bytes back as `data`.
async fn representation(state: &web::Data<AppState>, version: Version) -> Result<Version> {
    if version.resource_type != "Binary" || version.deleted {
        return Ok(version);
    }
    let state = state.clone();
    web::block(move || {
        let content = state
            .store
            .binary_content(&version.id, version.version_id)?;
        let Some(content) = content else {
            return Ok(version);
        };
        let document = json::parse_lossless(&String::from_utf8_lossy(&version.body))
            .map_err(|e| ApiError::internal(format!("stored Binary body: {e}")))?;
        let body = json::to_text(&binary::with_data(&document, &content), false).into_bytes();
        Ok(Version { body, ..version })
    })
    .await?
}

/// The raw bytes of a Binary version, served with its own content type.
async fn raw_binary(state: &web::Data<AppState>, version: Version) -> Result<HttpResponse> {
    let state2 = state.clone();
    let (id, version_id) = (version.id.clone(), version.version_id);
    let content = web::block(move || state2.store.binary_content(&id, version_id)).await??;
    let document = json::parse_lossless(&String::from_utf8_lossy(&version.body))
        .map_err(|e| ApiError::internal(format!("stored Binary body: {e}")))?;
    Ok(HttpResponse::Ok()
        .insert_header(("ETag", respond::etag(version.version_id)))
        .insert_header((
            "Last-Modified",
            crate::fhir::resource::http_date(version.last_updated),
        ))
        // Stored documents must never run as active content in the server's origin.
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Content-Security-Policy", "sandbox"))
        .content_type(binary::content_type(&document))
        .body(content.unwrap_or_default()))
}

fn check_type(incoming: &Incoming, kind: &ResourceKind) -> Result<()> {
    if incoming.kind.name != kind.name {
        return Err(ApiError::new(
            400,
            "invalid",
            format!(
                "The body is a {} but the URL names {}",
                incoming.kind.name, kind.name
            ),
        )
        .at("resourceType"));
    }
    Ok(())
}

fn write_error(e: WriteError, kind: &ResourceKind, id: &str) -> ApiError {
    match e {
        WriteError::NotFound => ApiError::not_found(kind.name, id),
        WriteError::Gone => {
            ApiError::new(410, "deleted", format!("{}/{id} was deleted", kind.name))
        }
        WriteError::PreconditionFailed(m) => ApiError::new(412, "conflict", m),
        WriteError::NotAllowed(m) => {
            ApiError::new(405, "not-supported", m).allowing(INSTANCE_METHODS)
        }
        WriteError::Rejected { status, issues } => ApiError::with_issues(status, issues),
        WriteError::Store(e) => ApiError::internal(e),
    }
}

fn location(state: &AppState, kind: &str, id: &str, version: i64) -> String {
    format!("{}/{kind}/{id}/_history/{version}", state.config.base())
}

/// `POST [type]`
#[utoipa::path(post, path = "/fhir/{type}", tag = "type",
    params(("type" = String, Path, description = "Resource type, e.g. Patient, DocumentReference, Binary"), ("_format" = Option<String>, Query, description = "json or application/fhir+json (overrides Accept)"), ("_pretty" = Option<bool>, Query, description = "Indent the JSON"), ("Prefer" = Option<String>, Header, description = "return=minimal|representation|OperationOutcome"),
        ("If-None-Exist" = Option<String>, Header, description = "Conditional create: identifier=system|value (or _id=…); an existing match is returned with 200 and nothing is created")),
    request_body(content = serde_json::Value, content_type = "application/fhir+json", description = "The resource; a Binary may also be sent as raw bytes with its own Content-Type"),
    responses((status = 201, description = "Created; Location, ETag and Last-Modified set", body = serde_json::Value, content_type = "application/fhir+json"),
        (status = 200, description = "If-None-Exist matched one resource, returned as is", body = serde_json::Value, content_type = "application/fhir+json"),
        (status = 412, description = "If-None-Exist matched several resources (OperationOutcome)", body = serde_json::Value),
        (status = 400, description = "Invalid request or resource (OperationOutcome)", body = serde_json::Value, content_type = "application/fhir+json"), (status = 406, description = "Unsupported Accept or _format (OperationOutcome)", body = serde_json::Value, content_type = "application/fhir+json"),
        (status = 404, description = "Unknown resource type (OperationOutcome)", body = serde_json::Value),
        (status = 405, description = "The type is written by the server only (OperationOutcome)", body = serde_json::Value),
        (status = 413, description = "Body or Binary over the configured limit (OperationOutcome)", body = serde_json::Value),
        (status = 415, description = "Body is not FHIR JSON (OperationOutcome)", body = serde_json::Value)))]
pub async fn create(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let kind = kind_of(&path)?;
    let params = Params::of(&req)?;
    params.only(&FORMAT_PARAMS)?;
    let format = negotiate(&req, &params)?;
    let returning = Return::of(&req)?;
    writable(kind)?;
    let condition = if_none_exist(&req, kind)?;
    let incoming = parse_body(&req, payload, &state, kind, None).await?;
    check_type(&incoming, kind)?;
    let state2 = state.clone();
    let created = web::block(move || state2.writes().create(incoming, condition.as_ref()))
        .await?
        .map_err(|e| write_error(e, kind, ""))?;
    let version = match created {
        Created::New(version) => version,
        Created::Existing(id) => {
            // If-None-Exist matched: answer 200 with the existing resource, store nothing.
            let state2 = state.clone();
            let existing = web::block(move || state2.store.read(kind.name, &id))
                .await??
                .ok_or_else(|| ApiError::internal("a matched resource vanished"))?;
            let existing = representation(&state, existing).await?;
            return Ok(respond::resource(
                StatusCode::OK,
                &existing,
                format,
                None,
                returning,
            ));
        }
    };
    let version = representation(&state, version).await?;
    let location = location(&state, kind.name, &version.id, version.version_id);
    Ok(respond::resource(
        StatusCode::CREATED,
        &version,
        format,
        Some(location),
        returning,
    ))
}

/// Parameters of read and vread.
const READ_PARAMS: [&str; 4] = ["_format", "_pretty", "_summary", "_elements"];

/// `GET [type]/[id]`
#[utoipa::path(get, path = "/fhir/{type}/{id}", tag = "instance",
    params(("type" = String, Path, description = "Resource type, e.g. Patient, DocumentReference, Binary"), ("id" = String, Path, description = "Logical id"), ("_format" = Option<String>, Query, description = "json or application/fhir+json (overrides Accept)"), ("_pretty" = Option<bool>, Query, description = "Indent the JSON"),
        ("_summary" = Option<String>, Query, description = "true, text, data or false"), ("_elements" = Option<String>, Query, description = "Comma-separated top-level elements to return")),
    responses((status = 200, description = "The current version (a Binary: its raw bytes unless FHIR JSON is asked for)", body = serde_json::Value, content_type = "application/fhir+json"),
        (status = 400, description = "Invalid request or resource (OperationOutcome)", body = serde_json::Value, content_type = "application/fhir+json"), (status = 406, description = "Unsupported Accept or _format (OperationOutcome)", body = serde_json::Value, content_type = "application/fhir+json"),
        (status = 404, description = "Unknown resource (OperationOutcome)", body = serde_json::Value),
        (status = 410, description = "Deleted (OperationOutcome)", body = serde_json::Value)))]
pub async fn read(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let (resource_type, id) = path.into_inner();
    let kind = kind_of(&resource_type)?;
    let params = Params::of(&req)?;
    params.only(&READ_PARAMS)?;
    if !is_valid_id(&id) {
        return Err(ApiError::not_found(kind.name, &id));
    }
    let state2 = state.clone();
    let id2 = id.clone();
    let version = web::block(move || state2.store.read(kind.name, &id2)).await??;
    match version {
        None => Err(ApiError::not_found(kind.name, &id)),
        Some(v) if v.deleted => Err(ApiError::new(
            410,
            "deleted",
            format!("{}/{id} was deleted", kind.name),
        )),
        Some(v) => show(&req, &params, &state, v).await,
    }
}

/// Answers a read or vread of `version`: a Binary as raw bytes unless FHIR JSON is asked for.
async fn show(
    req: &HttpRequest,
    params: &Params,
    state: &web::Data<AppState>,
    version: Version,
) -> Result<HttpResponse> {
    if version.resource_type == "Binary" && !wants_fhir_binary(req, params) {
        return raw_binary(state, version).await;
    }
    let format = negotiate(req, params)?;
    let subset = subset::parse(params.one("_summary")?, params.one("_elements")?)
        .and_then(|subset| subset.check(&version.resource_type).map(|()| subset))
        .map_err(|e| {
            let at = if params.0.iter().any(|(k, _)| k == "_elements") {
                "_elements"
            } else {
                "_summary"
            };
            ApiError::new(400, "invalid", e).at(at)
        })?;
    let mut version = representation(state, version).await?;
    if subset != Subset::Full {
        let mut document = json::parse_lossless(&String::from_utf8_lossy(&version.body))
            .map_err(|e| ApiError::internal(format!("stored body: {e}")))?;
        subset::apply(&mut document, &subset);
        version.body = json::to_text(&document, false).into_bytes();
    }
    Ok(respond::resource(
        StatusCode::OK,
        &version,
        format,
        None,
        Return::Representation,
    ))
}

/// `GET [type]/[id]/_history/[vid]`
#[utoipa::path(get, path = "/fhir/{type}/{id}/_history/{vid}", tag = "instance",
    params(("type" = String, Path, description = "Resource type, e.g. Patient, DocumentReference, Binary"), ("id" = String, Path, description = "Logical id"), ("vid" = String, Path, description = "Version id"), ("_format" = Option<String>, Query, description = "json or application/fhir+json (overrides Accept)"), ("_pretty" = Option<bool>, Query, description = "Indent the JSON"),
        ("_summary" = Option<String>, Query, description = "true, text, data or false"), ("_elements" = Option<String>, Query, description = "Comma-separated top-level elements to return")),
    responses((status = 200, description = "That version", body = serde_json::Value, content_type = "application/fhir+json"),
        (status = 400, description = "Invalid request or resource (OperationOutcome)", body = serde_json::Value, content_type = "application/fhir+json"), (status = 406, description = "Unsupported Accept or _format (OperationOutcome)", body = serde_json::Value, content_type = "application/fhir+json"),
        (status = 404, description = "Unknown resource or version (OperationOutcome)", body = serde_json::Value),
        (status = 410, description = "That version is a deletion (OperationOutcome)", body = serde_json::Value)))]
pub async fn vread(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let (resource_type, id, vid) = path.into_inner();
    let kind = kind_of(&resource_type)?;
    let params = Params::of(&req)?;
    params.only(&READ_PARAMS)?;
    let missing = || {
        ApiError::new(
            404,
            "not-found",
            format!("{}/{id} has no version {vid}", kind.name),
        )
    };
    let Some(version_id) = respond::version_number(&vid) else {
        return Err(missing());
    };
    if !is_valid_id(&id) {
        return Err(missing());
    }
    let state2 = state.clone();
    let id2 = id.clone();
    let version = web::block(move || state2.store.vread(kind.name, &id2, version_id)).await??;
    match version {
        None => Err(missing()),
        Some(v) if v.deleted => Err(ApiError::new(
            410,
            "deleted",
            format!("Version {vid} of {}/{id} is a deletion", kind.name),
        )),
        Some(v) => show(&req, &params, &state, v).await,
    }
}

/// `PUT [type]/[id]`
#[utoipa::path(put, path = "/fhir/{type}/{id}", tag = "instance",
    params(("type" = String, Path, description = "Resource type, e.g. Patient, DocumentReference, Binary"), ("id" = String, Path, description = "Logical id"), ("_format" = Option<String>, Query, description = "json or application/fhir+json (overrides Accept)"), ("_pretty" = Option<bool>, Query, description = "Indent the JSON"), ("If-Match" = Option<String>, Header, description = "ETag of the version being replaced, e.g. W/\"3\""), ("Prefer" = Option<String>, Header, description = "return=minimal|representation|OperationOutcome")),
    request_body(content = serde_json::Value, content_type = "application/fhir+json", description = "The resource, with the URL's id"),
    responses((status = 200, description = "Updated", body = serde_json::Value, content_type = "application/fhir+json"),
        (status = 201, description = "Created with the client's id (update_create)", body = serde_json::Value, content_type = "application/fhir+json"),
        (status = 400, description = "Invalid request or resource (OperationOutcome)", body = serde_json::Value, content_type = "application/fhir+json"), (status = 406, description = "Unsupported Accept or _format (OperationOutcome)", body = serde_json::Value, content_type = "application/fhir+json"),
        (status = 405, description = "Unknown id without update_create, or a server-written type (OperationOutcome)", body = serde_json::Value),
        (status = 412, description = "If-Match names another version (OperationOutcome)", body = serde_json::Value),
        (status = 413, description = "Body over the configured limit (OperationOutcome)", body = serde_json::Value),
        (status = 415, description = "Body is not FHIR JSON (OperationOutcome)", body = serde_json::Value)))]
pub async fn update(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let (resource_type, id) = path.into_inner();
    let kind = kind_of(&resource_type)?;
    let params = Params::of(&req)?;
    params.only(&FORMAT_PARAMS)?;
    let format = negotiate(&req, &params)?;
    let returning = Return::of(&req)?;
    writable(kind)?;
    let if_match = respond::if_match(&req)?;
    if !is_valid_id(&id) {
        return Err(ApiError::new(
            400,
            "invalid",
            format!("{id:?} is not a valid resource id"),
        ));
    }
    let incoming = parse_body(&req, payload, &state, kind, Some(&id)).await?;
    check_type(&incoming, kind)?;
    match incoming.id.as_deref() {
        Some(body_id) if body_id == id => {}
        Some(body_id) => {
            return Err(ApiError::new(
                400,
                "invalid",
                format!("The body's id {body_id} does not match the URL's id {id}"),
            )
            .at(format!("{}.id", kind.name)))
        }
        None => {
            return Err(ApiError::new(
                400,
                "required",
                "An update must carry the resource id in the body",
            )
            .at(format!("{}.id", kind.name)))
        }
    }
    let state2 = state.clone();
    let id2 = id.clone();
    let (version, created) = web::block(move || state2.writes().update(incoming, &id2, if_match))
        .await?
        .map_err(|e| write_error(e, kind, &id))?;
    let version = representation(&state, version).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = location(&state, kind.name, &id, version.version_id);
    Ok(respond::resource(
        status,
        &version,
        format,
        Some(location),
        returning,
    ))
}

/// `DELETE [type]/[id]`
#[utoipa::path(delete, path = "/fhir/{type}/{id}", tag = "instance",
    params(("type" = String, Path, description = "Resource type, e.g. Patient, DocumentReference, Binary"), ("id" = String, Path, description = "Logical id"), ("If-Match" = Option<String>, Header, description = "ETag of the version being deleted")),
    responses((status = 204, description = "Deleted (or already deleted)"),
        (status = 200, description = "Deleted, with Prefer: return=OperationOutcome", body = serde_json::Value),
        (status = 404, description = "Unknown resource (OperationOutcome)", body = serde_json::Value),
        (status = 405, description = "The type is written by the server only (OperationOutcome)", body = serde_json::Value),
        (status = 412, description = "If-Match names another version (OperationOutcome)", body = serde_json::Value)))]
pub async fn delete(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let (resource_type, id) = path.into_inner();
    let kind = kind_of(&resource_type)?;
    let params = Params::of(&req)?;
    params.only(&FORMAT_PARAMS)?;
    let format = negotiate(&req, &params)?;
    let returning = Return::of(&req)?;
    writable(kind)?;
    let if_match = respond::if_match(&req)?;
    if !is_valid_id(&id) {
        return Err(ApiError::not_found(kind.name, &id));
    }
    let state2 = state.clone();
    let id2 = id.clone();
    web::block(move || state2.writes().delete(kind, &id2, if_match))
        .await?
        .map_err(|e| write_error(e, kind, &id))?;
    if returning == Return::OperationOutcome {
        let outcome =
            crate::fhir::outcome::operation_outcome(&[crate::fhir::outcome::OutcomeIssue {
                severity: "information",
                code: "informational",
                diagnostics: format!("{}/{id} is deleted", kind.name),
                expression: None,
            }]);
        return Ok(HttpResponse::Ok()
            .content_type(format.content_type)
            .body(json::to_text(&outcome, format.pretty)));
    }
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(put, path = "/fhir/{type}", tag = "type",
    params(("type" = String, Path, description = "Resource type"),
        ("identifier" = Option<String>, Query, description = "Criteria: system|value of the one resource to update (or _id)"),
        ("If-Match" = Option<String>, Header, description = "ETag of the version being replaced"),
        ("Prefer" = Option<String>, Header, description = "return=minimal|representation|OperationOutcome")),
    request_body(content = serde_json::Value, content_type = "application/fhir+json", description = "The resource"),
    responses((status = 200, description = "The one match was updated", body = serde_json::Value, content_type = "application/fhir+json"),
        (status = 201, description = "No match: created", body = serde_json::Value, content_type = "application/fhir+json"),
        (status = 400, description = "Missing or unsupported criteria, invalid resource (OperationOutcome)", body = serde_json::Value),
        (status = 412, description = "Several matches, or If-Match names another version (OperationOutcome)", body = serde_json::Value)))]
/// `PUT [type]?criteria`
pub async fn conditional_update(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let kind = kind_of(&path)?;
    let params = Params::of(&req)?;
    let format = negotiate(&req, &params)?;
    let returning = Return::of(&req)?;
    writable(kind)?;
    let if_match = respond::if_match(&req)?;
    let condition = condition_of(kind, params.0)?;
    let incoming = parse_body(&req, payload, &state, kind, None).await?;
    check_type(&incoming, kind)?;
    let state2 = state.clone();
    let (version, created) = web::block(move || {
        state2
            .writes()
            .conditional_update(incoming, &condition, if_match)
    })
    .await?
    .map_err(|e| write_error(e, kind, ""))?;
    let version = representation(&state, version).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = location(&state, kind.name, &version.id, version.version_id);
    Ok(respond::resource(
        status,
        &version,
        format,
        Some(location),
        returning,
    ))
}

#[utoipa::path(delete, path = "/fhir/{type}", tag = "type",
    params(("type" = String, Path, description = "Resource type"),
        ("identifier" = Option<String>, Query, description = "Criteria: system|value of the one resource to delete (or _id)")),
    responses((status = 204, description = "The one match was deleted, or nothing matched"),
        (status = 400, description = "Missing or unsupported criteria (OperationOutcome)", body = serde_json::Value),
        (status = 412, description = "Several matches (OperationOutcome)", body = serde_json::Value)))]
/// `DELETE [type]?criteria`
pub async fn conditional_delete(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let kind = kind_of(&path)?;
    let params = Params::of(&req)?;
    negotiate(&req, &params)?;
    writable(kind)?;
    let condition = condition_of(kind, params.0)?;
    let state2 = state.clone();
    web::block(move || state2.writes().conditional_delete(kind, &condition))
        .await?
        .map_err(|e| write_error(e, kind, ""))?;
    Ok(HttpResponse::NoContent().finish())
}

/// A parsed patch document: JSON Patch or FHIRPath Patch (`Parameters`).
enum PatchDocument {
    Json(serde_json::Value),
    FhirPath(serde_json::Value),
}

impl PatchDocument {
    fn apply(&self, resource: &mut serde_json::Value, max_bytes: usize) -> PatchOutcome {
        let result = match self {
            PatchDocument::Json(ops) => patch::apply_json_patch(resource, ops, max_bytes),
            PatchDocument::FhirPath(parameters) => patch::apply_fhirpath_patch(
                resource,
                parameters,
                &validate::is_repeating,
                max_bytes,
            ),
        };
        result.map_err(|issues| {
            // A failed `test` or an ambiguous target conflicts with the resource's state;
            // a path that resolves nowhere cannot be processed; a malformed patch is 400.
            let status = match issues.first().map(|i| i.code) {
                Some("processing") => 409,
                Some("too-costly") => 413,
                Some("not-found" | "value") => 422,
                _ => 400,
            };
            (status, issues)
        })
    }
}

/// Reads a patch body: `application/json-patch+json` or a FHIR JSON `Parameters`.
async fn patch_document(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<PatchDocument> {
    let media = body_media_type(req);
    let is_json_patch = media.as_deref() == Some("application/json-patch+json");
    if !is_json_patch {
        require_json_body(req).map_err(|_| {
            ApiError::new(
                415,
                "not-supported",
                "Send a JSON Patch (application/json-patch+json) or a FHIRPath Patch Parameters (application/fhir+json)",
            )
        })?;
    }
    let bytes = body::read(req, payload, state.config.limits.body_max_bytes).await?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| ApiError::new(400, "structure", format!("The body is not UTF-8: {e}")))?;
    let plain: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| ApiError::new(400, "structure", format!("The body is not valid JSON: {e}")))?;
    if !is_json_patch {
        if plain.get("resourceType").and_then(|t| t.as_str()) != Some("Parameters") {
            return Err(
                ApiError::new(400, "invalid", "A FHIRPath Patch is a Parameters resource")
                    .at("resourceType"),
            );
        }
        let issues = validate::validate_resource(&plain);
        if !issues.is_empty() {
            return Err(ApiError::with_issues(
                400,
                issues
                    .into_iter()
                    .map(|i| OutcomeIssue::error(i.code.as_str(), i.diagnostics).at(i.expression))
                    .collect(),
            ));
        }
    }
    let lossless =
        json::parse_lossless(text).map_err(|e| ApiError::new(400, "structure", e.to_string()))?;
    Ok(if is_json_patch {
        PatchDocument::Json(lossless)
    } else {
        PatchDocument::FhirPath(lossless)
    })
}

/// PATCH of one resource, by id or by criteria.
async fn patch_resource(
    req: HttpRequest,
    kind: &'static ResourceKind,
    target: std::result::Result<String, Condition>,
    payload: web::Payload,
    state: web::Data<AppState>,
    params: Params,
) -> Result<HttpResponse> {
    let format = negotiate(&req, &params)?;
    let returning = Return::of(&req)?;
    writable(kind)?;
    if kind.name == "Binary" {
        return Err(ApiError::new(
            405,
            "not-supported",
            "Binary content is replaced with PUT, not patched",
        ));
    }
    let if_match = respond::if_match(&req)?;
    let document = patch_document(&req, payload, &state).await?;
    let shown_id = match &target {
        Ok(id) => id.clone(),
        Err(_) => "(the resource matching the criteria)".to_owned(),
    };
    let state2 = state.clone();
    let version = web::block(move || {
        let writes = state2.writes();
        let id = match target {
            Ok(id) => id,
            Err(condition) => writes.single_match(kind, &condition)?,
        };
        let max_bytes = state2.config.limits.body_max_bytes as usize;
        writes.patch(
            kind,
            &id,
            &|resource| document.apply(resource, max_bytes),
            if_match,
        )
    })
    .await?
    .map_err(|e| write_error(e, kind, &shown_id))?;
    let location = location(&state, kind.name, &version.id, version.version_id);
    Ok(respond::resource(
        StatusCode::OK,
        &version,
        format,
        Some(location),
        returning,
    ))
}

#[utoipa::path(patch, path = "/fhir/{type}/{id}", tag = "instance",
    params(("type" = String, Path, description = "Resource type"), ("id" = String, Path, description = "Logical id"),
        ("If-Match" = Option<String>, Header, description = "ETag of the version being patched"),
        ("Prefer" = Option<String>, Header, description = "return=minimal|representation|OperationOutcome")),
    request_body(content = serde_json::Value, content_type = "application/json-patch+json", description = "A JSON Patch (RFC 6902), or a FHIRPath Patch Parameters sent as application/fhir+json"),
    responses((status = 200, description = "Patched", body = serde_json::Value, content_type = "application/fhir+json"),
        (status = 400, description = "Malformed patch (OperationOutcome)", body = serde_json::Value),
        (status = 404, description = "Unknown resource (OperationOutcome)", body = serde_json::Value),
        (status = 409, description = "A test operation failed (OperationOutcome)", body = serde_json::Value),
        (status = 410, description = "Deleted (OperationOutcome)", body = serde_json::Value),
        (status = 412, description = "If-Match names another version (OperationOutcome)", body = serde_json::Value),
        (status = 415, description = "Not a patch format (OperationOutcome)", body = serde_json::Value),
        (status = 422, description = "The patched resource is invalid, or a path resolves nowhere (OperationOutcome)", body = serde_json::Value)))]
/// `PATCH [type]/[id]`
pub async fn patch(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let (resource_type, id) = path.into_inner();
    let kind = kind_of(&resource_type)?;
    let params = Params::of(&req)?;
    params.only(&FORMAT_PARAMS)?;
    if !is_valid_id(&id) {
        return Err(ApiError::not_found(kind.name, &id));
    }
    patch_resource(req, kind, Ok(id), payload, state, params).await
}

#[utoipa::path(patch, path = "/fhir/{type}", tag = "type",
    params(("type" = String, Path, description = "Resource type"),
        ("identifier" = Option<String>, Query, description = "Criteria: system|value of the one resource to patch (or _id)"),
        ("If-Match" = Option<String>, Header, description = "ETag of the version being patched")),
    request_body(content = serde_json::Value, content_type = "application/json-patch+json", description = "A JSON Patch (RFC 6902), or a FHIRPath Patch Parameters sent as application/fhir+json"),
    responses((status = 200, description = "The one match was patched", body = serde_json::Value, content_type = "application/fhir+json"),
        (status = 400, description = "Missing or unsupported criteria, malformed patch (OperationOutcome)", body = serde_json::Value),
        (status = 404, description = "Nothing matches (OperationOutcome)", body = serde_json::Value),
        (status = 412, description = "Several matches, or If-Match names another version (OperationOutcome)", body = serde_json::Value),
        (status = 422, description = "The patched resource is invalid (OperationOutcome)", body = serde_json::Value)))]
/// `PATCH [type]?criteria`
pub async fn conditional_patch(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let kind = kind_of(&path)?;
    let params = Params::of(&req)?;
    let condition = condition_of(kind, params.0.clone())?;
    patch_resource(req, kind, Err(condition), payload, state, params).await
}

/// `GET [type]/[id]/_history`
#[utoipa::path(get, path = "/fhir/{type}/{id}/_history", tag = "instance",
    params(("type" = String, Path, description = "Resource type, e.g. Patient, DocumentReference, Binary"), ("id" = String, Path, description = "Logical id"), ("_count" = Option<u64>, Query, description = "Page size (capped by search.max_count)"), ("_since" = Option<String>, Query, description = "Only versions written at or after this instant"), ("_cursor" = Option<String>, Query, description = "Opaque position, from a next link"), ("_format" = Option<String>, Query, description = "json or application/fhir+json (overrides Accept)"), ("_pretty" = Option<bool>, Query, description = "Indent the JSON")),
    responses((status = 200, description = "history Bundle, newest first", body = serde_json::Value, content_type = "application/fhir+json"),
        (status = 400, description = "Invalid request or resource (OperationOutcome)", body = serde_json::Value, content_type = "application/fhir+json"), (status = 406, description = "Unsupported Accept or _format (OperationOutcome)", body = serde_json::Value, content_type = "application/fhir+json"), (status = 404, description = "Unknown resource (OperationOutcome)", body = serde_json::Value)))]
pub async fn history_instance(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let (resource_type, id) = path.into_inner();
    let kind = kind_of(&resource_type)?;
    if !is_valid_id(&id) {
        return Err(ApiError::not_found(kind.name, &id));
    }
    let state2 = state.clone();
    let id2 = id.clone();
    if web::block(move || state2.store.current(kind.name, &id2))
        .await??
        .is_none()
    {
        return Err(ApiError::not_found(kind.name, &id));
    }
    let url = format!("{}/{}/{id}/_history", state.config.base(), kind.name);
    history(
        req,
        state,
        HistoryScope::Instance(kind.name.into(), id),
        url,
    )
    .await
}

/// `GET [type]/_history`
#[utoipa::path(get, path = "/fhir/{type}/_history", tag = "type",
    params(("type" = String, Path, description = "Resource type, e.g. Patient, DocumentReference, Binary"), ("_count" = Option<u64>, Query, description = "Page size (capped by search.max_count)"), ("_since" = Option<String>, Query, description = "Only versions written at or after this instant"), ("_cursor" = Option<String>, Query, description = "Opaque position, from a next link"), ("_format" = Option<String>, Query, description = "json or application/fhir+json (overrides Accept)"), ("_pretty" = Option<bool>, Query, description = "Indent the JSON")),
    responses((status = 200, description = "history Bundle, newest first", body = serde_json::Value, content_type = "application/fhir+json"), (status = 400, description = "Invalid request or resource (OperationOutcome)", body = serde_json::Value, content_type = "application/fhir+json"), (status = 406, description = "Unsupported Accept or _format (OperationOutcome)", body = serde_json::Value, content_type = "application/fhir+json")))]
pub async fn history_type(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let kind = kind_of(&path)?;
    let url = format!("{}/{}/_history", state.config.base(), kind.name);
    history(req, state, HistoryScope::Type(kind.name.into()), url).await
}

/// `GET /_history`
#[utoipa::path(get, path = "/fhir/_history", tag = "system",
    params(("_count" = Option<u64>, Query, description = "Page size (capped by search.max_count)"), ("_since" = Option<String>, Query, description = "Only versions written at or after this instant"), ("_cursor" = Option<String>, Query, description = "Opaque position, from a next link"), ("_format" = Option<String>, Query, description = "json or application/fhir+json (overrides Accept)"), ("_pretty" = Option<bool>, Query, description = "Indent the JSON")),
    responses((status = 200, description = "history Bundle, newest first", body = serde_json::Value, content_type = "application/fhir+json"), (status = 400, description = "Invalid request or resource (OperationOutcome)", body = serde_json::Value, content_type = "application/fhir+json"), (status = 406, description = "Unsupported Accept or _format (OperationOutcome)", body = serde_json::Value, content_type = "application/fhir+json")))]
pub async fn history_system(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse> {
    let url = format!("{}/_history", state.config.base());
    history(req, state, HistoryScope::System, url).await
}

/// The paging cursor of history pages: versions written before this position.
const CURSOR: &str = "_cursor";

async fn history(
    req: HttpRequest,
    state: web::Data<AppState>,
    scope: HistoryScope,
    url: String,
) -> Result<HttpResponse> {
    let params = Params::of(&req)?;
    params.only(&["_format", "_pretty", "_count", "_since", CURSOR])?;
    let format = negotiate(&req, &params)?;
    let limits = &state.config.search;
    let count = match params.one("_count")? {
        None => limits.default_count,
        Some(c) => c
            .parse::<u64>()
            .map_err(|_| {
                ApiError::new(
                    400,
                    "invalid",
                    format!("_count must be a non-negative integer, not {c:?}"),
                )
                .at("_count")
            })?
            .min(limits.max_count),
    };
    let since = match params.one("_since")? {
        None => None,
        Some(s) => Some(parse_instant(s).ok_or_else(|| {
            ApiError::new(
                400,
                "invalid",
                format!("_since must be an instant, not {s:?}"),
            )
            .at("_since")
        })?),
    };
    let before = match params.one(CURSOR)? {
        None => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| {
            ApiError::new(
                400,
                "invalid",
                format!("{CURSOR} {c:?} is not a page of this history"),
            )
            .at(CURSOR)
        })?),
    };
    let state2 = state.clone();
    let mut page =
        web::block(move || state2.store.history(&scope, since, before, count as i64)).await??;
    // Binary versions carry their bytes, as in a read.
    for version in page
        .versions
        .iter_mut()
        .filter(|v| v.resource_type == "Binary")
    {
        *version = representation(&state, version.clone()).await?;
    }
    let mut pairs: Vec<(String, String)> = params
        .0
        .iter()
        .filter(|(k, _)| ["_count", "_since", "_format", "_pretty"].contains(&k.as_str()))
        .cloned()
        .collect();
    let self_link = page_link(&url, &pairs, before);
    if !pairs.iter().any(|(k, _)| k == "_count") {
        pairs.push(("_count".into(), count.to_string()));
    }
    let next_link = page.next.map(|n| page_link(&url, &pairs, Some(n)));
    let bundle = bundle::history(
        state.config.base(),
        &page.versions,
        page.total,
        &self_link,
        next_link.as_deref(),
    );
    Ok(HttpResponse::Ok()
        .content_type(format.content_type)
        .body(json::to_text(&bundle, format.pretty)))
}

fn page_link(url: &str, pairs: &[(String, String)], cursor: Option<i64>) -> String {
    let mut pairs = pairs.to_vec();
    pairs.extend(cursor.map(|c| (CURSOR.to_owned(), c.to_string())));
    if pairs.is_empty() {
        return url.to_owned();
    }
    format!(
        "{url}?{}",
        serde_urlencoded::to_string(&pairs).expect("pairs encode")
    )
}

/// `GET /metadata`
#[utoipa::path(get, path = "/fhir/metadata", tag = "system",
    params(("_format" = Option<String>, Query, description = "json or application/fhir+json (overrides Accept)"), ("_pretty" = Option<bool>, Query, description = "Indent the JSON"), ("mode" = Option<String>, Query, description = "full (the only mode)")),
    responses((status = 200, description = "The CapabilityStatement", body = serde_json::Value, content_type = "application/fhir+json"), (status = 400, description = "Invalid request or resource (OperationOutcome)", body = serde_json::Value, content_type = "application/fhir+json"), (status = 406, description = "Unsupported Accept or _format (OperationOutcome)", body = serde_json::Value, content_type = "application/fhir+json")))]
pub async fn metadata(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse> {
    let params = Params::of(&req)?;
    params.only(&["_format", "_pretty", "mode"])?;
    let format = negotiate(&req, &params)?;
    match params.one("mode")? {
        None | Some("full") => {}
        Some(other) => {
            return Err(ApiError::new(
                400,
                "not-supported",
                format!("metadata mode {other} is not supported"),
            )
            .at("mode"))
        }
    }
    Ok(HttpResponse::Ok()
        .content_type(format.content_type)
        .body(json::to_text(&state.capability_statement, format.pretty)))
}

/// Methods of `[type]/[id]`.
pub const INSTANCE_METHODS: &str = "GET, PUT, DELETE, PATCH";
/// Methods of `[type]`.
pub const TYPE_METHODS: &str = "POST, PUT, DELETE, PATCH";

/// A method a path does not support: 405 with the methods it does.
pub fn method_not_allowed(
    allow: &'static str,
) -> impl Fn(HttpRequest) -> std::future::Ready<Result<HttpResponse>> + Clone {
    move |req: HttpRequest| {
        std::future::ready(Err(ApiError::new(
            405,
            "not-supported",
            format!("{} is not supported on {}", req.method(), req.path()),
        )
        .allowing(allow)))
    }
}

/// Any other path or method.
pub async fn unknown(req: HttpRequest) -> Result<HttpResponse> {
    Err(ApiError::new(
        404,
        "not-supported",
        format!(
            "No interaction {} {} on this server",
            req.method(),
            req.path()
        ),
    ))
}
