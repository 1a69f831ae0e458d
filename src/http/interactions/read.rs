//! read and vread (a Binary as raw bytes unless FHIR JSON is asked for).

use super::*;

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
    access: Access,
) -> Result<HttpResponse> {
    let (resource_type, id) = path.into_inner();
    let kind = kind_of(&resource_type)?;
    let reading = state.records(&access).reading(kind)?;
    let params = Params::of(&req)?;
    params.only(&READ_PARAMS)?;
    if !is_valid_id(&id) {
        return Err(ApiError::not_found(kind.name, &id));
    }
    let (reading2, id2) = (reading.clone(), id.clone());
    let version = web::block(move || reading2.read(&id2)).await??;
    match version {
        None => Err(ApiError::not_found(kind.name, &id)),
        Some(v) if v.deleted => Err(ApiError::new(
            410,
            "deleted",
            format!("{}/{id} was deleted", kind.name),
        )),
        Some(v) => show(&req, &params, &reading, v).await,
    }
}

/// Answers a read or vread of `version`: a Binary as raw bytes unless FHIR JSON is asked for.
async fn show(
    req: &HttpRequest,
    params: &Params,
    reading: &Reading,
    version: Version,
) -> Result<HttpResponse> {
    if version.resource_type == "Binary" && !wants_fhir_binary(req, params) {
        return raw_binary(reading, version).await;
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
    let mut version = representation(&Contents::Read(reading.clone()), version).await?;
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
    access: Access,
) -> Result<HttpResponse> {
    let (resource_type, id, vid) = path.into_inner();
    let kind = kind_of(&resource_type)?;
    let reading = state.records(&access).reading(kind)?;
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
    let (reading2, id2) = (reading.clone(), id.clone());
    let version = web::block(move || reading2.vread(&id2, version_id)).await??;
    match version {
        None => Err(missing()),
        Some(v) if v.deleted => Err(ApiError::new(
            410,
            "deleted",
            format!("Version {vid} of {}/{id} is a deletion", kind.name),
        )),
        Some(v) => show(&req, &params, &reading, v).await,
    }
}

/// The raw bytes of a Binary version, served with its own content type.
async fn raw_binary(reading: &Reading, version: Version) -> Result<HttpResponse> {
    let reading = reading.clone();
    let binary = version.clone();
    let content = web::block(move || reading.binary_content(&binary)).await??;
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
