//! OperationOutcome: how every error reaches a client.

use serde_json::{json, Value};

/// One issue of an OperationOutcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeIssue {
    /// `fatal`, `error`, `warning` or `information`.
    pub severity: &'static str,
    /// A FHIR `issue-type` code (`invalid`, `structure`, `not-found`, `conflict`…).
    pub code: &'static str,
    pub diagnostics: String,
    /// FHIRPath of the element at fault, when there is one.
    pub expression: Option<String>,
}

impl OutcomeIssue {
    /// An error-severity issue.
    pub fn error(code: &'static str, diagnostics: impl Into<String>) -> Self {
        OutcomeIssue {
            severity: "error",
            code,
            diagnostics: diagnostics.into(),
            expression: None,
        }
    }

    /// A warning-severity issue (the request succeeded, with a caveat).
    pub fn warning(code: &'static str, diagnostics: impl Into<String>) -> Self {
        OutcomeIssue {
            severity: "warning",
            ..OutcomeIssue::error(code, diagnostics)
        }
    }

    /// The same issue, located at `expression`.
    pub fn at(mut self, expression: impl Into<String>) -> Self {
        self.expression = Some(expression.into());
        self
    }
}

/// Builds the OperationOutcome resource for `issues`.
pub fn operation_outcome(issues: &[OutcomeIssue]) -> Value {
    let issues: Vec<Value> = issues
        .iter()
        .map(|i| {
            let mut issue = json!({
                "severity": i.severity,
                "code": i.code,
                "diagnostics": printable(&i.diagnostics),
            });
            if let Some(expression) = &i.expression {
                issue["expression"] = json!([printable(expression)]);
            }
            issue
        })
        .collect();
    json!({"resourceType": "OperationOutcome", "issue": issues})
}

/// `text` with the control characters FHIR strings may not hold (all but tab, CR and LF)
/// replaced by U+FFFD: messages echo client input, and the outcome must stay a valid resource
/// (and a NUL-led string must not pass for a lossless number, see `fhir::json`).
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c < ' ' && !matches!(c, '\t' | '\n' | '\r') {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_is_a_valid_resource() {
        let outcome = operation_outcome(&[
            OutcomeIssue::error("structure", "Unknown element").at("Patient.foo"),
            OutcomeIssue::error("not-found", "gone"),
        ]);
        assert!(crate::fhir::validate::validate_resource(&outcome).is_empty());
        assert_eq!(outcome["issue"][0]["expression"][0], "Patient.foo");
        assert!(outcome["issue"][1].get("expression").is_none());
    }

    #[test]
    fn control_characters_from_client_input_are_replaced() {
        let outcome =
            operation_outcome(&[OutcomeIssue::error("invalid", "\u{0}12").at("\u{0}1]}")]);
        assert_eq!(outcome["issue"][0]["diagnostics"], "\u{fffd}12");
        assert_eq!(outcome["issue"][0]["expression"][0], "\u{fffd}1]}");
        assert!(crate::fhir::validate::validate_resource(&outcome).is_empty());
        let text = crate::fhir::json::to_text(&outcome, false);
        assert!(serde_json::from_str::<Value>(&text).is_ok(), "{text}");
    }
}
