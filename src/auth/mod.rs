//! Identity and authorization, pure logic: SMART App Launch v2 scopes and the derivation of the
//! one principal a request acts as.
//!
//! Nothing here verifies signatures or talks to the network: callers hand in claims that an
//! issuer already vouched for, plus the client registry from the configuration, and get back who
//! is asking and what the token may do. Keeping this free of I/O lets every rule of the identity
//! issue be unit-tested on its own.

pub mod principal;
pub mod scopes;
