//! RFC 6902 JSON Patch on the lossless JSON form of a resource.

use super::*;

/// Applies an RFC 6902 JSON Patch document (a JSON array of operations) to `resource`.
///
/// All six operations are supported; JSON Pointers use `~0`/`~1` escaping and `-` to append to
/// an array. Arrays and objects left empty by the patch are removed at the end (FHIR forbids
/// them), so removing the last `identifier` removes the `identifier` property. `test` compares
/// numbers by value (`1.0` equals `1.00`) and objects regardless of member order.
///
/// On error `resource` is unchanged; malformed operations are all reported, otherwise the
/// first operation that fails is.
///
/// A patch may not grow the resource past `max_bytes` (approximate JSON size) nor nest it
/// deeper than [`json::MAX_DEPTH`], and its work is bounded (see [`Bounds`]).
pub fn apply_json_patch(
    resource: &mut Value,
    patch: &Value,
    max_bytes: usize,
) -> Result<(), Vec<OutcomeIssue>> {
    let Some(items) = patch.as_array() else {
        let message = "A JSON Patch document must be a JSON array of operations";
        return Err(vec![
            OutcomeIssue::error(INVALID, message).at(ROOT_EXPRESSION)
        ]);
    };
    check_count(items.len())?;
    let operations = parse_json_operations(items)?;
    let mut bounds = Bounds::new(max_bytes);
    let mut patched = resource.clone();
    for (position, operation) in operations.iter().enumerate() {
        operation
            .apply(&mut patched)
            .map_err(|failure| vec![failure.in_json_patch(position)])?;
        bounds
            .check(&patched)
            .map_err(|issue| vec![issue.at(format!("[{position}]"))])?;
    }
    tidy(&mut patched);
    *resource = patched;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// JSON Patch.

/// One parsed JSON Patch operation; values are borrowed from the patch document.
enum JsonOperation<'a> {
    Add { path: Pointer, value: &'a Value },
    Remove { path: Pointer },
    Replace { path: Pointer, value: &'a Value },
    Move { from: Pointer, path: Pointer },
    Copy { from: Pointer, path: Pointer },
    Test { path: Pointer, value: &'a Value },
}

/// A parsed JSON Pointer (RFC 6901) with its text, kept for messages.
struct Pointer {
    text: String,
    tokens: Vec<String>,
}

fn parse_json_operations(items: &[Value]) -> Result<Vec<JsonOperation<'_>>, Vec<OutcomeIssue>> {
    let mut operations = Vec::with_capacity(items.len());
    let mut issues = Vec::new();
    for (position, item) in items.iter().enumerate() {
        match parse_json_operation(item) {
            Ok(operation) => operations.push(operation),
            Err(failure) => issues.push(failure.in_json_patch(position)),
        }
    }
    if issues.is_empty() {
        Ok(operations)
    } else {
        Err(issues)
    }
}

fn parse_json_operation(item: &Value) -> Result<JsonOperation<'_>, Failure> {
    let Some(member) = item.as_object() else {
        return Err(Failure::new(INVALID, "An operation must be a JSON object"));
    };
    let operation = match string_member(member, "op")? {
        "add" => JsonOperation::Add {
            path: pointer_member(member, "path")?,
            value: value_member(member)?,
        },
        "remove" => JsonOperation::Remove {
            path: pointer_member(member, "path")?,
        },
        "replace" => JsonOperation::Replace {
            path: pointer_member(member, "path")?,
            value: value_member(member)?,
        },
        "move" => JsonOperation::Move {
            from: pointer_member(member, "from")?,
            path: pointer_member(member, "path")?,
        },
        "copy" => JsonOperation::Copy {
            from: pointer_member(member, "from")?,
            path: pointer_member(member, "path")?,
        },
        "test" => JsonOperation::Test {
            path: pointer_member(member, "path")?,
            value: value_member(member)?,
        },
        other => {
            let message =
                format!("Unknown op '{other}': expected add, remove, replace, move, copy or test");
            return Err(Failure::new(INVALID, message).on("op"));
        }
    };
    Ok(operation)
}

/// A required string member; a missing one is blamed on the operation, a wrong one on itself.
fn string_member<'a>(
    operation: &'a Map<String, Value>,
    name: &'static str,
) -> Result<&'a str, Failure> {
    match operation.get(name) {
        None => Err(Failure::new(
            INVALID,
            format!("The operation has no '{name}' member"),
        )),
        Some(Value::String(text)) if !text.starts_with(NUMBER_MARK) => Ok(text),
        Some(_) => Err(Failure::new(INVALID, format!("'{name}' must be a string")).on(name)),
    }
}

