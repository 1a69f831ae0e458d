//! What the fuzz targets run, one module per parser of client input: each cargo-fuzz target
//! (`fuzz/fuzz_targets/<name>.rs`) is one line calling its module's `run`. Kept in the library
//! so that `cargo test` replays every committed input (`fuzz/corpus/<name>/`) without
//! cargo-fuzz's instrumented build of the whole dependency tree; `fuzz/run` fuzzes them.

mod common;
pub mod conditional_criteria;
pub mod consent_facts;
pub mod fhirpath_patch;
pub mod json_patch;
pub mod narrative;
pub mod resource_intake;
pub mod search_params;

/// What a target runs on one input: it panics where the server would misbehave.
pub type Run = fn(&[u8]);

/// Every target: the name of its cargo-fuzz binary and corpus folder, and what it runs.
pub const TARGETS: [(&str, Run); 7] = [
    ("conditional_criteria", conditional_criteria::run),
    ("consent_facts", consent_facts::run),
    ("fhirpath_patch", fhirpath_patch::run),
    ("json_patch", json_patch::run),
    ("narrative", narrative::run),
    ("resource_intake", resource_intake::run),
    ("search_params", search_params::run),
];

#[cfg(test)]
mod tests {
    use super::TARGETS;
    use std::collections::BTreeSet;
    use std::path::Path;

    fn fuzz_dir() -> &'static Path {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz"))
    }

    fn names_in(dir: &Path) -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    fn target_names() -> BTreeSet<String> {
        TARGETS.iter().map(|(name, _)| name.to_string()).collect()
    }

    #[test]
    fn every_committed_fuzz_input_runs_without_a_panic() {
        for (name, run) in TARGETS {
            let dir = fuzz_dir().join("corpus").join(name);
            let files = names_in(&dir);
            assert!(!files.is_empty(), "fuzz/corpus/{name} holds no input");
            for file in files {
                let data = std::fs::read(dir.join(&file)).unwrap();
                if std::panic::catch_unwind(|| run(&data)).is_err() {
                    panic!("fuzz/corpus/{name}/{file} makes the {name} target panic");
                }
            }
        }
    }

    #[test]
    fn every_fuzz_target_runs_one_of_these_and_has_a_corpus() {
        let names = target_names();
        assert_eq!(names_in(&fuzz_dir().join("corpus")), names);
        let manifest: toml::Table =
            toml::from_str(&std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap())
                .unwrap();
        let binaries = manifest["bin"].as_array().unwrap();
        let mut paths = BTreeSet::new();
        for binary in binaries {
            let name = binary["name"].as_str().unwrap();
            let path = binary["path"].as_str().unwrap();
            let text = std::fs::read_to_string(fuzz_dir().join(path)).unwrap();
            let call = format!("fuzz_target!(|data: &[u8]| carnet::fuzzing::{name}::run(data));");
            let code: Vec<&str> = text.lines().filter(|l| !l.starts_with("//")).collect();
            assert!(
                code.iter().any(|l| l.ends_with(&call)),
                "fuzz/{path}: {call}"
            );
            assert!(
                names.contains(name),
                "fuzz/{path}: {name} is not in TARGETS"
            );
            paths.insert(path.to_owned());
        }
        assert_eq!(binaries.len(), names.len());
        let files: BTreeSet<String> = names_in(&fuzz_dir().join("fuzz_targets"))
            .into_iter()
            .map(|file| format!("fuzz_targets/{file}"))
            .collect();
        assert_eq!(files, paths, "every file in fuzz/fuzz_targets is a target");
    }
}
