//! APDU profiles: everything card-specific about a signing card, as data.
//!
//! A profile says which command APDUs select the application, read the VSC id and the public
//! key, ask for the PIN tries left, verify the PIN and sign a digest, and what each status word
//! means in FDM terms (201–204, 210). The generic card logic ([`super::card`]) and the PC/SC
//! signer never name a byte of their own, so another card is another profile file, not new code.
//! The format is specified in `docs/vsc.md`; `configs/vsc-profile-fdmd-test.toml` is the built-in
//! profile, the one fdmd's virtual test card implements.

pub use fdmd_core::signer::Pin;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The built-in profile's text (fdmd's own test card; not the real VSC's interface).
pub const BUILTIN_PROFILE: &str = include_str!("../../../configs/vsc-profile-fdmd-test.toml");

/// Why a profile cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("APDU profile {source_name}: {message}")]
pub struct ProfileError {
    /// The file, or `built-in`.
    pub source_name: String,
    /// What is wrong.
    pub message: String,
}

/// What a status word means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Success.
    Ok,
    /// Wrong PIN (204); the pattern's last `x` is the number of tries left.
    WrongPin,
    /// The card is blocked (203).
    Blocked,
    /// The card needs its PIN first (202).
    PinRequired,
    /// The card does not know the command or application (210).
    Incompatible,
    /// Anything else: the card is broken (201).
    Broken,
}

/// How a PIN is turned into bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PinEncoding {
    /// One ASCII byte per digit.
    Ascii,
    /// Two digits per byte; an odd last digit is followed by `F`.
    Bcd,
}

/// The PIN rules of a card.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinFormat {
    /// Fewest digits.
    pub min_len: usize,
    /// Most digits.
    pub max_len: usize,
    /// Encoding.
    pub encoding: PinEncoding,
    /// Pad the encoded PIN to this many bytes (0: no padding).
    #[serde(default)]
    pub pad_to: usize,
    /// Padding byte.
    #[serde(default)]
    pub pad_byte: u8,
    /// Tries a card has after a correct PIN.
    pub max_tries: u8,
}

/// A part of a command template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Bytes(Vec<u8>),
    Pin,
    Digest,
}

/// A command APDU with placeholders (`{pin}`, `{digest}`), each sent as Lc and the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Part>);

impl Template {
    fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut bytes = Vec::new();
        let mut rest: &str = text;
        loop {
            rest = rest.trim_start();
            if rest.is_empty() {
                break;
            }
            if let Some(after) = rest.strip_prefix('{') {
                let end = after
                    .find('}')
                    .ok_or_else(|| format!("{text:?}: '{{' without '}}'"))?;
                if !bytes.is_empty() {
                    parts.push(Part::Bytes(std::mem::take(&mut bytes)));
                }
                parts.push(match &after[..end] {
                    "pin" => Part::Pin,
                    "digest" => Part::Digest,
                    other => return Err(format!("{text:?}: unknown placeholder {{{other}}}")),
                });
                rest = &after[end + 1..];
                continue;
            }
            let pair = rest
                .get(..2)
                .filter(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| format!("{text:?}: expected two hex digits at {rest:?}"))?;
            bytes.push(u8::from_str_radix(pair, 16).map_err(|e| e.to_string())?);
            rest = &rest[2..];
        }
        if !bytes.is_empty() {
            parts.push(Part::Bytes(bytes));
        }
        let header: usize = parts
            .iter()
            .take_while(|p| matches!(p, Part::Bytes(_)))
            .map(|p| match p {
                Part::Bytes(b) => b.len(),
                _ => 0,
            })
            .sum();
        if header < 4 {
            return Err(format!(
                "{text:?}: a command starts with its 4 header bytes"
            ));
        }
        Ok(Template(parts))
    }

    fn has(&self, wanted: &Part) -> bool {
        self.0.iter().any(|p| p == wanted)
    }

    /// The command bytes, with `pin` and `digest` filled in where the template has them.
    pub fn build(&self, pin: Option<&[u8]>, digest: Option<&[u8]>) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        for part in &self.0 {
            let data = match part {
                Part::Bytes(b) => {
                    out.extend_from_slice(b);
                    continue;
                }
                Part::Pin => pin.unwrap_or_default(),
                Part::Digest => digest.unwrap_or_default(),
            };
            // Data is at most 255 bytes here: PINs and digests are short and checked on load.
            out.push(data.len() as u8);
            out.extend_from_slice(data);
        }
        out
    }
}

