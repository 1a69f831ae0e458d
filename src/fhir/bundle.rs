//! Bundles the server builds: history and searchset.

use super::json;
use super::resource::instant;
use crate::store::Version;
use serde_json::{json, Map, Value};
use std::borrow::Cow;

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

/// A resource of a searchset entry: its type and id (for `fullUrl`) and its JSON text.
pub struct Entry<'a> {
    pub resource_type: &'a str,
    pub id: &'a str,
    pub json: Cow<'a, str>,
}

impl<'a> Entry<'a> {
    /// The version's stored body as it is: bodies are stored as the compact JSON the server
    /// answers with, so a search writes them into its Bundle without parsing them again.
    pub fn stored(version: &'a Version) -> Entry<'a> {
        Entry {
            resource_type: &version.resource_type,
            id: &version.id,
            json: String::from_utf8_lossy(&version.body),
        }
    }

    /// A document the server changed from the version (`_summary`, `_elements`).
    pub fn changed(version: &'a Version, document: &Value) -> Entry<'a> {
        Entry {
            resource_type: &version.resource_type,
            id: &version.id,
            json: Cow::Owned(json::to_text(document, false)),
        }
    }
}

/// A `searchset` Bundle as compact JSON text: the matches (`search.mode = match`), what
/// `_include`/`_revinclude` added (`include`), paging links, and an OperationOutcome entry
/// (`outcome`) when there is something to warn about.
pub fn searchset(
    base_url: &str,
    matches: Vec<Entry<'_>>,
    included: Vec<Entry<'_>>,
    total: Option<i64>,
    links: &[(&str, String)],
    outcome: Option<Value>,
) -> String {
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
    let mut out = json::to_text(&Value::Object(bundle), false);
    let entries = matches
        .into_iter()
        .map(|e| (e, "match"))
        .chain(included.into_iter().map(|e| (e, "include")));
    let mut written = 0;
    // `entry` is the Bundle's last member: the object written above is reopened for it.
    for (entry, mode) in entries {
        open_entry(&mut out, &mut written);
        out.push_str("{\"fullUrl\":");
        let full_url = format!("{base_url}/{}/{}", entry.resource_type, entry.id);
        json::write_string(&mut out, &full_url);
        out.push_str(",\"resource\":");
        out.push_str(&entry.json);
        out.push_str(",\"search\":{\"mode\":\"");
        out.push_str(mode);
        out.push_str("\"}}");
    }
    if let Some(outcome) = outcome {
        open_entry(&mut out, &mut written);
        out.push_str("{\"resource\":");
        out.push_str(&json::to_text(&outcome, false));
        out.push_str(",\"search\":{\"mode\":\"outcome\"}}");
    }
    if written > 0 {
        out.push_str("]}");
    }
    out
}

/// Starts the next entry of a Bundle written by [`searchset`]: the first one replaces the
/// Bundle's closing brace with the `entry` member.
fn open_entry(out: &mut String, written: &mut usize) {
    if *written == 0 {
        out.pop();
        out.push_str(",\"entry\":[");
    } else {
        out.push(',');
    }
    *written += 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::model::Labels;

    fn version(body: &str) -> Version {
        Version {
            resource_type: "Observation".into(),
            id: "o1".into(),
            version_id: 1,
            last_updated: 0,
            deleted: false,
            method: "POST".into(),
            body: body.as_bytes().to_vec(),
            patient_id: Some("p1".into()),
            labels: Labels::NONE,
            writer: None,
        }
    }

    #[test]
    fn a_searchset_carries_stored_bodies_as_they_are() {
        // A decimal's exact text and the stored member order survive.
        let stored = r#"{"resourceType":"Observation","id":"o1","valueQuantity":{"value":1.50}}"#;
        let found = version(stored);
        let changed = json::parse_lossless(stored).unwrap();
        let links = [("self", "https://x/fhir/Observation?a=\"b\"".to_owned())];
        let outcome = json!({"resourceType": "OperationOutcome", "issue": []});
        let text = searchset(
            "https://x/fhir",
            vec![Entry::stored(&found)],
            vec![Entry::changed(&found, &changed)],
            Some(1),
            &links,
            Some(outcome),
        );
        assert!(text.contains(&format!(
            r#""resource":{stored},"search":{{"mode":"match"}}"#
        )));
        assert!(text.contains(&format!(
            r#""resource":{stored},"search":{{"mode":"include"}}"#
        )));
        let bundle: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(bundle["total"], 1);
        assert_eq!(
            bundle["link"][0]["url"],
            "https://x/fhir/Observation?a=\"b\""
        );
        assert_eq!(
            bundle["entry"][0]["fullUrl"],
            "https://x/fhir/Observation/o1"
        );
        assert_eq!(bundle["entry"][2]["search"]["mode"], "outcome");
        assert_eq!(bundle["entry"].as_array().unwrap().len(), 3);
        // Without entries, no `entry` member.
        let empty: Value = serde_json::from_str(&searchset(
            "https://x/fhir",
            vec![],
            vec![],
            Some(0),
            &links,
            None,
        ))
        .unwrap();
        assert!(empty.get("entry").is_none());
        assert_eq!(empty["type"], "searchset");
    }
}
