//! Just enough MQTT 3.1.1 (protocol level 4) for the gate: framing with size bounds, and the few
//! fields the gate decides on (CONNECT, the head of PUBLISH, SUBSCRIBE filters). Every length is
//! checked against what is left of the packet before anything is read or allocated.

use tokio::io::{AsyncRead, AsyncReadExt};

/// CONNECT packet type.
pub const CONNECT: u8 = 1;
/// PUBLISH packet type.
pub const PUBLISH: u8 = 3;
/// SUBSCRIBE packet type.
pub const SUBSCRIBE: u8 = 8;

/// CONNACK return codes (MQTT 3.1.1 §3.2.2.3).
pub mod connack {
    /// Connection accepted.
    pub const ACCEPTED: u8 = 0;
    /// The server does not support the requested protocol level.
    pub const UNACCEPTABLE_PROTOCOL: u8 = 1;
    /// The client identifier is not allowed.
    pub const IDENTIFIER_REJECTED: u8 = 2;
    /// The service is unavailable.
    pub const SERVER_UNAVAILABLE: u8 = 3;
    /// Bad user name or password.
    pub const BAD_CREDENTIALS: u8 = 4;
    /// Not authorised.
    pub const NOT_AUTHORIZED: u8 = 5;
}

/// Why a packet could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    /// The connection failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes are not a valid MQTT 3.1.1 packet.
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// A packet or field is over its bound.
    #[error("{what} of {size} bytes is over the limit of {max} bytes")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A CONNECT for another protocol or level (MQTT 5, MQTT 3.1).
    #[error("protocol {name:?} level {level} is not MQTT 3.1.1")]
    Unsupported {
        /// Protocol name.
        name: String,
        /// Protocol level.
        level: u8,
    },
}

/// The fixed header: first byte and remaining length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    /// Packet type (high nibble) and flags (low nibble).
    pub byte1: u8,
    /// Bytes after the fixed header.
    pub remaining: usize,
}

impl FixedHeader {
    /// The packet type.
    pub fn kind(self) -> u8 {
        self.byte1 >> 4
    }

    /// The flags nibble.
    pub fn flags(self) -> u8 {
        self.byte1 & 0x0f
    }

    /// The header as sent on the wire.
    pub fn encode(self, out: &mut Vec<u8>) {
        out.push(self.byte1);
        encode_remaining(self.remaining, out);
    }
}

/// Largest remaining length MQTT can express.
pub const MAX_REMAINING: usize = 268_435_455;

/// Appends the variable-length encoding of `len` (at most [`MAX_REMAINING`]).
pub fn encode_remaining(mut len: usize, out: &mut Vec<u8>) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
}

/// Reads a fixed header; `None` when the stream ends cleanly before a packet starts.
pub async fn read_header<R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<Option<FixedHeader>, PacketError> {
    let byte1 = match r.read_u8().await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut remaining = 0usize;
    for i in 0..4 {
        let byte = r.read_u8().await?;
        remaining |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some(FixedHeader { byte1, remaining }));
        }
    }
    Err(PacketError::Malformed(
        "remaining length longer than 4 bytes",
    ))
}

fn check_size(header: FixedHeader, max: usize) -> Result<(), PacketError> {
    if header.remaining > max {
        return Err(PacketError::TooLarge {
            what: "packet",
            size: header.remaining,
            max,
        });
    }
    Ok(())
}

/// Reads the `header.remaining` bytes after a fixed header, refusing more than `max`.
pub async fn read_body<R: AsyncRead + Unpin>(
    r: &mut R,
    header: FixedHeader,
    max: usize,
) -> Result<Vec<u8>, PacketError> {
    check_size(header, max)?;
    let mut body = vec![0u8; header.remaining];
    r.read_exact(&mut body).await?;
    Ok(body)
}

/// A frame as received: header and body, to forward unchanged.
pub fn frame(header: FixedHeader, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    header.encode(&mut out);
    out.extend_from_slice(body);
    out
}

/// A CONNACK with `code`.
pub fn connack(code: u8) -> [u8; 4] {
    [0x20, 0x02, 0x00, code]
}

/// A PUBACK for `packet_id`.
pub fn puback(packet_id: u16) -> [u8; 4] {
    let [hi, lo] = packet_id.to_be_bytes();
    [0x40, 0x02, hi, lo]
}

