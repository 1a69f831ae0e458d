//! A request body sent to `[base]/[type]`: UTF-8, JSON, structure, typed model, profiles.

use crate::fhir::incoming;

use super::common;

/// One input, run as the fuzz target runs it: panics where the server would misbehave.
pub fn run(data: &[u8]) {
    // Aim at the type the body names (a client posts to its own type's URL).
    let named = serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v["resourceType"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let kind = common::kind(&named);
    if let Ok(accepted) = incoming::parse(data, kind.name) {
        common::assert_renders(&accepted.document);
    }
}