fn pointer_member(operation: &Map<String, Value>, name: &'static str) -> Result<Pointer, Failure> {
    let text = string_member(operation, name)?;
    parse_pointer(text).or_fail(INVALID, name)
}

/// The `value` member: present even when `null`, which is a legitimate JSON value.
fn value_member(operation: &Map<String, Value>) -> Result<&Value, Failure> {
    operation
        .get("value")
        .ok_or_else(|| Failure::new(INVALID, "The operation has no 'value' member"))
}

fn parse_pointer(text: &str) -> Result<Pointer, String> {
    let tokens = if text.is_empty() {
        Vec::new()
    } else {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "'{text}' is not a JSON Pointer: it must be empty or start with '/'"
            ));
        };
        rest.split('/')
            .map(|token| unescape_token(text, token))
            .collect::<Result<_, _>>()?
    };
    Ok(Pointer {
        text: text.to_owned(),
        tokens,
    })
}

/// Decodes `~1` to `/` and `~0` to `~`, in one pass so `~01` stays `~1`.
fn unescape_token(text: &str, token: &str) -> Result<String, String> {
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c != '~' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => out.push('~'),
            Some('1') => out.push('/'),
            _ => {
                return Err(format!(
                    "'{text}' is not a JSON Pointer: '~' must be followed by 0 or 1"
                ))
            }
        }
    }
    Ok(out)
}

impl JsonOperation<'_> {
    fn apply(&self, doc: &mut Value) -> Result<(), Failure> {
        match self {
            JsonOperation::Add { path, value } => add_at(doc, path, (*value).clone()),
            JsonOperation::Remove { path } => remove_at(doc, path).map(drop),
            JsonOperation::Replace { path, value } => replace_at(doc, path, (*value).clone()),
            JsonOperation::Move { from, path } => move_value(doc, from, path),
            JsonOperation::Copy { from, path } => {
                let value = resolve(doc, from).or_fail(NOT_FOUND, "from")?.clone();
                add_at(doc, path, value)
            }
            JsonOperation::Test { path, value } => test_value(doc, path, value),
        }
    }
}

fn add_at(doc: &mut Value, path: &Pointer, value: Value) -> Result<(), Failure> {
    let Some((last, parent_tokens)) = path.tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    let parent = resolve_tokens_mut(doc, parent_tokens, &path.text).or_fail(NOT_FOUND, "path")?;
    match parent {
        Value::Object(map) => {
            map.insert(last.clone(), value);
        }
        Value::Array(items) => {
            let index = insertion_index(last, items.len(), &path.text).or_fail(VALUE, "path")?;
            items.insert(index, value);
        }
        _ => {
            let message = format!(
                "'{}' does not exist: its parent is neither an object nor an array",
                path.text
            );
            return Err(Failure::new(NOT_FOUND, message).on("path"));
        }
    }
    Ok(())
}

fn remove_at(doc: &mut Value, path: &Pointer) -> Result<Value, Failure> {
    let Some((last, parent_tokens)) = path.tokens.split_last() else {
        return Err(Failure::new(INVALID, "The whole resource cannot be removed").on("path"));
    };
    let missing = || Failure::new(NOT_FOUND, format!("'{}' does not exist", path.text));
    let parent = resolve_tokens_mut(doc, parent_tokens, &path.text).or_fail(NOT_FOUND, "path")?;
    let removed = match parent {
        Value::Object(map) => map.shift_remove(last.as_str()),
        Value::Array(items) => array_index(last)
            .filter(|index| *index < items.len())
            .map(|index| items.remove(index)),
        _ => None,
    };
    removed.ok_or_else(|| missing().on("path"))
}