/// A will message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Topic.
    pub topic: String,
    /// Payload.
    pub message: Vec<u8>,
    /// QoS 0–2.
    pub qos: u8,
    /// Retained.
    pub retain: bool,
}

/// The fields of a CONNECT (MQTT 3.1.1).
#[derive(Clone, PartialEq, Eq)]
pub struct Connect {
    /// Keep-alive in seconds.
    pub keep_alive: u16,
    /// Clean session.
    pub clean_session: bool,
    /// Client identifier.
    pub client_id: String,
    /// Will, if any.
    pub will: Option<Will>,
    /// User name, if any.
    pub username: Option<String>,
    /// Password, if any (binary in MQTT).
    pub password: Option<Vec<u8>>,
}

impl std::fmt::Debug for Connect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connect")
            .field("keep_alive", &self.keep_alive)
            .field("clean_session", &self.clean_session)
            .field("client_id", &self.client_id)
            .field("will", &self.will.as_ref().map(|w| &w.topic))
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Reads fields of a packet body, each length checked against what is left.
struct Fields<'a> {
    buf: &'a [u8],
}

impl<'a> Fields<'a> {
    fn u8(&mut self) -> Result<u8, PacketError> {
        let (&b, rest) = self
            .buf
            .split_first()
            .ok_or(PacketError::Malformed("packet ends early"))?;
        self.buf = rest;
        Ok(b)
    }

