//! FHIRPath Patch (a FHIR `Parameters` resource) and the FHIRPath subset its paths use.

use super::*;

/// Deepest nesting of parentheses and `where()` accepted in a FHIRPath; deeper input is refused
/// rather than risking the stack on a hostile path.
const MAX_FHIRPATH_DEPTH: usize = 32;

/// Applies a FHIRPath Patch (a FHIR `Parameters` resource, <http://hl7.org/fhir/R4/fhirpatch.html>)
/// to `resource`.
///
/// Operations `add`, `insert`, `delete`, `replace` and `move` are supported; values are any
/// `value[x]`, a `resource`, or nested `part`s naming the properties of a complex value.
///
/// `is_repeating` tells whether an element is a list (max cardinality above 1). It is asked
/// only about elements absent from the resource (an existing element repeats when it is a JSON
/// array), with the dot-joined JSON property names leading to it from its resource type:
/// `Patient.name`, `DocumentReference.securityLabel.coding`, `Observation.valueQuantity.extension`,
/// `Patient.birthDate.extension` (for the `_birthDate` companion); inside a contained resource
/// the path starts over from that resource's type (`Practitioner.name`).
///
/// On error `resource` is unchanged; malformed operations are all reported, otherwise the
/// first operation that fails is.
///
/// The same bounds as [`apply_json_patch`] hold.
pub fn apply_fhirpath_patch(
    resource: &mut Value,
    parameters: &Value,
    is_repeating: &dyn Fn(&str) -> bool,
    max_bytes: usize,
) -> Result<(), Vec<OutcomeIssue>> {
    check_count(parameters["parameter"].as_array().map_or(0, Vec::len))?;
    let operations = parse_fhirpath_operations(parameters)?;
    let mut bounds = Bounds::new(max_bytes);
    let mut patched = resource.clone();
    let locate = |position: usize| format!("Parameters.parameter[{position}]");
    bounds.check(&patched).map_err(|issue| vec![issue])?;
    for (position, operation) in operations.iter().enumerate() {
        bounds
            .charge(operation.path.terms())
            .map_err(|issue| vec![issue.at(locate(position))])?;
        operation
            .apply(&mut patched, is_repeating)
            .map_err(|failure| vec![operation.parts.locate(failure)])?;
        bounds
            .check(&patched)
            .map_err(|issue| vec![issue.at(locate(position))])?;
        // Later paths must see the resource as FHIR would hold it, without emptied elements.
        tidy(&mut patched);
    }
    *resource = patched;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// FHIRPath Patch: reading the Parameters resource.

/// The part names an operation may carry.
const PART_NAMES: &[&str] = &[
    "type",
    "path",
    "name",
    "value",
    "index",
    "source",
    "destination",
];

/// One parsed FHIRPath Patch operation.
struct Operation<'a> {
    parts: Parts<'a>,
    path: FhirPath,
    action: Action<'a>,
}

/// What an operation does, with the parts its type requires.
enum Action<'a> {
    Add {
        name: &'a str,
        value: PatchValue<'a>,
    },
    Insert {
        value: PatchValue<'a>,
        index: usize,
    },
    Delete,
    Replace {
        value: PatchValue<'a>,
    },
    Move {
        source: usize,
        destination: usize,
    },
}

/// The parts of one `operation` parameter, by name, remembering their positions for messages.
struct Parts<'a> {
    /// Position of the parameter in `Parameters.parameter`.
    position: usize,
    found: Vec<(&'a str, usize, &'a Map<String, Value>)>,
}

impl<'a> Parts<'a> {
    fn expression(&self) -> String {
        format!("Parameters.parameter[{}]", self.position)
    }

    fn part_expression(&self, index: usize) -> String {
        format!("{}.part[{index}]", self.expression())
    }

    /// Places a failure on the part it names, or on the whole operation.
    fn locate(&self, failure: Failure) -> OutcomeIssue {
        let part = failure
            .member
            .and_then(|member| self.found.iter().find(|(name, ..)| *name == member));
        let expression = match part {
            Some((_, index, _)) => self.part_expression(*index),
            None => self.expression(),
        };
        OutcomeIssue::error(failure.code, failure.diagnostics).at(expression)
    }

    fn get(&self, name: &str) -> Option<&'a Map<String, Value>> {
        self.found
            .iter()
            .find(|(found, ..)| *found == name)
            .map(|(_, _, part)| *part)
    }

    fn require(&self, name: &'static str, kind: &str) -> Result<&'a Map<String, Value>, Failure> {
        self.get(name).ok_or_else(|| {
            Failure::new(
                INVALID,
                format!("The {kind} operation needs a '{name}' part"),
            )
        })
    }

    /// The operation type, from the `type` part.
    fn kind(&self) -> Result<&'a str, Failure> {
        let part = self
            .get("type")
            .ok_or_else(|| Failure::new(INVALID, "The operation needs a 'type' part"))?;
        part_text(part).or_fail(INVALID, "type")
    }

    fn text(&self, name: &'static str, kind: &str) -> Result<&'a str, Failure> {
        part_text(self.require(name, kind)?).or_fail(INVALID, name)
    }

    fn integer(&self, name: &'static str, kind: &str) -> Result<usize, Failure> {
        part_integer(self.require(name, kind)?).or_fail(VALUE, name)
    }

    fn value(&self, kind: &str) -> Result<PatchValue<'a>, Failure> {
        patch_value(self.require("value", kind)?).or_fail(INVALID, "value")
    }
}

fn parse_fhirpath_operations(parameters: &Value) -> Result<Vec<Operation<'_>>, Vec<OutcomeIssue>> {
    let not_parameters = || {
        let message = "A FHIRPath Patch must be a Parameters resource";
        vec![OutcomeIssue::error(INVALID, message).at(ROOT_EXPRESSION)]
    };
    let document = parameters.as_object().ok_or_else(not_parameters)?;
    if document.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(not_parameters());
    }
    let Some(list) = document.get("parameter") else {
        return Ok(Vec::new());
    };
    let Some(list) = list.as_array() else {
        let message = "'parameter' must be an array";
        return Err(vec![
            OutcomeIssue::error(INVALID, message).at("Parameters.parameter")
        ]);
    };
    let mut operations = Vec::with_capacity(list.len());
    let mut issues = Vec::new();
    for (position, parameter) in list.iter().enumerate() {
        match parse_operation(position, parameter) {
            Ok(operation) => operations.push(operation),
            Err(issue) => issues.push(issue),
        }
    }
    if issues.is_empty() {
        Ok(operations)
    } else {
        Err(issues)
    }
}

fn parse_operation(position: usize, parameter: &Value) -> Result<Operation<'_>, OutcomeIssue> {
    let parts = collect_parts(position, parameter)?;
    match parse_parts(&parts) {
        Ok((path, action)) => Ok(Operation {
            parts,
            path,
            action,
        }),
        Err(failure) => Err(parts.locate(failure)),
    }
}

/// The path and the action an operation's parts describe.
fn parse_parts<'a>(parts: &Parts<'a>) -> Result<(FhirPath, Action<'a>), Failure> {
    let kind = parts.kind()?;
    let (text, action) = parse_action(parts, kind)?;
    let path = parse_fhirpath(text).map_err(|failure| failure.on("path"))?;
    Ok((path, action))
}

/// Checks the parameter's shape and indexes its parts by name.
fn collect_parts(position: usize, parameter: &Value) -> Result<Parts<'_>, OutcomeIssue> {
    let mut parts = Parts {
        position,
        found: Vec::new(),
    };
    let here = parts.expression();
    let Some(parameter) = parameter.as_object() else {
        return Err(OutcomeIssue::error(INVALID, "A parameter must be a JSON object").at(here));
    };
    if parameter.get("name").and_then(Value::as_str) != Some("operation") {
        let message = "Every parameter of a FHIRPath Patch must be named 'operation'";
        return Err(OutcomeIssue::error(INVALID, message).at(format!("{here}.name")));
    }
    let Some(list) = parameter.get("part").and_then(Value::as_array) else {
        let message = "An operation must have parts (type, path…)";
        return Err(OutcomeIssue::error(INVALID, message).at(here));
    };
    for (index, part) in list.iter().enumerate() {
        let at = parts.part_expression(index);
        let Some(part) = part.as_object() else {
            return Err(OutcomeIssue::error(INVALID, "A part must be a JSON object").at(at));
        };
        let name = part.get("name").and_then(Value::as_str).unwrap_or("");
        let Some(known) = PART_NAMES.iter().find(|known| **known == name) else {
            let message = format!(
                "Unknown part '{name}': expected type, path, name, value, index, source or destination"
            );
            return Err(OutcomeIssue::error(INVALID, message).at(at));
        };
        if parts.get(known).is_some() {
            let message = format!("The operation has more than one '{name}' part");
            return Err(OutcomeIssue::error(INVALID, message).at(at));
        }
        parts.found.push((*known, index, part));
    }
    Ok(parts)
}

/// Reads the parts the operation type needs; returns the path text and the action.
fn parse_action<'a>(parts: &Parts<'a>, kind: &str) -> Result<(&'a str, Action<'a>), Failure> {
    let action = match kind {
        "add" => Action::Add {
            name: parts.text("name", kind)?,
            value: parts.value(kind)?,
        },
        "insert" => Action::Insert {
            value: parts.value(kind)?,
            index: parts.integer("index", kind)?,
        },
        "delete" => Action::Delete,
        "replace" => Action::Replace {
            value: parts.value(kind)?,
        },
        "move" => Action::Move {
            source: parts.integer("source", kind)?,
            destination: parts.integer("destination", kind)?,
        },
        other => {
            let message = format!(
                "Unknown operation type '{other}': expected add, insert, delete, replace or move"
            );
            return Err(Failure::new(INVALID, message).on("type"));
        }
    };
    Ok((parts.text("path", kind)?, action))
}

/// The `value[x]` of a part: its type name (`String`, `CodeableConcept`…) and JSON value.
fn typed_value(part: &Map<String, Value>) -> Result<Option<(&str, &Value)>, String> {
    let mut found = None;
    for (key, value) in part {
        let Some(type_name) = key.strip_prefix("value") else {
            continue;
        };
        if type_name.starts_with(|c: char| c.is_ascii_uppercase())
            && found.replace((type_name, value)).is_some()
        {
            return Err("The part has more than one value[x]".to_owned());
        }
    }
    Ok(found)
}

/// A string-valued part (`valueString`, `valueCode`…).
fn part_text(part: &Map<String, Value>) -> Result<&str, String> {
    match typed_value(part)? {
        Some((_, Value::String(text))) if !text.starts_with(NUMBER_MARK) => Ok(text),
        _ => Err("The part needs a string value (valueString or valueCode)".to_owned()),
    }
}

