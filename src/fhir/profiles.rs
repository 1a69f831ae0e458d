//! Carnet's own profiles (`fhir-profiles/`), enforced on every write of their resource type.
//!
//! Only the StructureDefinition features below are understood; a profile using anything else
//! fails to load (and the server refuses to start), so no rule is ever silently skipped:
//! cardinality (`min`/`max`), value slicing on one child (`slicing.discriminator` of type
//! `value`, slices with a `fixed*`/`pattern*` on that child and required children), and
//! invariants of the form `path.where(field = 'a' or field = 'b').exists()`.

use super::outcome::OutcomeIssue;
use serde_json::Value;
use std::sync::LazyLock;

/// The profile files, embedded so the binary carries its rules wherever it runs.
const SOURCES: &[(&str, &str)] = &[(
    "carnet-patient.json",
    include_str!("../../fhir-profiles/carnet-patient.json"),
)];

/// One loaded profile.
#[derive(Debug)]
pub struct Profile {
    pub url: String,
    pub resource_type: String,
    rules: Vec<Rule>,
}

#[derive(Debug)]
enum Rule {
    Cardinality {
        path: String,
        min: usize,
        max: Option<usize>,
    },
    Slice {
        path: String,
        name: String,
        discriminator: String,
        value: String,
        min: usize,
        max: Option<usize>,
        required: Vec<String>,
    },
    Invariant {
        key: String,
        human: String,
        path: String,
        field: String,
        any_of: Vec<String>,
    },
}

static PROFILES: LazyLock<Result<Vec<Profile>, String>> = LazyLock::new(|| {
    SOURCES
        .iter()
        .map(|(file, text)| {
            let json: Value = serde_json::from_str(text).map_err(|e| format!("{file}: {e}"))?;
            parse(&json).map_err(|e| format!("{file}: {e}"))
        })
        .collect()
});

/// Loads every profile; the error names the file and the unsupported feature.
pub fn load() -> Result<&'static [Profile], String> {
    PROFILES.as_deref().map_err(Clone::clone)
}

/// The profiles enforced on `resource_type`.
pub fn for_type(resource_type: &str) -> impl Iterator<Item = &'static Profile> + '_ {
    load()
        .unwrap_or_default()
        .iter()
        .filter(move |p| p.resource_type == resource_type)
}

/// Checks `resource` against every profile of its type; empty when it conforms.
pub fn check(resource: &Value) -> Vec<OutcomeIssue> {
    let resource_type = resource["resourceType"].as_str().unwrap_or_default();
    for_type(resource_type)
        .flat_map(|profile| {
            profile
                .rules
                .iter()
                .flat_map(|r| check_rule(r, profile, resource))
        })
        .collect()
}

fn parse(sd: &Value) -> Result<Profile, String> {
    let field = |name: &str| {
        sd[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("{name} is required"))
    };
    if sd["resourceType"] != "StructureDefinition" || sd["derivation"] != "constraint" {
        return Err("a profile is a StructureDefinition with derivation = constraint".into());
    }
    let resource_type = field("type")?;
    let url = field("url")?;
    let elements = sd["differential"]["element"]
        .as_array()
        .ok_or("differential.element is required")?;
    let mut rules = Vec::new();
    let mut discriminators: Vec<(String, String)> = Vec::new();
    for element in elements {
        let id = element["id"].as_str().ok_or("element.id is required")?;
        let path = element["path"].as_str().ok_or("element.path is required")?;
        let relative = path
            .strip_prefix(&resource_type)
            .map(|p| p.trim_start_matches('.').to_owned())
            .ok_or_else(|| format!("{path} is not under {resource_type}"))?;
        for key in element
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k.as_str())
        {
            let known = matches!(
                key,
                "id" | "path"
                    | "min"
                    | "max"
                    | "slicing"
                    | "sliceName"
                    | "constraint"
                    | "short"
                    | "definition"
                    | "comment"
            ) || key.starts_with("fixed")
                || key.starts_with("pattern");
            if !known {
                return Err(format!(
                    "{id}: {key} is not supported by Carnet's profile engine"
                ));
            }
        }
        let min = element["min"].as_u64().unwrap_or(0) as usize;
        let max = match element["max"].as_str() {
            None | Some("*") => None,
            Some(m) => Some(m.parse().map_err(|_| format!("{id}: bad max {m}"))?),
        };
        if let Some(constraints) = element["constraint"].as_array() {
            for c in constraints {
                rules.push(parse_invariant(c, &relative)?);
            }
        }
        if let Some(slicing) = element.get("slicing") {
            let discriminators_here = slicing["discriminator"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            match discriminators_here.as_slice() {
                [d] if d["type"] == "value"
                    && d["path"].as_str().is_some_and(|p| !p.contains('.')) =>
                {
                    discriminators.push((relative.clone(), d["path"].as_str().unwrap().to_owned()));
                }
                _ => {
                    return Err(format!(
                        "{id}: only one value discriminator on a child is supported"
                    ))
                }
            }
        }
        if let Some(slice) = element["sliceName"].as_str() {
            let discriminator = discriminators
                .iter()
                .find(|(p, _)| *p == relative)
                .map(|(_, d)| d.clone())
                .ok_or_else(|| format!("{id}: slice without slicing"))?;
            let children: Vec<&Value> = elements
                .iter()
                .filter(|e| {
                    e["id"]
                        .as_str()
                        .is_some_and(|i| i.starts_with(&format!("{id}.")))
                })
                .collect();
            let value = children
                .iter()
                .find(|e| e["path"].as_str() == Some(&format!("{path}.{discriminator}")))
                .and_then(|e| fixed_value(e))
                .ok_or_else(|| format!("{id}: the slice needs a fixed {discriminator}"))?;
            let required = children
                .iter()
                .filter(|e| e["min"].as_u64().unwrap_or(0) > 0)
                .filter_map(|e| e["path"].as_str()?.rsplit('.').next().map(str::to_owned))
                .filter(|child| *child != discriminator)
                .collect();
            rules.push(Rule::Slice {
                path: relative,
                name: slice.to_owned(),
                discriminator,
                value,
                min,
                max,
                required,
            });
        } else if id.contains(':') {
            // A slice's child: folded into its slice above.
        } else if !relative.is_empty()
            && (element.get("min").is_some() || element.get("max").is_some())
        {
            rules.push(Rule::Cardinality {
                path: relative,
                min,
                max,
            });
        }
    }
    Ok(Profile {
        url,
        resource_type,
        rules,
    })
}

