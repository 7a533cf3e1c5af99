//! FDM v1 as fdmd's signer (docs/fdm-v1-backend.md): fdmd is the cash register towards a
//! certified v1 FDM box on a serial port or over TCP (ser2net). The register's side of the wire
//! format ([`codec`]), the link with its ACK/NAK exchange and timeouts ([`link`]), and the
//! backend that reserves, sends and resends each event's `H` request ([`backend`]). The box's
//! side of the same protocol is the `fdm-v1` plugin (plugins/fdm-v1).

pub mod backend;
pub mod codec;
pub mod link;