/// An integer-valued part (`valueInteger`), which must not be negative.
fn part_integer(part: &Map<String, Value>) -> Result<usize, String> {
    let text = typed_value(part)?.and_then(|(_, value)| number_text(value));
    let Some(text) = text else {
        return Err("The part needs a valueInteger".to_owned());
    };
    if text.starts_with('-') {
        return Err(format!("The index must not be negative (got {text})"));
    }
    text.parse()
        .map_err(|_| format!("The index must be a whole number (got {text})"))
}

/// A value given by a patch, before it is placed in the resource.
#[derive(Clone, Copy)]
enum PatchValue<'a> {
    /// `value[x]`: JSON of the named type, with its `_value[x]` companion if any.
    Typed {
        type_name: &'a str,
        value: &'a Value,
        companion: Option<&'a Value>,
    },
    /// Nested parts naming the properties of a complex value (e.g. a `contact`).
    Parts(&'a [Value]),
    /// A whole resource, e.g. for `contained`.
    Resource(&'a Value),
}

impl PatchValue<'_> {
    fn type_name(&self) -> Option<&str> {
        match self {
            PatchValue::Typed { type_name, .. } => Some(*type_name),
            _ => None,
        }
    }
}

fn patch_value(part: &Map<String, Value>) -> Result<PatchValue<'_>, String> {
    if let Some((type_name, value)) = typed_value(part)? {
        let companion = part.get(&format!("_value{type_name}"));
        return Ok(PatchValue::Typed {
            type_name,
            value,
            companion,
        });
    }
    if let Some(resource) = part.get("resource") {
        return Ok(PatchValue::Resource(resource));
    }
    match part.get("part").and_then(Value::as_array) {
        Some(parts) => Ok(PatchValue::Parts(parts)),
        None => Err("The value part needs a value[x], a resource or parts".to_owned()),
    }
}

/// A value ready to be stored: the JSON value and its `_name` companion (primitives only).
struct Item {
    value: Value,
    companion: Option<Value>,
}

/// Builds the JSON for a patch value that will sit at `definition` (see [`apply_fhirpath_patch`]).
fn materialize(
    value: PatchValue<'_>,
    definition: &str,
    is_repeating: &dyn Fn(&str) -> bool,
) -> Result<Item, String> {
    let value = match value {
        PatchValue::Typed {
            value, companion, ..
        } => {
            return Ok(Item {
                value: value.clone(),
                companion: companion.cloned(),
            })
        }
        PatchValue::Resource(resource) => resource.clone(),
        PatchValue::Parts(parts) => Value::Object(build_object(parts, definition, is_repeating)?),
    };
    Ok(Item {
        value,
        companion: None,
    })
}

/// Turns nested parts into an object: each part is a property; a name given twice, or one the
/// definitions say repeats, becomes an array.
fn build_object(
    parts: &[Value],
    definition: &str,
    is_repeating: &dyn Fn(&str) -> bool,
) -> Result<Map<String, Value>, String> {
    let mut properties: Vec<(String, Item)> = Vec::with_capacity(parts.len());
    for part in parts {
        let part = part
            .as_object()
            .ok_or("A value part must be a JSON object")?;
        let name = part
            .get("name")
            .and_then(Value::as_str)
            .ok_or("A value part needs a name")?;
        let value = patch_value(part).map_err(|message| format!("In part '{name}': {message}"))?;
        let key = property_key(name, &value)?;
        let item = materialize(value, &format!("{definition}.{key}"), is_repeating)?;
        properties.push((key, item));
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for (key, _) in &properties {
        *counts.entry(key.clone()).or_default() += 1;
    }
    let mut object = Map::new();
    for (key, item) in properties {
        let given_twice = counts.get(&key).is_some_and(|count| *count > 1);
        if given_twice || is_repeating(&format!("{definition}.{key}")) {
            list_push(&mut object, &key, item);
        } else {
            set_single(&mut object, &key, item);
        }
    }
    Ok(object)
}

/// The JSON property for `name`: `deceased[x]` takes the value's type (`deceasedBoolean`).
fn property_key(name: &str, value: &PatchValue<'_>) -> Result<String, String> {
    let (base, choice) = match name.strip_suffix("[x]") {
        Some(base) => (base, true),
        None => (name, false),
    };
    let well_formed = base.starts_with(|c: char| c.is_ascii_alphabetic())
        && base.chars().all(|c| c.is_ascii_alphanumeric());
    if !well_formed {
        return Err(format!("'{name}' is not an element name"));
    }
    match (choice, value.type_name()) {
        (false, _) => Ok(base.to_owned()),
        (true, Some(type_name)) => Ok(format!("{base}{type_name}")),
        (true, None) => Err(format!(
            "'{name}' is a choice element: its value must be a value[x] naming the type"
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// FHIRPath Patch: the operations.

impl Operation<'_> {
    fn apply(&self, root: &mut Value, is_repeating: &dyn Fn(&str) -> bool) -> Result<(), Failure> {
        match self.action {
            Action::Add { name, value } => add(root, &self.path, name, value, is_repeating),
            Action::Insert { value, index } => insert(root, &self.path, value, index, is_repeating),
            Action::Delete => delete(root, &self.path),
            Action::Replace { value } => replace(root, &self.path, value, is_repeating),
            Action::Move {
                source,
                destination,
            } => move_item(root, &self.path, source, destination),
        }
    }
}

/// `add`: sets property `name` of the single element at `path`, or appends to it if it repeats.
fn add(
    root: &mut Value,
    path: &FhirPath,
    name: &str,
    value: PatchValue<'_>,
    is_repeating: &dyn Fn(&str) -> bool,
) -> Result<(), Failure> {
    let node = select_one(root, path, "add")?;
    let key = property_key(name, &value).or_fail(INVALID, "name")?;
    let holder = child_holder(root, &node).or_fail(PROCESSING, "path")?;
    let definition = format!("{}.{key}", definition_path(root, &holder));
    let item = materialize(value, &definition, is_repeating).or_fail(INVALID, "value")?;
    let map = object_at(root, &holder).or_fail(PROCESSING, "path")?;
    let base = name.strip_suffix("[x]").unwrap_or(name);
    if let Some(existing) = choice_key(map, base).filter(|_| !has_property(map, &key)) {
        // A choice element holds one type: `deceased[x]` cannot join a `deceasedDateTime`.
        let message = format!(
            "'{}' already has {existing}: a choice element holds one value; use replace",
            path.text
        );
        return Err(Failure::new(PROCESSING, message).on("name"));
    }
    if list_len(map, &key).is_some() {
        list_push(map, &key, item);
    } else if has_property(map, &key) {
        let message = format!(
            "'{}' already has a {key}: add only appends to repeating elements; use replace",
            path.text
        );
        return Err(Failure::new(PROCESSING, message).on("name"));
    } else if is_repeating(&definition) {
        list_push(map, &key, item);
    } else {
        set_single(map, &key, item);
    }
    Ok(())
}

/// `insert`: puts the value at `index` of the list `path` names (which may not exist yet).
fn insert(
    root: &mut Value,
    path: &FhirPath,
    value: PatchValue<'_>,
    index: usize,
    is_repeating: &dyn Fn(&str) -> bool,
) -> Result<(), Failure> {
    let (holder, key) = list_holder(root, path, "insert")?;
    let definition = format!("{}.{key}", definition_path(root, &holder));
    let item = materialize(value, &definition, is_repeating).or_fail(INVALID, "value")?;
    let map = object_at(root, &holder).or_fail(PROCESSING, "path")?;
    let len = match list_len(map, &key) {
        Some(len) => len,
        None if has_property(map, &key) => return Err(not_a_list(path)),
        None if is_repeating(&definition) => 0,
        None => return Err(not_a_list(path)),
    };
    if index > len {
        let message = format!(
            "Index {index} is beyond the end of '{}' ({len} items)",
            path.text
        );
        return Err(Failure::new(VALUE, message).on("index"));
    }
    list_insert(map, &key, index, item);
    Ok(())
}

/// `delete`: removes the element at `path`; nothing to delete is fine, several is an error.
fn delete(root: &mut Value, path: &FhirPath) -> Result<(), Failure> {
    let mut nodes = evaluate(root, path)?;
    if nodes.len() > 1 {
        return Err(several_matches(path, nodes.len(), "delete"));
    }
    let Some(node) = nodes.pop() else {
        return Ok(());
    };
    let (parent, key, index) = split(&node.ptr).ok_or_else(|| whole_resource("deleted"))?;
    let map = object_at(root, parent).or_fail(PROCESSING, "path")?;
    match index {
        Some(index) => drop(list_remove(map, key, index)),
        None => {
            map.shift_remove(key);
            map.shift_remove(&companion_key(key));
        }
    }
    Ok(())
}

/// `replace`: swaps the single element at `path` for the value; a choice element takes the
/// value's type (`deceasedBoolean` becomes `deceasedDateTime`).
fn replace(
    root: &mut Value,
    path: &FhirPath,
    value: PatchValue<'_>,
    is_repeating: &dyn Fn(&str) -> bool,
) -> Result<(), Failure> {
    let node = select_one(root, path, "replace")?;
    let (parent, key, index) = split(&node.ptr).ok_or_else(|| whole_resource("replaced"))?;
    let new_key = match (&node.choice_base, value.type_name()) {
        (Some(base), Some(type_name)) => format!("{base}{type_name}"),
        _ => key.to_owned(),
    };
    let definition = format!("{}.{new_key}", definition_path(root, parent));
    let item = materialize(value, &definition, is_repeating).or_fail(INVALID, "value")?;
    let map = object_at(root, parent).or_fail(PROCESSING, "path")?;
    match index {
        Some(index) => list_set(map, key, index, item),
        None => replace_property(map, key, &new_key, item),
    }
    Ok(())
}

/// `move`: moves item `source` of the list `path` names to position `destination`.
fn move_item(
    root: &mut Value,
    path: &FhirPath,
    source: usize,
    destination: usize,
) -> Result<(), Failure> {
    let (holder, key) = list_holder(root, path, "move")?;
    let map = object_at(root, &holder).or_fail(PROCESSING, "path")?;
    let len = match list_len(map, &key) {
        Some(len) => len,
        None if has_property(map, &key) => return Err(not_a_list(path)),
        None => {
            let message = format!("'{}' has no items to move", path.text);
            return Err(Failure::new(NOT_FOUND, message).on("path"));
        }
    };
    for (index, part) in [(source, "source"), (destination, "destination")] {
        if index >= len {
            let message = format!(
                "Index {index} is beyond the end of '{}' ({len} items)",
                path.text
            );
            return Err(Failure::new(VALUE, message).on(part));
        }
    }
    let item = list_remove(map, &key, source);
    list_insert(map, &key, destination, item);
    Ok(())
}

/// The single element `path` selects, for operations that need exactly one.
fn select_one(root: &Value, path: &FhirPath, kind: &str) -> Result<Node, Failure> {
    let mut nodes = evaluate(root, path)?;
    match nodes.len() {
        0 => {
            let message = format!("'{}' matches nothing in the resource", path.text);
            Err(Failure::new(NOT_FOUND, message).on("path"))
        }
        1 => Ok(nodes.remove(0)),
        n => Err(several_matches(path, n, kind)),
    }
}

/// For `insert` and `move`, `path` names a list (`Patient.identifier`) that may be empty: it is
/// found as the element before the last name (which must select one element) and that name.
fn list_holder(root: &mut Value, path: &FhirPath, kind: &str) -> Result<(Ptr, String), Failure> {
    let Some((Step::Child(key), steps)) = path.steps.split_last() else {
        let message = format!(
            "'{}' must name a list by ending with an element name, e.g. Patient.identifier",
            path.text
        );
        return Err(Failure::new(INVALID, message).on("path"));
    };
    let parent = FhirPath {
        text: path.text.clone(),
        root_type: path.root_type.clone(),
        steps: steps.to_vec(),
    };
    let node = select_one(root, &parent, kind)?;
    let holder = child_holder(root, &node).or_fail(PROCESSING, "path")?;
    Ok((holder, key.clone()))
}

fn several_matches(path: &FhirPath, count: usize, kind: &str) -> Failure {
    let message = format!(
        "'{}' matches {count} elements; {kind} needs exactly one",
        path.text
    );
    Failure::new(PROCESSING, message).on("path")
}

fn not_a_list(path: &FhirPath) -> Failure {
    let message = format!("'{}' is not a list; use add or replace", path.text);
    Failure::new(INVALID, message).on("path")
}

fn whole_resource(what: &str) -> Failure {
    let message = format!("The whole resource cannot be {what} by a patch");
    Failure::new(INVALID, message).on("path")
}

// ---------------------------------------------------------------------------------------------
// Locations in the resource.

/// One step from a JSON value to a child.
#[derive(Clone, Debug, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// Where a value sits in the resource.
type Ptr = Vec<Seg>;

/// An element a FHIRPath selected.
#[derive(Clone, Debug)]
struct Node {
    /// Ends with `Key(name)`, or `Key(name), Index(i)` for an item of a list; empty for the root.
    ptr: Ptr,
    /// For a choice element reached by its base name (`deceased` → `deceasedBoolean`), the base.
    choice_base: Option<String>,
}

fn get<'v>(root: &'v Value, ptr: &[Seg]) -> Option<&'v Value> {
    ptr.iter().try_fold(root, |value, seg| match seg {
        Seg::Key(key) => value.get(key.as_str()),
        Seg::Index(index) => value.get(*index),
    })
}

fn get_mut<'v>(root: &'v mut Value, ptr: &[Seg]) -> Option<&'v mut Value> {
    ptr.iter().try_fold(root, |value, seg| match seg {
        Seg::Key(key) => value.get_mut(key.as_str()),
        Seg::Index(index) => value.get_mut(*index),
    })
}

