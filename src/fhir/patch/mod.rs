//! PATCH bodies: RFC 6902 JSON Patch ([`json_patch`]) and FHIRPath Patch ([`fhirpath_patch`],
//! <http://hl7.org/fhir/R4/fhirpatch.html>). This module holds what both share: failures and
//! their location, the bounds on a patch's result and work, value comparison, and tidying.
//!
//! Both formats work on the lossless JSON form of a resource (see [`super::json`]): numbers are
//! marked strings holding their exact text, so values are only moved around, never converted.
//! A patch is applied to a copy of the resource, which replaces the original only when every
//! operation succeeded; failures are [`OutcomeIssue`]s whose expression points into the patch
//! document (`[2].path`, `Parameters.parameter[1].part[2]`).
//!
//! FHIR JSON has no empty arrays or objects, so arrays and objects a patch empties are dropped
//! (deleting the only `name` removes `name`; deleting a contact's only property removes the
//! contact), and `_name` companions of primitives (their `id`/`extension`) follow their values.
//!
//! Issue codes: `invalid` (malformed patch document), `not-supported` (FHIRPath beyond the
//! subset below), `not-found` (a path or pointer that does not resolve in the resource),
//! `value` (an index out of range) and `processing` (the resource's content forbids the
//! operation: a failed JSON Patch `test`, several matches where one is required, `add` to an
//! element that already has its single value).
//!
//! FHIRPath subset: a path may start with the resource type (`Patient.name`) and is made of
//! element names, indexers `[n]`, `first()`, `last()`, `ofType(Type)` and `where(condition)`,
//! where a condition compares a relative path (or `$this`) with a string or boolean literal
//! using `=`, combined with `and`/`or` and parentheses. A comparison holds when any value the
//! path reaches equals the literal. A choice element is navigated by its base name
//! (`Observation.value` reaches `valueQuantity`).

mod fhirpath_patch;
mod json_patch;

pub use fhirpath_patch::apply_fhirpath_patch;
pub use json_patch::apply_json_patch;

use super::json;
use super::outcome::OutcomeIssue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;

/// First character of a string carrying a number's source text (see `json::parse_lossless`).
const NUMBER_MARK: char = '\u{0}';

/// Expression used when the problem is the patch document as a whole.
const ROOT_EXPRESSION: &str = "$this";

const INVALID: &str = "invalid";
const NOT_SUPPORTED: &str = "not-supported";
const NOT_FOUND: &str = "not-found";
const VALUE: &str = "value";
const PROCESSING: &str = "processing";

/// Most operations in one patch document.
pub const MAX_OPERATIONS: usize = 10_000;

/// How much work one patch may do, in multiples of the size limit: every operation walks the
/// document once (to measure it), so this bounds operations × document size.
const WORK_FACTOR: usize = 16;

/// What one patch may still spend; checked after every operation.
struct Bounds {
    max_bytes: usize,
    /// Bytes of document the remaining operations may still walk.
    work_left: usize,
    /// Size of the document at the last [`Bounds::check`].
    last_size: usize,
}

impl Bounds {
    fn new(max_bytes: usize) -> Self {
        Bounds {
            max_bytes,
            work_left: max_bytes.saturating_mul(WORK_FACTOR),
            last_size: 0,
        }
    }

    /// Spends `walks` walks of the document as last checked: what evaluating a path costs
    /// when each of its steps and `where()` terms may visit the whole document.
    fn charge(&mut self, walks: usize) -> Result<(), OutcomeIssue> {
        self.spend(walks.saturating_mul(self.last_size))
    }

    fn spend(&mut self, bytes: usize) -> Result<(), OutcomeIssue> {
        self.work_left = self.work_left.checked_sub(bytes).ok_or_else(|| {
            OutcomeIssue::error(
                "too-costly",
                format!(
                    "The patch does too much work: its operations together may walk at most {WORK_FACTOR} times the size limit"
                ),
            )
        })?;
        Ok(())
    }

    /// Refuses a document nested deeper than [`json::MAX_DEPTH`] (the parser's own limit: a
    /// `copy` into its own leaf doubles the depth, and every later walk would recurse that
    /// deep), larger than `max_bytes` (approximate JSON size; `copy` and `add` can double a
    /// document with each operation), or a patch whose operations together walked too much.
    /// Stops walking as soon as a bound is passed, without recursion.
    fn check(&mut self, document: &Value) -> Result<(), OutcomeIssue> {
        let mut size = 0usize;
        let mut pending = vec![(document, 0usize)];
        while let Some((value, level)) = pending.pop() {
            size += 8;
            match value {
                Value::String(s) => size += s.len(),
                Value::Array(items) => pending.extend(items.iter().map(|v| (v, level + 1))),
                Value::Object(fields) => {
                    size += fields.keys().map(String::len).sum::<usize>();
                    pending.extend(fields.values().map(|v| (v, level + 1)));
                }
                _ => {}
            }
            if matches!(value, Value::Array(_) | Value::Object(_)) && level + 1 > json::MAX_DEPTH {
                return Err(OutcomeIssue::error(
                    "structure",
                    format!(
                        "The patched resource would nest deeper than {} levels",
                        json::MAX_DEPTH
                    ),
                ));
            }
            if size > self.max_bytes {
                return Err(OutcomeIssue::error(
                    "too-costly",
                    format!("The patched resource would exceed {} bytes", self.max_bytes),
                ));
            }
        }
        self.last_size = size;
        self.spend(size)
    }
}