    fn u16(&mut self) -> Result<u16, PacketError> {
        Ok(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PacketError> {
        if n > self.buf.len() {
            return Err(PacketError::Malformed("field longer than the packet"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn binary(&mut self) -> Result<&'a [u8], PacketError> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }

    fn string(&mut self) -> Result<String, PacketError> {
        let bytes = self.binary()?;
        let s = std::str::from_utf8(bytes)
            .map_err(|_| PacketError::Malformed("string is not UTF-8"))?;
        if s.contains('\0') {
            return Err(PacketError::Malformed("string contains U+0000"));
        }
        Ok(s.to_owned())
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Parses a CONNECT body. A CONNECT for another protocol level is [`PacketError::Unsupported`].
pub fn parse_connect(body: &[u8]) -> Result<Connect, PacketError> {
    let mut f = Fields { buf: body };
    let name = f.string()?;
    let level = f.u8()?;
    if name != "MQTT" || level != 4 {
        return Err(PacketError::Unsupported { name, level });
    }
    let flags = f.u8()?;
    if flags & 0x01 != 0 {
        return Err(PacketError::Malformed("reserved CONNECT flag is set"));
    }
    let will_flag = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0x03;
    let will_retain = flags & 0x20 != 0;
    let password_flag = flags & 0x40 != 0;
    let username_flag = flags & 0x80 != 0;
    if will_qos == 3 || (!will_flag && (will_qos != 0 || will_retain)) {
        return Err(PacketError::Malformed("bad will flags"));
    }
    if password_flag && !username_flag {
        return Err(PacketError::Malformed("password without user name"));
    }
    let keep_alive = f.u16()?;
    let client_id = f.string()?;
    let will = if will_flag {
        Some(Will {
            topic: f.string()?,
            message: f.binary()?.to_vec(),
            qos: will_qos,
            retain: will_retain,
        })
    } else {
        None
    };
    let username = if username_flag {
        Some(f.string()?)
    } else {
        None
    };
    let password = if password_flag {
        Some(f.binary()?.to_vec())
    } else {
        None
    };
    if !f.is_empty() {
        return Err(PacketError::Malformed("bytes after the CONNECT payload"));
    }
    Ok(Connect {
        keep_alive,
        clean_session: flags & 0x02 != 0,
        client_id,
        will,
        username,
        password,
    })
}

fn put_binary(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), PacketError> {
    let n = u16::try_from(bytes.len()).map_err(|_| PacketError::TooLarge {
        what: "field",
        size: bytes.len(),
        max: usize::from(u16::MAX),
    })?;
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// Encodes a CONNECT (MQTT 3.1.1) as a whole frame.
pub fn encode_connect(c: &Connect) -> Result<Vec<u8>, PacketError> {
    let mut body = Vec::with_capacity(64);
    put_binary(&mut body, b"MQTT")?;
    body.push(4);
    let mut flags = 0u8;
    if c.clean_session {
        flags |= 0x02;
    }
    if let Some(w) = &c.will {
        flags |= 0x04 | ((w.qos & 0x03) << 3);
        if w.retain {
            flags |= 0x20;
        }
    }
    if c.password.is_some() {
        flags |= 0x40;
    }
    if c.username.is_some() {
        flags |= 0x80;
    }
    body.push(flags);
    body.extend_from_slice(&c.keep_alive.to_be_bytes());
    put_binary(&mut body, c.client_id.as_bytes())?;
    if let Some(w) = &c.will {
        put_binary(&mut body, w.topic.as_bytes())?;
        put_binary(&mut body, &w.message)?;
    }
    if let Some(u) = &c.username {
        put_binary(&mut body, u.as_bytes())?;
    }
    if let Some(p) = &c.password {
        put_binary(&mut body, p)?;
    }
    Ok(frame(
        FixedHeader {
            byte1: CONNECT << 4,
            remaining: body.len(),
        },
        &body,
    ))
}

/// The head of a PUBLISH: everything before the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishHead {
    /// Topic name.
    pub topic: String,
    /// QoS 0–2.
    pub qos: u8,
    /// Packet identifier (QoS 1 and 2).
    pub packet_id: Option<u16>,
    /// Bytes of payload that follow.
    pub payload_len: usize,
}

/// Reads the head of a PUBLISH whose fixed header is `header`, leaving the payload unread.
/// Topics longer than `max_topic` bytes are refused before they are read.
pub async fn read_publish_head<R: AsyncRead + Unpin>(
    r: &mut R,
    header: FixedHeader,
    max_topic: usize,
) -> Result<PublishHead, PacketError> {
    let qos = (header.flags() >> 1) & 0x03;
    if qos == 3 {
        return Err(PacketError::Malformed("PUBLISH with QoS 3"));
    }
    if header.remaining < 2 {
        return Err(PacketError::Malformed("PUBLISH without a topic"));
    }
    let topic_len = usize::from(r.read_u16().await?);
    if topic_len > max_topic {
        return Err(PacketError::TooLarge {
            what: "topic",
            size: topic_len,
            max: max_topic,
        });
    }
    let head_len = 2 + topic_len + if qos > 0 { 2 } else { 0 };
    if head_len > header.remaining {
        return Err(PacketError::Malformed(
            "PUBLISH topic longer than the packet",
        ));
    }
    let mut topic = vec![0u8; topic_len];
    r.read_exact(&mut topic).await?;
    let topic =
        String::from_utf8(topic).map_err(|_| PacketError::Malformed("topic is not UTF-8"))?;
    let packet_id = if qos > 0 {
        let id = r.read_u16().await?;
        if id == 0 {
            return Err(PacketError::Malformed("packet identifier 0"));
        }
        Some(id)
    } else {
        None
    };
    Ok(PublishHead {
        topic,
        qos,
        packet_id,
        payload_len: header.remaining - head_len,
    })
}

/// Encodes a PUBLISH up to its payload, with room reserved for the `head.payload_len` bytes
/// of payload the caller appends.
pub fn encode_publish_head(byte1: u8, head: &PublishHead) -> Vec<u8> {
    let head_len = 2 + head.topic.len() + if head.packet_id.is_some() { 2 } else { 0 };
    let mut out = Vec::with_capacity(5 + head_len + head.payload_len);
    FixedHeader {
        byte1,
        remaining: head_len + head.payload_len,
    }
    .encode(&mut out);
    // The topic was read with a u16 length (or built by fdmd), so its length fits.
    out.extend_from_slice(&(head.topic.len() as u16).to_be_bytes());
    out.extend_from_slice(head.topic.as_bytes());
    if let Some(id) = head.packet_id {
        out.extend_from_slice(&id.to_be_bytes());
    }
    out
}

/// Reads the body of a packet whose fixed header is `header` and returns the whole frame, as
/// received, in one buffer. Bodies over `max` bytes are refused before anything is allocated.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    header: FixedHeader,
    max: usize,
) -> Result<Vec<u8>, PacketError> {
    check_size(header, max)?;
    let mut out = Vec::with_capacity(5 + header.remaining);
    header.encode(&mut out);
    let start = out.len();
    out.resize(start + header.remaining, 0);
    r.read_exact(&mut out[start..]).await?;
    Ok(out)
}

/// The packet id that starts a SUBSCRIBE, UNSUBSCRIBE or acknowledgement body.
pub fn leading_packet_id(body: &[u8]) -> Result<u16, PacketError> {
    match body {
        [hi, lo, ..] => Ok(u16::from_be_bytes([*hi, *lo])),
        _ => Err(PacketError::Malformed("packet without a packet identifier")),
    }
}

/// The packet id of a PUBACK, PUBREC, PUBREL or PUBCOMP body (exactly two bytes).
pub fn ack_packet_id(header: FixedHeader, body: &[u8]) -> Result<u16, PacketError> {
    if header.remaining != 2 || body.len() != 2 {
        return Err(PacketError::Malformed(
            "acknowledgement is not 2 bytes long",
        ));
    }
    leading_packet_id(body)
}

/// The packet id of a PUBLISH body at QoS 1 or 2 (`None` at QoS 0 or when malformed).
pub fn publish_packet_id(header: FixedHeader, body: &[u8]) -> Option<u16> {
    if (header.flags() >> 1) & 0x03 == 0 {
        return None;
    }
    let topic_len = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let at = 2 + topic_len;
    Some(u16::from_be_bytes([*body.get(at)?, *body.get(at + 1)?]))
}

/// Appends a PUBLISH (never retained, not a duplicate) of `payload` on `topic`: QoS 1 with
/// `packet_id`, QoS 0 without. `topic` is one of fdmd's (far shorter than 64 KiB).
pub fn encode_publish(out: &mut Vec<u8>, topic: &str, packet_id: Option<u16>, payload: &[u8]) {
    let head_len = 2 + topic.len() + if packet_id.is_some() { 2 } else { 0 };
    FixedHeader {
        byte1: (PUBLISH << 4) | if packet_id.is_some() { 0x02 } else { 0 },
        remaining: head_len + payload.len(),
    }
    .encode(out);
    out.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    out.extend_from_slice(topic.as_bytes());
    if let Some(id) = packet_id {
        out.extend_from_slice(&id.to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// A SUBACK for `packet_id` granting `granted` (one QoS per filter, in order).
pub fn suback(packet_id: u16, granted: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(6 + granted.len());
    FixedHeader {
        byte1: 0x90,
        remaining: 2 + granted.len(),
    }
    .encode(&mut out);
    out.extend_from_slice(&packet_id.to_be_bytes());
    out.extend_from_slice(granted);
    out
}

/// An UNSUBACK for `packet_id`.
pub fn unsuback(packet_id: u16) -> [u8; 4] {
    let [hi, lo] = packet_id.to_be_bytes();
    [0xb0, 0x02, hi, lo]
}

/// The topic filters of an UNSUBSCRIBE body.
pub fn parse_unsubscribe(header: FixedHeader, body: &[u8]) -> Result<Vec<String>, PacketError> {
    if header.flags() != 0b0010 {
        return Err(PacketError::Malformed("UNSUBSCRIBE flags must be 0010"));
    }
    let mut f = Fields { buf: body };
    let _packet_id = f.u16()?;
    let mut filters = Vec::new();
    while !f.is_empty() {
        filters.push(f.string()?);
    }
    if filters.is_empty() {
        return Err(PacketError::Malformed("UNSUBSCRIBE without a filter"));
    }
    Ok(filters)
}

/// The topic filters of a SUBSCRIBE body, with their requested QoS.
pub fn parse_subscribe(header: FixedHeader, body: &[u8]) -> Result<Vec<(String, u8)>, PacketError> {
    if header.flags() != 0b0010 {
        return Err(PacketError::Malformed("SUBSCRIBE flags must be 0010"));
    }
    let mut f = Fields { buf: body };
    let _packet_id = f.u16()?;
    let mut filters = Vec::new();
    while !f.is_empty() {
        let filter = f.string()?;
        let qos = f.u8()?;
        if qos > 2 {
            return Err(PacketError::Malformed("SUBSCRIBE with QoS above 2"));
        }
        filters.push((filter, qos));
    }
    if filters.is_empty() {
        return Err(PacketError::Malformed("SUBSCRIBE without a filter"));
    }
    Ok(filters)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect_bytes() -> Vec<u8> {
        encode_connect(&Connect {
            keep_alive: 30,
            clean_session: true,
            client_id: "pos-1".into(),
            will: Some(Will {
                topic: "t/w".into(),
                message: b"bye".to_vec(),
                qos: 1,
                retain: true,
            }),
            username: Some("register:till-1".into()),
            password: Some(b"secret".to_vec()),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn connect_round_trips() {
        let bytes = connect_bytes();
        let mut r = &bytes[..];
        let h = read_header(&mut r).await.unwrap().unwrap();
        assert_eq!(h.kind(), CONNECT);
        let body = read_body(&mut r, h, 1024).await.unwrap();
        let c = parse_connect(&body).unwrap();
        assert_eq!(c.client_id, "pos-1");
        assert_eq!(c.username.as_deref(), Some("register:till-1"));
        assert_eq!(c.password.as_deref(), Some(&b"secret"[..]));
        assert_eq!(
            c.will.as_ref().map(|w| (w.topic.as_str(), w.qos, w.retain)),
            Some(("t/w", 1, true))
        );
        assert_eq!(encode_connect(&c).unwrap(), bytes);
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn refuses_other_protocols_and_bad_flags() {
        // MQTT 5 CONNECT: name "MQTT", level 5.
        let v5 = [0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 60, 0];
        assert!(matches!(
            parse_connect(&v5),
            Err(PacketError::Unsupported { level: 5, .. })
        ));
        let v31 = [0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 2, 0, 60];
        assert!(matches!(
            parse_connect(&v31),
            Err(PacketError::Unsupported { level: 3, .. })
        ));
        let reserved = [0, 4, b'M', b'Q', b'T', b'T', 4, 3, 0, 60, 0, 0];
        assert!(matches!(
            parse_connect(&reserved),
            Err(PacketError::Malformed(_))
        ));
        let password_only = [
            0, 4, b'M', b'Q', b'T', b'T', 4, 0x42, 0, 60, 0, 0, 0, 1, b'x',
        ];
        assert!(matches!(
            parse_connect(&password_only),
            Err(PacketError::Malformed(_))
        ));
        // A client id length pointing past the end.
        let short = [0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 9, b'a'];
        assert!(matches!(
            parse_connect(&short),
            Err(PacketError::Malformed(_))
        ));
        let trailing = [0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 0, 7];
        assert!(matches!(
            parse_connect(&trailing),
            Err(PacketError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn headers_are_bounded() {
        let mut r = &[0x30u8, 0xff, 0xff, 0xff, 0xff, 0x01][..];
        assert!(matches!(
            read_header(&mut r).await,
            Err(PacketError::Malformed(_))
        ));
        let mut r = &[0x30u8, 0xff, 0xff, 0xff, 0x7f][..];
        let h = read_header(&mut r).await.unwrap().unwrap();
        assert_eq!(h.remaining, MAX_REMAINING);
        assert!(matches!(
            read_body(&mut r, h, 1024).await,
            Err(PacketError::TooLarge { .. })
        ));
        let mut empty = &[][..];
        assert!(read_header(&mut empty).await.unwrap().is_none());
        for n in [
            0,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            MAX_REMAINING,
        ] {
            let mut out = vec![0x30];
            encode_remaining(n, &mut out);
            let mut r = &out[..];
            assert_eq!(read_header(&mut r).await.unwrap().unwrap().remaining, n);
        }
    }

    #[tokio::test]
    async fn publish_head_and_reencoding() {
        let head = PublishHead {
            topic: "fdm/v1/registers/a/orders".into(),
            qos: 1,
            packet_id: Some(7),
            payload_len: 3,
        };
        let mut bytes = encode_publish_head(0x33, &head);
        bytes.extend_from_slice(b"abc");
        let mut r = &bytes[..];
        let h = read_header(&mut r).await.unwrap().unwrap();
        assert_eq!(h.kind(), PUBLISH);
        let got = read_publish_head(&mut r, h, 1024).await.unwrap();
        assert_eq!(got, head);
        assert_eq!(r, b"abc");
        let mut r = &bytes[..];
        let h = read_header(&mut r).await.unwrap().unwrap();
        assert!(matches!(
            read_publish_head(&mut r, h, 8).await,
            Err(PacketError::TooLarge { .. })
        ));
        // QoS 1 with packet id 0.
        let zero = encode_publish_head(
            0x32,
            &PublishHead {
                packet_id: Some(0),
                payload_len: 0,
                ..head.clone()
            },
        );
        let mut r = &zero[..];
        let h = read_header(&mut r).await.unwrap().unwrap();
        assert!(matches!(
            read_publish_head(&mut r, h, 1024).await,
            Err(PacketError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn frames_are_read_whole() {
        let bytes = [0x82u8, 5, 0, 1, 0, 1, b'#', 0x00];
        let mut r = &bytes[..];
        let h = read_header(&mut r).await.unwrap().unwrap();
        let f = read_frame(&mut r, h, 16).await.unwrap();
        assert_eq!(f, bytes[..7]);
        assert_eq!(r, [0x00]);
        let mut r = &bytes[..];
        let h = read_header(&mut r).await.unwrap().unwrap();
        assert!(matches!(
            read_frame(&mut r, h, 4).await,
            Err(PacketError::TooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn direct_publishes_and_acknowledgements() {
        let mut out = Vec::new();
        encode_publish(&mut out, "fdm/v1/registers/a/receipts", Some(101), b"{}");
        let mut r = &out[..];
        let h = read_header(&mut r).await.unwrap().unwrap();
        assert_eq!(h.byte1, 0x32);
        assert_eq!(publish_packet_id(h, r), Some(101));
        let head = read_publish_head(&mut r, h, 1024).await.unwrap();
        assert_eq!(head.topic, "fdm/v1/registers/a/receipts");
        assert_eq!((head.qos, head.packet_id, r), (1, Some(101), &b"{}"[..]));
        let mut out = Vec::new();
        encode_publish(&mut out, "t", None, b"x");
        assert_eq!(out, [0x30, 4, 0, 1, b't', b'x']);
        assert_eq!(
            publish_packet_id(
                FixedHeader {
                    byte1: 0x30,
                    remaining: 4
                },
                &out[2..]
            ),
            None
        );
        assert_eq!(suback(7, &[1, 0]), [0x90, 4, 0, 7, 1, 0]);
        assert_eq!(unsuback(7), [0xb0, 2, 0, 7]);
        let ack = FixedHeader {
            byte1: 0x40,
            remaining: 2,
        };
        assert_eq!(ack_packet_id(ack, &[1, 2]).unwrap(), 258);
        assert!(
            ack_packet_id(
                FixedHeader {
                    byte1: 0x40,
                    remaining: 3
                },
                &[1, 2, 3]
            )
            .is_err()
        );
        let unsub = FixedHeader {
            byte1: 0xa2,
            remaining: 0,
        };
        assert_eq!(
            parse_unsubscribe(unsub, &[0, 9, 0, 3, b'a', b'/', b'b']).unwrap(),
            ["a/b"]
        );
        assert!(parse_unsubscribe(unsub, &[0, 9]).is_err());
        assert!(
            parse_unsubscribe(
                FixedHeader {
                    byte1: 0xa0,
                    remaining: 0
                },
                &[0, 9, 0, 1, b'a']
            )
            .is_err()
        );
        assert!(leading_packet_id(&[1]).is_err());
    }

    #[test]
    fn subscribe_filters() {
        let h = FixedHeader {
            byte1: 0x82,
            remaining: 0,
        };
        let body = [0, 1, 0, 3, b'a', b'/', b'b', 1, 0, 1, b'#', 0];
        assert_eq!(
            parse_subscribe(h, &body).unwrap(),
            vec![("a/b".to_owned(), 1), ("#".to_owned(), 0)]
        );
        assert!(
            parse_subscribe(
                FixedHeader {
                    byte1: 0x80,
                    remaining: 0
                },
                &body
            )
            .is_err()
        );
        assert!(parse_subscribe(h, &[0, 1]).is_err());
        assert!(parse_subscribe(h, &[0, 1, 0, 1, b'a', 3]).is_err());
    }
}
