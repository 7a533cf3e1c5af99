//! The PLU hash (reference §3): one 33-character record per line, SHA-1 over the joined records.
//!
//! Where the reference is uncertain (descriptions longer than 20 characters: first or last 20;
//! the sign of negative lines) the choice is made here, in one place, and documented in
//! `docs/journal-format.md`.

use super::money::to_cents;
use super::vat::VatLetter;
use rust_decimal::{Decimal, RoundingStrategy};
use sha1::{Digest, Sha1};

/// Width of the description field in a PLU record.
pub const DESCRIPTION_WIDTH: usize = 20;

/// Transliterates and filters a description: accented letters to their base letter (Æ→AE, ß→SS,
/// Œ→OE, €→E), lower case to upper case, then only A–Z and 0–9 are kept, the first 20 characters,
/// padded with spaces on the right.
pub fn plu_description(description: &str) -> String {
    let mut out = String::with_capacity(DESCRIPTION_WIDTH);
    'chars: for c in description.chars() {
        for piece in transliterate(c).chars() {
            if out.len() == DESCRIPTION_WIDTH {
                break 'chars;
            }
            if piece.is_ascii_uppercase() || piece.is_ascii_digit() {
                out.push(piece);
            }
        }
    }
    while out.len() < DESCRIPTION_WIDTH {
        out.push(' ');
    }
    out
}

fn transliterate(c: char) -> &'static str {
    match c {
        'Ä' | 'Å' | 'Â' | 'Á' | 'À' | 'â' | 'ä' | 'á' | 'à' | 'ã' | 'Ã' | 'å' => "A",
        'Æ' | 'æ' => "AE",
        'ß' => "SS",
        'ç' | 'Ç' => "C",
        'Î' | 'Ï' | 'Í' | 'Ì' | 'ï' | 'î' | 'ì' | 'í' => "I",
        '€' => "E",
        'Ê' | 'Ë' | 'É' | 'È' | 'ê' | 'ë' | 'é' | 'è' => "E",
        'Û' | 'Ü' | 'Ú' | 'Ù' | 'ü' | 'û' | 'ú' | 'ù' => "U",
        'Ô' | 'Ö' | 'Ó' | 'Ò' | 'ö' | 'ô' | 'ó' | 'ò' | 'õ' | 'Õ' => "O",
        'Œ' | 'œ' => "OE",
        'ñ' | 'Ñ' => "N",
        'ý' | 'Ý' | 'ÿ' => "Y",
        _ => ascii_upper(c),
    }
}

fn ascii_upper(c: char) -> &'static str {
    const UPPER: [&str; 36] = [
        "A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "L", "M", "N", "O", "P", "Q", "R",
        "S", "T", "U", "V", "W", "X", "Y", "Z", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9",
    ];
    match c {
        'a'..='z' => UPPER[(c as u8 - b'a') as usize],
        'A'..='Z' => UPPER[(c as u8 - b'A') as usize],
        '0'..='9' => UPPER[26 + (c as u8 - b'0') as usize],
        _ => "",
    }
}

/// One PLU record: quantity (4, absolute, rounded to an integer, zero-padded, last 4 digits),
/// description (20), line total including VAT in cents (8, absolute, last 8 digits), VAT letter.
/// `plu_quantity` is the quantity in PLU units: pieces, grams for weight, millilitres for volume.
pub fn plu_record(
    plu_quantity: Decimal,
    description: &str,
    line_total: Decimal,
    vat: VatLetter,
) -> String {
    let qty = plu_quantity
        .abs()
        .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
    let qty = u128::try_from(qty).unwrap_or(0) % 10_000;
    let cents = to_cents(line_total).unsigned_abs() % 100_000_000;
    format!(
        "{qty:04}{}{cents:08}{}",
        plu_description(description),
        vat.as_str()
    )
}

