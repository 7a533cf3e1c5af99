//! One pass over a record's bytes that checks they are canonical JSON and finds the envelope's
//! members and the body's, without building a `serde_json::Value` and encoding it again.
//!
//! It accepts only what it is sure of: an object in canonical form (no white space; keys without
//! escapes or 4-byte UTF-8, in strictly increasing byte order, which is UTF-16 order for them;
//! strings escaped exactly as the canonical encoder escapes; integers within ±(2^53 − 1) without
//! leading zeros or `-0`; nesting at most [`MAX_DEPTH`]). For such bytes, parsing them and
//! encoding the result canonically gives them back, so they pass check 3, and the members read
//! here are the parsed object's. Anything else (including signer declarations and member values
//! the checks read that hold escapes) returns `None`, and the caller takes the general path,
//! whose problems and messages are the ones reported.

/// Deeper nesting is left to the general path (serde_json's own limit is 128).
const MAX_DEPTH: usize = 64;
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A member: its key and its value's bytes.
pub(super) type Member<'a> = (&'a [u8], &'a [u8]);

/// The members of a canonical envelope and of its body (empty when the body is not an object).
pub(super) struct Scanned<'a> {
    top: Vec<Member<'a>>,
    body: Vec<Member<'a>>,
}

/// A member's value as the general path's `Value::as_u64` / `Value::as_str` would see it.
pub(super) enum Read<'a> {
    Missing,
    U64(u64),
    Str(&'a str),
    Other,
}

impl<'a> Scanned<'a> {
    pub(super) fn top(&self, name: &str) -> Read<'a> {
        read(&self.top, name)
    }

    pub(super) fn body(&self, name: &str) -> Read<'a> {
        read(&self.body, name)
    }

    /// The envelope's member names, in their (canonical) order.
    pub(super) fn top_names(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.top.iter().map(|(k, _)| *k)
    }

    /// The bytes of an envelope member's value.
    pub(super) fn top_raw(&self, name: &str) -> Option<&'a [u8]> {
        raw(&self.top, name)
    }

    /// The bytes of a body member's value.
    pub(super) fn body_raw(&self, name: &str) -> Option<&'a [u8]> {
        raw(&self.body, name)
    }
}

fn raw<'a>(members: &[Member<'a>], name: &str) -> Option<&'a [u8]> {
    members
        .iter()
        .find(|(k, _)| *k == name.as_bytes())
        .map(|(_, v)| *v)
}

fn read<'a>(members: &[Member<'a>], name: &str) -> Read<'a> {
    let Some((_, raw)) = members.iter().find(|(k, _)| *k == name.as_bytes()) else {
        return Read::Missing;
    };
    match raw.first() {
        Some(b'"') => std::str::from_utf8(&raw[1..raw.len() - 1]).map_or(Read::Other, Read::Str),
        Some(b'0'..=b'9') => std::str::from_utf8(raw)
            .ok()
            .and_then(|t| t.parse().ok())
            .map_or(Read::Other, Read::U64),
        _ => Read::Other,
    }
}

/// Members whose string values the checks read: with an escape in one, the general path decodes.
const READ_TOP: [&str; 5] = ["kind", "prev_hash", "signer_id", "time", "fdm_id"];
const READ_BODY: [&str; 10] = [
    "label",
    "source",
    "total",
    "plu_hash",
    "ticket_series",
    "register",
    "request_id",
    "request_digest",
    "event_counter",
    "ticket_number",
];

/// The envelope's members when `bytes` are certainly canonical (see the module's doc).
pub(super) fn scan(bytes: &[u8]) -> Option<Scanned<'_>> {
    std::str::from_utf8(bytes).ok()?;
    let mut s = Scanner { b: bytes, i: 0 };
    let mut top = Vec::with_capacity(8);
    let mut body = Vec::with_capacity(24);
    s.object(0, Some(&mut top), Some(&mut body))?;
    if s.i != bytes.len() {
        return None;
    }
    let escaped = |members: &[Member<'_>], names: &[&str]| {
        members
            .iter()
            .any(|(k, v)| names.iter().any(|n| n.as_bytes() == *k) && v.contains(&b'\\'))
    };
    if escaped(&top, &READ_TOP) || escaped(&body, &READ_BODY) {
        return None;
    }
    // Signer declarations are rare: the general path reads them.
    if let Read::Str("journal_open" | "signer_change") = read(&top, "kind") {
        return None;
    }
    Some(Scanned { top, body })
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(depth + 1, None, None),
            b'[' => self.array(depth + 1),
            b'"' => self.string().map(|_| ()),
            b'-' | b'0'..=b'9' => self.number(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i.checked_add(word.len())?;
        (self.b.get(self.i..end)? == word).then_some(())?;
        self.i = end;
        Some(())
    }

    /// An object; its members go to `members`, and the members of its member `body` (when that
    /// is an object) to `body`.
    fn object(
        &mut self,
        depth: usize,
        mut members: Option<&mut Vec<Member<'a>>>,
        mut body: Option<&mut Vec<Member<'a>>>,
    ) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.expect(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        let mut previous: Option<&[u8]> = None;
        loop {
            let key_start = self.i + 1;
            let key = self.string()?;
            let key = &self.b[key_start..key_start + key.len()];
            if key.iter().any(|&c| c == b'\\' || c >= 0xF0) || previous.is_some_and(|p| p >= key) {
                return None;
            }
            previous = Some(key);
            self.expect(b':')?;
            let start = self.i;
            match body.as_deref_mut() {
                Some(sink) if key == b"body" && self.peek()? == b'{' => {
                    self.object(depth + 1, Some(sink), None)?;
                }
                _ => self.value(depth)?,
            }
            if let Some(members) = members.as_deref_mut() {
                members.push((key, &self.b[start..self.i]));
            }
            match self.next()? {
                b',' => {}
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.expect(b'[')?;
        if self.peek()? == b']' {
            self.i += 1;
            return Some(());
        }
        loop {
            self.value(depth)?;
            match self.next()? {
                b',' => {}
                b']' => return Some(()),
                _ => return None,
            }
        }
    }

    /// A string in canonical form; returns its raw bytes between the quotes.
    fn string(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let start = self.i;
        loop {
            match self.next()? {
                b'"' => return Some(&self.b[start..self.i - 1]),
                b'\\' => match self.next()? {
                    b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => {
                        let hex = self.b.get(self.i..self.i + 4)?;
                        self.i += 4;
                        let digit = |c: u8| match c {
                            b'0'..=b'9' => Some(c - b'0'),
                            b'a'..=b'f' => Some(c - b'a' + 10),
                            _ => None,
                        };
                        if hex[0] != b'0' || hex[1] != b'0' {
                            return None;
                        }
                        let code = digit(hex[2])? * 16 + digit(hex[3])?;
                        // Only control characters without a short form are written as \u00xx.
                        if code >= 0x20 || matches!(code, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                            return None;
                        }
                    }
                    _ => return None,
                },
                0x00..=0x1f => return None,
                _ => {}
            }
        }
    }

    fn number(&mut self) -> Option<()> {
        let negative = self.peek()? == b'-';
        if negative {
            self.i += 1;
        }
        let first = self.next()?;
        if !first.is_ascii_digit() {
            return None;
        }
        let mut n = u64::from(first - b'0');
        if first == b'0' {
            if negative || self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return None;
            }
        } else {
            while let Some(c) = self.peek().filter(u8::is_ascii_digit) {
                n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
                if n > MAX_SAFE_INTEGER {
                    return None;
                }
                self.i += 1;
            }
        }
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        Some(())
    }
}
