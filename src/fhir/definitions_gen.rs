//! Builds `definitions.json`, the compact form of the FHIR R4 StructureDefinitions that
//! [`super::validate`] reads at run time.
//!
//! The official definitions (see [`source_dir`]: not part of the repository) weigh several megabytes,
//! mostly prose, constraints and bindings the structural validator never looks at. This
//! test-only module keeps just what it needs and writes it in a stable order, so the
//! committed file can be checked for staleness by [`definitions_are_current`]:
//!
//! ```text
//! {
//!   "fhirVersion": "4.0.1",
//!   "primitives": {              // per primitive type, sorted by name
//!     "date": {"json": "string", "regex": "...", "elements": {"id": "0..1 string", ...}},
//!   },
//!   "datatypes": {               // per complex datatype, sorted by name
//!     "HumanName": {"id": "0..1 string", "extension": "0..* Extension", "given": "0..* string", ...}
//!   },
//!   "resources": {               // per concrete resource type, sorted by name
//!     "Consent": {"provision": "0..1 BackboneElement Σ", "provision.provision": "0..* #provision", ...}
//!   }
//! }
//! ```
//!
//! Element keys are snapshot paths without the type name, in snapshot order. Each value reads
//! `min..max` then either the allowed type codes joined by `|`, or `#path` for a
//! `contentReference` to another element of the same type, then ` Σ` when a resource's element
//! is marked `isSummary` (what `_summary=true` returns, see `fhir::subset`). Datatypes carry
//! no marker: `_summary` keeps or drops a datatype value whole. A primitive's `json` is the JSON
//! kind carrying its value (`boolean`, `number` or `string`) and `regex` the pattern its
//! value must match as a whole; its `elements` describe the `_name` companion object.
//!
//! Regenerate with `CARNET_REGENERATE=1 cargo test definitions_are_current`.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

/// Where the official FHIR R4 definition bundles are looked for when `CARNET_FHIR_R4_DIR` is unset.
/// The committed compact definitions, read by `validate.rs` through `include_str!`.
const OUTPUT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/fhir/definitions.json");
const RESOURCES_BUNDLE: &str = "structure-definitions-resources.json";
const TYPES_BUNDLE: &str = "profiles-types.json";

const REGEX_EXTENSION: &str = "http://hl7.org/fhir/StructureDefinition/regex";
const FHIR_TYPE_EXTENSION: &str =
    "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type";
/// Prefix of the FHIRPath system types used for `id`, `Extension.url` and primitive values.
const SYSTEM_TYPE_PREFIX: &str = "http://hl7.org/fhirpath/System.";
const STRUCTURE_DEFINITION_PREFIX: &str = "http://hl7.org/fhir/StructureDefinition/";
/// Type code of elements holding any resource (`contained`, `Bundle.entry.resource`).
const ANY_RESOURCE: &str = "Resource";
/// Ends the description of a resource element marked `isSummary`, as in the FHIR tables.
const SUMMARY_MARK: &str = " Σ";

/// Element path (without the type name) and its `min..max types[ Σ]` description.
type Elements = Vec<(String, String)>;

/// What the validator needs to know about one primitive type.
struct Primitive {
    /// JSON kind of the value: `boolean`, `number` or `string`.
    json: &'static str,
    regex: Option<String>,
    /// Elements of the `_name` companion object (`id`, `extension`).
    elements: Elements,
}

/// The whole compact form, every map sorted by type name.
struct Compact {
    fhir_version: String,
    primitives: BTreeMap<String, Primitive>,
    datatypes: BTreeMap<String, Elements>,
    resources: BTreeMap<String, Elements>,
}

/// Reads the official bundles in `dir` and renders the compact definitions as JSON text.
fn generate(dir: &Path) -> Result<String, String> {
    let mut definitions = load_bundle(&dir.join(TYPES_BUNDLE))?;
    definitions.extend(load_bundle(&dir.join(RESOURCES_BUNDLE))?);
    let compact = compact(&definitions)?;
    check_type_codes(&compact)?;
    Ok(render(&compact))
}