/// SHA-1 over the joined records, lower-case hex (40 characters). A ticket with no lines hashes
/// the empty string (`…afd80709`).
pub fn plu_hash<'a>(records: impl IntoIterator<Item = &'a str>) -> String {
    let mut hasher = Sha1::new();
    for r in records {
        hasher.update(r.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// The last 8 characters of a PLU hash, as printed on tickets.
pub fn short_plu(hash: &str) -> &str {
    &hash[hash.len().saturating_sub(8)..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn efsta_sample_receipt() {
        let cola = plu_record(d("1"), "Cola", d("2.20"), VatLetter::A);
        let snack = plu_record(d("1"), "Snack", d("11.90"), VatLetter::B);
        assert_eq!(cola, "0001COLA                00000220A");
        assert_eq!(snack, "0001SNACK               00001190B");
        let hash = plu_hash([cola.as_str(), snack.as_str()]);
        assert!(hash.starts_with("c2b9"), "{hash}");
        assert_eq!(short_plu(&hash), "797bc46f");
    }

    #[test]
    fn empty_ticket_hash() {
        assert_eq!(short_plu(&plu_hash([])), "afd80709");
    }

    #[test]
    fn transliteration_and_filtering() {
        assert_eq!(plu_description("Crème brûlée"), "CREMEBRULEE         ");
        assert_eq!(
            plu_description("Bœuf à l'œuf & Æble"),
            "BOEUFALOEUFAEBLE    "
        );
        assert_eq!(plu_description("Straße 1€"), "STRASSE1E           ");
        assert_eq!(
            plu_description("Spaghetti bolognese maison XL"),
            "SPAGHETTIBOLOGNESEMA"
        );
        assert_eq!(plu_description("日本"), "                    ");
    }

    /// The vectors of docs/journal-format.md §6: only the table's letters are transliterated,
    /// every other letter outside A–Z is dropped (as the drivers the reference follows do).
    #[test]
    fn documented_transliteration_vectors() {
        for (description, field) in [
            ("Čevapčići", "EVAPII"),
            ("Łódź", "OD"),
            ("Crème brûlée", "CREMEBRULEE"),
            ("Bœuf", "BOEUF"),
            ("Smørrebrød", "SMRREBRD"),
            ("São Tomé, Åland", "SAOTOMEALAND"),
            ("Straße 1€", "STRASSE1E"),
            ("Ñandú", "NANDU"),
        ] {
            assert_eq!(
                plu_description(description),
                format!("{field:<20}"),
                "{description}"
            );
        }
        let records = [
            plu_record(d("2"), "Čevapčići", d("25.00"), VatLetter::B),
            plu_record(d("1"), "Crème brûlée", d("7.50"), VatLetter::B),
        ];
        assert_eq!(records[0], "0002EVAPII              00002500B");
        assert_eq!(
            plu_hash(records.iter().map(String::as_str)),
            "c97b242bfba67caf259c799237b9de75faddfcda"
        );
    }

    #[test]
    fn quantity_and_price_fields() {
        assert_eq!(
            plu_record(d("12345"), "x", d("-123456789.01"), VatLetter::C),
            "2345X                   45678901C"
        );
        assert_eq!(
            plu_record(d("2.5"), "x", d("1"), VatLetter::D),
            "0003X                   00000100D"
        );
    }

    proptest! {
        #[test]
        fn records_are_always_33_ascii_characters(
            q in -100_000i64..100_000, desc in ".{0,60}", cents in -1_000_000_000i64..1_000_000_000,
        ) {
            let r = plu_record(Decimal::new(q, 1), &desc, Decimal::new(cents, 2), VatLetter::A);
            prop_assert_eq!(r.len(), 33);
            prop_assert!(r.is_ascii());
        }

        #[test]
        fn sign_does_not_change_the_record(q in 1i64..10_000, cents in 1i64..100_000_000) {
            let pos = plu_record(Decimal::from(q), "Item", Decimal::new(cents, 2), VatLetter::B);
            let neg = plu_record(Decimal::from(-q), "Item", Decimal::new(-cents, 2), VatLetter::B);
            prop_assert_eq!(pos, neg);
        }
    }
}
