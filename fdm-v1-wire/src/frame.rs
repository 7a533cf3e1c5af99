//! RS-232 framing (reference §1.2): `STX message ETX LRC`, where the LRC is the two's complement
//! of the sum of the message bytes (not STX, not ETX). The receiver answers a frame with one
//! byte, ACK or NAK.

/// Start of text.
pub const STX: u8 = 0x02;
/// End of text.
pub const ETX: u8 = 0x03;
/// Positive acknowledgement.
pub const ACK: u8 = 0x06;
/// Negative acknowledgement: send the frame again.
pub const NAK: u8 = 0x15;

/// The LRC of a message.
pub fn lrc(message: &[u8]) -> u8 {
    let sum = message.iter().fold(0u8, |acc, b| acc.wrapping_add(*b));
    (sum ^ 0xFF).wrapping_add(1)
}

/// A whole frame for `message`.
pub fn encode(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 3);
    out.push(STX);
    out.extend_from_slice(message);
    out.push(ETX);
    out.push(lrc(message));
    out
}

/// What the decoder found in the byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A frame with a correct LRC: the message between STX and ETX.
    Frame(Vec<u8>),
    /// A frame with a wrong LRC, or too long: answer NAK.
    Bad,
    /// A lone ACK from the other side.
    Ack,
    /// A lone NAK from the other side: send the last frame again.
    Nak,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum State {
    #[default]
    Idle,
    Message,
    Lrc,
    /// Skipping an over-long message up to its ETX and LRC.
    Overflow,
    OverflowLrc,
}

/// Decodes a byte stream into frames, whatever the pieces it arrives in. Messages longer than
/// the decoder's bound are skipped to their ETX and reported as [`Event::Bad`]: memory is
/// bounded whatever the other side sends.
#[derive(Debug)]
pub struct Decoder {
    state: State,
    message: Vec<u8>,
    max_message: usize,
}

impl Decoder {
    /// A decoder for messages of at most `max_message` bytes between STX and ETX.
    pub fn new(max_message: usize) -> Decoder {
        Decoder {
            state: State::Idle,
            message: Vec::new(),
            max_message,
        }
    }

    /// Feeds bytes; returns what they completed.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        for &b in bytes {
            if let Some(event) = self.byte(b) {
                events.push(event);
            }
        }
        events
    }

    /// Feeds one byte; returns what it completed, if anything.
    pub fn byte(&mut self, b: u8) -> Option<Event> {
        match self.state {
            State::Idle => match b {
                STX => {
                    self.message.clear();
                    self.state = State::Message;
                }
                ACK => return Some(Event::Ack),
                NAK => return Some(Event::Nak),
                _ => {} // line noise between frames
            },
            State::Message => match b {
                ETX => self.state = State::Lrc,
                STX => self.message.clear(), // a new frame restarts
                _ if self.message.len() >= self.max_message => {
                    self.message.clear();
                    self.state = State::Overflow;
                }
                _ => self.message.push(b),
            },
            State::Lrc => {
                let message = std::mem::take(&mut self.message);
                self.state = State::Idle;
                return Some(if lrc(&message) == b {
                    Event::Frame(message)
                } else {
                    Event::Bad
                });
            }
            State::Overflow => {
                if b == ETX {
                    self.state = State::OverflowLrc;
                }
            }
            State::OverflowLrc => {
                self.state = State::Idle;
                return Some(Event::Bad);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lrc_matches_the_reference_check_value() {
        assert_eq!(lrc(b"S000"), 0x1D);
        assert_eq!(encode(b"S000"), [STX, b'S', b'0', b'0', b'0', ETX, 0x1D]);
    }

    #[test]
    fn frames_survive_any_split_and_bad_lrc_is_reported() {
        let mut bytes = encode(b"S010");
        bytes.insert(0, ACK);
        bytes.extend_from_slice(&[STX, b'S', b'0', b'2', b'0', ETX, 0x00]);
        bytes.push(NAK);
        for split in 0..bytes.len() {
            let mut d = Decoder::new(512);
            let mut events = d.feed(&bytes[..split]);
            events.extend(d.feed(&bytes[split..]));
            assert_eq!(
                events,
                [
                    Event::Ack,
                    Event::Frame(b"S010".to_vec()),
                    Event::Bad,
                    Event::Nak
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn over_long_messages_are_bounded_and_refused() {
        let mut d = Decoder::new(512);
        let mut bytes = vec![STX];
        bytes.extend(std::iter::repeat_n(b'A', 512 * 4));
        bytes.extend_from_slice(&[ETX, 0]);
        assert_eq!(d.feed(&bytes), [Event::Bad]);
        assert_eq!(d.feed(&encode(b"S000")), [Event::Frame(b"S000".to_vec())]);
    }
}
