//! Builds `parameters.json`, the search parameters Carnet serves, from the official FHIR R4
//! SearchParameter bundle and StructureDefinitions (not in the repository: see [`source_dir`]).
//!
//! The official bundle describes each parameter by a FHIRPath `expression` over many resource
//! types at once. The search engine cannot evaluate FHIRPath, so this test-only module
//! resolves, per served resource type, each expression into plain JSON property paths (choice
//! elements named concretely, e.g. `deceasedDateTime`), the FHIR datatype found at their end,
//! and the two filters the standard expressions use (`where(resolve() is Patient)` and
//! `where(system='phone')`). Parameters it cannot express stay in the file with an
//! `unsupported` reason, so the server refuses them instead of silently ignoring them:
//!
//! ```text
//! {
//!   "fhirVersion": "4.0.1",
//!   "resources": {                  // per served resource type, sorted by name
//!     "Patient": [                  // one line per parameter, sorted by code
//!       {"code": "phone", "type": "token", "paths": [{"steps": ["telecom"],
//!        "datatypes": ["ContactPoint"], "where": {"system": "phone"}}]},
//!       {"code": "deceased", "type": "token", "unsupported": "..."}
//!     ]
//!   }
//! }
//! ```
//!
//! A path may also carry `"onlyTarget": "Patient"`; reference parameters carry `"target"`.
//!
//! Regenerate with `CARNET_REGENERATE=1 cargo test parameters_are_current`.

use regex::Regex;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// Where the official FHIR R4 definition bundles are looked for when `CARNET_FHIR_R4_DIR` is unset.
/// The committed registry, read by `registry.rs` through `include_str!`.
const OUTPUT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/search/parameters.json");
const PARAMETERS_BUNDLE: &str = "search-parameters.json";
const RESOURCES_BUNDLE: &str = "structure-definitions-resources.json";
const TYPES_BUNDLE: &str = "profiles-types.json";

/// The resource types Carnet serves.
const SERVED: [&str; 13] = [
    "AllergyIntolerance",
    "Appointment",
    "AuditEvent",
    "Binary",
    "Communication",
    "Consent",
    "DocumentReference",
    "List",
    "Organization",
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "RelatedPerson",
];

const FHIR_TYPE_EXTENSION: &str =
    "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type";
const SYSTEM_TYPE_PREFIX: &str = "http://hl7.org/fhirpath/System.";

/// Datatypes `extract.rs` knows how to index for each parameter type. Number and quantity
/// parameters have none yet: no served resource type defines one.
fn indexable(kind: &str) -> &'static [&'static str] {
    match kind {
        "string" => &["string", "markdown", "HumanName", "Address"],
        "token" => &[
            "code",
            "string",
            "id",
            "uri",
            "url",
            "canonical",
            "oid",
            "uuid",
            "boolean",
            "Coding",
            "CodeableConcept",
            "Identifier",
            "ContactPoint",
        ],
        "date" => &["date", "dateTime", "instant", "Period", "Timing"],
        "reference" => &["Reference", "canonical", "uri", "url"],
        "uri" => &["uri", "url", "canonical", "oid", "uuid"],
        _ => &[],
    }
}

/// One element of a StructureDefinition snapshot.
struct Element {
    /// Type codes (several for a choice element `x[x]`).
    types: Vec<String>,
    /// `#Consent.provision` for an element repeating another one's structure.
    content_reference: Option<String>,
}

/// Snapshot elements of every type and resource, by full path (`Attachment.contentType`).
struct Structures(BTreeMap<String, Element>);

/// A JSON path being resolved: the property names so far and where they point to.
#[derive(Clone)]
struct Cursor {
    steps: Vec<String>,
    /// Definition path of the element reached (`DocumentReference.context`, `Attachment`).
    at: String,
    /// Its datatype.
    datatype: String,
    /// Whether the path forked on a choice element with no explicit type (no `ofType`):
    /// such forks are dropped, not reported, when the parameter cannot index their type.
    chosen: bool,
}

