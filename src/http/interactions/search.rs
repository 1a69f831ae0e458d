//! Search on a resource type: `GET [type]?…` and `POST [type]/_search`.

use super::*;
use crate::search::{self, cursor, query, Position};

/// `GET [type]?…`
#[utoipa::path(get, path = "/fhir/{type}", tag = "type",
    params(("type" = String, Path, description = "Resource type, e.g. Patient, DocumentReference"),
        ("_count" = Option<u64>, Query, description = "Page size (capped by search.max_count; 0 = count only)"),
        ("_total" = Option<String>, Query, description = "none, estimate or accurate; when absent, the first page carries the total, unless the search is not pinned to one record and its matches are over 1,000 and more than the page holds"),
        ("_summary" = Option<String>, Query, description = "true, text, data, count or false"),
        ("_elements" = Option<String>, Query, description = "Comma-separated top-level elements to return"),
        ("_cursor" = Option<String>, Query, description = "Opaque position, from a next link"),
        ("Prefer" = Option<String>, Header, description = "handling=strict (default: unknown parameters are refused) or handling=lenient")),
    responses((status = 200, description = "searchset Bundle; any standard parameter of the type (string, token, date, reference, uri; modifiers and prefixes)", body = serde_json::Value, content_type = "application/fhir+json"),
        (status = 400, description = "Unknown, unsupported or malformed parameter, or a cursor from another query (OperationOutcome)", body = serde_json::Value),
        (status = 404, description = "Unknown resource type (OperationOutcome)", body = serde_json::Value)))]
pub async fn search_type(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    access: Access,
) -> Result<HttpResponse> {
    let kind = kind_of(&path)?;
    state.records(&access).may_search(kind)?;
    let params = Params::of(&req)?;
    respond(&req, Target::of(kind), params.0, state, &access).await
}

/// `GET Patient/[id]/[type]?…`
#[utoipa::path(get, path = "/fhir/Patient/{id}/{type}", tag = "instance",
    params(("id" = String, Path, description = "The patient whose compartment is searched"),
        ("type" = String, Path, description = "Resource type in the patient compartment, e.g. DocumentReference")),
    responses((status = 200, description = "searchset Bundle of the patient's resources of that type meeting the parameters", body = serde_json::Value, content_type = "application/fhir+json"),
        (status = 400, description = "Unknown, unsupported or malformed parameter (OperationOutcome)", body = serde_json::Value),
        (status = 404, description = "Unknown type, or a type outside the patient compartment (OperationOutcome)", body = serde_json::Value)))]
pub async fn search_compartment(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
    access: Access,
) -> Result<HttpResponse> {
    let (patient_id, resource_type) = path.into_inner();
    let kind = kind_of(&resource_type)?;
    state.records(&access).may_search(kind)?;
    if !is_valid_id(&patient_id) {
        return Err(ApiError::not_found("Patient", &patient_id));
    }
    if query::patient_compartment(kind.name, &patient_id).is_none() {
        return Err(ApiError::new(
            404,
            "not-supported",
            format!("{} resources are not in a patient compartment", kind.name),
        ));
    }
    let target = Target {
        kinds: vec![kind],
        path: format!("Patient/{patient_id}/{}", kind.name),
        compartment: Some(patient_id),
    };
    let params = Params::of(&req)?;
    respond(&req, target, params.0, state, &access).await
}

/// `GET [base]?_type=…&…`
#[utoipa::path(get, path = "/fhir", tag = "system",
    params(("_type" = Option<String>, Query, description = "Comma-separated resource types (default: every type the token may search); other parameters must apply to each")),
    responses((status = 200, description = "searchset Bundle: the matches of each type, one type after the other", body = serde_json::Value, content_type = "application/fhir+json"),
        (status = 400, description = "Unknown type or parameter, or _sort over several types (OperationOutcome)", body = serde_json::Value)))]
pub async fn search_system(
    req: HttpRequest,
    state: web::Data<AppState>,
    access: Access,
) -> Result<HttpResponse> {
    let params = Params::of(&req)?.0;
    respond_system(&req, params, state, &access).await
}

/// `POST [base]/_search`
#[utoipa::path(post, path = "/fhir/_search", tag = "system",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "The search parameters, as in a query string (_type among them)"),
    responses((status = 200, description = "searchset Bundle, as GET [base]?…", body = serde_json::Value, content_type = "application/fhir+json"),
        (status = 400, description = "Unknown type or parameter, or _sort over several types (OperationOutcome)", body = serde_json::Value),
        (status = 415, description = "Body is not form-encoded (OperationOutcome)", body = serde_json::Value)))]
pub async fn search_system_post(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    access: Access,
) -> Result<HttpResponse> {
    let params = form_params(&req, payload, &state).await?;
    respond_system(&req, params, state, &access).await
}

