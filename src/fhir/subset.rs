//! `_summary` and `_elements`: answering with part of a resource
//! (<http://hl7.org/fhir/R4/search.html#summary> and `#elements`).
//!
//! Which elements are summary or mandatory comes from the StructureDefinitions, through
//! [`validate::element_info`]. A reduced resource is no longer a faithful copy, so it is
//! tagged `SUBSETTED` and clients know not to write it back as is.

use super::validate::{self, ElementInfo};
use serde_json::{json, Map, Value};

/// What part of a resource a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subset {
    /// The whole resource (no parameter, or `_summary=false`).
    Full,
    /// `_summary=true`: the elements marked as summary, at every level of backbone elements.
    Summary,
    /// `_summary=text`: the narrative, `id`, `meta` and mandatory top-level elements.
    Text,
    /// `_summary=data`: everything but the narrative.
    Data,
    /// `_elements=a,b`: these top-level elements, plus `id`, `meta` and mandatory ones.
    Elements(Vec<String>),
}

/// Code system of the `SUBSETTED` tag.
pub const SUBSETTED_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";
/// Tag code saying the resource was reduced and is incomplete.
pub const SUBSETTED_CODE: &str = "SUBSETTED";

/// Top-level properties every subset keeps: they say what the resource is, and `meta`
/// carries the `SUBSETTED` tag.
const ALWAYS_KEPT: [&str; 3] = ["resourceType", "id", "meta"];

/// Parses the `_summary` and `_elements` query values; either may be absent.
///
/// `_summary=false` means the full resource. `_summary=count` only makes sense for searches
/// and is refused here, as is giving both parameters. Names in `_elements` must be top-level
/// elements of some resource type; [`Subset::check`] narrows that to one type.
pub fn parse(summary: Option<&str>, elements: Option<&str>) -> Result<Subset, String> {
    match (summary, elements) {
        (None, None) => Ok(Subset::Full),
        (Some(summary), None) => parse_summary(summary),
        (None, Some(elements)) => parse_elements(elements),
        (Some(_), Some(_)) => Err("_summary and _elements cannot be used together".to_owned()),
    }
}

fn parse_summary(value: &str) -> Result<Subset, String> {
    match value {
        "true" => Ok(Subset::Summary),
        "text" => Ok(Subset::Text),
        "data" => Ok(Subset::Data),
        "false" => Ok(Subset::Full),
        "count" => Err("_summary=count only applies to searches".to_owned()),
        other => Err(format!(
            "_summary must be true, text, data, count or false, not `{other}`"
        )),
    }
}

/// Splits `a, b,a` into distinct names, each checked against every resource type: at parse
/// time the type is not known yet.
fn parse_elements(value: &str) -> Result<Subset, String> {
    let mut names: Vec<String> = Vec::new();
    for name in value.split(',').map(str::trim) {
        if name.is_empty() {
            return Err(format!("_elements has an empty element name in `{value}`"));
        }
        if name.contains('.') {
            return Err(format!(
                "_elements lists top-level element names only, not paths such as `{name}`"
            ));
        }
        if !validate::resource_types().any(|t| is_top_level_name(t, name)) {
            return Err(format!("_elements names an unknown element `{name}`"));
        }
        if !names.iter().any(|known| known == name) {
            names.push(name.to_owned());
        }
    }
    Ok(Subset::Elements(names))
}

impl Subset {
    /// Checks the subset against the type it will be applied to: every name in `_elements`
    /// must be one of that type's top-level elements. Other subsets always fit.
    pub fn check(&self, resource_type: &str) -> Result<(), String> {
        let Subset::Elements(names) = self else {
            return Ok(());
        };
        match names
            .iter()
            .find(|name| !is_top_level_name(resource_type, name))
        {
            Some(name) => Err(format!(
                "_elements names `{name}`, not an element of {resource_type}"
            )),
            None => Ok(()),
        }
    }
}

/// Whether `_elements` may name `name` for this type: a top-level element (by JSON name or
/// choice base name), or `resourceType`, which is always kept anyway.
fn is_top_level_name(resource_type: &str, name: &str) -> bool {
    name == "resourceType" || validate::element_info(resource_type, &[name]).is_some()
}

