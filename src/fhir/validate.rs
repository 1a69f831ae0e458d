//! Structural validation of FHIR R4 resources in their JSON form.
//!
//! The rules come from the official StructureDefinitions, kept in compact form in
//! `definitions.json` (written by the test-only `definitions_gen` module), and from the JSON
//! representation rules of <http://hl7.org/fhir/R4/json.html>:
//!
//! - every property must be an element of the type (choice elements `value[x]` appear as
//!   `valueString`, `valueQuantity`…, at most one of them; primitives may have an `_name`
//!   companion carrying `id`/`extension`);
//! - cardinality: `max` 1 is a single JSON value, more is a JSON array; `min` ≥ 1 is required;
//! - primitives have the right JSON kind and match their type's regex (plus calendar dates,
//!   time zones and integer ranges, which regexes cannot express);
//! - no `null` (except to line up `name`/`_name` arrays), no empty string, object or array.
//!
//! FHIRPath invariants and terminology bindings are out of scope.

use regex::Regex;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::LazyLock;

/// One structural problem found in a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub code: IssueCode,
    /// FHIRPath-like location, e.g. `Patient.name[0].given[1]`, `DocumentReference.content[0].attachment.url`.
    pub expression: String,
    /// Human readable, English, says what is wrong.
    pub diagnostics: String,
}

/// Kind of problem, named after the FHIR `issue-type` codes an OperationOutcome carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueCode {
    /// The JSON shape is wrong: unknown property, array vs single value, null, empty object…
    Structure,
    /// A required element is missing.
    Required,
    /// A primitive value is malformed (pattern, calendar date, range, empty string…).
    Value,
    /// The resource type is not one this server knows.
    NotSupported,
}

impl IssueCode {
    /// The FHIR `issue-type` code: `structure`, `required`, `value` or `not-supported`.
    pub fn as_str(&self) -> &'static str {
        match self {
            IssueCode::Structure => "structure",
            IssueCode::Required => "required",
            IssueCode::Value => "value",
            IssueCode::NotSupported => "not-supported",
        }
    }
}

/// Validates `resource` (a JSON object with `resourceType`) against the R4 definitions; empty Vec = valid.
///
/// Issues come in document order, children before the required elements missing from their
/// parent, and stop after the first 100.
pub fn validate_resource(resource: &Value) -> Vec<Issue> {
    let mut validator = Validator {
        definitions: &DEFINITIONS,
        issues: Vec::new(),
        depth: 0,
    };
    validator.root(resource);
    validator.issues
}

/// True when the definitions include this resource type.
pub fn is_known_resource_type(name: &str) -> bool {
    DEFINITIONS.resources.contains_key(name)
}

/// Every resource type the definitions include, in no particular order.
pub fn resource_types() -> impl Iterator<Item = &'static str> {
    DEFINITIONS.resources.keys().map(String::as_str)
}

/// What the definitions say about one element of a resource, for `_summary` and `_elements`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElementInfo {
    /// Name as defined: `birthDate`, `deceased[x]`.
    pub name: &'static str,
    /// Minimum cardinality: 1 or more for mandatory elements.
    pub min: u32,
    /// Marked `isSummary`: part of what `_summary=true` returns.
    pub is_summary: bool,
    /// Defined inline (a BackboneElement or a `contentReference` to one), so its children
    /// have definitions of their own; datatypes and resources are opaque here.
    pub is_backbone: bool,
}

/// The element `path` leads to in `resource_type`, going down through backbone elements:
/// `["contact", "name"]` in `Patient`. Steps are JSON property names (`deceasedBoolean`; no
/// leading `_`), or a choice element's base name (`deceased`). `None` when the type or an
/// element is unknown, or the path goes into a datatype.
pub fn element_info(resource_type: &str, path: &[&str]) -> Option<ElementInfo> {
    let definitions: &'static Definitions = &DEFINITIONS;
    let mut shape = definitions.resources.get(resource_type).copied();
    let mut info = None;
    for step in path {
        let (element, target) = definitions.shapes[shape?].element_named(step)?;
        shape = match target {
            Some(Target::Complex(inner)) if element.backbone => Some(inner),
            _ => None,
        };
        info = Some(ElementInfo {
            name: &element.name,
            min: element.min,
            is_summary: element.summary,
            is_backbone: element.backbone,
        });
    }
    info
}

/// Whether the element at a dotted path of JSON property names (`Patient.contact.name.given`,
/// `Patient.birthDate.extension`), walked through backbone elements and datatypes alike, is
/// a JSON array. Unknown paths are `false`: validation reports them afterwards.
pub fn is_repeating(path: &str) -> bool {
    let definitions: &'static Definitions = &DEFINITIONS;
    let mut steps = path.split('.');
    let Some(mut shape) = steps
        .next()
        .and_then(|t| definitions.resources.get(t).copied())
    else {
        return false;
    };
    let mut steps = steps.peekable();
    while let Some(step) = steps.next() {
        let Some((element, target)) = definitions.shapes[shape].element_named(step) else {
            return false;
        };
        if steps.peek().is_none() {
            return element.repeats();
        }
        match target {
            Some(Target::Complex(inner)) => shape = inner,
            // Below a primitive only `id` and `extension` exist (in its `_name` companion).
            Some(Target::Primitive(_)) => {
                return steps.next() == Some("extension") && steps.peek().is_none()
            }
            _ => return false,
        }
    }
    false
}

/// Past this many issues the resource is clearly broken; more would only flood the client.
const MAX_ISSUES: usize = 100;

/// Deepest object nesting followed. serde_json's parser already stops at 128 levels; this
/// guards against hand-built values recursing without end.
const MAX_DEPTH: usize = 256;

/// First character of a string standing for a JSON number's source text, as produced by
/// `fhir::json::parse_lossless` (which keeps decimals exact without `arbitrary_precision`).
const NUMBER_MARK: char = '\u{0}';

/// Expression used when the problem is the document itself.
const ROOT_EXPRESSION: &str = "$this";

static DEFINITIONS: LazyLock<Definitions> = LazyLock::new(|| {
    Definitions::parse(include_str!("definitions.json"))
        .unwrap_or_else(|problem| panic!("fhir/definitions.json is unusable: {problem}"))
});

// ---------------------------------------------------------------------------------------------
// Definitions, indexed for validation.

/// Index of a [`Shape`] in [`Definitions::shapes`].
type ShapeId = usize;
/// Index of a [`Primitive`] in [`Definitions::primitives`].
type PrimitiveId = usize;

/// All types, resolved into shapes that point at each other by index.
struct Definitions {
    shapes: Vec<Shape>,
    primitives: Vec<Primitive>,
    /// Concrete resource types → root shape.
    resources: HashMap<String, ShapeId>,
}

/// The properties a JSON object of some type (or backbone element) may have.
struct Shape {
    /// Definition path for messages: `Patient`, `Patient.contact`, `HumanName`.
    name: String,
    /// In definition order, which is the order missing required elements are reported in.
    elements: Vec<ElementDef>,
    /// JSON property name (without `_`) → (index in `elements`, index in its `variants`).
    properties: HashMap<String, (usize, usize)>,
}

/// One element of a shape.
struct ElementDef {
    /// Name as defined, e.g. `given` or `value[x]`.
    name: String,
    min: u32,
    /// `None` when unbounded.
    max: Option<u32>,
    /// The single type of a plain element, or one entry per allowed type of a choice.
    variants: Vec<Variant>,
    /// Marked `isSummary` (only ever set on resource elements).
    summary: bool,
    /// Defined inline rather than by a named type: its shape belongs to this resource.
    backbone: bool,
}

impl ElementDef {
    /// Whether the JSON form is an array.
    fn repeats(&self) -> bool {
        self.max.is_none_or(|max| max > 1)
    }
}

/// One way an element can appear: its JSON property name and what it holds.
struct Variant {
    json_name: String,
    target: Target,
}

/// What an element's value is validated as.
#[derive(Clone, Copy)]
enum Target {
    Primitive(PrimitiveId),
    /// A complex datatype or an inline backbone element.
    Complex(ShapeId),
    /// A resource with its own `resourceType`, of the given type when not `None`.
    Resource(Option<ShapeId>),
}

/// A primitive type.
struct Primitive {
    name: String,
    json: JsonKind,
    /// The type's regex, anchored to match whole values.
    pattern: Option<Regex>,
    /// Checks the regex cannot express.
    extra: ExtraCheck,
    /// Shape of the `_name` companion object.
    companion: ShapeId,
}