/// The query parameters of a `POST …/_search` followed by those of its form body.
async fn form_params(
    req: &HttpRequest,
    payload: web::Payload,
    state: &web::Data<AppState>,
) -> Result<Vec<(String, String)>> {
    let mut params = Params::of(req)?.0;
    let media = body_media_type(req);
    if media.as_deref() != Some("application/x-www-form-urlencoded") {
        return Err(ApiError::new(
            415,
            "not-supported",
            "POST _search takes application/x-www-form-urlencoded parameters",
        ));
    }
    let body = body::read(req, payload, state.config.limits.body_max_bytes).await?;
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
        .map_err(|e| ApiError::new(400, "invalid", format!("Malformed form body: {e}")))?;
    params.extend(form);
    Ok(params)
}

/// A system-level search: over the types `_type` names, or every type the token may search.
async fn respond_system(
    req: &HttpRequest,
    mut params: Vec<(String, String)>,
    state: web::Data<AppState>,
    access: &Access,
) -> Result<HttpResponse> {
    refuse_control_characters(&params)?;
    let named: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "_type")
        .flat_map(|(_, v)| v.split(','))
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect();
    params.retain(|(k, _)| k != "_type");
    let records = state.records(access);
    let kinds: Vec<&'static ResourceKind> = if named.is_empty() {
        // A scope narrows: without _type, the types this token may search.
        records.searchable_types()
    } else {
        let mut kinds = Vec::new();
        for name in &named {
            // A bad parameter value, not a missing resource: 400.
            let kind = crate::fhir::registry::lookup(name).ok_or_else(|| {
                ApiError::new(
                    400,
                    "not-supported",
                    format!("_type: resource type {name} is not served here"),
                )
                .at("_type")
            })?;
            records.may_search(kind)?;
            if !kinds.iter().any(|k: &&ResourceKind| k.name == kind.name) {
                kinds.push(kind);
            }
        }
        kinds
    };
    if kinds.is_empty() {
        return Err(crate::http::guard::refused(
            crate::auth::Denial::Forbidden {
                message: "the token's scopes allow searching no resource type".to_owned(),
            },
        ));
    }
    let mut kinds = kinds;
    kinds.sort_by_key(|k| k.name);
    let mut link_params = params.clone();
    if !named.is_empty() {
        link_params.insert(0, ("_type".to_owned(), named.join(",")));
    }
    let target = Target {
        kinds,
        path: String::new(),
        compartment: None,
    };
    respond_with_links(req, target, params, link_params, Vec::new(), state, access).await
}

/// A 400 naming the first parameter holding a control character (see `query`).
fn refuse_control_characters(params: &[(String, String)]) -> Result<()> {
    for (name, value) in params {
        query::refuse_control_characters(name, value)
            .map_err(|issue| ApiError::with_issues(400, vec![issue]))?;
    }
    Ok(())
}

/// What a search runs over: one type, a type within a patient's compartment, or several types.
pub(super) struct Target {
    pub(super) kinds: Vec<&'static ResourceKind>,
    /// The path under the base its links repeat (empty for the whole server).
    pub(super) path: String,
    /// The patient whose compartment each type's search is limited to.
    pub(super) compartment: Option<String>,
}

impl Target {
    fn of(kind: &'static ResourceKind) -> Target {
        Target {
            kinds: vec![kind],
            path: kind.name.to_owned(),
            compartment: None,
        }
    }
}

/// `POST [type]/_search`
#[utoipa::path(post, path = "/fhir/{type}/_search", tag = "type",
    params(("type" = String, Path, description = "Resource type")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "The search parameters, as in a query string"),
    responses((status = 200, description = "searchset Bundle", body = serde_json::Value, content_type = "application/fhir+json"),
        (status = 400, description = "Unknown, unsupported or malformed parameter (OperationOutcome)", body = serde_json::Value),
        (status = 415, description = "Body is not form-encoded (OperationOutcome)", body = serde_json::Value)))]
pub async fn search_type_post(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
    access: Access,
) -> Result<HttpResponse> {
    let kind = kind_of(&path)?;
    state.records(&access).may_search(kind)?;
    let params = form_params(&req, payload, &state).await?;
    respond(&req, Target::of(kind), params, state, &access).await
}

/// Parameters that say how to render, not what to find: left out of the cursor's binding.
const PRESENTATION: [&str; 3] = ["_format", "_pretty", "_cursor"];

async fn respond(
    req: &HttpRequest,
    target: Target,
    params: Vec<(String, String)>,
    state: web::Data<AppState>,
    access: &Access,
) -> Result<HttpResponse> {
    let link_params = params.clone();
    respond_with_links(req, target, params, link_params, Vec::new(), state, access).await
}

