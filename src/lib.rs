//! idpbuilder-push: push a local Docker or Podman image into an idpbuilder
//! cluster's Gitea registry, or any OCI registry, in one command.
//!
//! `app` runs the program; `push` orchestrates the outside worlds, each behind
//! its own module: `daemon` (the local image), `registry` (the OCI registry).
//! The pure parts (`reference`, `manifest`, `export`, `compress`, `cache`,
//! `config`) are separate so they are tested without services.

pub mod app;
pub mod cache;
pub mod cli;
pub mod compress;
pub mod config;
pub mod daemon;
pub mod error;
pub mod export;
pub mod manifest;
pub mod output;
pub mod push;
pub mod redact;
pub mod reference;
pub mod registry;