/// Reads the official bundles in `dir` and renders the registry as JSON text.
fn generate(dir: &Path) -> Result<String, String> {
    let mut structures = BTreeMap::new();
    let mut domain_resources = Vec::new();
    let mut fhir_version = Value::Null;
    for bundle in [TYPES_BUNDLE, RESOURCES_BUNDLE] {
        for sd in resources(&dir.join(bundle), "StructureDefinition")? {
            if sd["derivation"] == "constraint" {
                continue;
            }
            if fhir_version.is_null() {
                fhir_version = sd["fhirVersion"].clone();
            }
            if sd["baseDefinition"]
                .as_str()
                .unwrap_or("")
                .ends_with("/DomainResource")
            {
                domain_resources.push(sd["type"].as_str().unwrap_or("").to_owned());
            }
            for element in sd["snapshot"]["element"].as_array().into_iter().flatten() {
                let path = element["path"].as_str().ok_or("an element has no path")?;
                let types = element["type"].as_array().into_iter().flatten();
                let element_def = Element {
                    types: types.map(type_code).collect::<Result<_, _>>()?,
                    content_reference: element["contentReference"].as_str().map(str::to_owned),
                };
                structures.insert(path.to_owned(), element_def);
            }
        }
    }
    let structures = Structures(structures);
    let parameters = resources(&dir.join(PARAMETERS_BUNDLE), "SearchParameter")?;
    let mut out = format!("{{\n  \"fhirVersion\": {fhir_version},\n  \"resources\": {{\n");
    for (i, resource_type) in SERVED.iter().enumerate() {
        let domain = domain_resources.iter().any(|t| t == resource_type);
        let mut rows = BTreeMap::new();
        for sp in &parameters {
            let bases: Vec<&str> = sp["base"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let applies = bases.iter().any(|base| {
                base == resource_type
                    || *base == "Resource"
                    || (*base == "DomainResource" && domain)
            });
            if applies {
                let code = sp["code"].as_str().ok_or("a SearchParameter has no code")?;
                let row = describe(sp, resource_type, &structures)?;
                if rows.insert(code.to_owned(), row).is_some() {
                    return Err(format!("{resource_type} has two parameters named {code}"));
                }
            }
        }
        out.push_str(&format!("    \"{resource_type}\": [\n"));
        let lines: Vec<String> = rows
            .values()
            .map(|row| format!("      {}", inline(row)))
            .collect();
        out.push_str(&lines.join(",\n"));
        out.push_str(if i + 1 < SERVED.len() {
            "\n    ],\n"
        } else {
            "\n    ]\n"
        });
    }
    out.push_str("  }\n}\n");
    Ok(out)
}

/// The resources of one type held by a Bundle file.
fn resources(path: &Path, resource_type: &str) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let bundle: Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    let entries = bundle["entry"]
        .as_array()
        .ok_or_else(|| format!("{} has no entries", path.display()))?;
    Ok(entries
        .iter()
        .map(|entry| entry["resource"].clone())
        .filter(|resource| resource["resourceType"] == resource_type)
        .collect())
}

