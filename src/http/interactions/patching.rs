//! PATCH by id and by criteria: JSON Patch and FHIRPath Patch.

use super::*;

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
            // a path that resolves nowhere or a result nested too deep cannot be processed;
            // a malformed patch is 400.
            let status = match issues.first().map(|i| i.code) {
                Some("processing") => 409,
                Some("too-costly") => 413,
                Some("not-found" | "value" | "structure") => 422,
                _ => 400,
            };
            (status, issues)
        })
    }
}

/// Reads a patch body: `application/json-patch+json`, or FHIR JSON (also sent as plain
/// `application/json`) holding a `Parameters` (FHIRPath Patch) or an array (JSON Patch).
async fn patch_document(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<PatchDocument> {
    let media = body_media_type(req);
    let declared_json_patch = media.as_deref() == Some("application/json-patch+json");
    if !declared_json_patch {
        require_json_body(req).map_err(|e| {
            // A JSON media type refused (for its charset) keeps its own reason.
            if media.as_deref().is_some_and(super::super::negotiate::is_fhir_json) {
                return e;
            }
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
    crate::fhir::incoming::check_element_count(text)
        .map_err(|r| ApiError::with_issues(r.status, r.issues))?;
    let plain: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| ApiError::new(400, "structure", format!("The body is not valid JSON: {e}")))?;
    // Many clients send RFC 6902 patches as application/json: the body's shape tells.
    let is_json_patch = declared_json_patch || plain.is_array();
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
    write: WriteRequest,
    target: std::result::Result<String, Condition>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let WriteRequest {
        writes,
        kind,
        format,
        returning,
        if_match,
    } = write;
    if kind.name == "Binary" {
        return Err(ApiError::new(
            405,
            "not-supported",
            "Binary content is replaced with PUT, not patched",
        ));
    }
    let document = patch_document(&req, payload, &state).await?;
    let shown_id = match &target {
        Ok(id) => id.clone(),
        Err(_) => "(the resource matching the criteria)".to_owned(),
    };
    let (writes2, max_bytes) = (writes.clone(), state.config.limits.body_max_bytes as usize);
    let version = web::block(move || {
        let writes = writes2;
        let id = match target {
            Ok(id) => id,
            Err(condition) => writes.single_match(kind, &condition)?,
        };
        writes.patch(
            kind,
            &id,
            &|resource| document.apply(resource, max_bytes),
            if_match,
        )
    })
    .await?
    .map_err(|e| write_error(e, kind, &shown_id))?;
    written(&state, &writes, version, false, format, returning).await
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
        (status = 405, description = "The type is written by the server only (OperationOutcome)", body = serde_json::Value),
        (status = 413, description = "Body over the configured limit, or the patch grows the resource past it (OperationOutcome)", body = serde_json::Value),
        (status = 415, description = "Not a patch format (OperationOutcome)", body = serde_json::Value),
        (status = 422, description = "The patched resource is invalid, or a path resolves nowhere (OperationOutcome)", body = serde_json::Value)))]
/// `PATCH [type]/[id]`
pub async fn patch(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
    access: Access,
) -> Result<HttpResponse> {
    let (resource_type, id) = path.into_inner();
    let params = Params::of(&req)?;
    params.only(&FORMAT_PARAMS)?;
    let write = WriteRequest::of(
        &req,
        &state,
        &access,
        &resource_type,
        &params,
        &[Interaction::Update],
    )?;
    if !is_valid_id(&id) {
        return Err(ApiError::not_found(write.kind.name, &id));
    }
    patch_resource(req, write, Ok(id), payload, state).await
}

#[utoipa::path(patch, path = "/fhir/{type}", tag = "type",
    params(("type" = String, Path, description = "Resource type"),
        ("identifier" = Option<String>, Query, description = "Criteria: system|value of the one resource to patch (or _id)"),
        ("If-Match" = Option<String>, Header, description = "ETag of the version being patched")),
    request_body(content = serde_json::Value, content_type = "application/json-patch+json", description = "A JSON Patch (RFC 6902), or a FHIRPath Patch Parameters sent as application/fhir+json"),
    responses((status = 200, description = "The one match was patched", body = serde_json::Value, content_type = "application/fhir+json"),
        (status = 400, description = "Missing or unsupported criteria, malformed patch (OperationOutcome)", body = serde_json::Value),
        (status = 404, description = "Nothing matches (OperationOutcome)", body = serde_json::Value),
        (status = 405, description = "The type is written by the server only (OperationOutcome)", body = serde_json::Value),
        (status = 409, description = "A test operation failed (OperationOutcome)", body = serde_json::Value),
        (status = 412, description = "Several matches, or If-Match names another version (OperationOutcome)", body = serde_json::Value),
        (status = 413, description = "Body over the configured limit, or the patch grows the resource past it (OperationOutcome)", body = serde_json::Value),
        (status = 415, description = "Not a patch format (OperationOutcome)", body = serde_json::Value),
        (status = 422, description = "The patched resource is invalid, or a path resolves nowhere (OperationOutcome)", body = serde_json::Value)))]
/// `PATCH [type]?criteria`
pub async fn conditional_patch(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
    access: Access,
) -> Result<HttpResponse> {
    let params = Params::of(&req)?;
    let needs = [Interaction::Update, Interaction::Search];
    let write = WriteRequest::of(&req, &state, &access, &path, &params, &needs)?;
    let condition = condition_of(write.kind, params.0)?;
    patch_resource(req, write, Err(condition), payload, state).await
}
