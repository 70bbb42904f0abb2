//! The Gatehouse operator and CLI (`gatehouse`).

pub mod cli;
pub mod crd;
pub mod input;
pub mod render;
pub mod render_cmd;