/// The commands of a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commands {
    /// Select the signing application.
    pub select: Template,
    /// Read the VSC id.
    pub read_id: Template,
    /// Read the public key.
    pub read_public_key: Template,
    /// Ask for the PIN tries left (status word only).
    pub pin_tries: Template,
    /// Verify the PIN (`{pin}`).
    pub verify_pin: Template,
    /// Sign a digest (`{digest}`).
    pub sign: Template,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SwRule {
    value: u16,
    mask: u16,
    wildcards: u32,
    outcome: Outcome,
}

/// A loaded, checked APDU profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Profile name (shown in status).
    pub name: String,
    /// Signature algorithm of the card's key.
    pub algorithm: String,
    /// Length of the VSC id.
    pub id_len: usize,
    /// Length of the public key.
    pub public_key_len: usize,
    /// Length of a signature.
    pub signature_len: usize,
    /// PIN rules.
    pub pin: PinFormat,
    /// Command templates.
    pub commands: Commands,
    rules: Vec<SwRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: String,
    algorithm: String,
    id_len: usize,
    public_key_len: usize,
    signature_len: usize,
    pin: PinFormat,
    commands: BTreeMap<String, String>,
    status_words: BTreeMap<String, Outcome>,
}

impl Profile {
    /// The built-in profile (fdmd's virtual test card).
    pub fn builtin() -> Profile {
        match Profile::parse(BUILTIN_PROFILE, "built-in") {
            Ok(p) => p,
            // The shipped file is checked by a unit test; this cannot be reached.
            Err(e) => panic!("{e}"),
        }
    }

