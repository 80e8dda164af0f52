//! Versioned policies: the aggregate, its field rules and version diffs.
//!
//! Layout:
//! - [`aggregate`]: the `policy` aggregate (commands, state, handle/apply).
//! - [`validation`]: field formats and sizes.
//! - [`diff`]: rule-by-rule differences between two versions.
//! - [`runs`]: the run lifecycle (Prepare, complete/fail, cancel/resume, Promote).
pub mod aggregate;
pub mod diff;
pub mod runs;
pub mod validation;

pub use aggregate::{Policy, PolicyCommand, PolicyError};
