//! An RFC 6902 JSON Patch body (`application/json-patch+json`), applied to a stored Patient
//! (or to `{"resource": …, "patch": …}`), then validated like any write.

use crate::fhir::patch;

use super::common;

/// One input, run as the fuzz target runs it: panics where the server would misbehave.
pub fn run(data: &[u8]) {
    let Some((mut resource, kind, operations)) = common::patch_input(data) else {
        return;
    };
    if patch::apply_json_patch(&mut resource, &operations, common::MAX_PATCHED_BYTES).is_ok() {
        common::intake(&resource, kind);
    }
}
