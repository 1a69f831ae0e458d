//! Conditional criteria: an `If-None-Exist` header (`[type]?…` or a bare query), parsed as
//! the create handler does.

use crate::fhir::conditional;

use super::common;

/// Parameters every interaction accepts and that are not criteria.
const FORMAT_PARAMS: [&str; 2] = ["_format", "_pretty"];

/// One input, run as the fuzz target runs it: panics where the server would misbehave.
pub fn run(data: &[u8]) {
    let Some((kind, criteria)) = common::query_input(data) else {
        return;
    };
    let criteria: Vec<(String, String)> = criteria
        .into_iter()
        .filter(|(k, _)| !FORMAT_PARAMS.contains(&k.as_str()))
        .collect();
    let _ = conditional::parse(kind, &criteria);
}