fn object_at<'v>(root: &'v mut Value, ptr: &[Seg]) -> Result<&'v mut Map<String, Value>, String> {
    get_mut(root, ptr)
        .and_then(Value::as_object_mut)
        .ok_or_else(|| "The element is not a JSON object".to_owned())
}

/// A node's place: the object holding it, its property name, and its index within a list.
fn split(ptr: &[Seg]) -> Option<(&[Seg], &str, Option<usize>)> {
    match ptr {
        [parent @ .., Seg::Key(key)] => Some((parent, key, None)),
        [parent @ .., Seg::Key(key), Seg::Index(index)] => Some((parent, key, Some(*index))),
        _ => None,
    }
}

fn join(parent: &[Seg], key: &str, index: Option<usize>) -> Ptr {
    let mut ptr = parent.to_vec();
    ptr.push(Seg::Key(key.to_owned()));
    ptr.extend(index.map(Seg::Index));
    ptr
}

fn companion_ptr(ptr: &[Seg]) -> Option<Ptr> {
    let (parent, key, index) = split(ptr)?;
    Some(join(parent, &companion_key(key), index))
}

/// The object children of a node live in: the node itself, or a primitive's companion.
fn element_object<'v>(root: &'v Value, ptr: &[Seg]) -> Option<(Ptr, &'v Map<String, Value>)> {
    if let Some(map) = get(root, ptr).and_then(Value::as_object) {
        return Some((ptr.to_vec(), map));
    }
    let companion = companion_ptr(ptr)?;
    let map = get(root, &companion)?.as_object()?;
    Some((companion, map))
}

/// Like [`element_object`], creating an empty companion for a primitive, so `add` can give
/// `Patient.birthDate` an extension.
fn child_holder(root: &mut Value, node: &Node) -> Result<Ptr, String> {
    if get(root, &node.ptr).is_some_and(Value::is_object) {
        return Ok(node.ptr.clone());
    }
    let Some((parent, key, index)) = split(&node.ptr) else {
        return Err("The resource is not a JSON object".to_owned());
    };
    let map = object_at(root, parent)?;
    let companion = companion_key(key);
    match index {
        None if !map.get(&companion).is_some_and(Value::is_object) => {
            put(map, &companion, Value::Object(Map::new()));
        }
        None => {}
        Some(index) => {
            let len = list_len(map, key).unwrap_or(0);
            edit_array(map, &companion, len, |items| {
                if let Some(slot) = items.get_mut(index).filter(|slot| !slot.is_object()) {
                    *slot = Value::Object(Map::new());
                }
            });
        }
    }
    Ok(join(parent, &companion, index))
}

/// The element path `is_repeating` is asked about: JSON property names from the resource type
/// (restarting at a contained resource), without indexes or companion underscores.
fn definition_path(root: &Value, ptr: &[Seg]) -> String {
    let mut path = resource_type(root).to_owned();
    let mut current = Some(root);
    for seg in ptr {
        current = current.and_then(|value| get(value, std::slice::from_ref(seg)));
        if let Seg::Key(key) = seg {
            path.push('.');
            path.push_str(key.trim_start_matches('_'));
        }
        if let Some(value) = current.filter(|value| value.get("resourceType").is_some()) {
            path = resource_type(value).to_owned();
        }
    }
    path
}

fn resource_type(value: &Value) -> &str {
    value
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("")
}

// ---------------------------------------------------------------------------------------------
// Properties and lists inside an object, keeping `name` and `_name` aligned.

/// Whether `key` is present, by value or by companion alone (an extension without a value).
fn has_property(map: &Map<String, Value>, key: &str) -> bool {
    map.contains_key(key) || map.contains_key(&companion_key(key))
}

fn list_push(map: &mut Map<String, Value>, key: &str, item: Item) {
    let len = list_len(map, key).unwrap_or(0);
    list_insert(map, key, len, item);
}

/// Inserts at `index` (callers check it is at most the length; past it, the item is appended).
fn list_insert(map: &mut Map<String, Value>, key: &str, index: usize, item: Item) {
    let len = list_len(map, key).unwrap_or(0);
    let index = index.min(len);
    edit_array(map, key, len, |items| items.insert(index, item.value));
    let companion = companion_key(key);
    if item.companion.is_some() || map.get(&companion).is_some_and(Value::is_array) {
        let value = item.companion.unwrap_or(Value::Null);
        edit_array(map, &companion, len, |items| items.insert(index, value));
    }
}

fn list_set(map: &mut Map<String, Value>, key: &str, index: usize, item: Item) {
    let len = list_len(map, key).unwrap_or(0);
    let set = |value: Value| {
        move |items: &mut Vec<Value>| {
            if let Some(slot) = items.get_mut(index) {
                *slot = value;
            }
        }
    };
    edit_array(map, key, len, set(item.value));
    let companion = companion_key(key);
    // The old item's extensions go with the value being replaced: null unless the patch
    // brings a companion of its own.
    if item.companion.is_some() || map.get(&companion).is_some_and(Value::is_array) {
        edit_array(
            map,
            &companion,
            len,
            set(item.companion.unwrap_or(Value::Null)),
        );
    }
}

fn list_remove(map: &mut Map<String, Value>, key: &str, index: usize) -> Item {
    let mut take = |key: &str| {
        map.get_mut(key)
            .and_then(Value::as_array_mut)
            .filter(|items| index < items.len())
            .map(|items| items.remove(index))
    };
    let value = take(key).unwrap_or(Value::Null);
    let companion = take(&companion_key(key)).filter(|companion| !companion.is_null());
    Item { value, companion }
}

fn set_single(map: &mut Map<String, Value>, key: &str, item: Item) {
    put(map, key, item.value);
    match item.companion {
        Some(companion) => put(map, &companion_key(key), companion),
        None => drop(map.shift_remove(&companion_key(key))),
    }
}

/// Replaces a single-valued property, possibly under a new name (another choice type), at
/// the same position; the old value's extensions go with it.
fn replace_property(map: &mut Map<String, Value>, old_key: &str, new_key: &str, item: Item) {
    let old_companion = companion_key(old_key);
    let position = map
        .keys()
        .position(|key| key == old_key || *key == old_companion);
    map.shift_remove(old_key);
    map.shift_remove(&old_companion);
    match position {
        Some(position) => {
            map.shift_insert(position.min(map.len()), new_key.to_owned(), item.value);
        }
        None => {
            map.insert(new_key.to_owned(), item.value);
        }
    }
    if let Some(companion) = item.companion {
        put(map, &companion_key(new_key), companion);
    }
}

/// Sets `key`, placing a new `_name` companion right after its `name` (order is cosmetic in
/// JSON, but that is where readers look for it).
fn put(map: &mut Map<String, Value>, key: &str, value: Value) {
    if let Some(slot) = map.get_mut(key) {
        *slot = value;
        return;
    }
    let after = key
        .strip_prefix('_')
        .and_then(|main| map.keys().position(|existing| existing == main));
    match after {
        Some(position) => drop(map.shift_insert(position + 1, key.to_owned(), value)),
        None => drop(map.insert(key.to_owned(), value)),
    }
}

/// Edits the array at `key` (created if absent), first padded with nulls to `len` items so a
/// companion array lines up with its values.
fn edit_array<R>(
    map: &mut Map<String, Value>,
    key: &str,
    len: usize,
    edit: impl FnOnce(&mut Vec<Value>) -> R,
) -> R {
    let mut items = match map.get_mut(key).map(Value::take) {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    };
    if items.len() < len {
        items.resize(len, Value::Null);
    }
    let result = edit(&mut items);
    put(map, key, Value::Array(items));
    result
}