/// Refuses a patch of more than [`MAX_OPERATIONS`] operations.
fn check_count(count: usize) -> Result<(), Vec<OutcomeIssue>> {
    if count > MAX_OPERATIONS {
        return Err(vec![OutcomeIssue::error(
            "too-costly",
            format!("A patch may hold at most {MAX_OPERATIONS} operations, this one has {count}"),
        )
        .at(ROOT_EXPRESSION)]);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Failures, before they are located in the patch document.

/// Why an operation failed.
#[derive(Debug)]
struct Failure {
    code: &'static str,
    diagnostics: String,
    /// The JSON Patch member or FHIRPath Patch part at fault; `None` for the whole operation.
    member: Option<&'static str>,
}

impl Failure {
    fn new(code: &'static str, diagnostics: impl Into<String>) -> Self {
        Failure {
            code,
            diagnostics: diagnostics.into(),
            member: None,
        }
    }

    /// The same failure, blamed on `member` (unless a more precise member was already named).
    fn on(mut self, member: &'static str) -> Self {
        self.member.get_or_insert(member);
        self
    }

    fn in_json_patch(self, position: usize) -> OutcomeIssue {
        let expression = match self.member {
            Some(member) => format!("[{position}].{member}"),
            None => format!("[{position}]"),
        };
        OutcomeIssue::error(self.code, self.diagnostics).at(expression)
    }
}

/// Lets `?` turn a plain message into a failure of a given code and member.
trait OrFail<T> {
    fn or_fail(self, code: &'static str, member: &'static str) -> Result<T, Failure>;
}

impl<T> OrFail<T> for Result<T, String> {
    fn or_fail(self, code: &'static str, member: &'static str) -> Result<T, Failure> {
        self.map_err(|message| Failure::new(code, message).on(member))
    }
}

// ---------------------------------------------------------------------------------------------
// Value comparison for JSON Patch `test`.

/// JSON equality as RFC 6902 defines it: numbers by value, objects regardless of member order.
fn json_equal(a: &Value, b: &Value) -> bool {
    if let (Some(x), Some(y)) = (number_text(a), number_text(b)) {
        return same_number(&x, &y);
    }
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| json_equal(v, w))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, v)| y.get(key).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// The source text of a number: a marked string from `parse_lossless`, or a plain JSON number.
fn number_text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::String(text) => text.strip_prefix(NUMBER_MARK).map(Cow::Borrowed),
        Value::Number(number) => Some(Cow::Owned(number.to_string())),
        _ => None,
    }
}

fn same_number(x: &str, y: &str) -> bool {
    match (decimal(x), decimal(y)) {
        (Some(a), Some(b)) => a == b,
        _ => x == y,
    }
}

/// A number's exact value as (negative, significant digits, exponent of the last digit), so
/// `1.50`, `15e-1` and `1.5` compare equal without going through binary floating point.
fn decimal(text: &str) -> Option<(bool, String, i64)> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, exponent.parse::<i64>().ok()?),
        None => (unsigned, 0),
    };
    let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{integer}{fraction}");
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = digits.trim_start_matches('0');
    if significant.is_empty() {
        return Some((false, String::new(), 0));
    }
    let trimmed = significant.trim_end_matches('0');
    let shift = i64::try_from(significant.len() - trimmed.len()).ok()?;
    let fraction_len = i64::try_from(fraction.len()).ok()?;
    let exponent = exponent.checked_sub(fraction_len)?.checked_add(shift)?;
    Some((negative, trimmed.to_owned(), exponent))
}

// ---------------------------------------------------------------------------------------------
// Removing what a patch emptied.

/// Drops empty arrays and objects, bottom-up, as FHIR JSON has none; keeps `name`/`_name`
/// arrays aligned, dropping items that have neither a value nor a companion.
fn tidy(value: &mut Value) {
    match value {
        Value::Object(map) => tidy_object(map),
        Value::Array(items) => items.iter_mut().for_each(tidy),
        _ => {}
    }
}

