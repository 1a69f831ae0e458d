//! Facts extracted from a resource when it is written.

use super::model::Labels;
use serde_json::Value;

/// The TRE_A07 visibility labels in `meta.security` and, for a DocumentReference, in
/// `securityLabel[].coding[]`.
pub fn labels_of(resource: &Value) -> Labels {
    let meta = resource["meta"]["security"]
        .as_array()
        .into_iter()
        .flatten();
    let document = resource["securityLabel"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|label| label["coding"].as_array().into_iter().flatten());
    meta.chain(document)
        .filter(|coding| coding["system"] == Labels::SYSTEM)
        .filter_map(|coding| {
            Labels::ALL
                .iter()
                .find(|(_, code)| coding["code"] == *code)
                .map(|(label, _)| *label)
        })
        .fold(Labels::NONE, Labels::union)
}
