//! A FHIRPath Patch body (a `Parameters` resource), applied to a stored Patient (or to
//! `{"resource": …, "patch": …}`), then validated like any write.

use crate::fhir::{json, patch, validate};

use super::common;

/// Bound of the patched document's size (the server uses `limits.body_max_bytes`).
const MAX_BYTES: usize = 1 << 20;

/// One input, run as the fuzz target runs it: panics where the server would misbehave.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(input) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    let (resource, parameters) = common::target_and_patch(input);
    let Ok(mut resource) = json::parse_lossless(&resource.to_string()) else {
        return;
    };
    let kind = common::kind(resource["resourceType"].as_str().unwrap_or_default());
    let outcome = patch::apply_fhirpath_patch(
        &mut resource,
        &parameters,
        &validate::is_repeating,
        MAX_BYTES,
    );
    if outcome.is_ok() {
        common::intake(&resource, kind);
    }
}