    /// Reads a profile file.
    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ProfileError {
            source_name: name.clone(),
            message: e.to_string(),
        })?;
        Profile::parse(&text, &name)
    }

    /// Parses and checks a profile in TOML.
    pub fn parse(text: &str, source_name: &str) -> Result<Profile, ProfileError> {
        let fail = |message: String| ProfileError {
            source_name: source_name.to_owned(),
            message,
        };
        let raw: RawProfile = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| fail(e.to_string()))?;
        if raw.algorithm != "ed25519" {
            return Err(fail(format!(
                "algorithm {:?}: fdmd's verifiers know only \"ed25519\"",
                raw.algorithm
            )));
        }
        if raw.pin.min_len == 0 || raw.pin.min_len > raw.pin.max_len || raw.pin.max_len > 16 {
            return Err(fail("pin: need 1 <= min_len <= max_len <= 16".into()));
        }
        if raw.pin.pad_to > 0 && raw.pin.pad_to < encoded_len(&raw.pin, raw.pin.max_len) {
            return Err(fail("pin.pad_to is shorter than the longest PIN".into()));
        }
        if raw.pin.max_tries == 0 || raw.pin.max_tries > 15 {
            return Err(fail("pin.max_tries must be 1..=15".into()));
        }
        if !(1..=64).contains(&raw.id_len)
            || !(1..=512).contains(&raw.public_key_len)
            || !(1..=512).contains(&raw.signature_len)
        {
            return Err(fail(
                "id_len, public_key_len or signature_len out of range".into(),
            ));
        }
        let mut commands = raw.commands;
        let mut take = |name: &str, needs: Option<Part>| -> Result<Template, ProfileError> {
            let text = commands
                .remove(name)
                .ok_or_else(|| fail(format!("commands.{name} is missing")))?;
            let t = Template::parse(&text).map_err(|m| fail(format!("commands.{name}: {m}")))?;
            for p in [Part::Pin, Part::Digest] {
                let wanted = needs.as_ref() == Some(&p);
                if t.has(&p) != wanted {
                    return Err(fail(format!(
                        "commands.{name}: {} the {} placeholder",
                        if wanted { "needs" } else { "may not have" },
                        if p == Part::Pin { "{pin}" } else { "{digest}" }
                    )));
                }
            }
            Ok(t)
        };
        let parsed = Commands {
            select: take("select", None)?,
            read_id: take("read_id", None)?,
            read_public_key: take("read_public_key", None)?,
            pin_tries: take("pin_tries", None)?,
            verify_pin: take("verify_pin", Some(Part::Pin))?,
            sign: take("sign", Some(Part::Digest))?,
        };
        if let Some(extra) = commands.keys().next() {
            return Err(fail(format!("commands.{extra} is not a known command")));
        }
        let mut rules = Vec::new();
        for (pattern, outcome) in raw.status_words {
            rules
                .push(parse_sw(&pattern, outcome).map_err(|m| fail(format!("status_words: {m}")))?);
        }
        if !rules.iter().any(|r| r.outcome == Outcome::Ok) {
            return Err(fail("status_words: no pattern means \"ok\"".into()));
        }
        rules.sort_by_key(|r| r.wildcards);
        Ok(Profile {
            name: raw.name,
            algorithm: raw.algorithm,
            id_len: raw.id_len,
            public_key_len: raw.public_key_len,
            signature_len: raw.signature_len,
            pin: raw.pin,
            commands: parsed,
            rules,
        })
    }

    /// What a status word means, and for a wrong PIN the tries left it carries.
    pub fn classify(&self, sw: u16) -> (Outcome, Option<u8>) {
        for r in &self.rules {
            if sw & r.mask == r.value {
                let tries = (r.outcome == Outcome::WrongPin && r.wildcards > 0)
                    .then_some((sw & 0x000F & !r.mask) as u8);
                return (r.outcome, tries);
            }
        }
        (Outcome::Broken, None)
    }

    /// The PIN as the card wants it, or why it cannot be one.
    pub fn encode_pin(&self, pin: &Pin) -> Result<Pin, String> {
        let digits = pin.digits();
        let f = &self.pin;
        if digits.len() < f.min_len || digits.len() > f.max_len {
            return Err(format!("the PIN has {} to {} digits", f.min_len, f.max_len));
        }
        let mut out = Vec::with_capacity(f.pad_to.max(digits.len()));
        match f.encoding {
            PinEncoding::Ascii => out.extend_from_slice(digits),
            PinEncoding::Bcd => {
                for pair in digits.chunks(2) {
                    let hi = pair[0] - b'0';
                    let lo = pair.get(1).map_or(0x0F, |d| d - b'0');
                    out.push(hi << 4 | lo);
                }
            }
        }
        while out.len() < f.pad_to {
            out.push(f.pad_byte);
        }
        Ok(Pin::from_encoded(out))
    }
}

fn encoded_len(f: &PinFormat, digits: usize) -> usize {
    match f.encoding {
        PinEncoding::Ascii => digits,
        PinEncoding::Bcd => digits.div_ceil(2),
    }
}

