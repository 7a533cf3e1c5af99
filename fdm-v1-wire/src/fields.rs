//! The request header (§1.3) and the fixed-width fields of requests and responses (§1.4–§1.5).

/// The 4-character header: identifier, sequence `00`–`99`, retry counter `0`–`9`.
pub fn header(id: u8, seq: u8, retry: u8) -> String {
    format!("{}{:02}{}", char::from(id), seq % 100, retry.min(9))
}

/// Left-aligned, space-padded, printable ASCII only, cut to `width` (text fields).
pub fn left(s: &str, width: usize) -> String {
    let s: String = s
        .chars()
        .filter(|c| c.is_ascii() && !c.is_ascii_control())
        .take(width)
        .collect();
    format!("{s:<width$}")
}

/// Right-aligned, space-padded (numbers); the last `width` characters when longer.
pub fn right(s: &str, width: usize) -> String {
    let cut = s
        .char_indices()
        .rev()
        .nth(width.saturating_sub(1))
        .map_or(0, |(i, _)| i);
    let s = if width == 0 { "" } else { &s[cut..] };
    format!("{s:>width$}")
}

/// Cents as requests write them: no sign, at least 3 digits, right-aligned in 11 spaces (the
/// last 11 digits when longer).
pub fn amount_field(cents: u64) -> String {
    right(&format!("{cents:03}"), 11)
}

/// The 6-character error field of a response: class digit, two code digits, `000`
/// (`202` → `202000`).
pub fn error_field(code: u16) -> String {
    format!("{}{:02}000", (code / 100) % 10, code % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_have_their_widths() {
        assert_eq!(header(b'H', 107, 12), "H079");
        assert_eq!(left("Grote Markt\u{7}é 1", 14), "Grote Markt 1 ");
        assert_eq!(right("1234567", 6), "234567");
        assert_eq!(right("12", 6), "    12");
        assert_eq!(right("é12", 2), "12");
        assert_eq!(right("12", 0), "");
        assert_eq!(amount_field(50), "        050");
        assert_eq!(amount_field(1410), "       1410");
        assert_eq!(error_field(202), "202000");
        assert_eq!(error_field(1), "001000");
    }
}
