//! App Container Images: spec/aci.md (appc-requirements.md §2.2, §4 rows 17–18, §5.2–5.3).
//!
//! - [`compress`]: compression detection by magic bytes and streaming (de)compression (A6).
//! - [`build`]: an image layout directory to a reproducible `.aci` archive (A1, A2, A5, I1).
//! - [`reader`]: the entry policy for reading archives (A1, A3, A4), shared by import and validate.

pub mod build;
pub mod compress;
mod error;
pub mod reader;
pub mod validate;

pub use error::AciError;
