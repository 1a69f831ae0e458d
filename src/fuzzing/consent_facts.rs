//! What a written resource tells the consent engine (`consent::facts::access_rows`): a
//! Consent's provisions, a Patient's record, a RelatedPerson's ward, a document's authors,
//! classes and Binaries, from any JSON a client sends (checked like a body first when it is
//! one). Never a panic; a refusal always names an element.

use crate::consent::facts;
use crate::fhir::incoming;

const BASE: &str = "http://127.0.0.1:8080/fhir";

/// One input, run as the fuzz target runs it: panics where the server would misbehave.
pub fn run(data: &[u8]) {
    let Ok(document) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let name = document["resourceType"]
        .as_str()
        .unwrap_or("Consent")
        .to_owned();
    // Raw, as the extraction must survive anything, and after intake, as the server runs it.
    check(&name, &document);
    if let Ok(accepted) = incoming::parse(data, &name) {
        check(&name, &accepted.document);
    }
}

fn check(name: &str, document: &serde_json::Value) {
    let _ = facts::labels_of(document);
    if let Err(why) = facts::access_rows(name, "x", document, BASE) {
        assert!(why.contains(": "), "a refusal names its element: {why}");
    }
}