/// JSON kind carrying a primitive's value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum JsonKind {
    Boolean,
    Number,
    String,
}

/// Value checks beyond the regex, chosen by primitive type name.
#[derive(Clone, Copy)]
enum ExtraCheck {
    None,
    /// A real calendar date (the regex accepts `2024-02-30`).
    Date,
    /// As `Date`, and explains a time given without a time zone.
    DateTime,
    /// An integer within these inclusive bounds (FHIR integers are 32-bit).
    Range(i64, i64),
    /// Narrative XHTML: a `<div>` element.
    Xhtml,
    /// A resource id: the regex allows `.` and `..`, which are path segments, not ids.
    Id,
}

impl ExtraCheck {
    fn for_type(name: &str) -> ExtraCheck {
        let max = i64::from(i32::MAX);
        match name {
            "date" => ExtraCheck::Date,
            "dateTime" | "instant" => ExtraCheck::DateTime,
            "integer" => ExtraCheck::Range(i64::from(i32::MIN), max),
            "positiveInt" => ExtraCheck::Range(1, max),
            "unsignedInt" => ExtraCheck::Range(0, max),
            "xhtml" => ExtraCheck::Xhtml,
            "id" => ExtraCheck::Id,
            _ => ExtraCheck::None,
        }
    }
}

/// Type code of elements holding any resource.
const ANY_RESOURCE: &str = "Resource";
/// Ends the description of an element marked `isSummary`.
const SUMMARY_MARK: &str = " Σ";

impl Definitions {
    /// Reads the compact JSON form (see `definitions_gen.rs` for its layout).
    fn parse(text: &str) -> Result<Definitions, String> {
        let json: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let section = |key: &str| {
            json[key]
                .as_object()
                .ok_or_else(|| format!("missing section `{key}`"))
        };
        let (primitives, datatypes, resources) = (
            section("primitives")?,
            section("datatypes")?,
            section("resources")?,
        );

        let mut definitions = Definitions {
            shapes: Vec::new(),
            primitives: Vec::new(),
            resources: HashMap::new(),
        };
        // First give every named type an id, so elements can refer to any of them.
        let mut named: HashMap<&str, Target> = HashMap::new();
        named.insert(ANY_RESOURCE, Target::Resource(None));
        for (name, primitive) in primitives {
            let companion = definitions.new_shape(name.clone());
            let id = definitions.primitives.len();
            definitions
                .primitives
                .push(Primitive::parse(name, primitive, companion)?);
            named.insert(name, Target::Primitive(id));
        }
        for name in datatypes.keys() {
            let shape = definitions.new_shape(name.clone());
            named.insert(name, Target::Complex(shape));
        }
        for name in resources.keys() {
            let shape = definitions.new_shape(name.clone());
            definitions.resources.insert(name.clone(), shape);
            named.insert(name, Target::Resource(Some(shape)));
        }
        // Then fill in their elements.
        for (id, (name, primitive)) in primitives.iter().enumerate() {
            let companion = definitions.primitives[id].companion;
            definitions.add_elements(companion, name, &primitive["elements"], &named)?;
        }
        for (name, elements) in datatypes {
            let Target::Complex(shape) = named[name.as_str()] else {
                unreachable!("datatypes were registered as complex")
            };
            definitions.add_elements(shape, name, elements, &named)?;
        }
        for (name, elements) in resources {
            let shape = definitions.resources[name];
            definitions.add_elements(shape, name, elements, &named)?;
        }
        Ok(definitions)
    }

    fn new_shape(&mut self, name: String) -> ShapeId {
        self.shapes.push(Shape {
            name,
            elements: Vec::new(),
            properties: HashMap::new(),
        });
        self.shapes.len() - 1
    }

    /// Adds the elements of one type to its root shape, creating a shape for each inline
    /// backbone element (an element that has children of its own).
    fn add_elements(
        &mut self,
        root: ShapeId,
        type_name: &str,
        elements: &Value,
        named: &HashMap<&str, Target>,
    ) -> Result<(), String> {
        let elements = elements
            .as_object()
            .ok_or_else(|| format!("{type_name}: elements must be an object"))?;
        let mut shapes: HashMap<&str, ShapeId> = HashMap::from([("", root)]);
        for path in elements.keys() {
            if let Some((parent, _)) = path.rsplit_once('.') {
                if !shapes.contains_key(parent) {
                    let shape = self.new_shape(format!("{type_name}.{parent}"));
                    shapes.insert(parent, shape);
                }
            }
        }
        for (path, description) in elements {
            let context = format!("{type_name}.{path}");
            let description = description
                .as_str()
                .ok_or_else(|| format!("{context}: description must be a string"))?;
            let (parent, name) = path.rsplit_once('.').unwrap_or(("", path));
            let parent = *shapes
                .get(parent)
                .ok_or_else(|| format!("{context}: no parent element"))?;
            let element =
                parse_element(name, description, shapes.get(path.as_str()), &shapes, named)
                    .map_err(|problem| format!("{context}: {problem}"))?;
            self.shapes[parent].add(element)?;
        }
        Ok(())
    }
}

impl Shape {
    fn add(&mut self, element: ElementDef) -> Result<(), String> {
        let index = self.elements.len();
        for (variant, v) in element.variants.iter().enumerate() {
            if self
                .properties
                .insert(v.json_name.clone(), (index, variant))
                .is_some()
            {
                return Err(format!(
                    "{}: property {} defined twice",
                    self.name, v.json_name
                ));
            }
        }
        self.elements.push(element);
        Ok(())
    }

    /// The element a JSON property name stands for, with that property's target; a choice's
    /// base name (`value` for `value[x]`) finds the element without a target.
    fn element_named(&self, name: &str) -> Option<(&ElementDef, Option<Target>)> {
        if let Some(&(index, variant)) = self.properties.get(name) {
            let element = &self.elements[index];
            return Some((element, Some(element.variants[variant].target)));
        }
        let choice = format!("{name}[x]");
        let element = self
            .elements
            .iter()
            .find(|element| element.name == choice)?;
        Some((element, None))
    }

    /// The choice element (`value[x]`) whose JSON names `property` would belong to, going by
    /// its prefix; for explaining an unknown type suffix such as `valueFoo`.
    fn choice_for(&self, property: &str) -> Option<&ElementDef> {
        self.elements.iter().find(|element| {
            element.name.strip_suffix("[x]").is_some_and(|base| {
                property
                    .strip_prefix(base)
                    .is_some_and(|suffix| suffix.starts_with(|c: char| c.is_ascii_uppercase()))
            })
        })
    }
}

/// Parses `min..max types[ Σ]` into an element. `inline` is the element's own shape when it
/// has children; `shapes` maps this type's backbone paths for `#path` references.
fn parse_element(
    name: &str,
    description: &str,
    inline: Option<&ShapeId>,
    shapes: &HashMap<&str, ShapeId>,
    named: &HashMap<&str, Target>,
) -> Result<ElementDef, String> {
    let (description, summary) = match description.strip_suffix(SUMMARY_MARK) {
        Some(rest) => (rest, true),
        None => (description, false),
    };
    let (cardinality, types) = description
        .split_once(' ')
        .ok_or("expected `min..max types`")?;
    let (min, max) = cardinality.split_once("..").ok_or("bad cardinality")?;
    let min = min.parse().map_err(|_| "bad min")?;
    let max = match max {
        "*" => None,
        n => Some(n.parse().map_err(|_| "bad max")?),
    };
    let backbone = inline.is_some() || types.starts_with('#');
    let targets: Vec<(&str, Target)> = if let Some(&shape) = inline {
        vec![("", Target::Complex(shape))]
    } else if let Some(reference) = types.strip_prefix('#') {
        let shape = shapes
            .get(reference)
            .ok_or("contentReference to an unknown element")?;
        vec![("", Target::Complex(*shape))]
    } else {
        types
            .split('|')
            .map(|code| match named.get(code) {
                Some(&target) => Ok((code, target)),
                None => Err(format!("unknown type {code}")),
            })
            .collect::<Result<_, _>>()?
    };
    let variants = match name.strip_suffix("[x]") {
        Some(base) => targets
            .into_iter()
            .map(|(code, target)| Variant {
                json_name: format!("{base}{}", capitalized(code)),
                target,
            })
            .collect(),
        None => match targets[..] {
            [(_, target)] => vec![Variant {
                json_name: name.to_owned(),
                target,
            }],
            _ => return Err("several types for an element that is not a choice".to_owned()),
        },
    };
    Ok(ElementDef {
        name: name.to_owned(),
        min,
        max,
        variants,
        summary,
        backbone,
    })
}

