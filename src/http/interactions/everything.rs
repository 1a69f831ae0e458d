//! `GET Patient/[id]/$everything`: the patient and their compartment, as one paged search.
//!
//! It is a search per compartment type (the Patient first, then the others by name), each
//! decided by the consent engine like any compartment search and paged as one list, so it
//! shows exactly what those searches would. The R4 operation also allows "any resources
//! referenced from those"; Carnet returns the compartment only: referenced resources
//! (Practitioners, Organizations, the Binaries of documents) are read on their own, each by
//! its own decision.

use super::search::{respond_with_links, Target};
use super::*;
use crate::search::query;

/// The parameters the operation takes (R4 defines `start`, `end`, `_since`, `_type`,
/// `_count`; Carnet serves the last three).
const PARAMETERS: [&str; 6] = ["_count", "_since", "_type", "_cursor", "_format", "_pretty"];

/// `GET Patient/[id]/$everything`
#[utoipa::path(get, path = "/fhir/Patient/{id}/$everything", tag = "instance",
    params(("id" = String, Path, description = "The patient"),
        ("_count" = Option<u64>, Query, description = "Page size (capped by search.max_count; 0 = count only)"),
        ("_since" = Option<String>, Query, description = "Only resources last updated at or after this instant"),
        ("_type" = Option<String>, Query, description = "Comma-separated types of the patient compartment to return (default: every one the token may search)"),
        ("_cursor" = Option<String>, Query, description = "Opaque position, from a next link"),
        ("_format" = Option<String>, Query, description = "json or application/fhir+json (overrides Accept)"),
        ("_pretty" = Option<bool>, Query, description = "Indent the JSON"),
        ("Prefer" = Option<String>, Header, description = "handling=strict (default: unknown parameters are refused) or handling=lenient")),
    responses((status = 200, description = "searchset Bundle: the Patient, then the resources of its record (its compartment, less resources filed in another record) that the caller may see, type after type, with an exact total; types the token may not search are left out; referenced resources outside the compartment (Binary among them) are not added", body = serde_json::Value, content_type = "application/fhir+json"),
        (status = 400, description = "Unknown or malformed parameter, a type outside the patient compartment, or a cursor from another query (OperationOutcome)", body = serde_json::Value),
        (status = 403, description = "The token may search no type of the patient compartment, or none of the types _type names (OperationOutcome)", body = serde_json::Value),
        (status = 404, description = "No such patient, or one the caller may not see (OperationOutcome)", body = serde_json::Value)))]
pub async fn everything(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    access: Access,
) -> Result<HttpResponse> {
    let patient_id = path.into_inner();
    let scope = state.records(&access).everything()?;
    if !is_valid_id(&patient_id) {
        return Err(ApiError::not_found("Patient", &patient_id));
    }
    let given: Vec<(String, String)> = Params::of(&req)?
        .0
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect();
    for (name, value) in &given {
        query::refuse_control_characters(name, value)
            .map_err(|issue| ApiError::with_issues(400, vec![issue]))?;
    }
    let strict = !respond::lenient(&req)?;
    let mut ignored = Vec::new();
    for (name, _) in &given {
        if PARAMETERS.contains(&name.as_str()) {
            continue;
        }
        if strict {
            return Err(ApiError::new(
                400,
                "not-supported",
                format!(
                    "$everything takes no parameter {name} (it takes {})",
                    PARAMETERS.join(", ")
                ),
            )
            .at(name.clone()));
        }
        ignored.push(name.clone());
    }
    let kinds = chosen_types(&given, scope.kinds.clone())?;
    let (check, id) = (scope, patient_id.clone());
    if !web::block(move || check.holder_visible(&id)).await?? {
        return Err(ApiError::not_found("Patient", &patient_id));
    }
    // What each per-type search runs with: its page size and position, `_since` as a
    // `_lastUpdated` bound, and an exact total on every page.
    let mut params = vec![("_total".to_owned(), "accurate".to_owned())];
    for (name, value) in &given {
        match name.as_str() {
            "_since" => {
                parse_instant(value).ok_or_else(|| {
                    ApiError::new(
                        400,
                        "invalid",
                        format!("_since must be an instant, not {value:?}"),
                    )
                    .at("_since")
                })?;
                params.push(("_lastUpdated".to_owned(), format!("ge{value}")));
            }
            "_count" | "_cursor" | "_format" | "_pretty" => {
                params.push((name.clone(), value.clone()))
            }
            _ => {}
        }
    }
    let target = Target {
        kinds,
        path: format!("Patient/{patient_id}/$everything"),
        compartment: Some(patient_id),
    };
    respond_with_links(&req, target, params, given, ignored, state, &access).await
}

/// The types `_type` names (all of them when absent), each a type of the patient compartment,
/// kept in the order of `searchable`; those the token may not search are left out, and a
/// `_type` naming none it may is refused.
fn chosen_types(
    given: &[(String, String)],
    searchable: Vec<&'static ResourceKind>,
) -> Result<Vec<&'static ResourceKind>> {
    let named: Vec<&str> = given
        .iter()
        .filter(|(k, _)| k == "_type")
        .flat_map(|(_, v)| v.split(','))
        .collect();
    if named.is_empty() {
        return Ok(searchable);
    }
    for name in &named {
        let in_compartment = registry::lookup(name)
            .is_some_and(|k| query::patient_compartment(k.name, "x").is_some());
        if !in_compartment {
            return Err(ApiError::new(
                400,
                "not-supported",
                format!("_type: {name} is not a type of the patient compartment served here"),
            )
            .at("_type"));
        }
    }
    let kinds: Vec<&'static ResourceKind> = searchable
        .into_iter()
        .filter(|k| named.contains(&k.name))
        .collect();
    if kinds.is_empty() {
        return Err(crate::http::guard::refused(
            crate::auth::Denial::Forbidden {
                message: "the token's scopes allow searching none of the types _type names"
                    .to_owned(),
            },
        ));
    }
    Ok(kinds)
}