/// The StructureDefinitions held by one Bundle file.
fn load_bundle(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let bundle: Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    let entries = bundle["entry"]
        .as_array()
        .ok_or_else(|| format!("{} is not a Bundle with entries", path.display()))?;
    Ok(entries
        .iter()
        .map(|entry| entry["resource"].clone())
        .filter(|resource| resource["resourceType"] == "StructureDefinition")
        .collect())
}

/// Sorts the definitions into primitives, datatypes and resources and compacts each.
fn compact(definitions: &[Value]) -> Result<Compact, String> {
    let mut compact = Compact {
        fhir_version: String::new(),
        primitives: BTreeMap::new(),
        datatypes: BTreeMap::new(),
        resources: BTreeMap::new(),
    };
    let bases: BTreeMap<&str, &str> = definitions
        .iter()
        .filter_map(|sd| Some((sd["type"].as_str()?, base_name(sd)?)))
        .collect();
    for sd in definitions {
        let name = text(sd, "type")?;
        // Profiles such as SimpleQuantity constrain a type without defining a new one.
        if sd["derivation"] == "constraint" {
            continue;
        }
        if compact.fhir_version.is_empty() {
            compact.fhir_version = text(sd, "fhirVersion")?.to_owned();
        }
        match text(sd, "kind")? {
            "primitive-type" => {
                let primitive = primitive(sd, name, &bases)?;
                compact.primitives.insert(name.to_owned(), primitive);
            }
            "complex-type" => {
                compact
                    .datatypes
                    .insert(name.to_owned(), elements(sd, name, false)?);
            }
            // Abstract resources (Resource, DomainResource) are already merged into the
            // snapshots of the concrete ones and cannot be instantiated.
            "resource" if sd["abstract"] != true => {
                compact
                    .resources
                    .insert(name.to_owned(), elements(sd, name, true)?);
            }
            _ => {}
        }
    }
    Ok(compact)
}

/// Name of the type a StructureDefinition specializes (`integer` for `positiveInt`).
fn base_name(sd: &Value) -> Option<&str> {
    sd["baseDefinition"]
        .as_str()?
        .strip_prefix(STRUCTURE_DEFINITION_PREFIX)
}

/// Compacts a primitive type: JSON kind, value regex and companion elements.
fn primitive(sd: &Value, name: &str, bases: &BTreeMap<&str, &str>) -> Result<Primitive, String> {
    let value_path = format!("{name}.value");
    let value = snapshot(sd)?
        .iter()
        .find(|element| element["path"] == value_path.as_str())
        .ok_or_else(|| format!("primitive {name} has no {value_path} element"))?;
    let regex = value["type"][0]["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|extension| extension["url"] == REGEX_EXTENSION)
        .and_then(|extension| extension["valueString"].as_str())
        .map(str::to_owned);
    let companion = elements(sd, name, false)?
        .into_iter()
        .filter(|(path, _)| path != "value")
        .collect();
    Ok(Primitive {
        json: json_kind(name, bases),
        regex,
        elements: companion,
    })
}

/// JSON kind of a primitive, found by following its specializations up to a root type:
/// `positiveInt` and `unsignedInt` derive from `integer`, `code` from `string`, and so on.
fn json_kind(name: &str, bases: &BTreeMap<&str, &str>) -> &'static str {
    let mut current = name;
    while let Some(&base) = bases.get(current) {
        if base == "Element" {
            break;
        }
        current = base;
    }
    match current {
        "boolean" => "boolean",
        "integer" | "decimal" => "number",
        _ => "string",
    }
}

