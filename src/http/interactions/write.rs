//! create, update, delete and their conditional forms.

use super::*;

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
        (status = 415, description = "Body is not FHIR JSON (OperationOutcome)", body = serde_json::Value),
        (status = 422, description = "Valid FHIR but refused by a Carnet profile, e.g. a Patient without INS (OperationOutcome)", body = serde_json::Value)))]
pub async fn create(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
    access: Access,
) -> Result<HttpResponse> {
    let kind = kind_of(&path)?;
    let records = state.records(&access);
    let mut writes = records.writing(kind, &[Interaction::Create])?;
    let params = Params::of(&req)?;
    params.only(&FORMAT_PARAMS)?;
    let format = negotiate(&req, &params)?;
    let returning = Return::of(&req)?;
    writable(kind)?;
    let condition = if_none_exist(&req, kind)?;
    if condition.is_some() {
        // A match is found by searching and answered with its content.
        let needs = [Interaction::Create, Interaction::Search, Interaction::Read];
        writes = records.writing(kind, &needs)?;
    }
    let incoming = parse_body(&req, payload, &state, kind, None).await?;
    let writes2 = writes.clone();
    let created = web::block(move || writes2.create(incoming, condition.as_ref()))
        .await?
        .map_err(|e| write_error(e, kind, ""))?;
    let version = match created {
        Created::New(version) => version,
        Created::Existing(existing) => {
            // If-None-Exist matched: answer 200 with the existing resource, store nothing.
            let existing = representation(&Contents::Written(writes), existing).await?;
            return Ok(respond::resource(
                StatusCode::OK,
                &existing,
                format,
                None,
                returning,
            ));
        }
    };
    written(&state, &writes, version, true, format, returning).await
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
        (status = 415, description = "Body is not FHIR JSON (OperationOutcome)", body = serde_json::Value),
        (status = 422, description = "Valid FHIR but refused by a Carnet profile, e.g. a Patient without INS (OperationOutcome)", body = serde_json::Value)))]
pub async fn update(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
    access: Access,
) -> Result<HttpResponse> {
    let (resource_type, id) = path.into_inner();
    let params = Params::of(&req)?;
    params.only(&FORMAT_PARAMS)?;
    let WriteRequest {
        writes,
        kind,
        format,
        returning,
        if_match,
    } = WriteRequest::of(
        &req,
        &state,
        &access,
        &resource_type,
        &params,
        &[Interaction::Update],
    )?;
    if !is_valid_id(&id) {
        return Err(ApiError::new(
            400,
            "invalid",
            format!("{id:?} is not a valid resource id"),
        ));
    }
    let incoming = parse_body(&req, payload, &state, kind, Some(&id)).await?;
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
    let (writes2, id2) = (writes.clone(), id.clone());
    let (version, created) = web::block(move || writes2.update(incoming, &id2, if_match))
        .await?
        .map_err(|e| write_error(e, kind, &id))?;
    written(&state, &writes, version, created, format, returning).await
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
    access: Access,
) -> Result<HttpResponse> {
    let (resource_type, id) = path.into_inner();
    let params = Params::of(&req)?;
    params.only(&FORMAT_PARAMS)?;
    let WriteRequest {
        writes,
        kind,
        format,
        returning,
        if_match,
    } = WriteRequest::of(
        &req,
        &state,
        &access,
        &resource_type,
        &params,
        &[Interaction::Delete],
    )?;
    if !is_valid_id(&id) {
        return Err(ApiError::not_found(kind.name, &id));
    }
    let id2 = id.clone();
    web::block(move || writes.delete(kind, &id2, if_match))
        .await?
        .map_err(|e| write_error(e, kind, &id))?;
    if returning == Return::OperationOutcome {
        return Ok(respond::information(
            format!("{}/{id} is deleted", kind.name),
            format,
        ));
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
        (status = 405, description = "No match and a body id without update_create, or a server-written type (OperationOutcome)", body = serde_json::Value),
        (status = 409, description = "The body's id names another resource than the criteria select (OperationOutcome)", body = serde_json::Value),
        (status = 412, description = "Several matches, or If-Match names another version (OperationOutcome)", body = serde_json::Value),
        (status = 413, description = "Body over the configured limit (OperationOutcome)", body = serde_json::Value),
        (status = 415, description = "Body is not FHIR JSON (OperationOutcome)", body = serde_json::Value),
        (status = 422, description = "Valid FHIR but refused by a Carnet profile, e.g. a Patient without INS (OperationOutcome)", body = serde_json::Value)))]
/// `PUT [type]?criteria`
pub async fn conditional_update(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
    access: Access,
) -> Result<HttpResponse> {
    let params = Params::of(&req)?;
    let needs = [Interaction::Update, Interaction::Search];
    let WriteRequest {
        writes,
        kind,
        format,
        returning,
        if_match,
    } = WriteRequest::of(&req, &state, &access, &path, &params, &needs)?;
    let condition = condition_of(kind, params.0)?;
    let incoming = parse_body(&req, payload, &state, kind, None).await?;
    let writes2 = writes.clone();
    let (version, created) =
        web::block(move || writes2.conditional_update(incoming, &condition, if_match))
            .await?
            .map_err(|e| write_error(e, kind, ""))?;
    written(&state, &writes, version, created, format, returning).await
}

#[utoipa::path(delete, path = "/fhir/{type}", tag = "type",
    params(("type" = String, Path, description = "Resource type"),
        ("identifier" = Option<String>, Query, description = "Criteria: system|value of the one resource to delete (or _id)")),
    responses((status = 204, description = "The one match was deleted, or nothing matched"),
        (status = 400, description = "Missing or unsupported criteria (OperationOutcome)", body = serde_json::Value),
        (status = 405, description = "The type is written by the server only (OperationOutcome)", body = serde_json::Value),
        (status = 412, description = "Several matches (OperationOutcome)", body = serde_json::Value)))]
/// `DELETE [type]?criteria`
pub async fn conditional_delete(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    access: Access,
) -> Result<HttpResponse> {
    let kind = kind_of(&path)?;
    let needs = [Interaction::Delete, Interaction::Search];
    let writes = state.records(&access).writing(kind, &needs)?;
    let params = Params::of(&req)?;
    negotiate(&req, &params)?;
    writable(kind)?;
    let condition = condition_of(kind, params.0)?;
    web::block(move || writes.conditional_delete(kind, &condition))
        .await?
        .map_err(|e| write_error(e, kind, ""))?;
    Ok(HttpResponse::NoContent().finish())
}