fn parse_sw(pattern: &str, outcome: Outcome) -> Result<SwRule, String> {
    let p = pattern.trim();
    if p.len() != 4 {
        return Err(format!("{pattern:?} is not 4 hex digits"));
    }
    let (mut value, mut mask, mut wildcards) = (0u16, 0u16, 0u32);
    for c in p.chars() {
        value <<= 4;
        mask <<= 4;
        if c == 'x' || c == 'X' {
            wildcards += 1;
        } else {
            let d = c
                .to_digit(16)
                .ok_or_else(|| format!("{pattern:?}: {c:?} is not a hex digit or x"))?;
            value |= d as u16;
            mask |= 0xF;
        }
    }
    Ok(SwRule {
        value,
        mask,
        wildcards,
        outcome,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_profile_loads() {
        let p = Profile::builtin();
        assert_eq!(p.name, "fdmd-test-1");
        assert_eq!(
            p.commands.sign.build(None, Some(&[0xAB; 32]))[..6],
            [0x80, 0x2A, 0x9E, 0x9A, 0x20, 0xAB]
        );
        let sign = p.commands.sign.build(None, Some(&[0xAB; 32]));
        assert_eq!(sign.len(), 4 + 1 + 32 + 1);
        assert_eq!(sign.last(), Some(&0x00));
        assert_eq!(
            p.commands.select.build(None, None),
            [
                0x00, 0xA4, 0x04, 0x0C, 0x06, 0xF0, 0x46, 0x44, 0x4D, 0x44, 0x01
            ]
        );
    }

    #[test]
    fn status_words_map_to_outcomes() {
        let p = Profile::builtin();
        assert_eq!(p.classify(0x9000), (Outcome::Ok, None));
        assert_eq!(p.classify(0x63C2), (Outcome::WrongPin, Some(2)));
        assert_eq!(p.classify(0x6983), (Outcome::Blocked, None));
        assert_eq!(p.classify(0x6982), (Outcome::PinRequired, None));
        assert_eq!(p.classify(0x6D00), (Outcome::Incompatible, None));
        assert_eq!(p.classify(0x6F00), (Outcome::Broken, None));
    }

    #[test]
    fn pins_are_encoded_padded_and_hidden() {
        let p = Profile::builtin();
        let pin = Pin::parse(" 12345\n").unwrap();
        assert_eq!(format!("{pin:?}"), "Pin(<hidden>)");
        let enc = p.encode_pin(&pin).unwrap();
        assert_eq!(enc.digits(), b"12345\xFF\xFF\xFF");
        assert!(p.encode_pin(&Pin::parse("123").unwrap()).is_err());
        assert!(Pin::parse("12a45").is_err());
        let bcd = BUILTIN_PROFILE
            .replace("encoding = \"ascii\"", "encoding = \"bcd\"")
            .replace("pad_to = 8", "pad_to = 4");
        let p = Profile::parse(&bcd, "bcd").unwrap();
        assert_eq!(
            p.encode_pin(&Pin::parse("12345").unwrap())
                .unwrap()
                .digits(),
            [0x12, 0x34, 0x5F, 0xFF]
        );
    }

    #[test]
    fn bad_profiles_are_refused_with_a_reason() {
        let cases = [
            (
                "sign = \"80 2A 9E 9A {digest} 00\"",
                "sign = \"80 2A 9E 9A 00\"",
                "needs",
            ),
            (
                "verify_pin = \"00 20 00 81 {pin}\"",
                "verify_pin = \"00 20 {pin}\"",
                "header",
            ),
            (
                "read_id = \"80 CA 00 01 00\"",
                "read_id = \"80 CA 00 0G 00\"",
                "hex",
            ),
            ("algorithm = \"ed25519\"", "algorithm = \"rsa\"", "ed25519"),
            ("\"9000\" = \"ok\"", "\"900\" = \"ok\"", "4 hex"),
            (
                "read_id = \"80 CA 00 01 00\"",
                "read_id = \"80 CA 00 01 {pin}\"",
                "may not",
            ),
        ];
        for (from, to, why) in cases {
            let text = BUILTIN_PROFILE.replace(from, to);
            assert_ne!(text, BUILTIN_PROFILE, "{from}");
            let e = Profile::parse(&text, "t").unwrap_err();
            assert!(e.to_string().contains(why), "{to}: {e}");
        }
    }
}
