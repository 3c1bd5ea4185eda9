//! irisctl: deploy the Iris model-serving stack (API, web UI, Prometheus, Grafana) on a Docker host.
//!
//! The whole deployment is one plain value, [`stack::Stack`], computed without I/O from
//! [`settings::Settings`]; a [`backend::Backend`] (the single engine or Swarm) plans and applies
//! it, the [`render`] modules write it out for Compose and `docker stack deploy`.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod assets;
pub mod backend;
pub mod canary;
pub mod cli;
pub mod commands;
pub mod engine;
pub mod error;
pub mod grafana;
pub mod output;
pub mod poll;
pub mod probe;
pub mod render;
pub mod settings;
pub mod shadow;
#[cfg(test)]
mod snapshot;
pub mod stack;
