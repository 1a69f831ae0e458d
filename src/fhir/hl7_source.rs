//! Where the official HL7 FHIR R4 files are, for the checks that compare the repository with
//! them (generated definitions and registry, compartments, the JSON schema of responses). The
//! repository does not hold them, so nothing the product builds or runs reads them.

use std::io::Write;
use std::path::PathBuf;

/// The folder of the official FHIR R4 definitions: `$CARNET_FHIR_R4_DIR`, else
/// `../shared/fhir-r4` next to the crate. When neither is there, says on stderr (past the test
/// harness's capture) that `check` is skipped and gives `None`. A folder named by the variable
/// must exist, so CI, which sets it, cannot skip a check.
pub fn dir(check: &str) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CARNET_FHIR_R4_DIR") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.is_dir(),
            "CARNET_FHIR_R4_DIR={} is not a folder",
            dir.display()
        );
        return Some(dir);
    }
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fhir-r4"));
    if dir.is_dir() {
        return Some(dir);
    }
    let _ = writeln!(
        std::io::stderr(),
        "skipped {check}: ../shared/fhir-r4 not found (set CARNET_FHIR_R4_DIR)"
    );
    None
}