/// The snapshot elements of a type, except its root, as `(relative path, description)`.
fn elements(sd: &Value, name: &str, is_resource: bool) -> Result<Elements, String> {
    let prefix = format!("{name}.");
    let mut out = Vec::new();
    for element in snapshot(sd)? {
        let path = text(element, "path")?;
        let Some(relative) = path.strip_prefix(&prefix) else {
            continue; // the root element itself
        };
        let description = describe(element, name, relative, is_resource)?;
        out.push((relative.to_owned(), description));
    }
    Ok(out)
}

/// `min..max types[ Σ]` for one element, e.g. `0..* HumanName Σ` or `0..* #provision`.
fn describe(
    element: &Value,
    name: &str,
    relative: &str,
    is_resource: bool,
) -> Result<String, String> {
    let path = format!("{name}.{relative}");
    let min = element["min"]
        .as_u64()
        .ok_or_else(|| format!("{path} has no min"))?;
    let max = text(element, "max")?;
    if let Some(reference) = element["contentReference"].as_str() {
        let target = reference
            .strip_prefix('#')
            .and_then(|r| r.strip_prefix(name))
            .and_then(|r| r.strip_prefix('.'))
            .ok_or_else(|| format!("{path} refers outside its type: {reference}"))?;
        return Ok(format!(
            "{min}..{max} #{target}{}",
            summary_mark(element, is_resource)
        ));
    }
    let types = element["type"]
        .as_array()
        .filter(|types| !types.is_empty())
        .ok_or_else(|| format!("{path} has neither type nor contentReference"))?;
    let codes = types
        .iter()
        .map(|t| type_code(t, &path))
        .collect::<Result<Vec<_>, _>>()?;
    // The logical id of a resource is an `id` (R4 resource.html); its snapshot only says
    // System.String like every other element id.
    let codes = if is_resource && relative == "id" {
        vec!["id".to_owned()]
    } else {
        codes
    };
    Ok(format!(
        "{min}..{max} {}{}",
        codes.join("|"),
        summary_mark(element, is_resource)
    ))
}

/// The summary marker when a resource's element is marked `isSummary`, else nothing. Only
/// resources need it: `_summary` never looks inside datatypes.
fn summary_mark(element: &Value, is_resource: bool) -> &'static str {
    if is_resource && element["isSummary"] == true {
        SUMMARY_MARK
    } else {
        ""
    }
}

