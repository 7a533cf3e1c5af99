//! RS-232 framing (reference §1.2), from the shared wire crate: the box's side reads frames
//! with a [`Decoder`] bounded to [`MAX_MESSAGE`] bytes.

pub use fdm_v1_wire::frame::{ACK, Decoder, Event, NAK, encode};

/// Longest message accepted between STX and ETX (an `H` request is 162 bytes).
pub const MAX_MESSAGE: usize = 512;

/// A decoder for one connection.
pub fn decoder() -> Decoder {
    Decoder::new(MAX_MESSAGE)
}
