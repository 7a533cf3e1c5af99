//! A printed document and its two encodings: plain text (UTF-8, for screens and the receipt
//! JSON) and ESC/POS bytes for thermal printers (a small encoder for the few commands used:
//! initialise, code page WPC1252, alignment, bold, double size, QR code, feed and cut).

/// Alignment of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Left.
    Left,
    /// Centre.
    Center,
}

/// Emphasis of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Plain.
    Normal,
    /// Bold.
    Bold,
    /// Bold, double width and height (in plain text: as bold).
    Big,
    /// The text printed as a QR code (model 2, error correction M, centred), e.g. a GKS 2.0
    /// FDM's verification URL. Plain text leaves the row out: the document shows the text
    /// itself in another row.
    QrCode,
}

/// Longest text a QR code row carries (bytes); a longer one is left out of the ESC/POS bytes
/// too (a printer's QR buffer holds about 7,000 bytes, and a code that large is unreadable on a
/// 58 mm roll).
pub const MAX_QR_BYTES: usize = 512;

/// One printed row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The text (at most the document's width in characters; longer rows are cut).
    pub text: String,
    /// Alignment.
    pub align: Align,
    /// Emphasis.
    pub style: Style,
}

/// A document of rows, `width` characters wide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Characters per row.
    pub width: usize,
    /// The rows.
    pub rows: Vec<Row>,
}