// ---------------------------------------------------------------------------------------------
// FHIRPath: the subset patches use.

/// A parsed path.
#[derive(Clone, Debug)]
struct FhirPath {
    /// Source text, for messages (empty for paths inside `where()`).
    text: String,
    /// The resource type the path starts with, if it does (`Patient` in `Patient.name`).
    root_type: Option<String>,
    steps: Vec<Step>,
}

#[derive(Clone, Debug)]
enum Step {
    Child(String),
    Index(usize),
    First,
    Last,
    Where(Condition),
    OfType(String),
}

/// A `where()` condition. `and`/`or` chains are flat lists, so a long chain costs no recursion.
#[derive(Clone, Debug)]
enum Condition {
    Equals(FhirPath, Literal),
    /// Holds when every member holds.
    All(Vec<Condition>),
    /// Holds when some member holds.
    Any(Vec<Condition>),
}

#[derive(Clone, Debug, PartialEq)]
enum Literal {
    String(String),
    Boolean(bool),
}

impl FhirPath {
    /// Steps and `where()` terms, each of which may visit the whole document once per node
    /// it starts from: what [`Bounds::charge`] bills an evaluation.
    fn terms(&self) -> usize {
        fn condition_terms(condition: &Condition) -> usize {
            match condition {
                Condition::Equals(path, _) => 1 + path.terms(),
                Condition::All(members) | Condition::Any(members) => {
                    members.iter().map(condition_terms).sum()
                }
            }
        }
        self.steps
            .iter()
            .map(|step| match step {
                Step::Where(condition) => 1 + condition_terms(condition),
                _ => 1,
            })
            .sum()
    }
}

/// Evaluates a path against the resource at `root`.
fn evaluate(root: &Value, path: &FhirPath) -> Result<Vec<Node>, Failure> {
    if let Some(expected) = &path.root_type {
        let actual = resource_type(root);
        if expected != actual {
            let message = format!(
                "'{}' starts with {expected} but the resource is a {actual}",
                path.text
            );
            return Err(Failure::new(INVALID, message).on("path"));
        }
    }
    let start = Node {
        ptr: Vec::new(),
        choice_base: None,
    };
    Ok(navigate(root, vec![start], &path.steps))
}

fn navigate(root: &Value, mut nodes: Vec<Node>, steps: &[Step]) -> Vec<Node> {
    for step in steps {
        nodes = match step {
            Step::Child(name) => nodes
                .iter()
                .flat_map(|node| children(root, node, name))
                .collect(),
            Step::Index(index) => nodes.into_iter().nth(*index).into_iter().collect(),
            Step::First => nodes.into_iter().take(1).collect(),
            Step::Last => nodes.pop().into_iter().collect(),
            Step::Where(condition) => nodes
                .into_iter()
                .filter(|node| holds(root, node, condition))
                .collect(),
            Step::OfType(type_name) => nodes
                .into_iter()
                .filter(|node| is_of_type(node, type_name))
                .collect(),
        };
    }
    nodes
}

/// The elements called `name` under `node`, one per list item.
fn children(root: &Value, node: &Node, name: &str) -> Vec<Node> {
    let Some((ptr, map)) = element_object(root, &node.ptr) else {
        return Vec::new();
    };
    let (key, choice_base) = if has_property(map, name) {
        (name.to_owned(), None)
    } else if let Some(key) = choice_key(map, name) {
        (key, Some(name.to_owned()))
    } else {
        return Vec::new();
    };
    let node = |index| Node {
        ptr: join(&ptr, &key, index),
        choice_base: choice_base.clone(),
    };
    match list_len(map, &key) {
        Some(len) => (0..len).map(|index| node(Some(index))).collect(),
        None => vec![node(None)],
    }
}

/// The property that holds choice element `base` (`deceased` → `deceasedBoolean`), if any.
fn choice_key(map: &Map<String, Value>, base: &str) -> Option<String> {
    map.keys()
        .map(|key| key.strip_prefix('_').unwrap_or(key))
        .find(|key| key.strip_prefix(base).is_some_and(is_type_suffix))
        .map(str::to_owned)
}

/// Data types a choice element can take in R4, as they end its JSON name. A fixed list rather
/// than "any capitalised suffix", so `periodUnit` is never taken for a `period` choice.
const CHOICE_TYPES: &str = "\
    Base64Binary Boolean Canonical Code Date DateTime Decimal Id Instant Integer \
    Markdown Oid PositiveInt String Time UnsignedInt Uri Url Uuid Address Age \
    Annotation Attachment CodeableConcept Coding ContactPoint Count Distance \
    Duration HumanName Identifier Money Period Quantity Range Ratio Reference \
    SampledData Signature Timing ContactDetail Contributor DataRequirement \
    Expression ParameterDefinition RelatedArtifact TriggerDefinition UsageContext \
    Dosage Meta";

fn is_type_suffix(suffix: &str) -> bool {
    CHOICE_TYPES.split_whitespace().any(|name| name == suffix)
}

/// `ofType(Quantity)` keeps a choice element holding that type (`valueQuantity`).
fn is_of_type(node: &Node, type_name: &str) -> bool {
    let (Some(base), Some((_, key, _))) = (&node.choice_base, split(&node.ptr)) else {
        return false;
    };
    let mut chars = type_name.chars();
    let capitalised: String = chars
        .next()
        .map(|first| first.to_ascii_uppercase())
        .into_iter()
        .chain(chars)
        .collect();
    key.strip_prefix(base.as_str()) == Some(capitalised.as_str())
}

fn holds(root: &Value, node: &Node, condition: &Condition) -> bool {
    match condition {
        Condition::All(members) => members.iter().all(|member| holds(root, node, member)),
        Condition::Any(members) => members.iter().any(|member| holds(root, node, member)),
        Condition::Equals(path, literal) => navigate(root, vec![node.clone()], &path.steps)
            .iter()
            .any(|found| get(root, &found.ptr).is_some_and(|value| equals(value, literal))),
    }
}

fn equals(value: &Value, literal: &Literal) -> bool {
    match (value, literal) {
        // A marked string is a number, which a string literal never equals.
        (Value::String(text), Literal::String(expected)) => {
            !text.starts_with(NUMBER_MARK) && text == expected
        }
        (Value::Bool(flag), Literal::Boolean(expected)) => flag == expected,
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// FHIRPath: tokens and parser.

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Identifier(String),
    String(String),
    Integer(usize),
    Dot,
    OpenParen,
    CloseParen,
    OpenBracket,
    CloseBracket,
    Equals,
    Comma,
}

fn parse_fhirpath(text: &str) -> Result<FhirPath, Failure> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        text,
        tokens: &tokens,
        position: 0,
        depth: 0,
    };
    let path = parser.path(true)?;
    match parser.peek() {
        None => Ok(path),
        Some(Token::Identifier(word)) => Err(parser.unsupported(&format!("'{word}' here"))),
        Some(Token::Equals) => Err(parser.unsupported("a comparison outside where()")),
        Some(token) => Err(parser.syntax(&format!("unexpected {}", describe(token)))),
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, Failure> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        let token = match c {
            c if c.is_whitespace() => continue,
            '.' => Token::Dot,
            '(' => Token::OpenParen,
            ')' => Token::CloseParen,
            '[' => Token::OpenBracket,
            ']' => Token::CloseBracket,
            '=' => Token::Equals,
            ',' => Token::Comma,
            '\'' => Token::String(string_literal(text, &mut chars)?),
            '`' => Token::Identifier(delimited_identifier(text, &mut chars)?),
            c if c.is_ascii_digit() => Token::Integer(integer_literal(text, start, &mut chars)?),
            c if c.is_ascii_alphabetic() || c == '_' || c == '$' => {
                let mut end = start + c.len_utf8();
                while let Some((at, next)) = chars.peek().copied() {
                    if !(next.is_ascii_alphanumeric() || next == '_') {
                        break;
                    }
                    end = at + next.len_utf8();
                    chars.next();
                }
                Token::Identifier(text[start..end].to_owned())
            }
            '!' | '<' | '>' | '|' | '+' | '-' | '*' | '/' | '&' | '~' | '%' | '@' => {
                let message = format!(
                    "'{text}': '{c}' (operators other than '=', variables and date literals) is not supported in patch paths"
                );
                return Err(Failure::new(NOT_SUPPORTED, message));
            }
            other => {
                let message = format!("'{text}' is not a valid FHIRPath: unexpected '{other}'");
                return Err(Failure::new(INVALID, message));
            }
        };
        tokens.push(token);
    }
    Ok(tokens)
}

type Chars<'t> = std::iter::Peekable<std::str::CharIndices<'t>>;

/// A `'…'` literal with FHIRPath escapes, the opening quote already read.
fn string_literal(text: &str, chars: &mut Chars<'_>) -> Result<String, Failure> {
    let mut out = String::new();
    loop {
        match chars.next().map(|(_, c)| c) {
            None => break,
            Some('\'') => return Ok(out),
            Some('\\') => out.push(escaped_char(text, chars)?),
            Some(c) => out.push(c),
        }
    }
    let message = format!("'{text}' is not a valid FHIRPath: a string is not closed");
    Err(Failure::new(INVALID, message))
}

fn escaped_char(text: &str, chars: &mut Chars<'_>) -> Result<char, Failure> {
    let bad = || {
        let message = format!("'{text}' is not a valid FHIRPath: bad escape in a string");
        Failure::new(INVALID, message)
    };
    let c = match chars.next().map(|(_, c)| c).ok_or_else(bad)? {
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'f' => '\u{c}',
        'u' => {
            let hex: String = (0..4)
                .filter_map(|_| chars.next().map(|(_, c)| c))
                .collect();
            let code = u32::from_str_radix(&hex, 16).map_err(|_| bad())?;
            char::from_u32(code).ok_or_else(bad)?
        }
        c @ ('\'' | '"' | '`' | '\\' | '/') => c,
        _ => return Err(bad()),
    };
    Ok(c)
}

/// A `` `…` `` identifier (for names clashing with keywords), the opening backtick already read.
fn delimited_identifier(text: &str, chars: &mut Chars<'_>) -> Result<String, Failure> {
    let mut out = String::new();
    for (_, c) in chars.by_ref() {
        if c == '`' {
            return Ok(out);
        }
        out.push(c);
    }
    let message = format!("'{text}' is not a valid FHIRPath: a `name` is not closed");
    Err(Failure::new(INVALID, message))
}

fn integer_literal(text: &str, start: usize, chars: &mut Chars<'_>) -> Result<usize, Failure> {
    let mut end = start + 1;
    while let Some((at, c)) = chars.peek().copied() {
        if !c.is_ascii_digit() {
            break;
        }
        end = at + 1;
        chars.next();
    }
    text[start..end].parse().map_err(|_| {
        let message = format!("'{text}': the number {} is too large", &text[start..end]);
        Failure::new(INVALID, message)
    })
}

