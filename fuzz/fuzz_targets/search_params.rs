//! Fuzzes `carnet::fuzzing::search_params` (what it runs is documented there, and replayed on the
//! committed corpus by `cargo test`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| carnet::fuzzing::search_params::run(data));
