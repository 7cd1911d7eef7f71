//! The only module allowed to contain `unsafe` code and raw syscalls (STYLE.md rule 4).
//!
//! Every `unsafe` block here carries a `// SAFETY:` line. Nothing lives here yet: the schema layer
//! is pure, and the executor's syscalls arrive with the pod runtime.
#![allow(unsafe_code)]