/// FHIR type code of one `ElementDefinition.type`, mapping FHIRPath system types back to
/// the FHIR primitive they stand for.
fn type_code(t: &Value, path: &str) -> Result<String, String> {
    let code = text(t, "code")?;
    let Some(system) = code.strip_prefix(SYSTEM_TYPE_PREFIX) else {
        return Ok(code.to_owned());
    };
    let declared = t["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|extension| extension["url"] == FHIR_TYPE_EXTENSION)
        .and_then(|extension| extension["valueUrl"].as_str());
    match (declared, system) {
        (Some(fhir_type), _) => Ok(fhir_type.to_owned()),
        // `xhtml.id` carries no fhir-type extension; element ids are strings.
        (None, "String") => Ok("string".to_owned()),
        (None, _) => Err(format!("{path} uses {code} without a FHIR type")),
    }
}

/// Fails when an element names a type the compact form does not define, so the validator
/// can trust every code it reads.
fn check_type_codes(compact: &Compact) -> Result<(), String> {
    let known: BTreeSet<&str> = compact
        .primitives
        .keys()
        .chain(compact.datatypes.keys())
        .chain(compact.resources.keys())
        .map(String::as_str)
        .chain([ANY_RESOURCE])
        .collect();
    let all_elements = compact
        .primitives
        .iter()
        .map(|(name, p)| (name, &p.elements))
        .chain(&compact.datatypes)
        .chain(&compact.resources);
    for (name, elements) in all_elements {
        for (path, description) in elements {
            let description = description
                .strip_suffix(SUMMARY_MARK)
                .unwrap_or(description);
            let types = description.split_once(' ').map_or("", |(_, types)| types);
            if types.starts_with('#') {
                continue;
            }
            if let Some(unknown) = types.split('|').find(|code| !known.contains(code)) {
                return Err(format!("{name}.{path} has unknown type {unknown}"));
            }
        }
    }
    Ok(())
}

/// Writes the compact form as JSON text, one element per line, in a fixed order.
fn render(compact: &Compact) -> String {
    let mut out = String::from("{\n");
    let _ = writeln!(out, "  \"fhirVersion\": {},", quote(&compact.fhir_version));
    out.push_str("  \"primitives\": {\n");
    let primitives: Vec<String> = compact
        .primitives
        .iter()
        .map(|(name, p)| {
            let regex = p
                .regex
                .as_deref()
                .map(|r| format!(", \"regex\": {}", quote(r)))
                .unwrap_or_default();
            format!(
                "    {}: {{\"json\": {}{regex}, \"elements\": {{{}}}}}",
                quote(name),
                quote(p.json),
                inline_elements(&p.elements)
            )
        })
        .collect();
    out.push_str(&primitives.join(",\n"));
    out.push_str("\n  },\n  \"datatypes\": {\n");
    render_types(&mut out, &compact.datatypes);
    out.push_str("  },\n  \"resources\": {\n");
    render_types(&mut out, &compact.resources);
    out.push_str("  }\n}\n");
    out
}

/// `"path": "description"` pairs on one line, for the short primitive element lists.
fn inline_elements(elements: &Elements) -> String {
    elements
        .iter()
        .map(|(path, description)| format!("{}: {}", quote(path), quote(description)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One object per type, one line per element.
fn render_types(out: &mut String, types: &BTreeMap<String, Elements>) {
    let rendered: Vec<String> = types
        .iter()
        .map(|(name, elements)| {
            let lines: Vec<String> = elements
                .iter()
                .map(|(path, description)| format!("      {}: {}", quote(path), quote(description)))
                .collect();
            format!("    {}: {{\n{}\n    }}", quote(name), lines.join(",\n"))
        })
        .collect();
    out.push_str(&rendered.join(",\n"));
    out.push('\n');
}

/// A JSON string literal.
fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serializes")
}

/// A required string property of a definition.
fn text<'a>(value: &'a Value, key: &str) -> Result<&'a str, String> {
    value[key]
        .as_str()
        .ok_or_else(|| format!("expected a string `{key}` in {}", short(value)))
}

/// `snapshot.element` of a StructureDefinition.
fn snapshot(sd: &Value) -> Result<&Vec<Value>, String> {
    sd["snapshot"]["element"]
        .as_array()
        .ok_or_else(|| format!("{} has no snapshot", short(sd)))
}

/// A short name for error messages.
fn short(value: &Value) -> String {
    value
        .get("id")
        .or_else(|| value.get("path"))
        .map_or_else(|| "a definition".to_owned(), Value::to_string)
}

#[test]
fn definitions_are_current() {
    let Some(dir) = crate::fhir::hl7_source::dir("definitions_are_current") else {
        return;
    };
    let generated =
        generate(&dir).unwrap_or_else(|problem| panic!("cannot generate definitions: {problem}"));
    if std::env::var("CARNET_REGENERATE").as_deref() == Ok("1") {
        std::fs::write(OUTPUT, &generated).unwrap_or_else(|e| panic!("cannot write {OUTPUT}: {e}"));
        return;
    }
    let committed = std::fs::read_to_string(OUTPUT).unwrap_or_else(|e| {
        panic!("cannot read {OUTPUT}: {e} (regenerate it with CARNET_REGENERATE=1)")
    });
    if committed != generated {
        // Point at the first difference rather than dumping ~64 KB twice; when every common
        // line matches, one file is a prefix of the other and differs where it ends.
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "{OUTPUT} is stale (first difference at line {}): regenerate it with \
             `CARNET_REGENERATE=1 cargo test definitions_are_current`",
            line + 1
        );
    }
}
