//! Fuzzes `carnet::fuzzing::consent_facts` (what it runs is documented there, and replayed on the
//! committed corpus by `cargo test`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| carnet::fuzzing::consent_facts::run(data));
