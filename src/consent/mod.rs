//! The consent engine: the only place that says yes or no.

pub mod facts;
pub mod matrix;
pub mod model;