fn fixed_value(element: &Value) -> Option<String> {
    element.as_object()?.iter().find_map(|(k, v)| {
        (k.starts_with("fixed") || k.starts_with("pattern"))
            .then(|| v.as_str().map(str::to_owned))?
    })
}

/// Parses `path.where(field = 'a' or field = 'b').exists()`.
fn parse_invariant(constraint: &Value, element_path: &str) -> Result<Rule, String> {
    let key = constraint["key"].as_str().unwrap_or("?").to_owned();
    let expression = constraint["expression"].as_str().unwrap_or_default();
    let unsupported = || format!("invariant {key}: {expression:?} is not a supported expression");
    let body = expression
        .strip_suffix(").exists()")
        .ok_or_else(unsupported)?;
    let (path, conditions) = body.split_once(".where(").ok_or_else(unsupported)?;
    let mut field = None;
    let mut any_of = Vec::new();
    for condition in conditions.split(" or ") {
        let (f, literal) = condition.split_once(" = ").ok_or_else(unsupported)?;
        let literal = literal
            .strip_prefix('\'')
            .and_then(|l| l.strip_suffix('\''))
            .ok_or_else(unsupported)?;
        if field.get_or_insert(f) != &f {
            return Err(unsupported());
        }
        any_of.push(literal.to_owned());
    }
    let field = field.ok_or_else(unsupported)?.to_owned();
    let full_path = [element_path, path]
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(".");
    Ok(Rule::Invariant {
        key,
        human: constraint["human"].as_str().unwrap_or_default().to_owned(),
        path: full_path,
        field,
        any_of,
    })
}

/// The values at a dotted path, arrays flattened, each with its FHIRPath location.
fn values_at<'a>(resource: &'a Value, path: &str, root: &str) -> Vec<(String, &'a Value)> {
    let mut current = vec![(root.to_owned(), resource)];
    for step in path.split('.').filter(|s| !s.is_empty()) {
        let mut next = Vec::new();
        for (location, value) in current {
            match value.get(step) {
                Some(Value::Array(items)) => next.extend(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, v)| (format!("{location}.{step}[{i}]"), v)),
                ),
                Some(v) => next.push((format!("{location}.{step}"), v)),
                None => {}
            }
        }
        current = next;
    }
    current
}