fn replace_at(doc: &mut Value, path: &Pointer, value: Value) -> Result<(), Failure> {
    *resolve_mut(doc, path).or_fail(NOT_FOUND, "path")? = value;
    Ok(())
}

fn move_value(doc: &mut Value, from: &Pointer, path: &Pointer) -> Result<(), Failure> {
    if path.tokens.len() > from.tokens.len() && path.tokens.starts_with(&from.tokens) {
        let message = format!(
            "Cannot move '{}' into its own descendant '{}'",
            from.text, path.text
        );
        return Err(Failure::new(INVALID, message).on("from"));
    }
    if from.tokens == path.tokens {
        // Moving a value onto itself changes nothing, but the value must exist.
        return resolve(doc, from).or_fail(NOT_FOUND, "from").map(drop);
    }
    let value = remove_at(doc, from).map_err(|failure| Failure {
        member: Some("from"),
        ..failure
    })?;
    add_at(doc, path, value)
}

fn test_value(doc: &Value, path: &Pointer, expected: &Value) -> Result<(), Failure> {
    let actual = resolve(doc, path).map_err(|message| {
        Failure::new(PROCESSING, format!("Test failed: {message}")).on("path")
    })?;
    if json_equal(actual, expected) {
        Ok(())
    } else {
        let message = format!(
            "Test failed: the value at '{}' differs from the expected one",
            path.text
        );
        Err(Failure::new(PROCESSING, message).on("value"))
    }
}

fn resolve<'v>(doc: &'v Value, path: &Pointer) -> Result<&'v Value, String> {
    let mut current = doc;
    for (depth, token) in path.tokens.iter().enumerate() {
        let next = match current {
            Value::Object(map) => map.get(token.as_str()),
            Value::Array(items) => array_index(token).and_then(|index| items.get(index)),
            _ => None,
        };
        current = next.ok_or_else(|| missing_step(&path.text, &path.tokens[..=depth]))?;
    }
    Ok(current)
}

fn resolve_mut<'v>(doc: &'v mut Value, path: &Pointer) -> Result<&'v mut Value, String> {
    resolve_tokens_mut(doc, &path.tokens, &path.text)
}

fn resolve_tokens_mut<'v>(
    doc: &'v mut Value,
    tokens: &[String],
    text: &str,
) -> Result<&'v mut Value, String> {
    let mut current = doc;
    for (depth, token) in tokens.iter().enumerate() {
        let next = match current {
            Value::Object(map) => map.get_mut(token.as_str()),
            Value::Array(items) => array_index(token).and_then(|index| items.get_mut(index)),
            _ => None,
        };
        current = next.ok_or_else(|| missing_step(text, &tokens[..=depth]))?;
    }
    Ok(current)
}

/// Says which prefix of `text` failed to resolve, re-escaping the tokens that reached it.
fn missing_step(text: &str, reached: &[String]) -> String {
    let prefix: String = reached
        .iter()
        .map(|token| format!("/{}", token.replace('~', "~0").replace('/', "~1")))
        .collect();
    if prefix == text {
        format!("'{text}' does not exist")
    } else {
        format!("'{text}' does not exist: nothing at '{prefix}'")
    }
}

/// An array index token: `0` or digits without a leading zero (RFC 6901 §4).
fn array_index(token: &str) -> Option<usize> {
    let digits = token.bytes().all(|b| b.is_ascii_digit());
    let canonical = token == "0" || !token.starts_with('0');
    if token.is_empty() || !digits || !canonical {
        return None;
    }
    token.parse().ok()
}

