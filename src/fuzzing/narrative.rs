//! A narrative `text.div` (XHTML) checked against txt-1, alone and inside a body (Organization: no profile of its own).

use crate::fhir::{incoming, narrative};

/// One input, run as the fuzz target runs it: panics where the server would misbehave.
pub fn run(data: &[u8]) {
    let Ok(div) = std::str::from_utf8(data) else {
        return;
    };
    let _ = narrative::problem(div);
    let body = serde_json::json!({
        "resourceType": "Organization",
        "text": {"status": "generated", "div": div},
    });
    let _ = incoming::parse(body.to_string().as_bytes(), "Organization");
}