/// Reduces `resource` in place to the part `subset` asks for and, when anything was removed,
/// tags it `SUBSETTED` in `meta.tag` (keeping the tags already there).
///
/// `resource` is a resource object as read from the store through
/// [`super::json::parse_lossless`]: values are moved or dropped, never rewritten, so marked
/// numbers keep their text. A value that is not a resource of a known type is left alone,
/// as the definitions cannot say what to keep.
pub fn apply(resource: &mut Value, subset: &Subset) {
    let Some(object) = resource.as_object_mut() else {
        return;
    };
    let Some(resource_type) = object.get("resourceType").and_then(Value::as_str) else {
        return;
    };
    if !validate::is_known_resource_type(resource_type) {
        return;
    }
    let resource_type = resource_type.to_owned();
    let removed = match subset {
        Subset::Full => false,
        Subset::Summary => Summarizer::new(&resource_type).object(object),
        Subset::Text => keep_top_level(object, &resource_type, |info| info.name == "text"),
        // `remove` would move the last property into the gap; keep the order instead.
        Subset::Data => object.shift_remove("text").is_some(),
        Subset::Elements(names) => {
            let wanted = element_names(&resource_type, names);
            keep_top_level(object, &resource_type, |info| wanted.contains(&info.name))
        }
    };
    if removed {
        mark_subsetted(object);
    }
}

/// Definition names (`deceased[x]` for `deceased` or `deceasedBoolean`) of the requested
/// elements that `resource_type` has; a choice is kept whichever type it holds.
fn element_names(resource_type: &str, names: &[String]) -> Vec<&'static str> {
    names
        .iter()
        .filter_map(|name| validate::element_info(resource_type, &[name]))
        .map(|info| info.name)
        .collect()
}

/// Keeps the top-level properties that are always kept, mandatory or `wanted`, each whole;
/// true when something was removed.
fn keep_top_level(
    object: &mut Map<String, Value>,
    resource_type: &str,
    wanted: impl Fn(&ElementInfo) -> bool,
) -> bool {
    let before = object.len();
    object.retain(|key, _| {
        let name = element_name(key);
        ALWAYS_KEPT.contains(&name)
            || validate::element_info(resource_type, &[name])
                .is_some_and(|info| info.min >= 1 || wanted(&info))
    });
    object.len() < before
}

/// The element a JSON property belongs to: `_birthDate`, the companion carrying the
/// extensions of `birthDate`, goes wherever `birthDate` goes.
fn element_name(key: &str) -> &str {
    key.strip_prefix('_').unwrap_or(key)
}

/// Walks a resource for `_summary=true`, remembering the path to the current object.
struct Summarizer<'t> {
    resource_type: &'t str,
    /// JSON property names from the resource root to the object being reduced.
    path: Vec<String>,
}

impl<'t> Summarizer<'t> {
    fn new(resource_type: &'t str) -> Self {
        Summarizer {
            resource_type,
            path: Vec::new(),
        }
    }

    /// Keeps the summary and mandatory properties of the resource or backbone object at
    /// `self.path`; true when something was removed.
    fn object(&mut self, object: &mut Map<String, Value>) -> bool {
        let mut removed = false;
        object.retain(|key, value| {
            let keep = self.property(key, value, &mut removed);
            removed |= !keep;
            keep
        });
        removed
    }

    /// Whether to keep one property, after reducing it when it is a backbone element.
    fn property(&mut self, key: &str, value: &mut Value, removed: &mut bool) -> bool {
        let name = element_name(key);
        if self.path.is_empty() && ALWAYS_KEPT.contains(&name) {
            return true;
        }
        self.path.push(name.to_owned());
        let steps: Vec<&str> = self.path.iter().map(String::as_str).collect();
        let keep = match validate::element_info(self.resource_type, &steps) {
            Some(info) if info.is_summary || info.min >= 1 => {
                // A backbone's children are flagged one by one; a datatype or resource value
                // is summary or not as a whole.
                if info.is_backbone {
                    *removed |= self.backbone(value);
                    !is_empty(value)
                } else {
                    true
                }
            }
            // Neither summary nor mandatory, or unknown to the definitions.
            _ => false,
        };
        self.path.pop();
        keep
    }

    /// Reduces a backbone element's value: one object, or an array of them. Objects left
    /// empty are dropped, as FHIR JSON allows no empty objects.
    fn backbone(&mut self, value: &mut Value) -> bool {
        match value {
            Value::Object(object) => self.object(object),
            Value::Array(items) => {
                let mut removed = false;
                for item in items.iter_mut() {
                    if let Value::Object(object) = item {
                        removed |= self.object(object);
                    }
                }
                items.retain(|item| !is_empty(item));
                removed
            }
            _ => false,
        }
    }
}

/// An empty object or array, which FHIR JSON forbids.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Object(object) => object.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

