//! irisctl: deploy the Iris model-serving stack (API, web UI, Prometheus, Grafana) on a Docker host.
//!
//! The whole deployment is one plain value, [`stack::Stack`], computed without I/O from
//! [`settings::Settings`]; the engine adapter applies it, the compose renderer writes it out.

pub mod assets;
pub mod cli;
pub mod commands;
pub mod compose;
pub mod engine;
pub mod error;
pub mod grafana;
pub mod output;
pub mod probe;
pub mod settings;
#[cfg(test)]
mod snapshot;
pub mod stack;
pub mod swarm;