/// `dateTime` → `DateTime`, the suffix a choice element uses for a type.
fn capitalized(code: &str) -> String {
    let mut chars = code.chars();
    chars
        .next()
        .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

impl Primitive {
    fn parse(name: &str, json: &Value, companion: ShapeId) -> Result<Primitive, String> {
        let kind = match json["json"].as_str() {
            Some("boolean") => JsonKind::Boolean,
            Some("number") => JsonKind::Number,
            Some("string") => JsonKind::String,
            other => return Err(format!("{name}: unknown JSON kind {other:?}")),
        };
        let pattern = json["regex"]
            .as_str()
            .map(|regex| Regex::new(&format!("^(?:{regex})$")))
            .transpose()
            .map_err(|e| format!("{name}: bad regex: {e}"))?;
        Ok(Primitive {
            name: name.to_owned(),
            json: kind,
            pattern,
            extra: ExtraCheck::for_type(name),
            companion,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Validation.

/// Walks one resource, collecting issues.
struct Validator<'d> {
    definitions: &'d Definitions,
    issues: Vec<Issue>,
    /// Current object nesting.
    depth: usize,
}

impl<'d> Validator<'d> {
    fn report(&mut self, code: IssueCode, expression: &str, diagnostics: String) {
        if self.issues.len() < MAX_ISSUES {
            self.issues.push(Issue {
                code,
                expression: expression.to_owned(),
                diagnostics,
            });
        }
    }

    fn full(&self) -> bool {
        self.issues.len() >= MAX_ISSUES
    }

    /// The top-level resource: its path starts with its own type name.
    fn root(&mut self, resource: &Value) {
        let Value::Object(object) = resource else {
            let found = describe_kind(resource);
            self.report(
                IssueCode::Structure,
                ROOT_EXPRESSION,
                format!("a resource must be a JSON object, found {found}"),
            );
            return;
        };
        match object.get("resourceType") {
            None => self.report(
                IssueCode::Required,
                "resourceType",
                "the resource has no resourceType".to_owned(),
            ),
            Some(Value::String(name)) => match self.definitions.resources.get(name) {
                Some(&shape) => self.object(object, shape, name, true),
                None => {
                    let expression = if name.is_empty() {
                        "resourceType"
                    } else {
                        name
                    };
                    self.report(
                        IssueCode::NotSupported,
                        expression,
                        format!("resource type `{name}` is not supported"),
                    );
                }
            },
            Some(other) => {
                let found = describe_kind(other);
                self.report(
                    IssueCode::Structure,
                    "resourceType",
                    format!("resourceType must be a string, found {found}"),
                );
            }
        }
    }

    /// A resource nested in another (`contained`, `Bundle.entry.resource`), validated by its
    /// own resourceType; `expected` restricts that type (`Bundle.entry.response.outcome`).
    fn nested_resource(
        &mut self,
        object: &Map<String, Value>,
        path: &str,
        expected: Option<ShapeId>,
    ) {
        if object.is_empty() {
            return self.report(
                IssueCode::Structure,
                path,
                "empty objects are not allowed".to_owned(),
            );
        }
        let type_path = format!("{path}.resourceType");
        let name = match object.get("resourceType") {
            Some(Value::String(name)) => name,
            None => {
                return self.report(
                    IssueCode::Required,
                    &type_path,
                    "a nested resource must state its resourceType".to_owned(),
                )
            }
            Some(other) => {
                let found = describe_kind(other);
                return self.report(
                    IssueCode::Structure,
                    &type_path,
                    format!("resourceType must be a string, found {found}"),
                );
            }
        };
        let Some(&shape) = self.definitions.resources.get(name) else {
            return self.report(
                IssueCode::NotSupported,
                path,
                format!("resource type `{name}` is not supported"),
            );
        };
        if let Some(expected) = expected.filter(|&expected| expected != shape) {
            let expected = &self.definitions.shapes[expected].name;
            return self.report(
                IssueCode::Structure,
                path,
                format!("expected a {expected} resource, found {name}"),
            );
        }
        self.object(object, shape, path, true);
    }

    /// An object of the given shape at `path`. `is_resource` allows its `resourceType`.
    fn object(
        &mut self,
        object: &Map<String, Value>,
        shape: ShapeId,
        path: &str,
        is_resource: bool,
    ) {
        if object.is_empty() {
            return self.report(
                IssueCode::Structure,
                path,
                "empty objects are not allowed".to_owned(),
            );
        }
        if self.depth >= MAX_DEPTH {
            return self.report(IssueCode::Structure, path, "nesting is too deep".to_owned());
        }
        self.depth += 1;
        let shape = &self.definitions.shapes[shape];
        // Which variant of each element is present, and under which JSON name first.
        let mut present = vec![None; shape.elements.len()];
        for (key, value) in object {
            if self.full() {
                break;
            }
            if !(is_resource && key == "resourceType") {
                self.property(object, shape, path, key, value, &mut present);
            }
        }
        for (element, present) in shape.elements.iter().zip(&present) {
            if element.min > 0 && present.is_none() {
                self.report(
                    IssueCode::Required,
                    &format!("{path}.{}", element.name),
                    format!("{}.{} is required", shape.name, element.name),
                );
            }
        }
        self.depth -= 1;
    }

    /// One property `key` of an object at `path`, recording in `present` which element (and
    /// choice variant) it stands for.
    fn property<'o>(
        &mut self,
        object: &'o Map<String, Value>,
        shape: &Shape,
        path: &str,
        key: &'o str,
        value: &Value,
        present: &mut [Option<(usize, &'o str)>],
    ) {
        let (is_companion, name) = match key.strip_prefix('_') {
            Some(name) => (true, name),
            None => (false, key),
        };
        let Some(&(index, variant)) = shape.properties.get(name) else {
            return self.unknown_property(shape, path, key);
        };
        let element = &shape.elements[index];
        let target = element.variants[variant].target;
        let primitive = match target {
            Target::Primitive(primitive) => Some(primitive),
            _ => None,
        };
        if is_companion && primitive.is_none() {
            // Only primitives have `_name` companions.
            return self.unknown_property(shape, path, key);
        }
        match present[index] {
            Some((first, first_key)) if first != variant => {
                return self.report(
                    IssueCode::Structure,
                    &format!("{path}.{key}"),
                    format!(
                        "only one type of {}.{} may be present, found {first_key} and {key}",
                        shape.name, element.name
                    ),
                );
            }
            Some(_) => {}
            None => present[index] = Some((variant, key)),
        }
        if element.max == Some(0) {
            return self.report(
                IssueCode::Structure,
                &format!("{path}.{key}"),
                format!("{}.{} is not allowed", shape.name, element.name),
            );
        }
        let element_path = format!("{path}.{name}");
        match primitive {
            Some(primitive) if is_companion => {
                let values = object.get(name);
                self.companions(value, values, element, primitive, path, name);
            }
            Some(primitive) => {
                let companions = object.get(&format!("_{name}"));
                self.primitive_values(value, companions, element, primitive, &element_path);
            }
            None => self.occurrences(value, element, target, &element_path),
        }
    }

    fn unknown_property(&mut self, shape: &Shape, path: &str, key: &str) {
        let diagnostics = match shape.choice_for(key.trim_start_matches('_')) {
            Some(choice) => format!(
                "`{key}` is not an allowed type for {}.{}",
                shape.name, choice.name
            ),
            None => format!("unknown element `{key}` in {}", shape.name),
        };
        self.report(IssueCode::Structure, &format!("{path}.{key}"), diagnostics);
    }

    /// A complex or resource element's JSON value, checked against its cardinality.
    fn occurrences(&mut self, value: &Value, element: &ElementDef, target: Target, path: &str) {
        if !element.repeats() {
            if value.is_array() {
                self.report(
                    IssueCode::Structure,
                    path,
                    format!("{} allows one value, found an array", element.name),
                );
            } else {
                self.item(value, target, path);
            }
            return;
        }
        let Value::Array(items) = value else {
            self.report(
                IssueCode::Structure,
                path,
                format!("{} repeats and must be an array", element.name),
            );
            // Still look inside a lone object, to report everything in one pass.
            if value.is_object() {
                self.item(value, target, path);
            }
            return;
        };
        self.array_size(items, element, path);
        for (i, item) in items.iter().enumerate() {
            self.item(item, target, &format!("{path}[{i}]"));
        }
    }

    /// Reports an empty array or one longer than the element's `max`.
    fn array_size(&mut self, items: &[Value], element: &ElementDef, path: &str) {
        if items.is_empty() {
            self.report(
                IssueCode::Structure,
                path,
                "empty arrays are not allowed".to_owned(),
            );
        } else if let Some(max) = element.max.filter(|&max| items.len() > max as usize) {
            self.report(
                IssueCode::Structure,
                path,
                format!(
                    "{} allows at most {max} values, found {}",
                    element.name,
                    items.len()
                ),
            );
        }
    }

    /// One value of a complex or resource element.
    fn item(&mut self, value: &Value, target: Target, path: &str) {
        match (target, value) {
            (_, Value::Null) => self.null(path),
            (Target::Primitive(primitive), _) => self.primitive(value, primitive, path),
            (Target::Complex(shape), Value::Object(object)) => {
                self.object(object, shape, path, false)
            }
            (Target::Resource(expected), Value::Object(object)) => {
                self.nested_resource(object, path, expected)
            }
            (Target::Complex(shape), _) => {
                let expected = &self.definitions.shapes[shape].name;
                let found = describe_kind(value);
                self.report(
                    IssueCode::Structure,
                    path,
                    format!("expected a JSON object ({expected}), found {found}"),
                );
            }
            (Target::Resource(_), _) => {
                let found = describe_kind(value);
                self.report(
                    IssueCode::Structure,
                    path,
                    format!("expected a resource (JSON object), found {found}"),
                );
            }
        }
    }

    fn null(&mut self, path: &str) {
        self.report(
            IssueCode::Structure,
            path,
            "null is not allowed (omit the element instead)".to_owned(),
        );
    }

    /// The value side (`given`) of a primitive element. `companions` is its `_given`, whose
    /// entries allow `null` at the same index.
    fn primitive_values(
        &mut self,
        value: &Value,
        companions: Option<&Value>,
        element: &ElementDef,
        primitive: PrimitiveId,
        path: &str,
    ) {
        if !element.repeats() {
            match value {
                Value::Array(_) => self.report(
                    IssueCode::Structure,
                    path,
                    format!("{} allows one value, found an array", element.name),
                ),
                Value::Null => self.null(path),
                _ => self.primitive(value, primitive, path),
            }
            return;
        }
        let Value::Array(items) = value else {
            self.report(
                IssueCode::Structure,
                path,
                format!("{} repeats and must be an array", element.name),
            );
            return;
        };
        self.array_size(items, element, path);
        let companions = companions.and_then(Value::as_array);
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            if !item.is_null() {
                self.primitive(item, primitive, &item_path);
            } else if companions.and_then(|c| c.get(i)).is_none_or(Value::is_null) {
                self.report(
                    IssueCode::Structure,
                    &item_path,
                    format!(
                        "null is only allowed where `_{}` has an entry at the same index",
                        element.name
                    ),
                );
            }
        }
    }

    /// The `_name` companion of a primitive element: an object with `id`/`extension`, or for
    /// repeating elements an array of such objects (or nulls) lined up with `name`.
    /// Problems inside a companion are reported at the element's own path
    /// (`Patient.birthDate.extension[0]`), as FHIRPath sees them.
    fn companions(
        &mut self,
        companion: &Value,
        values: Option<&Value>,
        element: &ElementDef,
        primitive: PrimitiveId,
        parent: &str,
        name: &str,
    ) {
        let shape = self.definitions.primitives[primitive].companion;
        let companion_path = format!("{parent}._{name}");
        let element_path = format!("{parent}.{name}");
        if !element.repeats() {
            match companion {
                Value::Object(object) => self.object(object, shape, &element_path, false),
                Value::Null => self.null(&companion_path),
                other => self.report(
                    IssueCode::Structure,
                    &companion_path,
                    format!(
                        "_{name} must be an object with id/extension, found {}",
                        describe_kind(other)
                    ),
                ),
            }
            return;
        }
        let Value::Array(entries) = companion else {
            return self.report(
                IssueCode::Structure,
                &companion_path,
                format!("_{name} must be an array lined up with {name}"),
            );
        };
        if entries.is_empty() {
            return self.report(
                IssueCode::Structure,
                &companion_path,
                "empty arrays are not allowed".to_owned(),
            );
        }
        let values = values.and_then(Value::as_array);
        if let Some(values) = values.filter(|values| values.len() != entries.len()) {
            self.report(
                IssueCode::Structure,
                &companion_path,
                format!(
                    "_{name} has {} entries but {name} has {}; they must line up",
                    entries.len(),
                    values.len()
                ),
            );
        }
        for (i, entry) in entries.iter().enumerate() {
            match entry {
                Value::Object(object) => {
                    self.object(object, shape, &format!("{element_path}[{i}]"), false)
                }
                // A null facing a null value is reported on the value side.
                Value::Null if values.is_some() => {}
                Value::Null => self.report(
                    IssueCode::Structure,
                    &format!("{companion_path}[{i}]"),
                    format!("null is only allowed where {name} has a value at the same index"),
                ),
                other => self.report(
                    IssueCode::Structure,
                    &format!("{companion_path}[{i}]"),
                    format!(
                        "_{name} entries must be objects or null, found {}",
                        describe_kind(other)
                    ),
                ),
            }
        }
    }

    /// One primitive value (never null).
    fn primitive(&mut self, value: &Value, primitive: PrimitiveId, path: &str) {
        let primitive = &self.definitions.primitives[primitive];
        let right_kind = match primitive.json {
            JsonKind::Boolean => value.is_boolean(),
            JsonKind::Number => match number_text(value) {
                Some(text) => {
                    self.number(&text, primitive, path);
                    true
                }
                None => false,
            },
            JsonKind::String => match value {
                Value::String(text) if !text.starts_with(NUMBER_MARK) => {
                    self.string(text, primitive, path);
                    true
                }
                _ => false,
            },
        };
        if !right_kind {
            let expected = match primitive.json {
                JsonKind::Boolean => "a JSON boolean",
                JsonKind::Number => "a JSON number",
                JsonKind::String => "a JSON string",
            };
            let found = describe_kind(value);
            self.report(
                IssueCode::Structure,
                path,
                format!("{} must be {expected}, found {found}", primitive.name),
            );
        }
    }

    /// A number's source text against its type's regex and range.
    fn number(&mut self, text: &str, primitive: &Primitive, path: &str) {
        if !matches_pattern(primitive, text) {
            return self.report(
                IssueCode::Value,
                path,
                format!("`{text}` is not a valid {}", primitive.name),
            );
        }
        if let ExtraCheck::Range(low, high) = primitive.extra {
            // Text too long for an i64 is out of range anyway.
            if !text.parse::<i64>().is_ok_and(|n| (low..=high).contains(&n)) {
                self.report(
                    IssueCode::Value,
                    path,
                    format!(
                        "{text} is out of range for {} ({low} to {high})",
                        primitive.name
                    ),
                );
            }
        }
    }

    /// A string value against FHIR's string rules, its type's regex and extra checks.
    fn string(&mut self, text: &str, primitive: &Primitive, path: &str) {
        let problem = if text.is_empty() {
            Some("empty strings are not allowed (omit the element instead)".to_owned())
        } else if text
            .chars()
            .any(|c| c < ' ' && !matches!(c, '\t' | '\n' | '\r'))
        {
            Some("control characters other than tab, CR and LF are not allowed".to_owned())
        } else if !matches_pattern(primitive, text) {
            Some(pattern_problem(primitive, text))
        } else {
            extra_problem(primitive, text)
        };
        if let Some(problem) = problem {
            self.report(IssueCode::Value, path, problem);
        }
    }
}

/// The source text of a JSON number, whether a serde_json number or a marked string.
fn number_text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        // With `arbitrary_precision` this is the exact source text.
        Value::Number(number) => Some(Cow::Owned(number.to_string())),
        Value::String(text) => text.strip_prefix(NUMBER_MARK).map(Cow::Borrowed),
        _ => None,
    }
}

fn matches_pattern(primitive: &Primitive, text: &str) -> bool {
    primitive
        .pattern
        .as_ref()
        .is_none_or(|pattern| pattern.is_match(text))
}

/// Explains why a string failed its type's regex.
fn pattern_problem(primitive: &Primitive, text: &str) -> String {
    let name = &primitive.name;
    if let ExtraCheck::DateTime = primitive.extra {
        if let Some((_, time)) = text.split_once('T') {
            if !time.contains(['Z', '+', '-']) {
                return format!("`{text}` is not a valid {name}: a time must have a time zone");
            }
        }
        if name == "instant" {
            return format!(
                "`{text}` is not a valid instant: it needs a full date, a time with seconds and a time zone"
            );
        }
    }
    format!("`{text}` is not a valid {name}")
}

/// Checks that a value matching its regex must still pass.
fn extra_problem(primitive: &Primitive, text: &str) -> Option<String> {
    match primitive.extra {
        ExtraCheck::Date | ExtraCheck::DateTime if !is_calendar_date(text) => {
            Some(format!("`{text}` is not a real calendar date"))
        }
        ExtraCheck::Xhtml if !text.trim_start().starts_with("<div") => {
            Some("narrative XHTML must be a <div> element".to_owned())
        }
        ExtraCheck::Id if !crate::fhir::resource::is_valid_id(text) => Some(format!(
            "`{text}` is not a valid id: an id made only of dots would be a path segment"
        )),
        _ => None,
    }
}

/// Whether the day of a regex-valid `YYYY[-MM[-DD...]]` exists in its month.
fn is_calendar_date(text: &str) -> bool {
    let number =
        |range: std::ops::Range<usize>| text.get(range).and_then(|s| s.parse::<u32>().ok());
    let (Some(year), Some(month), Some(day)) = (number(0..4), number(5..7), number(8..10)) else {
        return true; // year or year-month only
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    day <= days
}

/// `a string`, `an array`… for messages.
fn describe_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(text) if text.starts_with(NUMBER_MARK) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The issues of a resource as `(code, expression)`, for compact assertions.
    fn found(resource: &Value) -> Vec<(IssueCode, String)> {
        validate_resource(resource)
            .into_iter()
            .map(|issue| (issue.code, issue.expression))
            .collect()
    }

    /// Asserts the resource has exactly one issue, with this code and expression.
    #[track_caller]
    fn assert_one(resource: &Value, code: IssueCode, expression: &str) {
        let issues = validate_resource(resource);
        assert_eq!(issues.len(), 1, "expected one issue, got {issues:#?}");
        assert_eq!(
            (issues[0].code, issues[0].expression.as_str()),
            (code, expression)
        );
        assert!(!issues[0].diagnostics.is_empty());
    }

    #[track_caller]
    fn assert_valid(resource: &Value) {
        let issues = validate_resource(resource);
        assert!(issues.is_empty(), "expected no issue, got {issues:#?}");
    }

    /// Replaces the value at a JSON pointer (creating the last key), for deriving bad cases.
    fn with(mut resource: Value, pointer: &str, value: Value) -> Value {
        let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
        let target = resource.pointer_mut(parent).expect("an existing parent");
        match target {
            Value::Object(object) => {
                object.insert(key.to_owned(), value);
            }
            Value::Array(items) => items[key.parse::<usize>().expect("an index")] = value,
            _ => panic!("{parent} is not a container"),
        }
        resource
    }

    /// Removes the member at a JSON pointer.
    fn without(mut resource: Value, pointer: &str) -> Value {
        let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
        let object = resource.pointer_mut(parent).and_then(Value::as_object_mut);
        object
            .expect("an object")
            .shift_remove(key)
            .expect("an existing member");
        resource
    }

    /// A number whose source text is kept as is, as `fhir::json::parse_lossless` passes them;
    /// the only way to hand the validator text serde_json itself would reject, like `1.`.
    fn lossless_number(text: &str) -> Value {
        Value::String(format!("{NUMBER_MARK}{text}"))
    }

    fn french_patient() -> Value {
        json!({
            "resourceType": "Patient",
            "id": "pat-hdl-1984",
            "meta": {
                "versionId": "3",
                "lastUpdated": "2024-03-01T09:15:27.042+01:00",
                "profile": ["http://interopsante.org/fhir/StructureDefinition/FrPatient"]
            },
            "text": {
                "status": "generated",
                "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Hélène Dupont-Lefèvre, née le 15/07/1984</div>"
            },
            "extension": [{
                "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                "valueAddress": {"city": "Saint-Étienne", "postalCode": "42000", "country": "FR"}
            }],
            "identifier": [{
                "use": "official",
                "type": {
                    "coding": [{
                        "system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203",
                        "code": "INS-NIR",
                        "display": "NIR définitif"
                    }]
                },
                "system": "urn:oid:1.2.250.1.213.1.4.8",
                "value": "284074220012345"
            }],
            "active": true,
            "name": [{
                "use": "official",
                "family": "Dupont-Lefèvre",
                "given": ["Hélène", "Amélie", "Noëlle"],
                "_given": [null, null, {
                    "extension": [{
                        "url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-qualifier",
                        "valueCode": "CL"
                    }]
                }]
            }],
            "telecom": [{"system": "phone", "value": "+33 6 12 34 56 78", "use": "mobile", "rank": 1}],
            "gender": "female",
            "birthDate": "1984-07-15",
            "_birthDate": {
                "extension": [{
                    "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                    "valueDateTime": "1984-07-15T08:30:00+02:00"
                }]
            },
            "address": [{
                "use": "home",
                "line": ["12 rue de la République", "Bâtiment B"],
                "city": "Saint-Étienne",
                "postalCode": "42000",
                "country": "FRA"
            }],
            "maritalStatus": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}]
            },
            "multipleBirthBoolean": false,
            "communication": [{
                "language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "fr-FR"}]},
                "preferred": true
            }],
            "generalPractitioner": [{"reference": "Practitioner/pra-810002909371", "display": "Dr Jean Martin"}]
        })
    }

    fn document_reference() -> Value {
        json!({
            "resourceType": "DocumentReference",
            "id": "doc-cr-2024-0042",
            "contained": [{
                "resourceType": "Practitioner",
                "id": "auteur",
                "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "810002909371"}],
                "name": [{"family": "Martin", "given": ["Jean"], "prefix": ["Dr"]}]
            }],
            "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.250.1.999.1.2.3"},
            "status": "current",
            "docStatus": "final",
            "type": {
                "coding": [{"system": "http://loinc.org", "code": "11488-4", "display": "Consult note"}]
            },
            "subject": {"reference": "Patient/pat-hdl-1984"},
            "date": "2024-03-01T10:42:00+01:00",
            "author": [{"reference": "#auteur"}],
            "description": "Compte rendu de consultation de cardiologie",
            "content": [{
                "attachment": {
                    "contentType": "application/pdf",
                    "language": "fr-FR",
                    "url": "Binary/bin-cr-2024-0042",
                    "size": 48213,
                    "hash": "2jmj7l5rSw0yVb/vlWAYkK/YBwk=",
                    "title": "CR cardiologie",
                    "creation": "2024-03-01T10:40:00+01:00"
                },
                "format": {"system": "http://ihe.net/fhir/ValueSet/IHE.FormatCode.codesystem", "code": "urn:ihe:iti:xds:2017:mimeTypeSufficient"}
            }],
            "context": {
                "period": {"start": "2024-03-01T10:00:00+01:00", "end": "2024-03-01T10:30:00+01:00"},
                "practiceSetting": {"coding": [{"system": "http://snomed.info/sct", "code": "394579002"}]}
            }
        })
    }

    fn consent_with_provisions() -> Value {
        json!({
            "resourceType": "Consent",
            "id": "consent-dmp-1",
            "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": "Patient/pat-hdl-1984"},
            "dateTime": "2024-02-12T14:03:00+01:00",
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
            "provision": {
                "type": "deny",
                "period": {"start": "2024-02-12"},
                "actor": [{
                    "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP"}]},
                    "reference": {"reference": "Organization/org-clinique-du-parc"}
                }],
                "provision": [{
                    "type": "permit",
                    "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "ETREAT"}],
                    "provision": [{
                        "type": "deny",
                        "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "DocumentReference"}]
                    }]
                }]
            }
        })
    }

    fn penicillin_allergy() -> Value {
        json!({
            "resourceType": "AllergyIntolerance",
            "id": "allergie-penicilline",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "code": "confirmed"}]},
            "type": "allergy",
            "category": ["medication"],
            "criticality": "high",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "373270004", "display": "Pénicilline"}]},
            "patient": {"reference": "Patient/pat-hdl-1984"},
            "onsetDateTime": "2009-05",
            "recordedDate": "2024-03-01T10:20:00+01:00",
            "note": [{"text": "Urticaire généralisée après **amoxicilline**."}],
            "reaction": [{
                "manifestation": [{"coding": [{"system": "http://snomed.info/sct", "code": "126485001", "display": "Urticaire"}]}],
                "severity": "severe"
            }]
        })
    }

    fn weight_observation() -> Value {
        json!({
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Poids"}]},
            "subject": {"reference": "Patient/pat-hdl-1984"},
            "effectiveDateTime": "2024-03-01",
            "valueQuantity": {"value": 62.50, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}
        })
    }

    // --- valid resources -------------------------------------------------------------------

    #[test]
    fn valid_french_patient() {
        assert_valid(&french_patient());
    }

    #[test]
    fn valid_document_reference_with_contained_author() {
        assert_valid(&document_reference());
    }

    #[test]
    fn valid_consent_with_nested_provisions() {
        assert_valid(&consent_with_provisions());
    }

    #[test]
    fn valid_allergy_intolerance() {
        assert_valid(&penicillin_allergy());
    }

    #[test]
    fn valid_observation_and_exact_decimals() {
        assert_valid(&weight_observation());
        for text in ["1.50", "-0.001", "6.02e23", "0"] {
            let value: Value = serde_json::from_str(text).expect("a JSON number");
            assert_valid(&with(weight_observation(), "/valueQuantity/value", value));
            assert_valid(&with(
                weight_observation(),
                "/valueQuantity/value",
                lossless_number(text),
            ));
        }
    }

    #[test]
    fn valid_bundle_with_entries_and_outcome() {
        let bundle = json!({
            "resourceType": "Bundle",
            "type": "transaction-response",
            "entry": [{
                "resource": french_patient(),
                "response": {
                    "status": "201 Created",
                    "location": "Patient/pat-hdl-1984/_history/1",
                    "outcome": {
                        "resourceType": "OperationOutcome",
                        "issue": [{"severity": "information", "code": "informational"}]
                    }
                }
            }]
        });
        assert_valid(&bundle);
    }

    #[test]
    fn known_resource_types() {
        assert!(is_known_resource_type("Patient"));
        assert!(is_known_resource_type("DocumentReference"));
        assert!(!is_known_resource_type("DomainResource"), "abstract");
        assert!(!is_known_resource_type("HumanName"), "a datatype");
        assert!(!is_known_resource_type("Questionnaire"));
        assert_eq!(IssueCode::NotSupported.as_str(), "not-supported");
        assert_eq!(IssueCode::Required.as_str(), "required");
    }

    #[test]
    fn is_repeating_walks_datatypes() {
        assert!(is_repeating("Patient.name"));
        assert!(is_repeating("Patient.contact.name.given"));
        assert!(!is_repeating("Patient.contact.name.family"));
        assert!(!is_repeating("Patient.birthDate"));
        assert!(is_repeating("Patient.birthDate.extension"));
        assert!(is_repeating("DocumentReference.securityLabel.coding"));
        assert!(!is_repeating("DocumentReference.status"));
        assert!(!is_repeating("Patient.nothing"));
    }

    #[test]
    fn element_info_follows_backbones_only() {
        let info = |path: &[&str]| element_info("DocumentReference", path);
        let content = info(&["content"]).unwrap();
        assert_eq!(
            (content.min, content.is_summary, content.is_backbone),
            (1, true, true)
        );
        let attachment = info(&["content", "attachment"]).unwrap();
        assert_eq!(
            (attachment.is_summary, attachment.is_backbone),
            (true, false)
        );
        assert!(!info(&["content", "id"]).unwrap().is_summary);
        assert!(!info(&["custodian"]).unwrap().is_summary);
        assert_eq!(
            info(&["content", "attachment", "url"]),
            None,
            "inside a datatype"
        );
        assert_eq!(info(&["content", "nope"]), None);
        assert_eq!(element_info("Nope", &["id"]), None);
        // Choice elements answer to their JSON names and to their base name.
        let deceased = element_info("Patient", &["deceasedDateTime"]).unwrap();
        assert_eq!(deceased.name, "deceased[x]");
        assert_eq!(element_info("Patient", &["deceased"]), Some(deceased));
        // A contentReference leads back into the referenced backbone.
        let nested = element_info("Consent", &["provision", "provision", "actor"]).unwrap();
        assert!(nested.is_backbone);
        assert!(resource_types().any(|name| name == "Consent"));
    }

    // --- resourceType ------------------------------------------------------------------------

    #[test]
    fn resource_type_must_be_known() {
        assert_one(
            &json!({"resourceType": "Questionnaire"}),
            IssueCode::NotSupported,
            "Questionnaire",
        );
        assert_one(&json!({"id": "x"}), IssueCode::Required, "resourceType");
        assert_one(
            &json!({"resourceType": 12}),
            IssueCode::Structure,
            "resourceType",
        );
        assert_one(&json!(["Patient"]), IssueCode::Structure, "$this");
    }

    // --- unknown properties ------------------------------------------------------------------

    #[test]
    fn unknown_element_at_depth() {
        let patient = with(french_patient(), "/name/0/bogus", json!("x"));
        assert_one(&patient, IssueCode::Structure, "Patient.name[0].bogus");
        let document = with(
            document_reference(),
            "/content/0/attachment/colour",
            json!("red"),
        );
        assert_one(
            &document,
            IssueCode::Structure,
            "DocumentReference.content[0].attachment.colour",
        );
        let patient = with(french_patient(), "/foo", json!(1));
        assert_one(&patient, IssueCode::Structure, "Patient.foo");
    }

    #[test]
    fn resource_type_only_at_resource_roots() {
        let patient = with(
            french_patient(),
            "/maritalStatus/resourceType",
            json!("CodeableConcept"),
        );
        assert_one(
            &patient,
            IssueCode::Structure,
            "Patient.maritalStatus.resourceType",
        );
    }

    #[test]
    fn companion_only_for_primitives() {
        let patient = with(french_patient(), "/_name", json!([{"id": "n1"}]));
        assert_one(&patient, IssueCode::Structure, "Patient._name");
        let patient = with(french_patient(), "/_nickname", json!({"id": "n1"}));
        assert_one(&patient, IssueCode::Structure, "Patient._nickname");
    }

    // --- choice elements ---------------------------------------------------------------------

    #[test]
    fn two_choice_variants() {
        let allergy = with(
            penicillin_allergy(),
            "/onsetAge",
            json!({"value": 25, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}),
        );
        assert_one(
            &allergy,
            IssueCode::Structure,
            "AllergyIntolerance.onsetAge",
        );
        // A companion of another variant counts as a second variant too.
        let allergy = with(allergy_without_onset(), "/onsetString", json!("enfance"));
        let allergy = with(allergy, "/_onsetDateTime", json!({"id": "o1"}));
        assert_one(
            &allergy,
            IssueCode::Structure,
            "AllergyIntolerance._onsetDateTime",
        );
    }

    fn allergy_without_onset() -> Value {
        without(penicillin_allergy(), "/onsetDateTime")
    }

    #[test]
    fn unknown_choice_suffix() {
        let allergy = with(
            allergy_without_onset(),
            "/onsetInstant",
            json!("2009-05-01T00:00:00Z"),
        );
        let issues = validate_resource(&allergy);
        assert_eq!(
            found(&allergy),
            [(
                IssueCode::Structure,
                "AllergyIntolerance.onsetInstant".to_owned()
            )]
        );
        assert!(
            issues[0].diagnostics.contains("onset[x]"),
            "{}",
            issues[0].diagnostics
        );
        let observation = with(weight_observation(), "/valueFoo", json!("x"));
        assert_one(&observation, IssueCode::Structure, "Observation.valueFoo");
    }

    #[test]
    fn choice_of_primitive_with_companion_only() {
        let allergy = with(
            allergy_without_onset(),
            "/_onsetString",
            json!({
                "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]
            }),
        );
        assert_valid(&allergy);
    }

    #[test]
    fn required_choice_element() {
        // UsageContext.value[x] is 1..1.
        let parameters = json!({
            "resourceType": "Parameters",
            "parameter": [{"name": "ctx", "valueUsageContext": {"code": {"system": "http://terminology.hl7.org/CodeSystem/usage-context-type", "code": "focus"}}}]
        });
        assert_one(
            &parameters,
            IssueCode::Required,
            "Parameters.parameter[0].valueUsageContext.value[x]",
        );
    }

    // --- extensions --------------------------------------------------------------------------

    #[test]
    fn extension_needs_url_and_allows_any_type() {
        let patient = with(
            french_patient(),
            "/extension/0",
            json!({"valueString": "Lyon"}),
        );
        assert_one(&patient, IssueCode::Required, "Patient.extension[0].url");
        let patient = with(
            french_patient(),
            "/extension/0",
            json!({
                "url": "http://example.org/fhir/StructureDefinition/alias",
                "valueHumanName": {"family": "Lefèvre", "given": ["Hélène"]}
            }),
        );
        assert_valid(&patient);
        let nested = with(
            french_patient(),
            "/modifierExtension",
            json!([{
                "url": "http://example.org/fhir/StructureDefinition/complex",
                "extension": [{"url": "part", "valueBogus": 1}]
            }]),
        );
        assert_one(
            &nested,
            IssueCode::Structure,
            "Patient.modifierExtension[0].extension[0].valueBogus",
        );
    }

    // --- primitives and their companions ------------------------------------------------------

    #[test]
    fn birth_date_extension_content_is_validated() {
        let patient = with(french_patient(), "/_birthDate/foo", json!("x"));
        assert_one(&patient, IssueCode::Structure, "Patient.birthDate.foo");
        let patient = with(
            french_patient(),
            "/_birthDate/extension/0/valueDateTime",
            json!("1984-07-15T25:00:00Z"),
        );
        assert_one(
            &patient,
            IssueCode::Value,
            "Patient.birthDate.extension[0].valueDateTime",
        );
        let patient = with(french_patient(), "/_birthDate", json!("1984"));
        assert_one(&patient, IssueCode::Structure, "Patient._birthDate");
    }

    #[test]
    fn primitive_present_through_companion_only() {
        let document = without(document_reference(), "/status");
        let document = with(
            document,
            "/_status",
            json!({
                "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]
            }),
        );
        assert_valid(&document);
    }

    #[test]
    fn given_companion_misaligned() {
        let patient = with(
            french_patient(),
            "/name/0/_given",
            json!([null, {"id": "g2"}]),
        );
        assert_one(&patient, IssueCode::Structure, "Patient.name[0]._given");
        let patient = with(french_patient(), "/name/0/given/1", json!(null));
        assert_one(&patient, IssueCode::Structure, "Patient.name[0].given[1]");
        let patient = with(french_patient(), "/name/0/given/2", json!(null));
        assert_valid(&patient);
        let patient = with(french_patient(), "/name/0/_given", json!({"id": "g"}));
        assert_one(&patient, IssueCode::Structure, "Patient.name[0]._given");
        let patient = with(french_patient(), "/name/0/_given/2", json!("CL"));
        assert_one(&patient, IssueCode::Structure, "Patient.name[0]._given[2]");
    }

    #[test]
    fn companion_without_values() {
        let patient = with(
            french_patient(),
            "/name/0/_prefix",
            json!([{"id": "p1"}, null]),
        );
        assert_one(&patient, IssueCode::Structure, "Patient.name[0]._prefix[1]");
        let patient = with(french_patient(), "/name/0/_prefix", json!([{"id": "p1"}]));
        assert_valid(&patient);
    }

    #[test]
    fn wrong_json_kind() {
        let patient = with(french_patient(), "/active", json!("true"));
        assert_one(&patient, IssueCode::Structure, "Patient.active");
        let patient = with(french_patient(), "/gender", json!(1));
        assert_one(&patient, IssueCode::Structure, "Patient.gender");
        let patient = with(french_patient(), "/maritalStatus", json!("M"));
        assert_one(&patient, IssueCode::Structure, "Patient.maritalStatus");
        let observation = with(weight_observation(), "/valueQuantity/value", json!("62.5"));
        assert_one(
            &observation,
            IssueCode::Structure,
            "Observation.valueQuantity.value",
        );
        // A number where a string is expected, in either representation.
        let patient = with(french_patient(), "/birthDate", lossless_number("1984"));
        assert_one(&patient, IssueCode::Structure, "Patient.birthDate");
    }

    #[test]
    fn bad_calendar_date() {
        let patient = with(french_patient(), "/birthDate", json!("2024-02-30"));
        assert_one(&patient, IssueCode::Value, "Patient.birthDate");
        let patient = with(french_patient(), "/birthDate", json!("2023-02-29"));
        assert_one(&patient, IssueCode::Value, "Patient.birthDate");
        for fine in ["2024-02-29", "2000-02-29", "1984-07", "1984"] {
            assert_valid(&with(french_patient(), "/birthDate", json!(fine)));
        }
        let patient = with(french_patient(), "/birthDate", json!("1900-02-29"));
        assert_one(&patient, IssueCode::Value, "Patient.birthDate");
        let patient = with(french_patient(), "/birthDate", json!("15/07/1984"));
        assert_one(&patient, IssueCode::Value, "Patient.birthDate");
        let document = with(document_reference(), "/date", json!("2023-04-31T10:00:00Z"));
        assert_one(&document, IssueCode::Value, "DocumentReference.date");
    }

    #[test]
    fn date_time_with_time_needs_time_zone() {
        let allergy = with(
            penicillin_allergy(),
            "/onsetDateTime",
            json!("2024-03-01T10:00:00"),
        );
        let issues = validate_resource(&allergy);
        assert_eq!(
            found(&allergy),
            [(
                IssueCode::Value,
                "AllergyIntolerance.onsetDateTime".to_owned()
            )]
        );
        assert!(
            issues[0].diagnostics.contains("time zone"),
            "{}",
            issues[0].diagnostics
        );
        assert_valid(&with(
            allergy.clone(),
            "/onsetDateTime",
            json!("2024-03-01T10:00:00Z"),
        ));
    }

    #[test]
    fn instant_needs_seconds_and_time_zone() {
        for bad in ["2024-03-01T09:15Z", "2024-03-01", "2024-03-01T09:15:27"] {
            let patient = with(french_patient(), "/meta/lastUpdated", json!(bad));
            assert_one(&patient, IssueCode::Value, "Patient.meta.lastUpdated");
        }
    }

    #[test]
    fn malformed_decimal() {
        let observation = with(
            weight_observation(),
            "/valueQuantity/value",
            lossless_number("1."),
        );
        assert_one(
            &observation,
            IssueCode::Value,
            "Observation.valueQuantity.value",
        );
        let observation = with(
            weight_observation(),
            "/valueQuantity/value",
            lossless_number("01.5"),
        );
        assert_one(
            &observation,
            IssueCode::Value,
            "Observation.valueQuantity.value",
        );
    }

    #[test]
    fn integer_ranges() {
        let document = with(
            document_reference(),
            "/content/0/attachment/size",
            json!(-1),
        );
        assert_one(
            &document,
            IssueCode::Value,
            "DocumentReference.content[0].attachment.size",
        );
        let document = with(
            document_reference(),
            "/content/0/attachment/size",
            json!(1.5),
        );
        assert_one(
            &document,
            IssueCode::Value,
            "DocumentReference.content[0].attachment.size",
        );
        let patient = with(french_patient(), "/telecom/0/rank", json!(0));
        assert_one(&patient, IssueCode::Value, "Patient.telecom[0].rank");
        let patient = without(french_patient(), "/multipleBirthBoolean");
        assert_valid(&with(
            patient.clone(),
            "/multipleBirthInteger",
            json!(2147483647),
        ));
        assert_valid(&with(
            patient.clone(),
            "/multipleBirthInteger",
            json!(-2147483648),
        ));
        let too_big = with(patient, "/multipleBirthInteger", json!(2147483648_i64));
        assert_one(&too_big, IssueCode::Value, "Patient.multipleBirthInteger");
    }

    #[test]
    fn resource_id_uses_id_pattern() {
        let patient = with(french_patient(), "/id", json!("pat_hdl"));
        assert_one(&patient, IssueCode::Value, "Patient.id");
        // Element ids are plain strings.
        assert_valid(&with(french_patient(), "/name/0/id", json!("nom_usuel")));
    }

    #[test]
    fn strings_are_not_empty_nor_control_characters() {
        let patient = with(french_patient(), "/name/0/family", json!(""));
        assert_one(&patient, IssueCode::Value, "Patient.name[0].family");
        let patient = with(french_patient(), "/name/0/given/0", json!(""));
        assert_one(&patient, IssueCode::Value, "Patient.name[0].given[0]");
        let patient = with(french_patient(), "/name/0/family", json!("Dupont\u{7}"));
        assert_one(&patient, IssueCode::Value, "Patient.name[0].family");
        assert_valid(&with(
            penicillin_allergy(),
            "/note/0/text",
            json!("ligne 1\r\n\tligne 2"),
        ));
        let patient = with(french_patient(), "/gender", json!(" female"));
        assert_one(&patient, IssueCode::Value, "Patient.gender");
    }

    #[test]
    fn narrative_must_be_a_div() {
        let patient = with(french_patient(), "/text/div", json!("<p>Hélène</p>"));
        assert_one(&patient, IssueCode::Value, "Patient.text.div");
        let patient = with(
            french_patient(),
            "/text/_div",
            json!({"extension": [{"url": "http://example.org/x", "valueString": "y"}]}),
        );
        assert_one(&patient, IssueCode::Structure, "Patient.text.div.extension");
    }

    // --- cardinality -------------------------------------------------------------------------

    #[test]
    fn missing_required_elements() {
        let document = without(document_reference(), "/status");
        assert_one(&document, IssueCode::Required, "DocumentReference.status");
        let document = with(
            document_reference(),
            "/content/0",
            json!({"format": {"code": "urn:ihe:iti:xds:2017:mimeTypeSufficient"}}),
        );
        assert_one(
            &document,
            IssueCode::Required,
            "DocumentReference.content[0].attachment",
        );
        let document = without(document_reference(), "/content");
        assert_one(&document, IssueCode::Required, "DocumentReference.content");
        let patient = without(french_patient(), "/text/status");
        assert_one(&patient, IssueCode::Required, "Patient.text.status");
    }

    #[test]
    fn array_where_max_one() {
        let patient = with(french_patient(), "/gender", json!(["female"]));
        assert_one(&patient, IssueCode::Structure, "Patient.gender");
        let document = with(
            document_reference(),
            "/subject",
            json!([{"reference": "Patient/pat-hdl-1984"}]),
        );
        assert_one(&document, IssueCode::Structure, "DocumentReference.subject");
    }

    #[test]
    fn scalar_where_max_many() {
        let patient = with(french_patient(), "/name/0/given", json!("Hélène"));
        let patient = without(patient, "/name/0/_given");
        assert_one(&patient, IssueCode::Structure, "Patient.name[0].given");
        let patient = with(
            french_patient(),
            "/identifier",
            json!({"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "284074220012345"}),
        );
        assert_one(&patient, IssueCode::Structure, "Patient.identifier");
        // The lone value is still looked into.
        let patient = with(french_patient(), "/identifier", json!({"value": ""}));
        assert_eq!(
            found(&patient),
            [
                (IssueCode::Structure, "Patient.identifier".to_owned()),
                (IssueCode::Value, "Patient.identifier.value".to_owned()),
            ]
        );
    }

    #[test]
    fn empty_objects_arrays_and_nulls() {
        let patient = with(french_patient(), "/maritalStatus", json!({}));
        assert_one(&patient, IssueCode::Structure, "Patient.maritalStatus");
        let patient = with(french_patient(), "/identifier", json!([]));
        assert_one(&patient, IssueCode::Structure, "Patient.identifier");
        let patient = with(french_patient(), "/name/0/given", json!([]));
        let patient = without(patient, "/name/0/_given");
        assert_one(&patient, IssueCode::Structure, "Patient.name[0].given");
        let patient = with(french_patient(), "/gender", json!(null));
        assert_one(&patient, IssueCode::Structure, "Patient.gender");
        let patient = with(french_patient(), "/address/0", json!(null));
        assert_one(&patient, IssueCode::Structure, "Patient.address[0]");
        let patient = with(french_patient(), "/contained", json!([{}]));
        assert_one(&patient, IssueCode::Structure, "Patient.contained[0]");
    }

    // --- recursion: backbone elements, content references, resources ------------------------

    #[test]
    fn content_reference_recursion() {
        let consent = with(
            consent_with_provisions(),
            "/provision/provision/0/provision/0/bogus",
            json!(true),
        );
        assert_one(
            &consent,
            IssueCode::Structure,
            "Consent.provision.provision[0].provision[0].bogus",
        );
        let consent = with(
            consent_with_provisions(),
            "/provision/provision/0/provision/0/type",
            json!(["deny"]),
        );
        assert_one(
            &consent,
            IssueCode::Structure,
            "Consent.provision.provision[0].provision[0].type",
        );
        let consent = without(consent_with_provisions(), "/provision/actor/0/role");
        assert_one(
            &consent,
            IssueCode::Required,
            "Consent.provision.actor[0].role",
        );
    }

    #[test]
    fn bad_contained_resource() {
        let document = with(
            document_reference(),
            "/contained/0/qualification",
            json!("cardiologue"),
        );
        assert_one(
            &document,
            IssueCode::Structure,
            "DocumentReference.contained[0].qualification",
        );
        let document = with(
            document_reference(),
            "/contained/0/name/0/family",
            json!(""),
        );
        assert_one(
            &document,
            IssueCode::Value,
            "DocumentReference.contained[0].name[0].family",
        );
        let document = with(
            document_reference(),
            "/contained/0/resourceType",
            json!("Médecin"),
        );
        assert_one(
            &document,
            IssueCode::NotSupported,
            "DocumentReference.contained[0]",
        );
        let document = without(document_reference(), "/contained/0/resourceType");
        assert_one(
            &document,
            IssueCode::Required,
            "DocumentReference.contained[0].resourceType",
        );
        let document = with(
            document_reference(),
            "/contained/0",
            json!("Practitioner/auteur"),
        );
        assert_one(
            &document,
            IssueCode::Structure,
            "DocumentReference.contained[0]",
        );
    }

    #[test]
    fn bundle_entries_are_validated_as_resources() {
        let bundle = json!({
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {"fullUrl": "urn:uuid:0f6d3c1e-8d8a-4a4f-9b7e-3d2f1c0b9a87", "resource": penicillin_allergy()},
                {"resource": with(consent_with_provisions(), "/status", json!("actif "))}
            ]
        });
        assert_one(&bundle, IssueCode::Value, "Bundle.entry[1].resource.status");
        let outcome_not_outcome = json!({
            "resourceType": "Bundle",
            "type": "batch-response",
            "entry": [{"response": {"status": "200", "outcome": french_patient()}}]
        });
        assert_one(
            &outcome_not_outcome,
            IssueCode::Structure,
            "Bundle.entry[0].response.outcome",
        );
        let bad_link = json!({
            "resourceType": "Bundle",
            "type": "searchset",
            "link": [{"relation": "self", "url": "https://carnet.example/fhir/Patient?name=Dupont"}],
            "entry": [{"link": [{"relation": "alternate"}], "resource": french_patient()}]
        });
        // Bundle.entry.link reuses Bundle.link through a contentReference.
        assert_one(
            &bad_link,
            IssueCode::Required,
            "Bundle.entry[0].link[0].url",
        );
    }

    // --- reporting ---------------------------------------------------------------------------

    #[test]
    fn issues_in_document_order_then_required() {
        let document = without(document_reference(), "/status");
        let document = with(document, "/zzz", json!(1));
        let document = with(document, "/description", json!(""));
        assert_eq!(
            found(&document),
            [
                (IssueCode::Value, "DocumentReference.description".to_owned()),
                (IssueCode::Structure, "DocumentReference.zzz".to_owned()),
                (IssueCode::Required, "DocumentReference.status".to_owned()),
            ]
        );
        assert_eq!(validate_resource(&document), validate_resource(&document));
    }

    #[test]
    fn issues_are_capped() {
        let mut patient = french_patient();
        for i in 0..150 {
            patient[format!("bogus{i}")] = json!(i);
        }
        let issues = validate_resource(&patient);
        assert_eq!(issues.len(), MAX_ISSUES);
        assert_eq!(issues[0].expression, "Patient.bogus0");
    }

    #[test]
    fn every_definition_loads() {
        let definitions = &*DEFINITIONS;
        assert_eq!(definitions.resources.len(), 27);
        assert!(definitions
            .primitives
            .iter()
            .all(|p| p.name == "xhtml" || p.pattern.is_some()));
    }

    #[test]
    fn validates_a_five_kilobyte_resource_quickly() {
        let mut patient = french_patient();
        let name = patient["name"][0].clone();
        let names = patient["name"].as_array_mut().expect("names");
        while serde_json::to_string(names).expect("JSON").len() < 4000 {
            names.push(name.clone());
        }
        assert_valid(&patient);
        let runs: u32 = 200;
        let start = std::time::Instant::now();
        for _ in 0..runs {
            std::hint::black_box(validate_resource(std::hint::black_box(&patient)));
        }
        let each = start.elapsed() / runs;
        // Generous for unoptimized test builds; release builds take a few tens of µs.
        assert!(
            each < std::time::Duration::from_millis(5),
            "took {each:?} per validation"
        );
    }
}