/// Adds the `SUBSETTED` tag to `meta.tag` unless it is there already, creating `meta` (after
/// `id`, where FHIR JSON usually has it) and `tag` as needed.
fn mark_subsetted(object: &mut Map<String, Value>) {
    if !object.contains_key("meta") {
        let position = ["id", "resourceType"]
            .iter()
            .find_map(|key| object.keys().position(|k| k == key))
            .map_or(0, |index| index + 1);
        object.shift_insert(position, "meta".to_owned(), Value::Object(Map::new()));
    }
    // A stored resource was validated, so meta and tag have their defined JSON kinds.
    let Some(Value::Object(meta)) = object.get_mut("meta") else {
        return;
    };
    let Value::Array(tags) = meta
        .entry("tag")
        .or_insert_with(|| Value::Array(Vec::new()))
    else {
        return;
    };
    let is_subsetted =
        |tag: &Value| tag["system"] == SUBSETTED_SYSTEM && tag["code"] == SUBSETTED_CODE;
    if !tags.iter().any(is_subsetted) {
        tags.push(json!({"system": SUBSETTED_SYSTEM, "code": SUBSETTED_CODE}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::json::{parse_lossless, to_text};

    /// Parses as the store's read path does, so numbers are marked strings.
    fn resource(text: &str) -> Value {
        parse_lossless(text).expect("test resources are JSON")
    }

    fn applied(text: &str, subset: &Subset) -> Value {
        let mut value = resource(text);
        apply(&mut value, subset);
        value
    }

    fn keys(value: &Value) -> Vec<&str> {
        value
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect()
    }

    fn subsetted_tags(value: &Value) -> usize {
        value["meta"]["tag"].as_array().map_or(0, |tags| {
            tags.iter().filter(|t| t["code"] == SUBSETTED_CODE).count()
        })
    }

    const PATIENT: &str = r#"{
        "resourceType": "Patient",
        "id": "p1",
        "meta": {"versionId": "3", "tag": [{"system": "http://example.org/tags", "code": "vip"}]},
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Marie</div>"},
        "extension": [{"url": "http://example.org/ext", "valueString": "x"}],
        "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "2840799123456"}],
        "active": true,
        "name": [{"family": "Dupont", "given": ["Marie", "Anne"], "_given": [null, {"id": "g2"}]}],
        "gender": "female",
        "birthDate": "1984-07-12",
        "_birthDate": {"extension": [{"url": "http://example.org/birthTime", "valueDateTime": "1984-07-12T08:30:00+02:00"}]},
        "deceasedBoolean": false,
        "maritalStatus": {"text": "Mariée"},
        "multipleBirthInteger": 2,
        "photo": [{"contentType": "image/png", "data": "aGVsbG8="}],
        "contact": [{"name": {"family": "Dupont"}, "telecom": [{"system": "phone", "value": "0600000000"}]}],
        "communication": [{"language": {"text": "français"}, "preferred": true}],
        "link": [{"other": {"reference": "Patient/p2"}, "type": "seealso", "id": "l1"}]
    }"#;

    const DOCUMENT_REFERENCE: &str = r#"{
        "resourceType": "DocumentReference",
        "id": "d1",
        "status": "current",
        "custodian": {"reference": "Organization/o1"},
        "content": [
            {"id": "c1", "extension": [{"url": "http://example.org/ext", "valueString": "x"}],
             "attachment": {"contentType": "application/pdf", "url": "Binary/b1", "size": 1024, "title": "CR"},
             "format": {"code": "urn:ihe:iti:xds:2017:mimeTypeSufficient"}},
            {"attachment": {"url": "Binary/b2"}}
        ],
        "context": {"encounter": [{"reference": "Encounter/e1"}], "event": [{"text": "bilan"}]},
        "relatesTo": [{"code": "replaces", "target": {"reference": "DocumentReference/d0"}, "extension": [{"url": "http://example.org/ext", "valueString": "x"}]}]
    }"#;

    // --- parse -------------------------------------------------------------------------------

    #[test]
    fn parses_summary_values() {
        assert_eq!(parse(None, None), Ok(Subset::Full));
        assert_eq!(parse(Some("true"), None), Ok(Subset::Summary));
        assert_eq!(parse(Some("text"), None), Ok(Subset::Text));
        assert_eq!(parse(Some("data"), None), Ok(Subset::Data));
        assert_eq!(parse(Some("false"), None), Ok(Subset::Full));
        let count = parse(Some("count"), None).unwrap_err();
        assert!(count.contains("count"), "{count}");
        let bad = parse(Some("TRUE"), None).unwrap_err();
        assert!(bad.contains("`TRUE`"), "{bad}");
    }

    #[test]
    fn parses_elements() {
        assert_eq!(
            parse(None, Some("name, birthDate,name")),
            Ok(Subset::Elements(vec![
                "name".to_owned(),
                "birthDate".to_owned()
            ]))
        );
        assert!(
            parse(Some("true"), Some("name")).is_err(),
            "both parameters"
        );
        assert!(parse(None, Some("name,")).is_err(), "empty name");
        let path = parse(None, Some("name.family")).unwrap_err();
        assert!(path.contains("name.family"), "{path}");
    }

    #[test]
    fn unknown_element_is_an_error() {
        let problem = parse(None, Some("name,colour")).unwrap_err();
        assert!(problem.contains("`colour`"), "{problem}");
        // `status` is an element of other types, so only the type-specific check refuses it.
        let subset = parse(None, Some("status,deceased")).unwrap();
        let problem = subset.check("Patient").unwrap_err();
        assert!(
            problem.contains("`status`") && problem.contains("Patient"),
            "{problem}"
        );
        assert_eq!(subset.check("DocumentReference").map_err(|_| ()), Err(()));
        assert_eq!(
            parse(None, Some("deceasedBoolean"))
                .unwrap()
                .check("Patient"),
            Ok(())
        );
        assert_eq!(Subset::Summary.check("Patient"), Ok(()));
    }

    // --- _summary=true -----------------------------------------------------------------------

    #[test]
    fn patient_summary_keeps_summary_elements_only() {
        let patient = applied(PATIENT, &Subset::Summary);
        assert_eq!(
            keys(&patient),
            [
                "resourceType",
                "id",
                "meta",
                "identifier",
                "active",
                "name",
                "gender",
                "birthDate",
                "_birthDate",
                "deceasedBoolean",
                "link"
            ]
        );
        // Datatype values are kept whole, companions included.
        let full = resource(PATIENT);
        assert_eq!(patient["name"], full["name"]);
        assert_eq!(patient["_birthDate"], full["_birthDate"]);
        // Inside the `link` backbone, `id` is not summary while `other`/`type` are.
        assert_eq!(keys(&patient["link"][0]), ["other", "type"]);
        assert_eq!(subsetted_tags(&patient), 1);
    }

    #[test]
    fn document_reference_summary_reduces_backbones() {
        let document = applied(DOCUMENT_REFERENCE, &Subset::Summary);
        assert_eq!(
            keys(&document),
            [
                "resourceType",
                "id",
                "meta",
                "status",
                "content",
                "relatesTo"
            ],
            "custodian is not summary; context held only non-summary elements"
        );
        let full = resource(DOCUMENT_REFERENCE);
        assert_eq!(keys(&document["content"][0]), ["attachment", "format"]);
        assert_eq!(
            document["content"][0]["attachment"],
            full["content"][0]["attachment"]
        );
        assert_eq!(document["content"][1], full["content"][1]);
        assert_eq!(keys(&document["relatesTo"][0]), ["code", "target"]);
    }

    #[test]
    fn summary_of_a_single_backbone() {
        let consent = applied(
            r#"{"resourceType": "Consent", "id": "c1", "status": "active",
                "scope": {"text": "x"}, "category": [{"text": "y"}], "policy": [{"uri": "urn:x"}],
                "provision": {"type": "permit", "purpose": [{"code": "HMARKT"}],
                    "actor": [{"role": {"text": "r"}, "reference": {"reference": "Patient/p1"}}],
                    "provision": [{"type": "deny"}]}}"#,
            &Subset::Summary,
        );
        assert_eq!(
            keys(&consent),
            [
                "resourceType",
                "id",
                "meta",
                "status",
                "scope",
                "category",
                "provision"
            ]
        );
        // Consent.provision is summary but its `actor` and nested `provision` are not, even
        // though the actor's own children are mandatory.
        assert_eq!(keys(&consent["provision"]), ["type", "purpose"]);
    }

    #[test]
    fn summary_keeps_mandatory_elements() {
        // Observation.code is summary, `status` mandatory: both survive; `note` does not.
        let observation = applied(
            r#"{"resourceType": "Observation", "status": "final", "code": {"text": "Poids"},
                "note": [{"text": "à jeun"}]}"#,
            &Subset::Summary,
        );
        assert_eq!(
            keys(&observation),
            ["resourceType", "meta", "status", "code"]
        );
    }

    // --- _summary=text / data ----------------------------------------------------------------

    #[test]
    fn text_keeps_narrative_id_meta_and_mandatory() {
        let document = applied(
            r#"{"resourceType": "DocumentReference", "id": "d1",
                "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">CR</div>"},
                "status": "current", "description": "CR", "content": [{"attachment": {"url": "Binary/b1"}}]}"#,
            &Subset::Text,
        );
        assert_eq!(
            keys(&document),
            ["resourceType", "id", "meta", "text", "status", "content"]
        );
        let patient = applied(PATIENT, &Subset::Text);
        assert_eq!(keys(&patient), ["resourceType", "id", "meta", "text"]);
    }

    #[test]
    fn data_removes_the_narrative_only() {
        let patient = applied(PATIENT, &Subset::Data);
        let mut expected = resource(PATIENT);
        expected.as_object_mut().unwrap().shift_remove("text");
        expected["meta"]["tag"]
            .as_array_mut()
            .unwrap()
            .push(json!({"system": SUBSETTED_SYSTEM, "code": SUBSETTED_CODE}));
        assert_eq!(patient, expected);
        assert_eq!(keys(&patient), keys(&expected), "order kept");
    }

    // --- _elements ---------------------------------------------------------------------------

    #[test]
    fn elements_keep_listed_and_mandatory_top_level_elements() {
        let subset = parse(None, Some("name,birthDate")).unwrap();
        let patient = applied(PATIENT, &subset);
        assert_eq!(
            keys(&patient),
            [
                "resourceType",
                "id",
                "meta",
                "name",
                "birthDate",
                "_birthDate"
            ]
        );
        let document = applied(DOCUMENT_REFERENCE, &parse(None, Some("custodian")).unwrap());
        assert_eq!(
            keys(&document),
            [
                "resourceType",
                "id",
                "meta",
                "status",
                "custodian",
                "content"
            ],
            "status and content are mandatory"
        );
        // A listed element is kept whole, even its non-summary parts.
        assert_eq!(document["content"], resource(DOCUMENT_REFERENCE)["content"]);
    }

    #[test]
    fn elements_name_choices_by_base_or_json_name() {
        for list in ["deceased", "deceasedBoolean"] {
            let patient = applied(PATIENT, &parse(None, Some(list)).unwrap());
            assert_eq!(
                keys(&patient),
                ["resourceType", "id", "meta", "deceasedBoolean"]
            );
        }
    }

    // --- SUBSETTED tag -----------------------------------------------------------------------

    #[test]
    fn tag_added_only_when_something_was_removed() {
        // Everything in this patient is summary: nothing to remove, nothing to say.
        let text = r#"{"resourceType": "Patient", "id": "p1", "gender": "male"}"#;
        assert_eq!(applied(text, &Subset::Summary), resource(text));
        assert_eq!(applied(text, &Subset::Data), resource(text));
        assert_eq!(applied(PATIENT, &Subset::Full), resource(PATIENT));
        // Without meta, one is created after `id`.
        let patient = applied(
            r#"{"resourceType": "Patient", "id": "p1", "gender": "male", "photo": [{"url": "Binary/x"}]}"#,
            &Subset::Summary,
        );
        assert_eq!(keys(&patient), ["resourceType", "id", "meta", "gender"]);
        assert_eq!(
            patient["meta"],
            json!({"tag": [{"system": SUBSETTED_SYSTEM, "code": SUBSETTED_CODE}]})
        );
    }

    #[test]
    fn existing_tags_are_kept_and_not_repeated() {
        let patient = applied(PATIENT, &Subset::Summary);
        assert_eq!(patient["meta"]["versionId"], "3");
        assert_eq!(patient["meta"]["tag"][0]["code"], "vip");
        assert_eq!(patient["meta"]["tag"].as_array().unwrap().len(), 2);
        // Reducing an already reduced resource adds no second tag.
        let mut again = patient.clone();
        apply(&mut again, &Subset::Text);
        assert_eq!(subsetted_tags(&again), 1);
    }

    #[test]
    fn numbers_are_untouched() {
        let text = r#"{"resourceType":"Observation","status":"final","code":{"text":"Poids"},"valueQuantity":{"value":72.50,"unit":"kg"},"component":[{"code":{"text":"x"},"valueInteger":7,"interpretation":[{"text":"n"}]}],"referenceRange":[{"low":{"value":1.0}}]}"#;
        let observation = applied(text, &Subset::Summary);
        let out = to_text(&observation, false);
        assert!(out.contains(r#""value":72.50"#), "{out}");
        assert!(
            !out.contains("referenceRange") && !out.contains("interpretation"),
            "{out}"
        );
        let data = applied(text, &Subset::Data);
        assert_eq!(
            to_text(&data, false),
            text,
            "nothing removed, nothing changed"
        );
    }

    #[test]
    fn non_resources_are_left_alone() {
        for text in [
            r#"{"id": "x"}"#,
            r#"{"resourceType": "Nope", "id": "x", "a": 1}"#,
            "[1]",
        ] {
            assert_eq!(applied(text, &Subset::Summary), resource(text));
        }
    }
}
