//! Leaf text-format helpers shared by the exporters, the device model, the backends and the CLI: JSON and
//! CSV writing (no serializer dependency). They import nothing of the crate.

pub mod json;