impl Document {
    /// An empty document.
    pub fn new(width: usize) -> Self {
        Document {
            width,
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, text: impl Into<String>, align: Align, style: Style) {
        self.rows.push(Row {
            text: text.into(),
            align,
            style,
        });
    }

    /// A left-aligned plain row.
    pub fn line(&mut self, text: impl Into<String>) {
        self.row(text, Align::Left, Style::Normal);
    }

    /// Left-aligned plain text over as many rows as it needs, broken between words (a word longer
    /// than the width is broken where the width ends), so nothing is cut off.
    pub fn wrapped(&mut self, text: &str) {
        let width = self.width.max(1);
        let mut row = String::new();
        for word in text.split_whitespace() {
            let mut word: Vec<char> = word.chars().collect();
            let used = row.chars().count();
            if used > 0 && used + 1 + word.len() > width {
                self.line(std::mem::take(&mut row));
            }
            while word.len() > width {
                let rest = word.split_off(width);
                self.line(word.iter().collect::<String>());
                word = rest;
            }
            if !row.is_empty() {
                row.push(' ');
            }
            row.extend(word);
        }
        if !row.is_empty() {
            self.line(row);
        }
    }

    /// `left` and `right` on one row, `right` flush right (wrapped when they do not fit).
    pub fn pair(&mut self, left: &str, right: &str) {
        let (l, r) = (left.chars().count(), right.chars().count());
        if l + r < self.width {
            // One allocation for the row (a ticket has some twenty of these).
            let gap = self.width - l - r;
            let mut row = String::with_capacity(left.len() + gap + right.len());
            row.push_str(left);
            row.extend(std::iter::repeat_n(' ', gap));
            row.push_str(right);
            self.line(row);
        } else {
            self.wrapped(left);
            let pad = self.width.saturating_sub(r);
            self.line(format!("{}{right}", " ".repeat(pad)));
        }
    }

    /// A QR code of `text` (see [`Style::QrCode`]); nothing when `text` is empty or longer than
    /// [`MAX_QR_BYTES`].
    pub fn qr(&mut self, text: &str) {
        if !text.is_empty() && text.len() <= MAX_QR_BYTES {
            self.row(text, Align::Center, Style::QrCode);
        }
    }

    /// A rule across the width.
    pub fn rule(&mut self) {
        self.line("-".repeat(self.width));
    }

    /// Plain text: one line per row, centred rows padded, rows cut at the width.
    pub fn text(&self) -> String {
        let mut out = String::with_capacity(self.rows.len() * (self.width + 1));
        for r in self.rows.iter().filter(|r| r.style != Style::QrCode) {
            let width = match r.style {
                Style::Big => self.width / 2,
                _ => self.width,
            }
            .max(1);
            // The row's first `width` characters, without copying them.
            let (text, n) = match r.text.char_indices().nth(width) {
                Some((end, _)) => (&r.text[..end], width),
                None => (r.text.as_str(), r.text.chars().count()),
            };
            if r.align == Align::Center && n < self.width {
                let pad = (self.width - n) / 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }

    /// ESC/POS bytes: initialise, WPC1252, the rows, feed and cut.
    pub fn escpos(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.rows.len() * (self.width + 8));
        out.extend_from_slice(&[ESC, b'@']); // initialise
        out.extend_from_slice(&[ESC, b't', 16]); // code page WPC1252
        for r in &self.rows {
            out.extend_from_slice(&[ESC, b'a', u8::from(r.align == Align::Center)]);
            let (bold, size) = match r.style {
                Style::Normal => (0, 0x00),
                Style::Bold => (1, 0x00),
                Style::Big => (1, 0x11),
                Style::QrCode => {
                    qr_code(&mut out, r.text.as_bytes());
                    continue;
                }
            };
            out.extend_from_slice(&[ESC, b'E', bold]);
            out.extend_from_slice(&[GS, b'!', size]);
            let width = if r.style == Style::Big {
                self.width / 2
            } else {
                self.width
            };
            out.extend(r.text.chars().take(width.max(1)).map(cp1252));
            out.push(b'\n');
        }
        out.extend_from_slice(&[ESC, b'E', 0, GS, b'!', 0, ESC, b'a', 0]);
        out.extend_from_slice(&[ESC, b'd', 4]); // feed 4 lines
        out.extend_from_slice(&[GS, b'V', 66, 0]); // feed to the cutter and cut
        out
    }
}

const ESC: u8 = 0x1b;
const GS: u8 = 0x1d;

/// `GS ( k`: select QR model 2, module size 5 dots, error correction M, store the data, print.
/// `data` is at most [`MAX_QR_BYTES`] (checked by [`Document::qr`]).
fn qr_code(out: &mut Vec<u8>, data: &[u8]) {
    let function = |out: &mut Vec<u8>, params: &[u8]| {
        let len = params.len() + 1; // pL pH count cn (49), fn and its parameters
        out.extend_from_slice(&[GS, b'(', b'k', (len & 0xff) as u8, (len >> 8) as u8, 49]);
        out.extend_from_slice(params);
    };
    function(out, &[65, 50, 0]); // 165: model 2
    function(out, &[67, 5]); // 167: module size
    function(out, &[69, 49]); // 169: error correction M
    let mut store = Vec::with_capacity(data.len() + 2);
    store.extend_from_slice(&[80, 48]); // 180: store in the symbol area
    store.extend_from_slice(data);
    function(out, &store);
    function(out, &[81, 48]); // 181: print the symbol
    out.push(b'\n');
}

/// A character in code page 1252: Latin-1 as is, the euro sign at 0x80, control characters and
/// anything else as `?`.
fn cp1252(c: char) -> u8 {
    match c {
        ' '..='~' => c as u8,
        '\u{a0}'..='\u{ff}' => c as u32 as u8,
        '€' => 0x80,
        'Œ' => 0x8c,
        'œ' => 0x9c,
        '’' => b'\'',
        _ => b'?',
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_text_keeps_every_word() {
        let mut d = Document::new(32);
        d.wrapped("Remboursement du ticket NS 000004 (06/12/2026 17:35:12)");
        assert_eq!(
            d.text(),
            "Remboursement du ticket NS\n000004 (06/12/2026 17:35:12)\n"
        );
        let mut d = Document::new(4);
        d.wrapped("abcdefghij k");
        assert_eq!(d.text(), "abcd\nefgh\nij k\n");
    }

    #[test]
    fn text_and_escpos_encodings() {
        let mut d = Document::new(20);
        d.row("CAFÉ €", Align::Center, Style::Big);
        d.pair("Cola", "2.50 A");
        d.pair("A very long description here", "12.00 B");
        assert_eq!(
            d.text(),
            "       CAFÉ €\nCola          2.50 A\nA very long\ndescription here\n             12.00 B\n"
        );
        let b = d.escpos();
        assert_eq!(&b[..5], &[0x1b, b'@', 0x1b, b't', 16]);
        // Centred, bold, double size, then the text in WPC1252.
        assert_eq!(
            &b[5..17],
            &[
                0x1b, b'a', 1, 0x1b, b'E', 1, 0x1d, b'!', 0x11, b'C', b'A', b'F'
            ]
        );
        assert_eq!(&b[17..21], &[0xc9, b' ', 0x80, b'\n']);
        assert_eq!(&b[b.len() - 4..], &[0x1d, b'V', 66, 0]);
        assert!(!b.contains(&0xc3), "no UTF-8 bytes reach the printer");
    }

    #[test]
    fn a_qr_code_row_is_escpos_gs_k_and_absent_from_plain_text() {
        let url = "https://fdm.example/verify?s=AbC123";
        let mut d = Document::new(32);
        d.line("before");
        d.qr(url);
        d.line("after");
        assert_eq!(d.text(), "before\nafter\n");
        let b = d.escpos();
        let store: Vec<u8> = [
            &[0x1d, b'(', b'k', (url.len() + 3) as u8, 0, 49, 80, 48][..],
            url.as_bytes(),
        ]
        .concat();
        let at = b
            .windows(store.len())
            .position(|w| w == store.as_slice())
            .expect("the URL is stored as the QR code's data");
        let model = [0x1d, b'(', b'k', 4, 0, 49, 65, 50, 0];
        let print = [0x1d, b'(', b'k', 3, 0, 49, 81, 48];
        let model_at = b.windows(model.len()).position(|w| w == model).unwrap();
        let print_at = b.windows(print.len()).position(|w| w == print).unwrap();
        assert!(
            model_at < at && at < print_at,
            "model, store, print in order"
        );
        // Centred, like the rest of the footer.
        assert_eq!(&b[model_at - 3..model_at], &[0x1b, b'a', 1]);
        // Nothing for an empty or an oversized text.
        let mut d = Document::new(32);
        d.qr("");
        d.qr(&"x".repeat(MAX_QR_BYTES + 1));
        assert!(d.rows.is_empty());
    }
}
