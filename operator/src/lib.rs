//! The Gatehouse operator and CLI (`gatehouse`).

pub mod cli;
pub mod crd;
pub mod diff;
pub mod diff_cmd;
pub mod error;
pub mod http;
pub mod input;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod render;
pub mod render_cmd;
pub mod schema_check;
pub mod webhook;
