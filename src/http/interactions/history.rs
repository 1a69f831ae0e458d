//! History at instance, type and system level.

use super::*;
use crate::store::HistoryPosition;

/// `GET [type]/[id]/_history`
#[utoipa::path(get, path = "/fhir/{type}/{id}/_history", tag = "instance",
    params(("type" = String, Path, description = "Resource type, e.g. Patient, DocumentReference, Binary"), ("id" = String, Path, description = "Logical id"), ("_count" = Option<u64>, Query, description = "Page size (capped by search.max_count)"), ("_since" = Option<String>, Query, description = "Only versions written at or after this instant"), ("_cursor" = Option<String>, Query, description = "Opaque position, from a next link"), ("_format" = Option<String>, Query, description = "json or application/fhir+json (overrides Accept)"), ("_pretty" = Option<bool>, Query, description = "Indent the JSON")),
    responses((status = 200, description = "history Bundle, newest first", body = serde_json::Value, content_type = "application/fhir+json"),
        (status = 400, description = "Invalid request or resource (OperationOutcome)", body = serde_json::Value, content_type = "application/fhir+json"), (status = 406, description = "Unsupported Accept or _format (OperationOutcome)", body = serde_json::Value, content_type = "application/fhir+json"), (status = 404, description = "Unknown resource (OperationOutcome)", body = serde_json::Value)))]
pub async fn history_instance(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
    access: Access,
) -> Result<HttpResponse> {
    let (resource_type, id) = path.into_inner();
    let kind = kind_of(&resource_type)?;
    let reading = state.records(&access).reading(kind)?;
    if !is_valid_id(&id) {
        return Err(ApiError::not_found(kind.name, &id));
    }
    let (reading2, id2) = (reading.clone(), id.clone());
    let Some(current) = web::block(move || reading2.read(&id2)).await?? else {
        return Err(ApiError::not_found(kind.name, &id));
    };
    let url = format!("{}/{}/{id}/_history", state.config.base(), kind.name);
    history(req, state, reading.history(&current), url).await
}

/// `GET [type]/_history`
#[utoipa::path(get, path = "/fhir/{type}/_history", tag = "type",
    params(("type" = String, Path, description = "Resource type, e.g. Patient, DocumentReference, Binary"), ("_count" = Option<u64>, Query, description = "Page size (capped by search.max_count)"), ("_since" = Option<String>, Query, description = "Only versions written at or after this instant"), ("_cursor" = Option<String>, Query, description = "Opaque position, from a next link"), ("_format" = Option<String>, Query, description = "json or application/fhir+json (overrides Accept)"), ("_pretty" = Option<bool>, Query, description = "Indent the JSON")),
    responses((status = 200, description = "history Bundle, newest first", body = serde_json::Value, content_type = "application/fhir+json"), (status = 400, description = "Invalid request or resource (OperationOutcome)", body = serde_json::Value, content_type = "application/fhir+json"), (status = 406, description = "Unsupported Accept or _format (OperationOutcome)", body = serde_json::Value, content_type = "application/fhir+json")))]
pub async fn history_type(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    access: Access,
) -> Result<HttpResponse> {
    let kind = kind_of(&path)?;
    let reading = state.records(&access).type_history(kind)?;
    let url = format!("{}/{}/_history", state.config.base(), kind.name);
    history(req, state, reading, url).await
}

/// `GET /_history`
#[utoipa::path(get, path = "/fhir/_history", tag = "system",
    params(("_count" = Option<u64>, Query, description = "Page size (capped by search.max_count)"), ("_since" = Option<String>, Query, description = "Only versions written at or after this instant"), ("_cursor" = Option<String>, Query, description = "Opaque position, from a next link"), ("_format" = Option<String>, Query, description = "json or application/fhir+json (overrides Accept)"), ("_pretty" = Option<bool>, Query, description = "Indent the JSON")),
    responses((status = 200, description = "history Bundle, newest first", body = serde_json::Value, content_type = "application/fhir+json"), (status = 400, description = "Invalid request or resource (OperationOutcome)", body = serde_json::Value, content_type = "application/fhir+json"), (status = 406, description = "Unsupported Accept or _format (OperationOutcome)", body = serde_json::Value, content_type = "application/fhir+json")))]
pub async fn history_system(
    req: HttpRequest,
    state: web::Data<AppState>,
    access: Access,
) -> Result<HttpResponse> {
    let reading = state.records(&access).system_history()?;
    let url = format!("{}/_history", state.config.base());
    history(req, state, reading, url).await
}

/// The paging cursor of history pages: versions written before this position.
const CURSOR: &str = "_cursor";

/// A history page of `reading`.
async fn history(
    req: HttpRequest,
    state: web::Data<AppState>,
    reading: HistoryReading,
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
        Some(c) => Some(HistoryPosition::from_cursor(c).ok_or_else(|| {
            ApiError::new(
                400,
                "invalid",
                format!("{CURSOR} {c:?} is not a page of this history"),
            )
            .at(CURSOR)
        })?),
    };
    let contents = Contents::History(reading.clone());
    let page_before = before.clone();
    let mut page =
        web::block(move || reading.page(since, page_before.as_ref(), count as i64)).await??;
    // Binary versions carry their bytes, as in a read.
    for version in page
        .versions
        .iter_mut()
        .filter(|v| v.resource_type == "Binary")
    {
        *version = representation(&contents, version.clone()).await?;
    }
    let mut pairs: Vec<(String, String)> = params
        .0
        .iter()
        .filter(|(k, _)| ["_count", "_since", "_format", "_pretty"].contains(&k.as_str()))
        .cloned()
        .collect();
    let self_link = page_link(&url, &pairs, before.as_ref());
    if !pairs.iter().any(|(k, _)| k == "_count") {
        pairs.push(("_count".into(), count.to_string()));
    }
    let next_link = page.next.as_ref().map(|n| page_link(&url, &pairs, Some(n)));
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

fn page_link(url: &str, pairs: &[(String, String)], cursor: Option<&HistoryPosition>) -> String {
    let mut pairs = pairs.to_vec();
    pairs.extend(cursor.map(|c| (CURSOR.to_owned(), c.cursor())));
    if pairs.is_empty() {
        return url.to_owned();
    }
    format!(
        "{url}?{}",
        serde_urlencoded::to_string(&pairs).expect("pairs encode")
    )
}
