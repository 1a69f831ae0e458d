//! FHIR knowledge: the resource registry, validation, the typed model, resources and bundles.

pub mod binary;
pub mod bundle;
pub mod capability;
pub mod conditional;
pub mod hl7_source;
pub mod incoming;
pub mod json;
mod model;
pub mod narrative;
pub mod outcome;
pub mod patch;
pub mod profiles;
pub mod registry;
pub mod resource;
pub mod subset;
pub mod validate;
pub mod writes;

#[cfg(test)]
mod definitions_gen;
