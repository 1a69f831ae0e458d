//! A FHIRPath Patch body (a `Parameters` resource), applied to a stored Patient (or to
//! `{"resource": …, "patch": …}`), then validated like any write.

use crate::fhir::{patch, validate};

use super::common;

/// One input, run as the fuzz target runs it: panics where the server would misbehave.
pub fn run(data: &[u8]) {
    let Some((mut resource, kind, parameters)) = common::patch_input(data) else {
        return;
    };
    let outcome = patch::apply_fhirpath_patch(
        &mut resource,
        &parameters,
        &validate::is_repeating,
        common::MAX_PATCHED_BYTES,
    );
    if outcome.is_ok() {
        common::intake(&resource, kind);
    }
}
