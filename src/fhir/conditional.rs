//! Criteria of conditional interactions (`If-None-Exist`, `PUT/DELETE [type]?…`).
//!
//! Until the search engine lands, the criteria are one `identifier` token (`system|value`,
//! `|value` or `value`) or one `_id`; anything else is refused, never ignored.

use super::outcome::OutcomeIssue;
use super::registry::ResourceKind;
use super::resource::is_valid_id;
use crate::store::{SystemMatch, TokenQuery};

/// What a conditional interaction matches on.
#[derive(Debug, Clone)]
pub enum Condition {
    Id(String),
    Token(TokenQuery),
}

/// Parses criteria (decoded query pairs, without `_format`/`_pretty`) for `kind`.
pub fn parse(
    kind: &ResourceKind,
    criteria: &[(String, String)],
) -> Result<Condition, OutcomeIssue> {
    let unsupported = |name: &str, why: &str| {
        OutcomeIssue::error("not-supported", format!("Conditional criteria: {why}"))
            .at(name.to_owned())
    };
    for (name, value) in criteria {
        crate::search::query::refuse_control_characters(name, value)?;
    }
    let [(name, value)] = criteria else {
        return Err(OutcomeIssue::error(
            "invalid",
            if criteria.is_empty() {
                "A conditional interaction needs criteria, e.g. identifier=system|value"
            } else {
                "Conditional criteria may have only one parameter (identifier or _id) for now"
            },
        ));
    };
    if value.is_empty() {
        return Err(
            OutcomeIssue::error("invalid", format!("{name} has no value")).at(name.clone()),
        );
    }
    if split_unescaped(value, ',').len() > 1 {
        return Err(unsupported(name, "several values (a,b) are not supported"));
    }
    match name.as_str() {
        "_id" if is_valid_id(value) => Ok(Condition::Id(value.clone())),
        "_id" => {
            Err(OutcomeIssue::error("invalid", format!("{value:?} is not a valid id")).at("_id"))
        }
        "identifier" if kind.identifier.is_empty() => Err(unsupported(
            name,
            &format!("{} has no identifier search parameter", kind.name),
        )),
        "identifier" => {
            let parts = split_unescaped(value, '|');
            let (system, code) = match parts.as_slice() {
                [code] => (SystemMatch::Any, unescape(code)),
                ["", code] => (SystemMatch::Absent, unescape(code)),
                [system, code] => (SystemMatch::Is(unescape(system)), unescape(code)),
                _ => {
                    return Err(
                        OutcomeIssue::error("invalid", "identifier must be system|value")
                            .at(name.clone()),
                    )
                }
            };
            if code.is_empty() {
                return Err(unsupported(
                    name,
                    "identifier=system| (any value of a system) is not supported",
                ));
            }
            Ok(Condition::Token(TokenQuery {
                resource_type: kind.name.to_owned(),
                param: "identifier".into(),
                system,
                code,
            }))
        }
        other => Err(unsupported(
            other,
            &format!("{other} is not supported yet (only identifier and _id)"),
        )),
    }
}

/// Splits on `separator` where it is not escaped with a backslash (FHIR search escaping).
fn split_unescaped(value: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            c if c == separator => {
                parts.push(&value[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

/// Removes FHIR search escapes (`\|`, `\,`, `\$`, `\\`).
fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn patient_kind() -> &'static ResourceKind {
        crate::fhir::registry::lookup("Patient").unwrap()
    }

    fn token(value: &str) -> TokenQuery {
        match parse(patient_kind(), &pairs(&[("identifier", value)])).unwrap() {
            Condition::Token(q) => q,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn identifier_forms() {
        let q = token("urn:oid:1.2.250.1.213.1.4.8|284022912345678");
        assert_eq!(
            q.system,
            SystemMatch::Is("urn:oid:1.2.250.1.213.1.4.8".into())
        );
        assert_eq!(q.code, "284022912345678");
        assert_eq!(token("|x").system, SystemMatch::Absent);
        assert_eq!(token("x").system, SystemMatch::Any);
        assert_eq!(token(r"urn:a|b\|c").code, "b|c");
    }

    #[test]
    fn unsupported_criteria_are_refused_at_their_name() {
        for (name, value) in [
            ("name", "Durand"),
            ("identifier:of-type", "x"),
            ("identifier", "a,b"),
            ("identifier", "sys|"),
        ] {
            let issue = parse(patient_kind(), &pairs(&[(name, value)])).unwrap_err();
            assert_eq!(issue.code, "not-supported", "{name}={value}");
            assert_eq!(issue.expression.as_deref(), Some(name));
        }
        assert_eq!(parse(patient_kind(), &[]).unwrap_err().code, "invalid");
        assert_eq!(
            parse(patient_kind(), &pairs(&[("_id", "a"), ("identifier", "b")]))
                .unwrap_err()
                .code,
            "invalid"
        );
        assert!(
            matches!(parse(patient_kind(), &pairs(&[("_id", "a")])).unwrap(), Condition::Id(id) if id == "a")
        );
    }

    #[test]
    fn control_characters_are_refused_in_names_and_values() {
        for (name, value) in [("identifier", "a\0b|c"), ("_id", "\0"), ("\0x", "1")] {
            let issue = parse(patient_kind(), &pairs(&[(name, value)])).unwrap_err();
            assert_eq!(issue.code, "invalid", "{name:?}={value:?}");
            assert!(!issue.expression.unwrap().contains('\0'));
        }
    }
}
