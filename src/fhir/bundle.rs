//! Bundles the server builds: history.

use super::json;
use super::resource::instant;
use crate::store::Version;
use serde_json::{json, Map, Value};

/// A `history` Bundle of `versions` (newest first), with paging links.
pub fn history(
    base_url: &str,
    versions: &[Version],
    total: i64,
    self_link: &str,
    next_link: Option<&str>,
) -> Value {
    let mut links = vec![json!({"relation": "self", "url": self_link})];
    if let Some(next) = next_link {
        links.push(json!({"relation": "next", "url": next}));
    }
    let entries: Vec<Value> = versions
        .iter()
        .map(|v| history_entry(base_url, v))
        .collect();
    let mut bundle = Map::new();
    bundle.insert("resourceType".into(), json!("Bundle"));
    bundle.insert("id".into(), json!(uuid::Uuid::new_v4().to_string()));
    bundle.insert("type".into(), json!("history"));
    bundle.insert("total".into(), json::number(total));
    bundle.insert("link".into(), Value::Array(links));
    if !entries.is_empty() {
        bundle.insert("entry".into(), Value::Array(entries));
    }
    Value::Object(bundle)
}

fn history_entry(base_url: &str, v: &Version) -> Value {
    let full_url = format!("{base_url}/{}/{}", v.resource_type, v.id);
    let (url, status) = match v.method.as_str() {
        "POST" => (v.resource_type.clone(), "201 Created"),
        "DELETE" => (format!("{}/{}", v.resource_type, v.id), "204 No Content"),
        _ => (format!("{}/{}", v.resource_type, v.id), "200 OK"),
    };
    let mut entry = Map::new();
    entry.insert("fullUrl".into(), json!(full_url));
    if !v.deleted {
        let text = String::from_utf8_lossy(&v.body);
        let resource = json::parse_lossless(&text).expect("stored bodies are valid JSON");
        entry.insert("resource".into(), resource);
    }
    entry.insert("request".into(), json!({"method": v.method, "url": url}));
    entry.insert(
        "response".into(),
        json!({
            "status": status,
            "etag": format!("W/\"{}\"", v.version_id),
            "lastModified": instant(v.last_updated),
        }),
    );
    Value::Object(entry)
}

/// A `searchset` Bundle: the matches (`search.mode = match`), what `_include`/`_revinclude`
/// added (`include`), paging links, and an OperationOutcome entry (`outcome`) when there is
/// something to warn about.
pub fn searchset(
    base_url: &str,
    matches: Vec<Value>,
    included: Vec<Value>,
    total: Option<i64>,
    links: &[(&str, String)],
    outcome: Option<Value>,
) -> Value {
    // The resource is moved into its entry: `json!` would copy it whole (it serialises
    // what it is given), which cost more than the rest of the Bundle.
    let entry = |resource: Value, mode: &str| {
        let full_url = format!(
            "{base_url}/{}/{}",
            resource["resourceType"].as_str().unwrap_or_default(),
            resource["id"].as_str().unwrap_or_default()
        );
        let mut entry = Map::new();
        entry.insert("fullUrl".into(), Value::String(full_url));
        entry.insert("resource".into(), resource);
        entry.insert("search".into(), json!({"mode": mode}));
        Value::Object(entry)
    };
    let mut entries: Vec<Value> = matches.into_iter().map(|r| entry(r, "match")).collect();
    entries.extend(included.into_iter().map(|r| entry(r, "include")));
    if let Some(outcome) = outcome {
        let mut entry = Map::new();
        entry.insert("resource".into(), outcome);
        entry.insert("search".into(), json!({"mode": "outcome"}));
        entries.push(Value::Object(entry));
    }
    let mut bundle = Map::new();
    bundle.insert("resourceType".into(), json!("Bundle"));
    bundle.insert("id".into(), json!(uuid::Uuid::new_v4().to_string()));
    bundle.insert("type".into(), json!("searchset"));
    if let Some(total) = total {
        bundle.insert("total".into(), json::number(total));
    }
    let links: Vec<Value> = links
        .iter()
        .map(|(relation, url)| json!({"relation": relation, "url": url}))
        .collect();
    bundle.insert("link".into(), Value::Array(links));
    if !entries.is_empty() {
        bundle.insert("entry".into(), Value::Array(entries));
    }
    Value::Object(bundle)
}
