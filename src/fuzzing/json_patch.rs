//! An RFC 6902 JSON Patch body (`application/json-patch+json`), applied to a stored Patient
//! (or to `{"resource": …, "patch": …}`), then validated like any write.

use crate::fhir::{json, patch};

use super::common;

/// Bound of the patched document's size (the server uses `limits.body_max_bytes`).
const MAX_BYTES: usize = 1 << 20;

/// One input, run as the fuzz target runs it: panics where the server would misbehave.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The server reads the patch with serde_json, the stored resource losslessly.
    let Ok(input) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    let (resource, operations) = common::target_and_patch(input);
    let Ok(mut resource) = json::parse_lossless(&resource.to_string()) else {
        return;
    };
    let kind = common::kind(resource["resourceType"].as_str().unwrap_or_default());
    if patch::apply_json_patch(&mut resource, &operations, MAX_BYTES).is_ok() {
        common::intake(&resource, kind);
    }
}
