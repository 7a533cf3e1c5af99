//! A PIN for a signer that has one.

/// A PIN (digits, or the encoded bytes sent to a card). Never printed; wiped when dropped.
pub struct Pin(Vec<u8>);

impl Pin {
    /// A PIN typed by a person: 1 to 16 decimal digits, surrounding white space ignored.
    pub fn parse(text: &str) -> Result<Pin, String> {
        let t = text.trim();
        if t.is_empty() || t.len() > 16 || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err("a PIN is 1 to 16 digits".into());
        }
        Ok(Pin(t.as_bytes().to_vec()))
    }

    /// A PIN already encoded for a device (e.g. BCD with padding); the bytes are wiped on drop.
    pub fn from_encoded(bytes: Vec<u8>) -> Pin {
        Pin(bytes)
    }

    /// The digits (or encoded bytes).
    pub fn digits(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pin(<hidden>)")
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        self.0.fill(0);
        // Keeps the wipe from being optimised away as a dead store (best effort).
        std::hint::black_box(&self.0);
    }
}
