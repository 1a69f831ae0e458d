//! Conditional criteria: an `If-None-Exist` header (`[type]?…` or a bare query), parsed as
//! the create handler does.

use crate::fhir::conditional;

use super::common;

/// Parameters every interaction accepts and that are not criteria.
const FORMAT_PARAMS: [&str; 2] = ["_format", "_pretty"];

/// One input, run as the fuzz target runs it: panics where the server would misbehave.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (kind, query) = common::split_type(text);
    let Ok(criteria) = serde_urlencoded::from_str::<Vec<(String, String)>>(query) else {
        return;
    };
    let criteria: Vec<(String, String)> = criteria
        .into_iter()
        .filter(|(k, _)| !FORMAT_PARAMS.contains(&k.as_str()))
        .collect();
    let _ = conditional::parse(kind, &criteria);
}
