//! idpbuilder-push: push a local Docker or Podman image into an idpbuilder
//! cluster's Gitea registry, or any OCI registry, in one command.
//!
//! `app` runs the program; `target` consults the cluster and settles where the
//! push goes; `push` orchestrates the outside worlds, each behind its own
//! module: `cluster` (kube), `daemon` (the local image), `registry` (the OCI
//! registry).
//! The pure parts (`reference`, `manifest`, `export`, `compress`, `cache`,
//! `config`) are separate so they are tested without services.

pub mod app;
pub mod cache;
pub mod cli;
pub mod cluster;
pub mod completions;
pub mod compress;
pub mod config;
pub mod daemon;
pub mod error;
pub mod export;
pub mod help;
pub mod legacy;
pub mod manifest;
pub mod output;
pub mod push;
pub mod redact;
pub mod reference;
pub mod registry;
pub mod target;
pub mod version;