fn check_rule(rule: &Rule, profile: &Profile, resource: &Value) -> Vec<OutcomeIssue> {
    let root = profile.resource_type.as_str();
    let violation = |code: &'static str, text: String| {
        OutcomeIssue::error(code, format!("{text} (profile {})", profile.url))
    };
    match rule {
        Rule::Cardinality { path, min, max } => {
            let n = values_at(resource, path, root).len();
            let at = format!("{root}.{path}");
            if n < *min {
                vec![violation("required", format!("{at} is required")).at(at)]
            } else if max.is_some_and(|m| n > m) {
                vec![violation("structure", format!("{at} allows at most {}", max.unwrap())).at(at)]
            } else {
                vec![]
            }
        }
        Rule::Slice {
            path,
            name,
            discriminator,
            value,
            min,
            max,
            required,
        } => {
            let members: Vec<(String, &Value)> = values_at(resource, path, root)
                .into_iter()
                .filter(|(_, v)| v[discriminator.as_str()].as_str() == Some(value))
                .collect();
            let at = format!("{root}.{path}");
            let mut issues = Vec::new();
            if members.len() < *min || max.is_some_and(|m| members.len() > m) {
                issues.push(
                    violation(
                        "structure",
                        format!(
                            "{at}: slice {name} ({discriminator} = {value}) has {} entries",
                            members.len()
                        ),
                    )
                    .at(at),
                );
            }
            for (location, member) in members {
                for child in required.iter().filter(|c| member.get(c.as_str()).is_none()) {
                    let at = format!("{location}.{child}");
                    issues.push(
                        violation("required", format!("{at} is required in slice {name}")).at(at),
                    );
                }
            }
            issues
        }
        Rule::Invariant {
            key,
            human,
            path,
            field,
            any_of,
        } => {
            let holds = values_at(resource, path, root).iter().any(|(_, v)| {
                v[field.as_str()]
                    .as_str()
                    .is_some_and(|f| any_of.iter().any(|a| a == f))
            });
            if holds {
                vec![]
            } else {
                // The element whose values break the rule (`Patient.identifier`).
                let at = [root, path.as_str()]
                    .iter()
                    .filter(|p| !p.is_empty())
                    .copied()
                    .collect::<Vec<_>>()
                    .join(".");
                vec![violation("invariant", format!("{key}: {human}")).at(at)]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NIR: &str = "urn:oid:1.2.250.1.213.1.4.8";
    const NIA: &str = "urn:oid:1.2.250.1.213.1.4.9";

    #[test]
    fn every_file_in_fhir_profiles_is_loaded() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fhir-profiles");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let embedded: Vec<&str> = SOURCES.iter().map(|(f, _)| *f).collect();
        assert_eq!(files, embedded);
        assert_eq!(load().unwrap().len(), SOURCES.len());
    }

    #[test]
    fn profiles_are_valid_structure_definitions() {
        for (file, text) in SOURCES {
            let json: Value = serde_json::from_str(text).unwrap();
            let issues = crate::fhir::validate::validate_resource(&json);
            assert!(issues.is_empty(), "{file}: {issues:?}");
        }
    }

    #[test]
    fn a_patient_with_an_ins_conforms() {
        for system in [NIR, NIA] {
            let p = json!({"resourceType": "Patient", "identifier": [
                {"system": "urn:oid:1.2.250.1.71.4.2.7", "value": "IPP-1"},
                {"system": system, "value": "284022912345678"}]});
            assert!(check(&p).is_empty(), "{:?}", check(&p));
        }
    }

    #[test]
    fn a_patient_without_ins_is_refused_with_the_rule() {
        let none = json!({"resourceType": "Patient", "name": [{"family": "Durand"}]});
        let issues = check(&none);
        assert!(
            issues
                .iter()
                .any(|i| i.code == "required"
                    && i.expression.as_deref() == Some("Patient.identifier"))
        );
        assert!(issues
            .iter()
            .any(|i| i.code == "invariant" && i.diagnostics.contains("carnet-ins-1")));
        let other =
            json!({"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "1"}]});
        let issues = check(&other);
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].expression.as_deref(), Some("Patient.identifier"));
    }

    #[test]
    fn slices_bound_their_members() {
        let two = json!({"resourceType": "Patient", "identifier": [
            {"system": NIR, "value": "1"}, {"system": NIR, "value": "2"}]});
        assert!(check(&two).iter().any(|i| i.diagnostics.contains("insNir")));
        let no_value = json!({"resourceType": "Patient", "identifier": [{"system": NIA}]});
        let issues = check(&no_value);
        assert!(
            issues
                .iter()
                .any(|i| i.expression.as_deref() == Some("Patient.identifier[0].value")),
            "{issues:?}"
        );
    }

    #[test]
    fn unsupported_features_refuse_to_load() {
        let sd = json!({"resourceType": "StructureDefinition", "derivation": "constraint", "type": "Patient",
            "url": "u", "differential": {"element": [{"id": "Patient.name", "path": "Patient.name", "binding": {}}]}});
        assert!(parse(&sd).unwrap_err().contains("binding"));
        let sd = json!({"resourceType": "StructureDefinition", "derivation": "constraint", "type": "Patient",
            "url": "u", "differential": {"element": [{"id": "Patient", "path": "Patient",
            "constraint": [{"key": "k", "expression": "name.count() > 1"}]}]}});
        assert!(parse(&sd)
            .unwrap_err()
            .contains("not a supported expression"));
    }

    #[test]
    fn other_types_have_no_profile() {
        assert!(check(&json!({"resourceType": "Organization"})).is_empty());
    }
}