/// Where `add` puts a new array item: `-` appends, an index may equal the length.
fn insertion_index(token: &str, len: usize, text: &str) -> Result<usize, String> {
    if token == "-" {
        return Ok(len);
    }
    match array_index(token) {
        Some(index) if index <= len => Ok(index),
        Some(index) => Err(format!(
            "'{text}': index {index} is beyond the end of the array ({len} items)"
        )),
        None => Err(format!("'{text}': '{token}' is not an array index")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::fhir::json;
    use serde_json::json;

    fn json_patch(resource: &str, patch: &str) -> Result<Value, Vec<OutcomeIssue>> {
        let mut value = lossless(resource);
        apply_json_patch(&mut value, &lossless(patch), TEST_MAX).map(|()| value)
    }

    const JIM: &str = r#"{"resourceType":"Patient","gender":"male","name":[{"family":"A"}]}"#;

    #[test]
    fn json_add_sets_members_and_inserts_into_arrays() {
        let patched = json_patch(
            JIM,
            r#"[{"op":"add","path":"/birthDate","value":"1974-12-25"},
                {"op":"add","path":"/name/0/given","value":["Jim"]},
                {"op":"add","path":"/name/-","value":{"family":"C"}},
                {"op":"add","path":"/name/1","value":{"family":"B"}}]"#,
        )
        .unwrap();
        assert_eq!(patched["birthDate"], "1974-12-25");
        assert_eq!(
            patched["name"],
            json!([{"family": "A", "given": ["Jim"]}, {"family": "B"}, {"family": "C"}])
        );
    }

    #[test]
    fn json_add_replaces_an_existing_member_in_place() {
        let patched = json_patch(JIM, r#"[{"op":"add","path":"/gender","value":"female"}]"#);
        assert_eq!(
            json::to_text(&patched.unwrap(), false),
            r#"{"resourceType":"Patient","gender":"female","name":[{"family":"A"}]}"#
        );
    }

    #[test]
    fn json_remove_drops_members_items_and_what_they_emptied() {
        let resource = r#"{"resourceType":"Patient","gender":"male",
            "name":[{"family":"A"},{"family":"B"}],"maritalStatus":{"text":"M"}}"#;
        let patched = json_patch(
            resource,
            r#"[{"op":"remove","path":"/name/0"},{"op":"remove","path":"/gender"}]"#,
        )
        .unwrap();
        assert_eq!(patched["name"], json!([{"family": "B"}]));
        assert!(patched.get("gender").is_none());
        // FHIR JSON has no empty arrays or objects: emptying one removes it.
        let patched = json_patch(
            resource,
            r#"[{"op":"remove","path":"/name/1"},{"op":"remove","path":"/name/0"},
                {"op":"remove","path":"/maritalStatus/text"}]"#,
        )
        .unwrap();
        assert_eq!(
            patched,
            json!({"resourceType": "Patient", "gender": "male"})
        );
    }

    #[test]
    fn json_emptied_arrays_survive_until_the_end_of_the_patch() {
        let patched = json_patch(
            JIM,
            r#"[{"op":"remove","path":"/name/0"},{"op":"test","path":"/name","value":[]},
                {"op":"add","path":"/name/-","value":{"family":"Z"}}]"#,
        );
        assert_eq!(patched.unwrap()["name"], json!([{"family": "Z"}]));
    }

    #[test]
    fn json_replace_values_items_and_the_whole_document() {
        let patched = json_patch(
            JIM,
            r#"[{"op":"replace","path":"/gender","value":"other"},
                {"op":"replace","path":"/name/0","value":{"text":"Jim"}}]"#,
        )
        .unwrap();
        assert_eq!(patched["gender"], "other");
        assert_eq!(patched["name"], json!([{"text": "Jim"}]));
        let patched = json_patch(
            JIM,
            r#"[{"op":"replace","path":"","value":{"resourceType":"Patient"}}]"#,
        );
        assert_eq!(patched.unwrap(), json!({"resourceType": "Patient"}));
    }

    #[test]
    fn json_move_between_members_and_within_arrays() {
        let resource = r#"{"resourceType":"Patient","name":[{"family":"A"},{"family":"B"}]}"#;
        let patched = json_patch(
            resource,
            r#"[{"op":"move","from":"/name/1","path":"/name/0"},
                {"op":"move","from":"/name/1/family","path":"/name/0/text"},
                {"op":"move","from":"/name/0","path":"/name/0"}]"#,
        )
        .unwrap();
        assert_eq!(patched["name"], json!([{"family": "B", "text": "A"}]));
    }

    #[test]
    fn json_copy_duplicates_a_value() {
        let patched = json_patch(
            JIM,
            r#"[{"op":"copy","from":"/name/0","path":"/name/-"},
                {"op":"copy","from":"/gender","path":"/name/1/text"}]"#,
        )
        .unwrap();
        assert_eq!(
            patched["name"],
            json!([{"family": "A"}, {"family": "A", "text": "male"}])
        );
    }

    #[test]
    fn json_test_compares_numbers_by_value_and_objects_in_any_order() {
        let resource =
            r#"{"resourceType":"Observation","valueQuantity":{"value":1.50,"unit":"mg"}}"#;
        let patch = r#"[{"op":"test","path":"/valueQuantity/value","value":1.5},
            {"op":"test","path":"/valueQuantity/value","value":15e-1},
            {"op":"test","path":"/valueQuantity","value":{"unit":"mg","value":0.150E1}}]"#;
        assert!(json_patch(resource, patch).is_ok());
        let patch = r#"[{"op":"test","path":"/valueQuantity/value","value":"1.50"}]"#;
        one_issue(json_patch(resource, patch), "processing", "[0].value");
        let patch = r#"[{"op":"test","path":"/valueQuantity/value","value":1.51}]"#;
        one_issue(json_patch(resource, patch), "processing", "[0].value");
    }

    #[test]
    fn json_test_passes_on_an_equal_value() {
        let patch = r#"[{"op":"test","path":"/name/0","value":{"family":"A"}},
            {"op":"replace","path":"/gender","value":"female"}]"#;
        assert_eq!(json_patch(JIM, patch).unwrap()["gender"], "female");
    }

    #[test]
    fn json_pointers_unescape_tilde_and_slash() {
        let resource = r#"{"resourceType":"Basic","a/b":1,"m~n":2,"~1":3}"#;
        let patched = json_patch(
            resource,
            r#"[{"op":"replace","path":"/a~1b","value":10},
                {"op":"remove","path":"/m~0n"},
                {"op":"test","path":"/~01","value":3}]"#,
        )
        .unwrap();
        assert_eq!(
            json::to_text(&patched, false),
            r#"{"resourceType":"Basic","a/b":10,"~1":3}"#
        );
    }

    #[test]
    fn json_numbers_keep_their_exact_text() {
        let resource = r#"{"resourceType":"Observation","valueQuantity":{"value":1.50}}"#;
        let patched = json_patch(
            resource,
            r#"[{"op":"copy","from":"/valueQuantity","path":"/referenceRange"},
                {"op":"add","path":"/valueQuantity/value","value":12345678901234567890.000}]"#,
        )
        .unwrap();
        assert_eq!(
            json::to_text(&patched, false),
            r#"{"resourceType":"Observation","valueQuantity":{"value":12345678901234567890.000},"referenceRange":{"value":1.50}}"#
        );
    }

    #[test]
    fn json_patch_must_be_an_array() {
        let diagnostics = one_issue(json_patch(JIM, r#"{"op":"remove"}"#), "invalid", "$this");
        assert!(diagnostics.contains("array"), "{diagnostics}");
    }

    #[test]
    fn json_malformed_operations_are_all_reported() {
        let patch = r#"["remove",
            {"path":"/gender"},
            {"op":"jump","path":"/gender"},
            {"op":"add","path":"/gender"},
            {"op":"add","path":"gender","value":"x"},
            {"op":"remove","path":"/a~2"},
            {"op":"add","path":5,"value":"x"},
            {"op":"move","path":"/gender"}]"#;
        let issues = json_patch(JIM, patch).unwrap_err();
        let found: Vec<(&str, &str)> = issues
            .iter()
            .map(|issue| (issue.code, issue.expression.as_deref().unwrap()))
            .collect();
        assert_eq!(
            found,
            [
                ("invalid", "[0]"),
                ("invalid", "[1]"),
                ("invalid", "[2].op"),
                ("invalid", "[3]"),
                ("invalid", "[4].path"),
                ("invalid", "[5].path"),
                ("invalid", "[6].path"),
                ("invalid", "[7]"),
            ]
        );
        assert!(issues[1].diagnostics.contains("'op'"));
        assert!(issues[2].diagnostics.contains("jump"));
        assert!(issues[3].diagnostics.contains("'value'"));
        assert!(issues[7].diagnostics.contains("'from'"));
    }

    #[test]
    fn json_missing_targets_are_not_found() {
        let cases = [
            (r#"{"op":"remove","path":"/birthDate"}"#, "[0].path"),
            (
                r#"{"op":"replace","path":"/name/3","value":{}}"#,
                "[0].path",
            ),
            (
                r#"{"op":"replace","path":"/name/0/given/0","value":"x"}"#,
                "[0].path",
            ),
            (
                r#"{"op":"add","path":"/contact/0/name","value":{}}"#,
                "[0].path",
            ),
            (r#"{"op":"add","path":"/gender/x","value":"y"}"#, "[0].path"),
            (
                r#"{"op":"move","from":"/birthDate","path":"/x"}"#,
                "[0].from",
            ),
            (r#"{"op":"copy","from":"/name/1","path":"/x"}"#, "[0].from"),
            (r#"{"op":"remove","path":"/name/-"}"#, "[0].path"),
        ];
        for (operation, at) in cases {
            let diagnostics =
                one_issue(json_patch(JIM, &format!("[{operation}]")), "not-found", at);
            assert!(diagnostics.contains("does not exist"), "{diagnostics}");
        }
        let diagnostics = one_issue(
            json_patch(JIM, r#"[{"op":"remove","path":"/name/0/given/0"}]"#),
            "not-found",
            "[0].path",
        );
        assert!(
            diagnostics.contains("nothing at '/name/0/given'"),
            "{diagnostics}"
        );
    }

    #[test]
    fn json_bad_insertion_indexes_are_value_errors() {
        for path in ["/name/2", "/name/01", "/name/x", "/name/-1"] {
            let patch = format!(r#"[{{"op":"add","path":"{path}","value":{{}}}}]"#);
            one_issue(json_patch(JIM, &patch), "value", "[0].path");
        }
        let patch = r#"[{"op":"add","path":"/name/1","value":{"family":"B"}}]"#;
        assert!(json_patch(JIM, patch).is_ok(), "index = length appends");
    }

    #[test]
    fn json_failed_test_is_processing() {
        let patch = r#"[{"op":"replace","path":"/gender","value":"female"},
            {"op":"test","path":"/gender","value":"male"}]"#;
        let diagnostics = one_issue(json_patch(JIM, patch), "processing", "[1].value");
        assert!(diagnostics.contains("Test failed"), "{diagnostics}");
        let patch = r#"[{"op":"test","path":"/birthDate","value":"1974"}]"#;
        one_issue(json_patch(JIM, patch), "processing", "[0].path");
    }

    #[test]
    fn json_structural_mistakes_are_invalid() {
        let patch = r#"[{"op":"move","from":"/name","path":"/name/0/x"}]"#;
        one_issue(json_patch(JIM, patch), "invalid", "[0].from");
        let patch = r#"[{"op":"remove","path":""}]"#;
        one_issue(json_patch(JIM, patch), "invalid", "[0].path");
    }

    #[test]
    fn json_error_leaves_the_resource_unchanged() {
        let mut resource = lossless(JIM);
        let before = resource.clone();
        let patch = lossless(
            r#"[{"op":"replace","path":"/gender","value":"female"},
                {"op":"remove","path":"/name/0"},
                {"op":"remove","path":"/birthDate"}]"#,
        );
        let issues = apply_json_patch(&mut resource, &patch, TEST_MAX).unwrap_err();
        assert_eq!(issues[0].expression.as_deref(), Some("[2].path"));
        assert_eq!(resource, before);
        assert_eq!(json::to_text(&resource, false), JIM);
    }
}
