//! The REST interactions, one file per family; the helpers they share live here.

use super::error::ApiError;
use super::negotiate::{
    body_media_type, negotiate, require_json_body, wants_fhir_binary, Format, Params, FORMAT_PARAMS,
};
use super::respond::{self, Return};
use super::{body, AppState};
use crate::auth::scopes::Interaction;
use crate::auth::Access;
use crate::fhir::conditional::{self, Condition};
use crate::fhir::incoming::{self, Incoming};
use crate::fhir::outcome::OutcomeIssue;
use crate::fhir::registry::{self, ResourceKind};
use crate::fhir::resource::{is_valid_id, parse_instant};
use crate::fhir::subset::{self, Subset};
use crate::fhir::writes::WriteContext;
use crate::fhir::writes::{Created, PatchOutcome, WriteError};
use crate::fhir::{binary, bundle, json, patch, validate};
use crate::records::{HistoryReading, Reading};
use crate::store::Version;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

type Result<T> = std::result::Result<T, ApiError>;

mod everything;
mod history;
mod patching;
mod read;
mod search;
mod write;

pub use everything::*;
pub use history::*;
pub use patching::*;
pub use read::*;
pub use search::*;
pub use write::*;

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

/// Where the bytes of a Binary version come from: a reading of the caller's, or the write
/// that just stored them.
#[derive(Clone)]
enum Contents {
    Read(Reading),
    History(HistoryReading),
    Written(WriteContext),
}

impl Contents {
    fn of(
        &self,
        version: &Version,
    ) -> std::result::Result<Option<Vec<u8>>, crate::store::StoreError> {
        match self {
            Contents::Read(reading) => reading.binary_content(version),
            Contents::History(history) => history.binary_content(version),
            Contents::Written(writes) => writes.binary_content(version),
        }
    }
}

/// The version as a client sees it: a Binary gets its bytes back as `data`.
async fn representation(contents: &Contents, version: Version) -> Result<Version> {
    if version.resource_type != "Binary" || version.deleted {
        return Ok(version);
    }
    let contents = contents.clone();
    web::block(move || {
        let content = contents.of(&version)?;
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
        WriteError::Forbidden(message) => {
            super::guard::refused(crate::auth::Denial::Forbidden { message })
        }
        // A write lost to another writer (e.g. a create racing a create of the same id).
        WriteError::Store(crate::store::StoreError::Conflict) => ApiError::new(
            409,
            "conflict",
            format!("{}/{id} was changed concurrently; retry", kind.name),
        ),
        WriteError::Store(e) => ApiError::from(e),
    }
}

/// What a write interaction reads from its request before its body: the type it targets and
/// the writes the caller may make there, how to answer, and the version the client pinned.
struct WriteRequest {
    writes: WriteContext,
    kind: &'static ResourceKind,
    format: Format,
    returning: Return,
    if_match: Option<i64>,
}

impl WriteRequest {
    fn of(
        req: &HttpRequest,
        state: &AppState,
        access: &Access,
        resource_type: &str,
        params: &Params,
        needs: &[Interaction],
    ) -> Result<WriteRequest> {
        let kind = kind_of(resource_type)?;
        let writes = state.records(access).writing(kind, needs)?;
        let format = negotiate(req, params)?;
        let returning = Return::of(req)?;
        writable(kind)?;
        let if_match = respond::if_match(req)?;
        Ok(WriteRequest {
            writes,
            kind,
            format,
            returning,
            if_match,
        })
    }
}

/// The answer to a successful create, update or patch: 201 or 200, with `Location`, the
/// version as a read would show it, and what `Prefer` asked for.
async fn written(
    state: &web::Data<AppState>,
    writes: &WriteContext,
    version: Version,
    created: bool,
    format: Format,
    returning: Return,
) -> Result<HttpResponse> {
    let version = representation(&Contents::Written(writes.clone()), version).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = format!(
        "{}/{}/{}/_history/{}",
        state.config.base(),
        version.resource_type,
        version.id,
        version.version_id
    );
    Ok(respond::resource(
        status,
        &version,
        format,
        Some(location),
        returning,
    ))
}

/// `GET /metadata`
#[utoipa::path(get, path = "/fhir/metadata", tag = "system", security(()),
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
    let statement = super::discovery::capability_statement(&state).await?;
    Ok(HttpResponse::Ok()
        .content_type(format.content_type)
        .body(json::to_text(&statement, format.pretty)))
}

/// Methods of `[type]/[id]`.
pub const INSTANCE_METHODS: &str = "GET, PUT, DELETE, PATCH";
/// Methods of `[type]`.
pub const TYPE_METHODS: &str = "GET, POST, PUT, DELETE, PATCH";

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
