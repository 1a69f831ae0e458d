//! What the server sets on a stored resource (`id`, `meta`) and reads from it (compartment).

use super::registry::ResourceKind;
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The FHIR `id` pattern (`[A-Za-z0-9\-\.]{1,64}`), less ids made only of dots: `.` and `..`
/// are URL path segments, so `Patient/..` would name the server's base, not a resource.
pub fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !id.bytes().all(|b| b == b'.')
}

/// A new server-assigned id.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64
}

/// A FHIR `instant` (UTC, microseconds) for a timestamp in microseconds.
pub fn instant(micros: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .expect("stored timestamps are in range")
        .format(&Rfc3339)
        .expect("RFC 3339 formatting of a UTC time")
}

/// An HTTP date (`Last-Modified`) for a timestamp in microseconds.
pub fn http_date(micros: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .expect("stored timestamps are in range");
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.format(&format).expect("HTTP date formatting")
}

/// Parses a FHIR `instant` or `dateTime` with at least a day (as in `_since`) to microseconds.
pub fn parse_instant(text: &str) -> Option<i64> {
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some((t.unix_timestamp_nanos() / 1000) as i64);
    }
    let date = time::Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()?;
    Some(date.midnight().assume_utc().unix_timestamp() * 1_000_000)
}

/// Sets `id`, `meta.versionId` and `meta.lastUpdated`, keeping the rest of the client's `meta`
/// (profiles, tags, security labels, source) and putting `resourceType`, `id`, `meta` first.
pub fn stamp(document: &mut Value, id: &str, version_id: i64, last_updated: i64) {
    let Value::Object(fields) = document else {
        return;
    };
    let mut meta = match fields.remove("meta") {
        Some(Value::Object(meta)) => meta,
        _ => Map::new(),
    };
    meta.remove("versionId");
    meta.remove("lastUpdated");
    let mut stamped_meta = Map::new();
    stamped_meta.insert("versionId".into(), Value::String(version_id.to_string()));
    stamped_meta.insert("lastUpdated".into(), Value::String(instant(last_updated)));
    stamped_meta.extend(meta);
    let mut out = Map::new();
    out.insert(
        "resourceType".into(),
        fields.remove("resourceType").unwrap_or_default(),
    );
    fields.remove("id");
    out.insert("id".into(), Value::String(id.to_owned()));
    out.insert("meta".into(), Value::Object(stamped_meta));
    out.extend(std::mem::take(fields));
    *fields = out;
}

/// The patient whose compartment holds this resource: itself for a Patient, otherwise the
/// first `Patient/{id}` reference found along the kind's compartment paths.
pub fn compartment_patient(
    kind: &ResourceKind,
    id: &str,
    document: &Value,
    base_url: &str,
) -> Option<String> {
    if kind.name == "Patient" {
        return Some(id.to_owned());
    }
    kind.compartment.iter().find_map(|path| {
        let mut found = Vec::new();
        collect(document, &path.split('.').collect::<Vec<_>>(), &mut found);
        found
            .into_iter()
            .find_map(|reference| patient_id(reference, base_url))
    })
}

fn collect<'a>(value: &'a Value, path: &[&str], out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| collect(v, path, out)),
        _ => match path.split_first() {
            None => out.push(value),
            Some((first, rest)) => {
                if let Some(child) = value.get(*first) {
                    collect(child, rest, out);
                }
            }
        },
    }
}

/// `Patient/{id}` (relative, or absolute on this server) → `{id}`.
fn patient_id(reference: &Value, base_url: &str) -> Option<String> {
    let text = reference.get("reference")?.as_str()?;
    let relative = text
        .strip_prefix(base_url)
        .map(|r| r.trim_start_matches('/'))
        .unwrap_or(text);
    let id = relative.strip_prefix("Patient/")?;
    let id = id.split('/').next()?;
    is_valid_id(id).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::registry::lookup;
    use serde_json::json;

    #[test]
    fn stamp_sets_server_fields_first_and_keeps_client_meta() {
        let mut doc = json!({"resourceType": "Patient", "active": true, "id": "client",
            "meta": {"versionId": "9", "tag": [{"code": "x"}]}});
        stamp(&mut doc, "abc", 2, 1_700_000_000_123_456);
        let keys: Vec<_> = doc.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["resourceType", "id", "meta", "active"]);
        assert_eq!(doc["meta"]["versionId"], "2");
        assert_eq!(doc["meta"]["lastUpdated"], "2023-11-14T22:13:20.123456Z");
        assert_eq!(doc["meta"]["tag"][0]["code"], "x");
    }

    #[test]
    fn compartment_follows_the_definition_paths() {
        let base = "http://h/fhir";
        let appt = json!({"participant": [{"actor": {"reference": "Practitioner/d"}},
            {"actor": {"reference": "http://h/fhir/Patient/p9"}}]});
        assert_eq!(
            compartment_patient(lookup("Appointment").unwrap(), "a", &appt, base),
            Some("p9".into())
        );
        let doc = json!({"subject": {"reference": "Patient/p1/_history/2"}});
        assert_eq!(
            compartment_patient(lookup("DocumentReference").unwrap(), "d", &doc, base),
            Some("p1".into())
        );
        let org = json!({"name": "CHU"});
        assert_eq!(
            compartment_patient(lookup("Organization").unwrap(), "o", &org, base),
            None
        );
        assert_eq!(
            compartment_patient(lookup("Patient").unwrap(), "p", &org, base),
            Some("p".into())
        );
    }

    #[test]
    fn times_format_and_parse() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(parse_instant("1970-01-02"), Some(86_400_000_000));
        assert_eq!(parse_instant("1970-01-01T00:00:01Z"), Some(1_000_000));
        assert_eq!(parse_instant("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_instant("yesterday"), None);
        assert!(is_valid_id("a-B.9") && !is_valid_id("a b") && !is_valid_id(""));
        assert!(is_valid_id(".a.") && !is_valid_id(".") && !is_valid_id("..."));
        assert!(is_valid_id(&"a".repeat(64)) && !is_valid_id(&"a".repeat(65)));
    }
}
