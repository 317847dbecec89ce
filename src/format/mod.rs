//! Leaf text-format helpers shared by the exporters, the device model, the backends and the CLI: JSON
//! writing, CSV reading, and the bounded, never-panicking JSON reader (no serializer dependency). They
//! import nothing of the crate.

pub mod csv;
pub mod json;
pub mod jsonparse;