fn tidy_object(map: &mut Map<String, Value>) {
    map.values_mut().for_each(tidy);
    // Each element once: a `_name` companion is handled with its `name` when that exists.
    let names: Vec<String> = map
        .keys()
        .filter(|key| {
            !key.strip_prefix('_')
                .is_some_and(|main| map.contains_key(main))
        })
        .map(|key| key.strip_prefix('_').unwrap_or(key).to_owned())
        .collect();
    for name in names {
        tidy_property(map, &name);
    }
}

fn tidy_property(map: &mut Map<String, Value>, name: &str) {
    let companion = companion_key(name);
    match map.get_mut(&companion) {
        Some(Value::Array(items)) => {
            for item in items.iter_mut().filter(|item| is_empty(item)) {
                *item = Value::Null;
            }
        }
        Some(item) if is_empty(item) => *item = Value::Null,
        _ => {}
    }
    drop_empty_items(map, name, &companion);
    if map.get(name).is_some_and(is_empty) {
        map.shift_remove(name);
    }
    // A companion with nothing left (all its items null) carries nothing.
    let bare = match map.get(&companion) {
        Some(Value::Array(items)) => items.iter().all(Value::is_null),
        Some(value) => value.is_null(),
        None => false,
    };
    if bare {
        map.shift_remove(&companion);
    }
}