fn describe(token: &Token) -> String {
    match token {
        Token::Identifier(name) => format!("'{name}'"),
        Token::String(text) => format!("the string '{text}'"),
        Token::Integer(number) => format!("the number {number}"),
        Token::Dot => "'.'".to_owned(),
        Token::OpenParen => "'('".to_owned(),
        Token::CloseParen => "')'".to_owned(),
        Token::OpenBracket => "'['".to_owned(),
        Token::CloseBracket => "']'".to_owned(),
        Token::Equals => "'='".to_owned(),
        Token::Comma => "','".to_owned(),
    }
}

/// The only condition of a list, or the list combined by `combine`.
fn single_or(mut members: Vec<Condition>, combine: fn(Vec<Condition>) -> Condition) -> Condition {
    match members.len() {
        1 => members.remove(0),
        _ => combine(members),
    }
}

/// Recursive descent over the tokens of one path.
struct Parser<'p> {
    text: &'p str,
    tokens: &'p [Token],
    position: usize,
    /// Current nesting of `where()` and parentheses, bounded by [`MAX_FHIRPATH_DEPTH`].
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.position).cloned();
        self.position += 1;
        token
    }

    fn eat(&mut self, token: &Token) -> bool {
        let found = self.peek() == Some(token);
        if found {
            self.position += 1;
        }
        found
    }

    fn expect(&mut self, token: &Token) -> Result<(), Failure> {
        if self.eat(token) {
            return Ok(());
        }
        let found = self.peek().map_or("the end".to_owned(), describe);
        Err(self.syntax(&format!("expected {} but found {found}", describe(token))))
    }

    fn syntax(&self, problem: &str) -> Failure {
        let message = format!("'{}' is not a valid FHIRPath: {problem}", self.text);
        Failure::new(INVALID, message)
    }

    fn unsupported(&self, what: &str) -> Failure {
        let message = format!(
            "'{}': {what} is not supported in patch paths (supported: element names, [n], first(), last(), ofType(), where() comparing an element with a string or boolean using =, and, or)",
            self.text
        );
        Failure::new(NOT_SUPPORTED, message)
    }

    fn nest(&mut self) -> Result<(), Failure> {
        self.depth += 1;
        if self.depth > MAX_FHIRPATH_DEPTH {
            return Err(self.unsupported("nesting this deep"));
        }
        Ok(())
    }

    /// `top_level`: a leading capitalised name is the resource type, not an element.
    fn path(&mut self, top_level: bool) -> Result<FhirPath, Failure> {
        let mut path = FhirPath {
            // Only the whole path's text appears in messages; copying it for every path inside
            // where() would make long conditions quadratic.
            text: if top_level {
                self.text.to_owned()
            } else {
                String::new()
            },
            root_type: None,
            steps: Vec::new(),
        };
        match self.next() {
            Some(Token::Identifier(name)) if name == "$this" => {}
            Some(Token::Identifier(name)) if name.starts_with('$') => {
                return Err(self.unsupported(&format!("the variable {name}")))
            }
            Some(Token::Identifier(name))
                if top_level && name.starts_with(|c: char| c.is_ascii_uppercase()) =>
            {
                path.root_type = Some(name);
            }
            Some(Token::Identifier(name)) => self.invocation(name, &mut path.steps)?,
            Some(token) => {
                return Err(self.syntax(&format!(
                    "a path must start with a name, not {}",
                    describe(&token)
                )))
            }
            None => return Err(self.syntax("the path is empty")),
        }
        self.steps(&mut path.steps)?;
        Ok(path)
    }

    fn steps(&mut self, steps: &mut Vec<Step>) -> Result<(), Failure> {
        loop {
            if self.eat(&Token::Dot) {
                match self.next() {
                    Some(Token::Identifier(name)) if !name.starts_with('$') => {
                        self.invocation(name, steps)?
                    }
                    _ => return Err(self.syntax("expected a name after '.'")),
                }
            } else if self.eat(&Token::OpenBracket) {
                match self.next() {
                    Some(Token::Integer(index)) => steps.push(Step::Index(index)),
                    _ => return Err(self.unsupported("an index that is not a number")),
                }
                self.expect(&Token::CloseBracket)?;
            } else {
                return Ok(());
            }
        }
    }

    fn invocation(&mut self, name: String, steps: &mut Vec<Step>) -> Result<(), Failure> {
        if !self.eat(&Token::OpenParen) {
            steps.push(Step::Child(name));
            return Ok(());
        }
        let step = match name.as_str() {
            "first" => Step::First,
            "last" => Step::Last,
            "where" => {
                self.nest()?;
                let condition = self.condition()?;
                self.depth -= 1;
                Step::Where(condition)
            }
            "ofType" => Step::OfType(self.type_name()?),
            other => return Err(self.unsupported(&format!("the function {other}()"))),
        };
        self.expect(&Token::CloseParen)?;
        steps.push(step);
        Ok(())
    }

    /// `Quantity`, or a qualified `FHIR.Quantity` of which the last name counts.
    fn type_name(&mut self) -> Result<String, Failure> {
        loop {
            let Some(Token::Identifier(name)) = self.next() else {
                return Err(self.syntax("ofType() needs a type name"));
            };
            if !self.eat(&Token::Dot) {
                return Ok(name);
            }
        }
    }

    fn condition(&mut self) -> Result<Condition, Failure> {
        let mut members = vec![self.conjunction()?];
        while self.eat(&Token::Identifier("or".to_owned())) {
            members.push(self.conjunction()?);
        }
        Ok(single_or(members, Condition::Any))
    }

    fn conjunction(&mut self) -> Result<Condition, Failure> {
        let mut members = vec![self.comparison()?];
        while self.eat(&Token::Identifier("and".to_owned())) {
            members.push(self.comparison()?);
        }
        Ok(single_or(members, Condition::All))
    }

    /// `path = literal`, `literal = path` or a parenthesised condition.
    fn comparison(&mut self) -> Result<Condition, Failure> {
        if self.eat(&Token::OpenParen) {
            self.nest()?;
            let condition = self.condition()?;
            self.depth -= 1;
            self.expect(&Token::CloseParen)?;
            return Ok(condition);
        }
        if let Some(literal) = self.literal()? {
            self.expect_equals()?;
            let path = self.path(false)?;
            return Ok(Condition::Equals(path, literal));
        }
        let path = self.path(false)?;
        self.expect_equals()?;
        match self.literal()? {
            Some(literal) => Ok(Condition::Equals(path, literal)),
            None => Err(self.unsupported("comparing with something other than a literal")),
        }
    }

    fn expect_equals(&mut self) -> Result<(), Failure> {
        if self.eat(&Token::Equals) {
            return Ok(());
        }
        match self.peek() {
            Some(Token::CloseParen) | None => {
                Err(self.unsupported("a where() condition without '='"))
            }
            Some(token) => {
                let token = describe(token);
                Err(self.syntax(&format!("expected '=' but found {token}")))
            }
        }
    }

    fn literal(&mut self) -> Result<Option<Literal>, Failure> {
        let literal = match self.peek() {
            Some(Token::String(text)) => Literal::String(text.clone()),
            Some(Token::Identifier(word)) if word == "true" || word == "false" => {
                Literal::Boolean(word == "true")
            }
            Some(Token::Integer(_)) => return Err(self.unsupported("a number literal")),
            _ => return Ok(None),
        };
        self.position += 1;
        Ok(Some(literal))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::fhir::json;
    use serde_json::json;

    /// An `operation` parameter: type and path parts, then `more` parts.
    fn operation(kind: &str, path: &str, more: Value) -> Value {
        let mut parts = vec![
            json!({"name": "type", "valueCode": kind}),
            json!({"name": "path", "valueString": path}),
        ];
        parts.extend(more.as_array().cloned().unwrap_or_default());
        json!({"name": "operation", "part": parts})
    }

    fn integer(name: &str, value: i64) -> Value {
        json!({"name": name, "valueInteger": json::number(value)})
    }

    fn parameters(operations: Vec<Value>) -> Value {
        json!({"resourceType": "Parameters", "parameter": operations})
    }

    fn fhir_patch(resource: &str, operations: Vec<Value>) -> Result<Value, Vec<OutcomeIssue>> {
        let mut value = lossless(resource);
        apply_fhirpath_patch(&mut value, &parameters(operations), &repeating, TEST_MAX)
            .map(|()| value)
    }

    const CONTACT: &str = r#"{"resourceType":"Patient","birthDate":"1920-01-01",
        "contact":[{"name":{"text":"a name"},"gender":"male"}]}"#;

    const IDENTIFIERS: &str = r#"{"resourceType":"Patient","identifier":[
        {"system":"http://example.org","value":"value 1"},
        {"system":"http://example.org","value":"value 2"},
        {"system":"http://example.org","value":"value 3"},
        {"system":"http://example.org","value":"value 4"}]}"#;

    fn identifier_values(resource: &Value) -> Vec<&str> {
        resource["identifier"]
            .as_array()
            .unwrap()
            .iter()
            .map(|identifier| identifier["value"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn fhirpath_replace_primitives_and_complex_values() {
        let patched = fhir_patch(
            CONTACT,
            vec![
                operation(
                    "replace",
                    "Patient.birthDate",
                    json!([{"name": "value", "valueDate": "1930-01-01"}]),
                ),
                operation(
                    "replace",
                    "Patient.contact[0].gender",
                    json!([{"name": "value", "valueCode": "female"}]),
                ),
                operation(
                    "replace",
                    "Patient.contact.name",
                    json!([{"name": "value", "valueHumanName": {"family": "B"}}]),
                ),
            ],
        )
        .unwrap();
        assert_eq!(patched["birthDate"], "1930-01-01");
        assert_eq!(
            patched["contact"],
            json!([{"name": {"family": "B"}, "gender": "female"}])
        );
    }

    #[test]
    fn fhirpath_delete_removes_elements_and_what_they_emptied() {
        let patched = fhir_patch(
            CONTACT,
            vec![
                operation("delete", "Patient.birthDate", json!([])),
                operation("delete", "Patient.contact[0].name.text", json!([])),
            ],
        )
        .unwrap();
        assert_eq!(
            patched,
            json!({"resourceType": "Patient", "contact": [{"gender": "male"}]})
        );
        let patched = fhir_patch(
            CONTACT,
            vec![operation("delete", "Patient.contact[0]", json!([]))],
        );
        assert_eq!(
            patched.unwrap(),
            json!({"resourceType": "Patient", "birthDate": "1920-01-01"})
        );
    }

    #[test]
    fn fhirpath_delete_of_nothing_is_a_no_op_but_of_several_an_error() {
        let patched = fhir_patch(
            IDENTIFIERS,
            vec![
                operation(
                    "delete",
                    "Patient.identifier.where(value = 'value 9')",
                    json!([]),
                ),
                operation("delete", "Patient.telecom", json!([])),
            ],
        );
        assert_eq!(patched.unwrap(), lossless(IDENTIFIERS));
        let result = fhir_patch(
            IDENTIFIERS,
            vec![operation("delete", "Patient.identifier", json!([]))],
        );
        let diagnostics = one_issue(result, "processing", "Parameters.parameter[0].part[1]");
        assert!(diagnostics.contains("matches 4 elements"), "{diagnostics}");
    }

    #[test]
    fn fhirpath_delete_from_a_list() {
        let patched = fhir_patch(
            IDENTIFIERS,
            vec![
                operation("delete", "Patient.identifier[1]", json!([])),
                operation(
                    "delete",
                    "Patient.identifier.where(value = 'value 4')",
                    json!([]),
                ),
            ],
        )
        .unwrap();
        assert_eq!(identifier_values(&patched), ["value 1", "value 3"]);
    }

    #[test]
    fn fhirpath_add_primitive_and_complex_values() {
        let patched = fhir_patch(
            r#"{"resourceType":"Patient","contact":[{"name":{"text":"a name"}}]}"#,
            vec![
                operation("add", "Patient", json!([{"name": "name", "valueString": "birthDate"}, {"name": "value", "valueDate": "1930-01-01"}])),
                operation("add", "Patient.contact[0]", json!([{"name": "name", "valueString": "gender"}, {"name": "value", "valueCode": "male"}])),
                operation("add", "Patient", json!([{"name": "name", "valueString": "maritalStatus"}, {"name": "value", "valueCodeableConcept": {"text": "married"}}])),
            ],
        )
        .unwrap();
        assert_eq!(
            patched,
            json!({
                "resourceType": "Patient",
                "contact": [{"name": {"text": "a name"}, "gender": "male"}],
                "birthDate": "1930-01-01",
                "maritalStatus": {"text": "married"}
            })
        );
    }

    #[test]
    fn fhirpath_add_builds_complex_values_from_parts() {
        let value = json!({"name": "value", "part": [
            {"name": "name", "part": [
                {"name": "family", "valueString": "du Marché"},
                {"name": "given", "valueString": "Bénédicte"},
            ]},
            {"name": "gender", "valueCode": "female"},
            {"name": "telecom", "valueContactPoint": {"system": "phone", "value": "+33 1"}},
            {"name": "telecom", "valueContactPoint": {"system": "email", "value": "b@example.org"}},
        ]});
        let patched = fhir_patch(
            r#"{"resourceType":"Patient"}"#,
            vec![operation(
                "add",
                "Patient",
                json!([{"name": "name", "valueString": "contact"}, value]),
            )],
        )
        .unwrap();
        assert_eq!(
            patched["contact"],
            json!([{
                "name": {"family": "du Marché", "given": ["Bénédicte"]},
                "gender": "female",
                "telecom": [
                    {"system": "phone", "value": "+33 1"},
                    {"system": "email", "value": "b@example.org"}
                ]
            }])
        );
    }

    #[test]
    fn fhirpath_add_appends_to_lists_and_creates_them() {
        let identifier = json!({"name": "value", "valueIdentifier": {"system": "http://example.org", "value": "value 5"}});
        let add = operation(
            "add",
            "Patient",
            json!([{"name": "name", "valueString": "identifier"}, identifier]),
        );
        let patched = fhir_patch(IDENTIFIERS, vec![add.clone()]).unwrap();
        assert_eq!(
            identifier_values(&patched),
            ["value 1", "value 2", "value 3", "value 4", "value 5"]
        );
        let patched = fhir_patch(r#"{"resourceType":"Patient"}"#, vec![add]).unwrap();
        assert_eq!(
            patched["identifier"],
            json!([{"system": "http://example.org", "value": "value 5"}])
        );
    }

    #[test]
    fn fhirpath_add_to_a_single_value_that_exists_is_an_error() {
        let add = operation(
            "add",
            "Patient",
            json!([{"name": "name", "valueString": "birthDate"}, {"name": "value", "valueDate": "1930-01-01"}]),
        );
        let diagnostics = one_issue(
            fhir_patch(CONTACT, vec![add]),
            "processing",
            "Parameters.parameter[0].part[2]",
        );
        assert!(diagnostics.contains("use replace"), "{diagnostics}");
    }

    #[test]
    fn fhirpath_add_needs_exactly_one_target() {
        let add = |path: &str| {
            operation(
                "add",
                path,
                json!([{"name": "name", "valueString": "end"}, {"name": "value", "valueDate": "2021-12-01"}]),
            )
        };
        let resource = r#"{"resourceType":"Patient","identifier":[{"use":"official","value":"123"},{"value":"456"}]}"#;
        let result = fhir_patch(
            resource,
            vec![add("Patient.identifier.where(use = 'official').period")],
        );
        let diagnostics = one_issue(result, "not-found", "Parameters.parameter[0].part[1]");
        assert!(diagnostics.contains("matches nothing"), "{diagnostics}");
        let result = fhir_patch(resource, vec![add("Patient.identifier")]);
        one_issue(result, "processing", "Parameters.parameter[0].part[1]");
    }

    #[test]
    fn fhirpath_add_choice_element_by_its_x_name() {
        let add = operation(
            "add",
            "Patient",
            json!([{"name": "name", "valueString": "deceased[x]"}, {"name": "value", "valueBoolean": false}]),
        );
        let patched = fhir_patch(r#"{"resourceType":"Patient"}"#, vec![add.clone()]).unwrap();
        assert_eq!(
            patched,
            json!({"resourceType": "Patient", "deceasedBoolean": false})
        );
        let resource = r#"{"resourceType":"Patient","deceasedDateTime":"2020-01-01"}"#;
        one_issue(
            fhir_patch(resource, vec![add]),
            "processing",
            "Parameters.parameter[0].part[2]",
        );
        let bare = operation(
            "add",
            "Patient",
            json!([{"name": "name", "valueString": "deceased"}, {"name": "value", "valueBoolean": true}]),
        );
        let result = fhir_patch(resource, vec![bare]);
        let diagnostics = one_issue(result, "processing", "Parameters.parameter[0].part[2]");
        assert!(diagnostics.contains("deceasedDateTime"), "{diagnostics}");
    }

    #[test]
    fn fhirpath_insert_into_lists() {
        let value = |v: &str| json!({"name": "value", "valueIdentifier": {"system": "http://example.org", "value": v}});
        let insert = |v: &str, at: i64| {
            operation(
                "insert",
                "Patient.identifier",
                json!([value(v), integer("index", at)]),
            )
        };
        let patched = fhir_patch(
            IDENTIFIERS,
            vec![insert("first", 0), insert("second", 1), insert("last", 6)],
        )
        .unwrap();
        assert_eq!(
            identifier_values(&patched),
            ["first", "second", "value 1", "value 2", "value 3", "value 4", "last"]
        );
        let patched = fhir_patch(r#"{"resourceType":"Patient"}"#, vec![insert("only", 0)]).unwrap();
        assert_eq!(identifier_values(&patched), ["only"]);
    }

    #[test]
    fn fhirpath_insert_errors() {
        let value = json!({"name": "value", "valueString": "x"});
        let insert = |path: &str, at: i64| {
            operation("insert", path, json!([value.clone(), integer("index", at)]))
        };
        let result = fhir_patch(IDENTIFIERS, vec![insert("Patient.identifier", 5)]);
        let diagnostics = one_issue(result, "value", "Parameters.parameter[0].part[3]");
        assert!(diagnostics.contains("beyond the end"), "{diagnostics}");
        let result = fhir_patch(
            r#"{"resourceType":"Patient"}"#,
            vec![insert("Patient.identifier", 1)],
        );
        one_issue(result, "value", "Parameters.parameter[0].part[3]");
        let result = fhir_patch(CONTACT, vec![insert("Patient.birthDate", 0)]);
        one_issue(result, "invalid", "Parameters.parameter[0].part[1]");
        let result = fhir_patch(
            r#"{"resourceType":"Patient"}"#,
            vec![insert("Patient.gender", 0)],
        );
        one_issue(result, "invalid", "Parameters.parameter[0].part[1]");
        let result = fhir_patch(IDENTIFIERS, vec![insert("Patient.identifier[0]", 0)]);
        one_issue(result, "invalid", "Parameters.parameter[0].part[1]");
        let result = fhir_patch(IDENTIFIERS, vec![insert("Patient.contact[0].telecom", 0)]);
        one_issue(result, "not-found", "Parameters.parameter[0].part[1]");
    }

    #[test]
    fn fhirpath_move_reorders_a_list() {
        let mv = |from: i64, to: i64| {
            operation(
                "move",
                "Patient.identifier",
                json!([integer("source", from), integer("destination", to)]),
            )
        };
        let cases: [(Vec<Value>, [&str; 4]); 4] = [
            (vec![mv(3, 1)], ["value 1", "value 4", "value 2", "value 3"]),
            (vec![mv(3, 0)], ["value 4", "value 1", "value 2", "value 3"]),
            (vec![mv(0, 3)], ["value 2", "value 3", "value 4", "value 1"]),
            (
                vec![mv(3, 0), mv(3, 1), mv(3, 2)],
                ["value 4", "value 3", "value 2", "value 1"],
            ),
        ];
        for (operations, expected) in cases {
            let patched = fhir_patch(IDENTIFIERS, operations).unwrap();
            assert_eq!(identifier_values(&patched), expected);
        }
        let result = fhir_patch(IDENTIFIERS, vec![mv(4, 0)]);
        one_issue(result, "value", "Parameters.parameter[0].part[2]");
        let result = fhir_patch(IDENTIFIERS, vec![mv(0, 4)]);
        one_issue(result, "value", "Parameters.parameter[0].part[3]");
        let result = fhir_patch(r#"{"resourceType":"Patient"}"#, vec![mv(0, 0)]);
        one_issue(result, "not-found", "Parameters.parameter[0].part[1]");
    }

    #[test]
    fn fhirpath_replace_needs_exactly_one_target() {
        let replace = |path: &str| {
            operation(
                "replace",
                path,
                json!([{"name": "value", "valueString": "x"}]),
            )
        };
        let result = fhir_patch(IDENTIFIERS, vec![replace("Patient.identifier.value")]);
        one_issue(result, "processing", "Parameters.parameter[0].part[1]");
        let result = fhir_patch(IDENTIFIERS, vec![replace("Patient.name.family")]);
        one_issue(result, "not-found", "Parameters.parameter[0].part[1]");
        let result = fhir_patch(IDENTIFIERS, vec![replace("Patient")]);
        one_issue(result, "invalid", "Parameters.parameter[0].part[1]");
        let result = fhir_patch(IDENTIFIERS, vec![operation("delete", "Patient", json!([]))]);
        one_issue(result, "invalid", "Parameters.parameter[0].part[1]");
    }

    #[test]
    fn fhirpath_where_with_and_or_parentheses_and_booleans() {
        let resource = r#"{"resourceType":"Patient","identifier":[
            {"system":"a","value":"1"},{"system":"b","value":"1"},{"system":"b","value":"2"}],
            "telecom":[{"value":"x","period":{"start":"2020"}},{"value":"y"}],
            "link":[{"other":{"reference":"Patient/1"},"type":"seealso"}],
            "communication":[{"language":{"text":"fr"},"preferred":true},{"language":{"text":"en"},"preferred":false}]}"#;
        let replace = |path: &str| {
            operation(
                "replace",
                path,
                json!([{"name": "value", "valueString": "new"}]),
            )
        };
        let patched = fhir_patch(
            resource,
            vec![
                replace("Patient.identifier.where(system = 'b' and value = '1').value"),
                replace("Patient.identifier.where(('a' = system or value = '2') and system = 'b').system"),
                replace("Patient.communication.where(preferred = true).language.text"),
                replace("Patient.telecom.where(period.start = '2020').value"),
            ],
        )
        .unwrap();
        assert_eq!(
            patched["identifier"],
            json!([{"system": "a", "value": "1"}, {"system": "b", "value": "new"}, {"system": "new", "value": "2"}])
        );
        assert_eq!(patched["communication"][0]["language"]["text"], "new");
        assert_eq!(patched["communication"][1]["language"]["text"], "en");
        assert_eq!(patched["telecom"][0]["value"], "new");
    }

    #[test]
    fn fhirpath_first_last_this_and_indexers_work_on_collections() {
        let resource = r#"{"resourceType":"Patient","name":[
            {"family":"A","given":["Peter","James"]},{"family":"B","given":["Jim"]}]}"#;
        let replace = |path: &str, value: &str| {
            operation(
                "replace",
                path,
                json!([{"name": "value", "valueString": value}]),
            )
        };
        let patched = fhir_patch(
            resource,
            vec![
                // The indexer selects from the whole collection, across both names.
                replace("Patient.name.given[2]", "Jimmy"),
                replace("Patient.name.first().family", "First"),
                replace("Patient.name.last().family", "Last"),
                replace("Patient.name.given.where($this = 'James')", "Jacques"),
            ],
        )
        .unwrap();
        assert_eq!(
            patched["name"],
            json!([
                {"family": "First", "given": ["Peter", "Jacques"]},
                {"family": "Last", "given": ["Jimmy"]}
            ])
        );
    }

    #[test]
    fn fhirpath_choice_elements_are_reached_by_their_base_name() {
        let observation = r#"{"resourceType":"Observation","status":"final",
            "valueQuantity":{"value":1.50,"unit":"mg"},"note":[{"text":"n"}]}"#;
        let replace = |path: &str, value: Value| operation("replace", path, json!([value]));
        let patched = fhir_patch(
            observation,
            vec![replace(
                "Observation.value.ofType(Quantity).unit",
                json!({"name": "value", "valueString": "g"}),
            )],
        )
        .unwrap();
        assert_eq!(patched["valueQuantity"]["unit"], "g");
        // Replacing with another type renames the property, in place.
        let patched = fhir_patch(
            observation,
            vec![replace(
                "Observation.value",
                json!({"name": "value", "valueString": "high"}),
            )],
        )
        .unwrap();
        assert_eq!(
            json::to_text(&patched, false),
            r#"{"resourceType":"Observation","status":"final","valueString":"high","note":[{"text":"n"}]}"#
        );
        let result = fhir_patch(
            observation,
            vec![replace(
                "Observation.value.ofType(string)",
                json!({"name": "value", "valueString": "x"}),
            )],
        );
        one_issue(result, "not-found", "Parameters.parameter[0].part[1]");
        let patched = fhir_patch(
            observation,
            vec![operation("delete", "Observation.value", json!([]))],
        );
        assert!(patched.unwrap().get("valueQuantity").is_none());
    }

    #[test]
    fn fhirpath_choice_base_names_do_not_match_unrelated_properties() {
        // `periodUnit` is not a `period` choice: the path matches nothing.
        let resource = r#"{"resourceType":"Patient","extension":[{"url":"u","periodUnit":"d"}]}"#;
        let result = fhir_patch(
            resource,
            vec![operation(
                "replace",
                "Patient.extension.period",
                json!([{"name": "value", "valueString": "x"}]),
            )],
        );
        one_issue(result, "not-found", "Parameters.parameter[0].part[1]");
    }

    #[test]
    fn fhirpath_primitive_companions_stay_aligned() {
        let resource = r#"{"resourceType":"Patient","name":[{"given":["Peter","James"],
            "_given":[null,{"extension":[{"url":"http://example.org/x","valueString":"y"}]}]}],
            "birthDate":"1974-12-25"}"#;
        let patched = fhir_patch(
            resource,
            vec![operation("delete", "Patient.name.given[0]", json!([]))],
        )
        .unwrap();
        assert_eq!(
            patched["name"][0],
            json!({"given": ["James"], "_given": [{"extension": [{"url": "http://example.org/x", "valueString": "y"}]}]})
        );
        let patched = fhir_patch(
            resource,
            vec![operation("delete", "Patient.name.given[1]", json!([]))],
        )
        .unwrap();
        assert_eq!(patched["name"][0], json!({"given": ["Peter"]}));
        let patched = fhir_patch(
            resource,
            vec![operation(
                "replace",
                "Patient.name.given[1]",
                json!([{"name": "value", "valueString": "Jim"}]),
            )],
        )
        .unwrap();
        assert_eq!(patched["name"][0], json!({"given": ["Peter", "Jim"]}));
        let patched = fhir_patch(
            resource,
            vec![operation(
                "insert",
                "Patient.name[0].given",
                json!([{"name": "value", "valueString": "Jo"}, integer("index", 0)]),
            )],
        )
        .unwrap();
        assert_eq!(patched["name"][0]["given"], json!(["Jo", "Peter", "James"]));
        assert_eq!(
            patched["name"][0]["_given"][2]["extension"][0]["valueString"],
            "y"
        );
        // A primitive takes extensions through its `_name` companion, created next to it.
        let extension = json!({"name": "value", "valueExtension": {"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1974-12-25T14:35:45-05:00"}});
        let patched = fhir_patch(
            resource,
            vec![operation(
                "add",
                "Patient.birthDate",
                json!([{"name": "name", "valueString": "extension"}, extension]),
            )],
        )
        .unwrap();
        let text = json::to_text(&patched, false);
        assert!(
            text.ends_with(r#""birthDate":"1974-12-25","_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime","valueDateTime":"1974-12-25T14:35:45-05:00"}]}}"#),
            "{text}"
        );
        let patched = fhir_patch(
            &text,
            vec![operation(
                "delete",
                "Patient.birthDate.extension",
                json!([]),
            )],
        )
        .unwrap();
        assert!(patched.get("_birthDate").is_none());
        assert_eq!(patched["birthDate"], "1974-12-25");
    }

    #[test]
    fn fhirpath_numbers_keep_their_exact_text() {
        let resource = r#"{"resourceType":"Observation","valueQuantity":{"value":1.50},
            "component":[{"valueInteger":7},{"valueDecimal":0.10}]}"#;
        let patch = r#"{"resourceType":"Parameters","parameter":[
            {"name":"operation","part":[{"name":"type","valueCode":"replace"},
                {"name":"path","valueString":"Observation.value.value"},
                {"name":"value","valueDecimal":2.500}]},
            {"name":"operation","part":[{"name":"type","valueCode":"move"},
                {"name":"path","valueString":"Observation.component"},
                {"name":"source","valueInteger":1},{"name":"destination","valueInteger":0}]}]}"#;
        let mut patched = lossless(resource);
        apply_fhirpath_patch(&mut patched, &lossless(patch), &repeating, TEST_MAX).unwrap();
        assert_eq!(
            json::to_text(&patched, false),
            r#"{"resourceType":"Observation","valueQuantity":{"value":2.500},"component":[{"valueDecimal":0.10},{"valueInteger":7}]}"#
        );
    }

    #[test]
    fn fhirpath_error_leaves_the_resource_unchanged() {
        let mut resource = lossless(IDENTIFIERS);
        let before = resource.clone();
        let patch = parameters(vec![
            operation("delete", "Patient.identifier[0]", json!([])),
            operation(
                "replace",
                "Patient.identifier[0].value",
                json!([{"name": "value", "valueString": "x"}]),
            ),
            operation(
                "replace",
                "Patient.birthDate",
                json!([{"name": "value", "valueDate": "2000"}]),
            ),
        ]);
        let issues = apply_fhirpath_patch(&mut resource, &patch, &repeating, TEST_MAX).unwrap_err();
        assert_eq!(
            issues[0].expression.as_deref(),
            Some("Parameters.parameter[2].part[1]")
        );
        assert_eq!(resource, before);
    }

    #[test]
    fn fhirpath_empty_parameters_change_nothing() {
        let mut resource = lossless(CONTACT);
        let before = resource.clone();
        apply_fhirpath_patch(
            &mut resource,
            &json!({"resourceType": "Parameters"}),
            &repeating,
            TEST_MAX,
        )
        .unwrap();
        assert_eq!(resource, before);
    }

    /// The ANS use case: masking a document from health professionals, then unmasking it.
    #[test]
    fn ans_document_reference_masking() {
        const SYSTEM: &str = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument";
        let document = r#"{"resourceType":"DocumentReference","status":"current",
            "content":[{"attachment":{"contentType":"application/pdf","size":1024}}]}"#;
        let status = operation(
            "replace",
            "DocumentReference.status",
            json!([{"name": "value", "valueCode": "entered-in-error"}]),
        );
        let label = json!({"name": "value", "valueCodeableConcept": {"coding": [{"system": SYSTEM, "code": "MASQUE_PS"}]}});
        let mask = operation(
            "add",
            "DocumentReference",
            json!([{"name": "name", "valueString": "securityLabel"}, label]),
        );
        let patched = fhir_patch(document, vec![status, mask]).unwrap();
        assert_eq!(patched["status"], "entered-in-error");
        assert_eq!(
            patched["securityLabel"],
            json!([{"coding": [{"system": SYSTEM, "code": "MASQUE_PS"}]}])
        );
        assert!(json::to_text(&patched, false).contains(r#""size":1024"#));

        let unmask = operation(
            "delete",
            "DocumentReference.securityLabel.where(coding.code='MASQUE_PS')",
            json!([]),
        );
        let unmasked = fhir_patch(&json::to_text(&patched, false), vec![unmask.clone()]).unwrap();
        assert!(unmasked.get("securityLabel").is_none(), "{unmasked}");
        // Unmasking an unmasked document is a no-op.
        let again = fhir_patch(&json::to_text(&unmasked, false), vec![unmask]).unwrap();
        assert_eq!(again, unmasked);
    }

    #[test]
    fn ans_security_label_coding_added_from_parts() {
        let document = r#"{"resourceType":"DocumentReference","status":"current",
            "securityLabel":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"N"}]}]}"#;
        let coding = json!({"name": "value", "part": [
            {"name": "system", "valueUri": "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument"},
            {"name": "code", "valueCode": "MASQUE_PS"},
        ]});
        let add = operation(
            "add",
            "DocumentReference.securityLabel[0]",
            json!([{"name": "name", "valueString": "coding"}, coding]),
        );
        let patched = fhir_patch(document, vec![add]).unwrap();
        let codes: Vec<&Value> = patched["securityLabel"][0]["coding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|coding| &coding["code"])
            .collect();
        assert_eq!(codes, [&json!("N"), &json!("MASQUE_PS")]);
        // A new label built from nested parts: its coding is a list as the definitions say.
        let label = json!({"name": "value", "part": [{"name": "coding", "part": [
            {"name": "system", "valueUri": "urn:x"}, {"name": "code", "valueCode": "MASQUE_PS"}]}]});
        let add = operation(
            "add",
            "DocumentReference",
            json!([{"name": "name", "valueString": "securityLabel"}, label]),
        );
        let patched = fhir_patch(document, vec![add]).unwrap();
        assert_eq!(
            patched["securityLabel"][1],
            json!({"coding": [{"system": "urn:x", "code": "MASQUE_PS"}]})
        );
    }

    #[test]
    fn is_repeating_is_asked_with_definition_paths() {
        let asked = std::cell::RefCell::new(Vec::new());
        let record = |path: &str| {
            asked.borrow_mut().push(path.to_owned());
            repeating(path)
        };
        let mut resource = lossless(
            r#"{"resourceType":"Patient","birthDate":"1974","contained":[{"resourceType":"Practitioner","id":"p"}]}"#,
        );
        let contact = json!({"name": "value", "part": [{"name": "telecom", "valueContactPoint": {"value": "1"}}]});
        let patch = parameters(vec![
            operation(
                "add",
                "Patient",
                json!([{"name": "name", "valueString": "contact"}, contact]),
            ),
            operation(
                "add",
                "Patient.birthDate",
                json!([{"name": "name", "valueString": "extension"}, {"name": "value", "valueExtension": {"url": "u", "valueString": "v"}}]),
            ),
            operation(
                "add",
                "Patient.contained[0]",
                json!([{"name": "name", "valueString": "name"}, {"name": "value", "valueHumanName": {"text": "Dr"}}]),
            ),
        ]);
        apply_fhirpath_patch(&mut resource, &patch, &record, TEST_MAX).unwrap();
        assert_eq!(
            *asked.borrow(),
            [
                "Patient.contact.telecom",
                "Patient.contact",
                "Patient.birthDate.extension",
                "Practitioner.name"
            ]
        );
        assert_eq!(resource["contained"][0]["name"], json!([{"text": "Dr"}]));
        assert_eq!(resource["contact"], json!([{"telecom": [{"value": "1"}]}]));
    }

    #[test]
    fn fhirpath_document_must_be_parameters() {
        let mut resource = lossless(CONTACT);
        for patch in [json!([]), json!({"resourceType": "Patient"})] {
            let issues =
                apply_fhirpath_patch(&mut resource, &patch, &repeating, TEST_MAX).unwrap_err();
            assert_eq!(
                (issues[0].code, issues[0].expression.as_deref()),
                ("invalid", Some("$this"))
            );
        }
        let patch = json!({"resourceType": "Parameters", "parameter": {}});
        let issues = apply_fhirpath_patch(&mut resource, &patch, &repeating, TEST_MAX).unwrap_err();
        assert_eq!(
            issues[0].expression.as_deref(),
            Some("Parameters.parameter")
        );
    }

    #[test]
    fn fhirpath_malformed_operations_are_all_reported() {
        let issues = fhir_patch(
            CONTACT,
            vec![
                json!({"name": "op", "part": []}),
                json!({"name": "operation"}),
                operation("add", "Patient", json!([{"name": "colour", "valueString": "x"}])),
                operation("upsert", "Patient", json!([])),
                operation("replace", "Patient.birthDate", json!([])),
                operation("add", "Patient", json!([{"name": "value", "valueString": "x"}])),
                operation("insert", "Patient.x", json!([{"name": "value", "valueString": "x"}, integer("index", -1)])),
                operation("replace", "Patient.x", json!([{"name": "value", "valueString": "x", "valueCode": "y"}])),
                operation("replace", "Patient.x", json!([{"name": "value"}])),
                operation("delete", "Patient.x", json!([{"name": "path", "valueString": "Patient.y"}])),
                json!({"name": "operation", "part": [{"name": "path", "valueString": "Patient"}]}),
                json!({"name": "operation", "part": [{"name": "type", "valueInteger": json::number(1)}]}),
            ],
        )
        .unwrap_err();
        let found: Vec<(&str, &str)> = issues
            .iter()
            .map(|issue| (issue.code, issue.expression.as_deref().unwrap()))
            .collect();
        assert_eq!(
            found,
            [
                ("invalid", "Parameters.parameter[0].name"),
                ("invalid", "Parameters.parameter[1]"),
                ("invalid", "Parameters.parameter[2].part[2]"),
                ("invalid", "Parameters.parameter[3].part[0]"),
                ("invalid", "Parameters.parameter[4]"),
                ("invalid", "Parameters.parameter[5]"),
                ("value", "Parameters.parameter[6].part[3]"),
                ("invalid", "Parameters.parameter[7].part[2]"),
                ("invalid", "Parameters.parameter[8].part[2]"),
                ("invalid", "Parameters.parameter[9].part[2]"),
                ("invalid", "Parameters.parameter[10]"),
                ("invalid", "Parameters.parameter[11].part[0]"),
            ]
        );
        assert!(
            issues[4].diagnostics.contains("'value'"),
            "{}",
            issues[4].diagnostics
        );
        assert!(
            issues[5].diagnostics.contains("'name'"),
            "{}",
            issues[5].diagnostics
        );
        assert!(
            issues[6].diagnostics.contains("negative"),
            "{}",
            issues[6].diagnostics
        );
    }

    #[test]
    fn fhirpath_values_and_names_are_checked() {
        let add = |name: &str, value: Value| {
            operation(
                "add",
                "Patient",
                json!([{"name": "name", "valueString": name}, value]),
            )
        };
        let result = fhir_patch(
            CONTACT,
            vec![add("deceased[x]", json!({"name": "value", "part": []}))],
        );
        one_issue(result, "invalid", "Parameters.parameter[0].part[2]");
        let result = fhir_patch(
            CONTACT,
            vec![add(
                "bad name",
                json!({"name": "value", "valueString": "x"}),
            )],
        );
        one_issue(result, "invalid", "Parameters.parameter[0].part[2]");
        let nested = json!({"name": "value", "part": [{"name": "telecom"}]});
        let diagnostics = one_issue(
            fhir_patch(CONTACT, vec![add("contact", nested)]),
            "invalid",
            "Parameters.parameter[0].part[3]",
        );
        assert!(diagnostics.contains("telecom"), "{diagnostics}");
    }

    #[test]
    fn fhirpath_paths_are_checked() {
        let cases = [
            ("Observation.status", "invalid", "Observation"),
            ("Patient.name.exists()", "not-supported", "exists()"),
            ("Patient.name | Patient.contact", "not-supported", "'|'"),
            ("Patient.name.where(use != 'x')", "not-supported", "'!'"),
            (
                "Patient.name.where(period.start > '2020')",
                "not-supported",
                "'>'",
            ),
            (
                "Patient.name.where(use = 1)",
                "not-supported",
                "number literal",
            ),
            ("Patient.name.where(use = %x)", "not-supported", "'%'"),
            ("Patient.name.where(active)", "not-supported", "without '='"),
            ("Patient.name[$this]", "not-supported", "index"),
            ("$index", "not-supported", "variable"),
            ("Patient.name = 'x'", "not-supported", "outside where()"),
            ("Patient.name[0", "invalid", "expected ']'"),
            ("Patient.name.where(use = 'x'", "invalid", "expected ')'"),
            ("Patient.name.where(use = 'x)", "invalid", "not closed"),
            ("Patient..name", "invalid", "after '.'"),
            ("", "invalid", "empty"),
            ("Patient.name#", "invalid", "'#'"),
        ];
        for (path, code, hint) in cases {
            let result = fhir_patch(CONTACT, vec![operation("delete", path, json!([]))]);
            let diagnostics = one_issue(result, code, "Parameters.parameter[0].part[1]");
            assert!(diagnostics.contains(hint), "{path}: {diagnostics}");
        }
    }

    #[test]
    fn fhirpath_deep_nesting_is_refused_not_a_crash() {
        let deep = format!(
            "Patient.name.where({}use = 'x'{})",
            "(".repeat(5000),
            ")".repeat(5000)
        );
        let result = fhir_patch(CONTACT, vec![operation("delete", &deep, json!([]))]);
        one_issue(result, "not-supported", "Parameters.parameter[0].part[1]");
    }

    #[test]
    fn fhirpath_long_condition_chains_are_flat() {
        let chain = vec!["system = 'x'"; 20_000].join(" or ");
        let path = format!("Patient.identifier.where({chain} or value = 'value 2')");
        let patched = fhir_patch(IDENTIFIERS, vec![operation("delete", &path, json!([]))]).unwrap();
        assert_eq!(
            identifier_values(&patched),
            ["value 1", "value 3", "value 4"]
        );
    }

    #[test]
    fn fhirpath_string_escapes_and_backtick_names() {
        let resource =
            r#"{"resourceType":"Patient","name":[{"family":"O'Brien"},{"family":"D\\A"}]}"#;
        let patched = fhir_patch(
            resource,
            vec![
                operation(
                    "delete",
                    r"Patient.name.where(family = 'O\'Brien')",
                    json!([]),
                ),
                operation(
                    "replace",
                    r"Patient.`name`.where(`family` = 'D\\A').family",
                    json!([{"name": "value", "valueString": "\u{e9}"}]),
                ),
            ],
        )
        .unwrap();
        assert_eq!(patched["name"], json!([{"family": "é"}]));
    }
}
