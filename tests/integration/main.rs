//! Integration tests: the built binary against real services (a private
//! dockerd, a Podman service, three registries, a token issuer). One test
//! binary so the services and the token issuer are set up once.

mod support;

mod auth;
mod big;
mod cache;
mod cluster;
mod compression;
mod errors;
mod faults;
mod krew;
mod layouts;
mod manifests;
mod output;
mod podman;
mod push;
mod real_cluster;
mod secrets;
