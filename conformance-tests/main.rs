//! Black-box conformance suite: the real `carnet` binary over HTTP, on SQLite by default and on
//! PostgreSQL when `CARNET_TEST_DATABASE_URL=postgres://…` is set; and an in-process harness
//! (`inprocess`) for large who-sees-what matrices. Which one to use: see `inprocess.rs`.

mod harness;
mod inprocess;
mod oidc_issuer;

mod auth;
mod binary;
mod cli;
mod concurrency;
mod conditional;
mod consent;
mod consent_limits;
mod consent_property;
mod crash;
mod crud;
mod data_door;
mod errors;
mod everything;
mod external_issuer;
mod hardening_auth;
mod hardening_http;
mod hardening_intake;
mod hardening_search;
mod history;
mod negotiation;
mod patch;
mod review10_session;
mod review11_session;
mod review12_fold;
mod review12_plans;
mod review2_consent;
mod review3_consent;
mod review4_consent;
mod review5_consent;
mod review6_consent;
mod review7_scale_out;
mod review8_directory;
mod review9_session;
mod review_consent;
mod scale_out;
mod search;
mod search_property;
