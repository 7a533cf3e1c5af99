//! GKS 2.0 (docs/gks2.md): the typed FDM API ([`model`]), the request digest ([`auth`]), a client
//! ([`client`]) and, for development and tests, an FDM emulator fdmd can serve itself
//! ([`emulator`] over [`fdm`], with the GraphQL subset of [`graphql`]; ADR 0005). The emulator
//! is **not certified**: its answers say so.

pub mod auth;
pub mod backend;
pub mod client;
pub mod emulator;
pub mod fdm;
pub mod graphql;
pub mod map;
pub mod model;
