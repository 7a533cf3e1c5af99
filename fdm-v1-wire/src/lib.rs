//! The FDM v1 wire format (reference `gks-fdm.md` §1.2–§1.6), for both sides of the line: the
//! register's (fdmd's `fdm-v1` signer backend, which sends requests and reads responses) and the
//! box's (the `fdm-v1` plugin, which reads requests and writes responses). Pure functions and
//! plain data, no I/O.
//!
//! - [`frame`]: `STX message ETX LRC`, ACK/NAK, and a stream decoder;
//! - [`fields`]: the request header and the fixed-width text and amount fields;
//! - [`response`]: the common prefix and the `S`, `I`, `P` and `H` responses, written and read.

pub mod fields;
pub mod frame;
pub mod response;

/// Length of an `H` request (§1.4), header included.
pub const H_LENGTH: usize = 162;