/// A type code, with the FHIRPath system types of `id` and primitive values named as FHIR
/// types (`Resource.id` is a `string` there).
fn type_code(ty: &Value) -> Result<String, String> {
    let code = ty["code"].as_str().ok_or("a type has no code")?;
    let Some(system) = code.strip_prefix(SYSTEM_TYPE_PREFIX) else {
        return Ok(code.to_owned());
    };
    let declared = ty["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|extension| extension["url"] == FHIR_TYPE_EXTENSION)
        .and_then(|extension| extension["valueUrl"].as_str());
    Ok(declared.map_or_else(|| system.to_lowercase(), str::to_owned))
}

/// The registry row of one parameter for one resource type.
fn describe(sp: &Value, resource_type: &str, structures: &Structures) -> Result<Value, String> {
    let code = sp["code"].as_str().unwrap_or_default();
    let kind = sp["type"]
        .as_str()
        .ok_or_else(|| format!("{code} has no type"))?;
    let mut row = Map::new();
    row.insert("code".into(), json!(code));
    row.insert("type".into(), json!(kind));
    match resolve(sp, kind, resource_type, structures) {
        Ok(paths) => {
            row.insert("paths".into(), Value::Array(paths));
            if kind == "reference" {
                let mut targets: Vec<&str> = sp["target"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                targets.sort_unstable();
                row.insert("target".into(), json!(targets));
            }
        }
        Err(reason) => {
            row.insert("unsupported".into(), json!(reason));
        }
    }
    Ok(Value::Object(row))
}

/// The JSON paths of a parameter for one resource type, or why it cannot be indexed.
fn resolve(
    sp: &Value,
    kind: &str,
    resource_type: &str,
    structures: &Structures,
) -> Result<Vec<Value>, String> {
    let expression = match (kind, sp["expression"].as_str()) {
        ("composite", _) => return Err("composite parameters are not supported".into()),
        ("special", _) => return Err("special parameters are not supported".into()),
        (_, None) => {
            return Err(match sp["code"].as_str() {
                Some("_text") => "searching the narrative is not supported".into(),
                Some("_content") => "full-text search is not supported".into(),
                Some("_query") => "named queries are not supported".into(),
                _ => "the parameter has no FHIRPath expression".into(),
            })
        }
        (_, Some(expression)) => expression,
    };
    if sp["xpathUsage"] == "phonetic" {
        return Err("phonetic matching is not supported".into());
    }
    if indexable(kind).is_empty() {
        return Err(format!("{kind} parameters are not supported yet"));
    }
    let mut paths = Vec::new();
    for alternative in split_top_level(expression, '|') {
        let alternative = strip_parens(alternative);
        let head = alternative.split(['.', ' ']).next().unwrap_or_default();
        if head == resource_type || head == "Resource" || head == "DomainResource" {
            paths.extend(resolve_path(alternative, kind, resource_type, structures)?);
        }
    }
    if paths.is_empty() {
        return Err(format!("`{expression}` has no path for {resource_type}"));
    }
    Ok(paths)
}

/// Resolves one `|`-free alternative such as `DocumentReference.subject.where(resolve() is
/// Patient)` into JSON paths (several when it ends on a choice element).
fn resolve_path(
    alternative: &str,
    kind: &str,
    resource_type: &str,
    structures: &Structures,
) -> Result<Vec<Value>, String> {
    let not_simple = || format!("`{alternative}` is not a simple path");
    // `X.value as Quantity` is the infix spelling of `X.value.ofType(Quantity)`.
    let infix_as = Regex::new(r"^(\S+) as (\w+)$").expect("valid regex");
    let spelled = match infix_as.captures(alternative) {
        Some(c) => format!("{}.ofType({})", &c[1], &c[2]),
        None => alternative.to_owned(),
    };
    let segments = split_top_level(&spelled, '.');
    let function = Regex::new(r"^(\w+)\((.*)\)$").expect("valid regex");
    let equals = Regex::new(r"^(\w+)\s*=\s*'([^']*)'$").expect("valid regex");
    let resolve_is = Regex::new(r"^resolve\(\) is (\w+)$").expect("valid regex");
    let name = Regex::new(r"^[A-Za-z]\w*$").expect("valid regex");
    let root = Cursor {
        steps: Vec::new(),
        at: resource_type.to_owned(),
        datatype: resource_type.to_owned(),
        chosen: false,
    };
    let mut cursors = vec![root];
    let mut only_target = None;
    let mut filter = None;
    for segment in &segments[1..] {
        if only_target.is_some() || filter.is_some() {
            return Err(format!(
                "`{alternative}`: a where() filter must end the path"
            ));
        }
        if name.is_match(segment) {
            cursors = cursors
                .iter()
                .map(|c| structures.step(c, segment))
                .collect::<Result<Vec<_>, _>>()?
                .concat();
            continue;
        }
        let call = function.captures(segment).ok_or_else(not_simple)?;
        let argument = call[2].trim();
        match &call[1] {
            "ofType" | "as" => {
                cursors.retain(|c| c.datatype == argument);
                if cursors.is_empty() {
                    return Err(format!("`{alternative}`: no element of type {argument}"));
                }
                // The concrete type is now explicit: keep it even if not indexable below.
                cursors.iter_mut().for_each(|c| c.chosen = false);
            }
            "where" => {
                if let Some(target) = resolve_is.captures(argument) {
                    only_target = Some(target[1].to_owned());
                } else if let Some(condition) = equals.captures(argument) {
                    filter = Some(json!({ &condition[1]: &condition[2] }));
                } else {
                    return Err(not_simple());
                }
            }
            _ => return Err(not_simple()),
        }
    }
    let allowed = indexable(kind);
    // A bare choice element (`Consent.source`) means each of its types that this kind of
    // parameter can index; any other datatype must be indexable.
    cursors.retain(|c| !c.chosen || allowed.contains(&c.datatype.as_str()));
    if let Some(c) = cursors
        .iter()
        .find(|c| !allowed.contains(&c.datatype.as_str()))
    {
        return Err(format!(
            "{} values cannot be indexed for a {kind} parameter",
            c.datatype
        ));
    }
    if cursors.is_empty() {
        return Err(format!(
            "`{alternative}` has no type a {kind} parameter can index"
        ));
    }
    Ok(cursors
        .into_iter()
        .map(|c| {
            let mut path = Map::new();
            path.insert("steps".into(), json!(c.steps));
            path.insert("datatypes".into(), json!([c.datatype]));
            if let Some(target) = &only_target {
                path.insert("onlyTarget".into(), json!(target));
            }
            if let Some(filter) = &filter {
                path.insert("where".into(), filter.clone());
            }
            Value::Object(path)
        })
        .collect())
}

impl Structures {
    /// Follows one JSON property from a cursor: into a backbone element of the same
    /// definition, or into the definition of the element's datatype.
    fn step(&self, cursor: &Cursor, name: &str) -> Result<Vec<Cursor>, String> {
        let path = format!("{}.{name}", cursor.at);
        let advance = |json_name: String, at: String, datatype: &str, chosen: bool| {
            let mut steps = cursor.steps.clone();
            steps.push(json_name);
            Cursor {
                steps,
                at,
                datatype: datatype.to_owned(),
                chosen,
            }
        };
        if let Some(element) = self.0.get(&path) {
            if let Some(reference) = &element.content_reference {
                let at = reference.trim_start_matches('#').to_owned();
                return Ok(vec![advance(name.to_owned(), at, "BackboneElement", false)]);
            }
            let [datatype] = element.types.as_slice() else {
                return Err(format!("{path} has {} types", element.types.len()));
            };
            let children = format!("{path}.");
            let backbone = (self.0.range(children.clone()..).next())
                .is_some_and(|(key, _)| key.starts_with(&children));
            let at = if backbone {
                path.clone()
            } else {
                datatype.clone()
            };
            return Ok(vec![advance(name.to_owned(), at, datatype, false)]);
        }
        let element = self
            .0
            .get(&format!("{path}[x]"))
            .ok_or_else(|| format!("{path} is not defined"))?;
        Ok(element
            .types
            .iter()
            .map(|datatype| {
                let mut json_name = name.to_owned();
                let mut chars = datatype.chars();
                json_name.extend(chars.next().map(|c| c.to_ascii_uppercase()));
                json_name.push_str(chars.as_str());
                advance(json_name, datatype.clone(), datatype, true)
            })
            .collect())
    }
}

/// Splits at `separator` outside parentheses and quotes.
fn split_top_level(text: &str, separator: char) -> Vec<&str> {
    let (mut parts, mut depth, mut quoted, mut start) = (Vec::new(), 0i32, false, 0);
    for (i, c) in text.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            c if c == separator && depth == 0 && !quoted => {
                parts.push(text[start..i].trim());
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(text[start..].trim());
    parts
}

/// Removes parentheses wrapping a whole alternative: `(Patient.deceased.ofType(dateTime))`.
fn strip_parens(mut text: &str) -> &str {
    while let Some(inner) = text.strip_prefix('(').and_then(|t| t.strip_suffix(')')) {
        // `(a).b(c)` starts and ends with parentheses that do not wrap it whole.
        let mut depth = 0;
        for c in inner.chars() {
            depth += match c {
                '(' => 1,
                ')' => -1,
                _ => 0,
            };
            if depth < 0 {
                return text;
            }
        }
        text = inner.trim();
    }
    text
}

/// One line of JSON with a space after `:` and `,`, as in `fhir/definitions.json`.
fn inline(value: &Value) -> String {
    match value {
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(inline).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => {
            let members: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::from(k.as_str()), inline(v)))
                .collect();
            format!("{{{}}}", members.join(", "))
        }
        scalar => scalar.to_string(),
    }
}

#[test]
fn parameters_are_current() {
    let Some(dir) = crate::fhir::hl7_source::dir("parameters_are_current") else {
        return;
    };
    let generated =
        generate(&dir).unwrap_or_else(|problem| panic!("cannot generate parameters: {problem}"));
    if std::env::var("CARNET_REGENERATE").as_deref() == Ok("1") {
        std::fs::write(OUTPUT, &generated).unwrap_or_else(|e| panic!("cannot write {OUTPUT}: {e}"));
        return;
    }
    let committed = std::fs::read_to_string(OUTPUT).unwrap_or_else(|e| {
        panic!("cannot read {OUTPUT}: {e} (regenerate it with CARNET_REGENERATE=1)")
    });
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "{OUTPUT} is stale (first difference at line {}): regenerate it with \
             `CARNET_REGENERATE=1 cargo test parameters_are_current`",
            line + 1
        );
    }
}