/// Runs the search of `params` over `target`; page links repeat `link_params`, but for the
/// parameters the search ignored and those in `ignored` (left out before, under
/// `Prefer: handling=lenient`), which the Bundle's OperationOutcome lists.
pub(super) async fn respond_with_links(
    req: &HttpRequest,
    target: Target,
    params: Vec<(String, String)>,
    link_params: Vec<(String, String)>,
    ignored: Vec<String>,
    state: web::Data<AppState>,
    access: &Access,
) -> Result<HttpResponse> {
    // Before anything reads a parameter (`_format` and `_pretty` here, `_type` before).
    refuse_control_characters(&params)?;
    // "Empty parameters are not an error": `_format=` or `_pretty=` read as absent, too.
    let params: Vec<(String, String)> = params.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    let format = negotiate(req, &Params(params.clone()))?;
    let strict = !respond::lenient(req)?;
    let limits = &state.config.search;
    let records = state.records(access);
    let mut searches = Vec::with_capacity(target.kinds.len());
    for kind in &target.kinds {
        let mut search = query::parse(
            kind.name,
            &params,
            strict,
            limits.default_count,
            limits.max_count,
        )
        .map_err(|issue| ApiError::with_issues(400, vec![issue]))?;
        if let Some(patient_id) = &target.compartment {
            search
                .criteria
                .extend(query::patient_compartment(kind.name, patient_id));
        }
        searches.push(records.searching(search)?);
    }
    let search = searches[0].0.clone();
    if searches.len() > 1 && (!search.sort.is_empty() || search.id_descending) {
        return Err(ApiError::new(
            400,
            "not-supported",
            "_sort applies to a search on one type",
        )
        .at("_sort"));
    }
    let subset = subset::parse(search.summary.as_deref(), search.elements.as_deref())
        .and_then(|s| {
            for kind in &target.kinds {
                s.check(kind.name)?;
            }
            Ok(s)
        })
        .map_err(|m| ApiError::new(400, "invalid", m))?;
    let mut ignored: Vec<String> = searches
        .iter()
        .flat_map(|(s, _)| s.ignored.iter().cloned())
        .chain(ignored)
        .collect();
    ignored.sort();
    ignored.dedup();
    // The parameters actually used, in the client's order: links repeat them.
    let used: Vec<(String, String)> = link_params
        .into_iter()
        .filter(|(k, _)| !ignored.contains(k))
        .collect();
    let binding = cursor_binding(&target.path, &used, access);
    let position = match &search.cursor {
        None => Position::Start,
        Some(sealed) => cursor::open(&state.paging_secret, &binding, sealed)
            .as_deref()
            .and_then(Position::decode)
            .ok_or_else(|| {
                ApiError::new(
                    400,
                    "invalid",
                    "_cursor does not belong to this search: follow the links of its Bundle",
                )
                .at("_cursor")
            })?,
    };
    let page = web::block(move || records.search(&searches, &position)).await??;

    let base = state.config.base();
    let link = |extra: Option<(&str, &str)>| {
        let mut pairs: Vec<(&str, &str)> = used
            .iter()
            .filter(|(k, _)| k != "_cursor")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        pairs.extend(extra);
        let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        let path = match target.path.as_str() {
            "" => base.to_owned(),
            path => format!("{base}/{path}"),
        };
        match query.is_empty() {
            true => path,
            false => format!("{path}?{query}"),
        }
    };
    let mut links = vec![(
        "self",
        link(search.cursor.as_deref().map(|c| ("_cursor", c))),
    )];
    links.push(("first", link(None)));
    for (relation, position) in [("previous", &page.previous), ("next", &page.next)] {
        if let Some(position) = position {
            let sealed = cursor::seal(&state.paging_secret, &binding, &position.encode());
            links.push((relation, link(Some(("_cursor", &sealed)))));
        }
    }
    let mut matches = Vec::with_capacity(page.versions.len());
    for version in &page.versions {
        matches.push(match subset {
            Subset::Full => bundle::Entry::stored(version),
            _ => {
                let mut resource = stored(version)?;
                subset::apply(&mut resource, &subset);
                bundle::Entry::changed(version, &resource)
            }
        });
    }
    let included = page.included.iter().map(bundle::Entry::stored).collect();
    let mut warnings: Vec<OutcomeIssue> = ignored
        .iter()
        .map(|name| {
            OutcomeIssue::warning("not-supported", format!("Parameter {name} was ignored"))
                .at(name.clone())
        })
        .collect();
    if page.truncated {
        warnings.push(OutcomeIssue::warning(
            "too-costly",
            format!(
                "_include and _revinclude were cut at {} resources",
                search::MAX_INCLUDED
            ),
        ));
    }
    let outcome =
        (!warnings.is_empty()).then(|| crate::fhir::outcome::operation_outcome(&warnings));
    let bundle = bundle::searchset(base, matches, included, page.total, &links, outcome);
    Ok(HttpResponse::Ok()
        .content_type(format.content_type)
        .body(match format.pretty {
            true => json::indent(&bundle),
            false => bundle,
        }))
}

fn stored(version: &Version) -> Result<serde_json::Value> {
    json::parse_lossless(&String::from_utf8_lossy(&version.body))
        .map_err(|e| ApiError::internal(format!("stored body: {e}")))
}

/// What a cursor is bound to: the type, the selecting parameters in a canonical order, and the
/// caller, so a cursor leaks nothing to another query or another principal.
fn cursor_binding(path: &str, params: &[(String, String)], access: &Access) -> String {
    let mut selecting: Vec<&(String, String)> = params
        .iter()
        .filter(|(k, _)| !PRESENTATION.contains(&k.as_str()))
        .collect();
    selecting.sort();
    let query = serde_urlencoded::to_string(&selecting).unwrap_or_default();
    format!("{path}?{query}#{:?}#{}", access.principal, access.scopes)
}