/// Removes list items left with neither value nor companion, from both arrays at once.
fn drop_empty_items(map: &mut Map<String, Value>, name: &str, companion: &str) {
    let Some(len) = list_len(map, name) else {
        return;
    };
    let blank = |key: &str, index: usize| {
        map.get(key)
            .and_then(|list| list.get(index))
            .is_none_or(|item| item.is_null() || is_empty(item))
    };
    let keep: Vec<bool> = (0..len)
        .map(|index| !(blank(name, index) && blank(companion, index)))
        .collect();
    if keep.iter().all(|kept| *kept) {
        return;
    }
    for key in [name, companion] {
        if let Some(items) = map.get_mut(key).and_then(Value::as_array_mut) {
            let mut flags = keep.iter();
            items.retain(|_| flags.next().copied().unwrap_or(true));
        }
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

/// The property holding a primitive's `id` and `extension`: `_birthDate` for `birthDate`.
fn companion_key(key: &str) -> String {
    format!("_{key}")
}

/// The item count of a repeating element, or `None` when it is absent or a single value.
fn list_len(map: &Map<String, Value>, key: &str) -> Option<usize> {
    let len = |key: &str| map.get(key).and_then(Value::as_array).map(Vec::len);
    match (len(key), len(&companion_key(key))) {
        (None, None) => None,
        (value, companion) => Some(value.unwrap_or(0).max(companion.unwrap_or(0))),
    }
}

#[cfg(test)]
mod tests {
    use super::testing::TEST_MAX;

    #[test]
    fn a_patch_cannot_grow_the_resource_past_the_limit() {
        let mut resource = json!({"resourceType": "Patient", "name": [{"family": "Durand"}]});
        let doubling: Vec<Value> = (0..40)
            .map(|_| json!({"op": "copy", "from": "/name", "path": "/name/-"}))
            .collect();
        let issues =
            apply_json_patch(&mut resource, &Value::Array(doubling), 64 * 1024).unwrap_err();
        assert_eq!(issues[0].code, "too-costly");
        assert_eq!(
            resource["name"].as_array().unwrap().len(),
            1,
            "unchanged on error"
        );
    }

    /// `{"x": {"x": … {"x": 1}}}`, `levels` objects deep, and the pointer to its deepest `x`.
    fn nested(levels: usize) -> (Value, String) {
        let mut value = json!(1);
        for _ in 0..levels {
            value = json!({ "x": value });
        }
        (value, "/x".repeat(levels))
    }

    #[test]
    fn copying_a_deep_object_into_its_own_leaf_is_refused() {
        let (x, leaf) = nested(100);
        let mut resource = json!({"resourceType": "Patient", "x": x});
        let ops: Vec<Value> = (0..7)
            .map(|_| json!({"op": "copy", "from": "/x", "path": leaf}))
            .collect();
        let before = resource.clone();
        let issues = apply_json_patch(&mut resource, &Value::Array(ops), TEST_MAX).unwrap_err();
        assert_eq!(issues[0].code, "structure");
        assert_eq!(issues[0].expression.as_deref(), Some("[0]"));
        assert_eq!(resource, before);
    }

    #[test]
    fn fhirpath_patch_values_cannot_nest_the_resource_too_deep() {
        // A value of 60 nested parts added at the end of an 80-level chain.
        let mut part = json!({"name": "x", "valueString": "leaf"});
        for _ in 0..60 {
            part = json!({"name": "x", "part": [part]});
        }
        let (x, _) = nested(80);
        let mut resource = json!({"resourceType": "Patient", "x": x});
        let path = format!("Patient{}", ".x".repeat(79));
        let parameters = json!({"resourceType": "Parameters", "parameter": [{"name": "operation",
            "part": [{"name": "type", "valueCode": "add"}, {"name": "path", "valueString": path},
                {"name": "name", "valueString": "y"}, {"name": "value", "part": part["part"]}]}]});
        let before = resource.clone();
        let issues =
            apply_fhirpath_patch(&mut resource, &parameters, &|_| false, TEST_MAX).unwrap_err();
        assert_eq!(issues[0].code, "structure", "{issues:?}");
        assert_eq!(resource, before);
    }

    #[test]
    fn a_patch_has_bounded_work() {
        let mut resource = json!({"resourceType": "Patient", "name": [{"family": "Durand"}]});
        let too_many: Vec<Value> = (0..=MAX_OPERATIONS)
            .map(|_| json!({"op": "test", "path": "/resourceType", "value": "Patient"}))
            .collect();
        let issues =
            apply_json_patch(&mut resource, &Value::Array(too_many), TEST_MAX).unwrap_err();
        assert_eq!(issues[0].code, "too-costly");
        // 2,000 operations on a 1 KB resource walk 2 MB: past 16 × a 64 KB limit.
        resource["text"] = json!("a".repeat(1000));
        let many: Vec<Value> = (0..2000)
            .map(|_| json!({"op": "test", "path": "/resourceType", "value": "Patient"}))
            .collect();
        let issues = apply_json_patch(&mut resource, &Value::Array(many), 64 * 1024).unwrap_err();
        assert_eq!(issues[0].code, "too-costly");
        assert!(issues[0].diagnostics.contains("work"), "{issues:?}");
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn a_path_of_many_where_terms_is_charged_for_each_term() {
        // 2,000 names × 2,000 `or` terms: millions of comparisons for one operation.
        let names: Vec<Value> = (0..2000).map(|_| json!({"family": "x"})).collect();
        let mut resource = json!({"resourceType": "Patient", "name": names});
        let before = resource.clone();
        let terms = vec!["family='a'"; 2000].join(" or ");
        let parameters = json!({"resourceType": "Parameters", "parameter": [
            {"name": "operation", "part": [{"name": "type", "valueCode": "delete"},
            {"name": "path", "valueString": format!("Patient.name.where({terms})")}]}]});
        let issues =
            apply_fhirpath_patch(&mut resource, &parameters, &|_| true, 64 * 1024).unwrap_err();
        assert_eq!(issues[0].code, "too-costly", "{issues:?}");
        assert_eq!(
            issues[0].expression.as_deref(),
            Some("Parameters.parameter[0]")
        );
        assert_eq!(resource, before);
    }

    #[test]
    fn numbers_compare_by_value_without_floats() {
        assert!(same_number("1.50", "1.5"));
        assert!(same_number("150e-2", "1.5"));
        assert!(same_number("0", "-0.000"));
        assert!(same_number(
            "12345678901234567890123",
            "1.2345678901234567890123e22"
        ));
        assert!(!same_number(
            "12345678901234567890123",
            "12345678901234567890124"
        ));
        assert!(!same_number("-1", "1"));
        assert!(!same_number("1e400", "1e401"));
    }
}

/// Helpers shared by the tests of both formats.
#[cfg(test)]
mod testing {
    use super::*;
    use crate::fhir::json;

    /// Size limit used by the tests (the server passes `limits.body_max_bytes`).
    pub const TEST_MAX: usize = 1 << 20;

    pub fn lossless(text: &str) -> Value {
        json::parse_lossless(text).unwrap()
    }

    /// Stands in for the StructureDefinitions: the repeating elements the tests touch.
    pub fn repeating(path: &str) -> bool {
        const LISTS: &[&str] = &[
            "Patient.identifier",
            "Patient.name",
            "Patient.name.given",
            "Patient.telecom",
            "Patient.contact",
            "Patient.contact.name.given",
            "Patient.contact.telecom",
            "Patient.extension",
            "Patient.birthDate.extension",
            "Patient.contained",
            "Practitioner.name",
            "DocumentReference.securityLabel",
            "DocumentReference.securityLabel.coding",
            "Observation.component",
        ];
        LISTS.contains(&path)
    }

    pub fn one_issue(result: Result<Value, Vec<OutcomeIssue>>, code: &str, at: &str) -> String {
        let issues = result.expect_err("the patch should fail");
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].severity, "error");
        assert_eq!(issues[0].code, code, "{issues:?}");
        assert_eq!(issues[0].expression.as_deref(), Some(at), "{issues:?}");
        issues[0].diagnostics.clone()
    }
}
