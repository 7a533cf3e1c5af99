//! Printed tickets: the customer ticket of every signed record (with the mandatory mentions of
//! source 003 and the reference §5), and kitchen/bar tickets per station, in French, Dutch,
//! German or English, as a [`Document`] (plain text or ESC/POS).
//!
//! Uncertain (reference §5): the official pro forma wording was not found verbatim; the Dutch
//! "DIT IS GEEN GELDIG BTW-KASTICKET" is the one seen in the wild, the French, German and English
//! are our translations of it. The German heading "MWST-KASSENBON" is ours too.

use super::escpos::{Align, Document, Style};
use crate::config::{EstablishmentSection, RestaurantSection};
use serde_json::Value;
use std::collections::BTreeMap;

/// What every ticket prints besides the record: the business and the layout.
#[derive(Debug, Clone)]
pub struct TicketContext {
    /// Business name, address and VAT number.
    pub establishment: EstablishmentSection,
    /// Language: `fr`, `nl`, `de` or `en`.
    pub language: String,
    /// Characters per row.
    pub width: usize,
    /// Names printed for operators (INSZ → name); others print as `…` + the last 4 digits.
    pub operator_names: BTreeMap<String, String>,
    /// Positions of printed ticket numbers (`numbering.digits`).
    pub digits: u8,
}

impl TicketContext {
    /// From the configuration.
    pub fn new(establishment: &EstablishmentSection, r: &RestaurantSection, digits: u8) -> Self {
        TicketContext {
            digits,
            establishment: establishment.clone(),
            language: r.language.clone(),
            width: r.ticket_width,
            operator_names: r.operator_names.clone(),
        }
    }
}

/// Words of one language.
struct Words {
    vat_ticket: &'static str,
    refund: &'static str,
    not_vat: &'static str,
    pro_forma: &'static str,
    bill: &'static str,
    training: &'static str,
    copy: &'static str,
    copy_of: &'static str,
    refund_of: &'static str,
    vat_no: &'static str,
    ticket: &'static str,
    date: &'static str,
    operator: &'static str,
    register: &'static str,
    table: &'static str,
    total: &'static str,
    rate: &'static str,
    base: &'static str,
    vat: &'static str,
    payments: &'static str,
    rounding: &'static str,
    correction: &'static str,
    discount: &'static str,
    deposit: &'static str,
    money_in: &'static str,
    voucher: &'static str,
    table_change: &'static str,
    order_ticket: &'static str,
    station: &'static str,
    work_in: &'static str,
    work_out: &'static str,
    counters: &'static str,
    signature: &'static str,
    check: &'static str,
    catering: &'static str,
    catering_end: &'static str,
    /// deposit, estimate, supplement, correction, no correction
    catering_roles: [&'static str; 5],
}

const FR: Words = Words {
    vat_ticket: "TICKET DE CAISSE TVA",
    refund: "REMBOURSEMENT",
    not_vat: "CECI N'EST PAS UN TICKET DE CAISSE TVA",
    pro_forma: "PRO FORMA",
    bill: "ADDITION PROVISOIRE",
    training: "MODE FORMATION",
    copy: "COPIE",
    copy_of: "Copie du ticket",
    refund_of: "Remboursement du ticket",
    vat_no: "TVA",
    ticket: "Ticket",
    date: "Date",
    operator: "Utilisateur",
    register: "Caisse",
    table: "Table",
    total: "TOTAL",
    rate: "Taux",
    base: "Base",
    vat: "TVA",
    payments: "Paiement",
    rounding: "Arrondi",
    correction: "correction",
    discount: "ristourne",
    deposit: "acompte deduit",
    money_in: "ENTREE D'ARGENT - BONS A VALOIR",
    voucher: "Bon",
    table_change: "CHANGEMENT DE TABLE",
    order_ticket: "BON DE COMMANDE",
    station: "Poste",
    work_in: "DEBUT DE PRESTATION (WORK IN)",
    work_out: "FIN DE PRESTATION (WORK OUT)",
    counters: "Compteurs",
    signature: "Signature",
    check: "Addition",
    catering: "Evenement",
    catering_end: "Fin de l'evenement",
    catering_roles: [
        "acompte",
        "devis",
        "supplement",
        "correction",
        "devis confirme, sans correction",
    ],
};

const NL: Words = Words {
    vat_ticket: "BTW-KASTICKET",
    refund: "TERUGBETALING",
    not_vat: "DIT IS GEEN GELDIG BTW-KASTICKET",
    pro_forma: "PRO FORMA",
    bill: "VOORLOPIGE REKENING",
    training: "OPLEIDINGSMODUS",
    copy: "KOPIE",
    copy_of: "Kopie van ticket",
    refund_of: "Terugbetaling van ticket",
    vat_no: "BTW",
    ticket: "Ticket",
    date: "Datum",
    operator: "Gebruiker",
    register: "Kassa",
    table: "Tafel",
    total: "TOTAAL",
    rate: "Tarief",
    base: "Basis",
    vat: "BTW",
    payments: "Betaling",
    rounding: "Afronding",
    correction: "correctie",
    discount: "korting",
    deposit: "voorschot afgetrokken",
    money_in: "GELD IN - WAARDEBONS",
    voucher: "Bon",
    table_change: "TAFELWISSEL",
    order_ticket: "BESTELBON",
    station: "Post",
    work_in: "BEGIN PRESTATIE (WORK IN)",
    work_out: "EINDE PRESTATIE (WORK OUT)",
    counters: "Tellers",
    signature: "Handtekening",
    check: "Rekening",
    catering: "Evenement",
    catering_end: "Einde evenement",
    catering_roles: [
        "voorschot",
        "offerte",
        "supplement",
        "correctie",
        "offerte bevestigd, geen correctie",
    ],
};

const DE: Words = Words {
    vat_ticket: "MWST-KASSENBON",
    refund: "RUECKERSTATTUNG",
    not_vat: "DIES IST KEIN GUELTIGER MWST-KASSENBON",
    pro_forma: "PRO FORMA",
    bill: "VORLAEUFIGE RECHNUNG",
    training: "SCHULUNGSMODUS",
    copy: "KOPIE",
    copy_of: "Kopie des Bons",
    refund_of: "Rueckerstattung des Bons",
    vat_no: "MwSt",
    ticket: "Bon",
    date: "Datum",
    operator: "Benutzer",
    register: "Kasse",
    table: "Tisch",
    total: "GESAMT",
    rate: "Satz",
    base: "Basis",
    vat: "MwSt",
    payments: "Zahlung",
    rounding: "Rundung",
    correction: "Korrektur",
    discount: "Rabatt",
    deposit: "Anzahlung abgezogen",
    money_in: "GELDEINGANG - GUTSCHEINE",
    voucher: "Gutschein",
    table_change: "TISCHWECHSEL",
    order_ticket: "BESTELLBON",
    station: "Posten",
    work_in: "ARBEITSBEGINN (WORK IN)",
    work_out: "ARBEITSENDE (WORK OUT)",
    counters: "Zaehler",
    signature: "Signatur",
    check: "Rechnung",
    catering: "Veranstaltung",
    catering_end: "Ende der Veranstaltung",
    catering_roles: [
        "Anzahlung",
        "Kostenvoranschlag",
        "Zuschlag",
        "Korrektur",
        "Kostenvoranschlag bestaetigt, keine Korrektur",
    ],
};

const EN: Words = Words {
    vat_ticket: "VAT RECEIPT",
    refund: "REFUND",
    not_vat: "THIS IS NOT A VALID VAT TICKET",
    pro_forma: "PRO FORMA",
    bill: "BILL BEFORE PAYMENT",
    training: "TRAINING MODE",
    copy: "COPY",
    copy_of: "Copy of ticket",
    refund_of: "Refund of ticket",
    vat_no: "VAT",
    ticket: "Ticket",
    date: "Date",
    operator: "User",
    register: "Register",
    table: "Table",
    total: "TOTAL",
    rate: "Rate",
    base: "Base",
    vat: "VAT",
    payments: "Payment",
    rounding: "Rounding",
    correction: "correction",
    discount: "discount",
    deposit: "deposit deducted",
    money_in: "MONEY IN - VOUCHERS SOLD",
    voucher: "Voucher",
    table_change: "TABLE CHANGE",
    order_ticket: "ORDER TICKET",
    station: "Station",
    work_in: "START OF WORK (WORK IN)",
    work_out: "END OF WORK (WORK OUT)",
    counters: "Counters",
    signature: "Signature",
    check: "Check",
    catering: "Event",
    catering_end: "Event ends",
    catering_roles: [
        "deposit",
        "estimate",
        "supplement",
        "correction",
        "estimate confirmed, no correction",
    ],
};

fn words(language: &str) -> &'static Words {
    match language {
        "nl" => &NL,
        "de" => &DE,
        "en" => &EN,
        _ => &FR,
    }
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn shown(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// A ticket number stored as an integer, printed as the receipts print it.
fn number(ctx: &TicketContext, v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::Number(n)) => match n.as_u64() {
            Some(n) => crate::service::Numbering {
                digits: ctx.digits,
                ..Default::default()
            }
            .display(n),
            None => n.to_string(),
        },
        _ => shown(v, k),
    }
}

fn operator(ctx: &TicketContext, insz: &str) -> String {
    match ctx.operator_names.get(insz) {
        Some(name) => name.clone(),
        None => crate::fiscal::insz::masked(insz),
    }
}

/// "2026-11-22T20:15:03.123+01:00" → "22/11/2026 20:15:03".
fn when(time: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(time) {
        Ok(t) => shown_time(&t),
        Err(_) => time.to_owned(),
    }
}

/// `t.format("%d/%m/%Y %H:%M:%S")` written out: chrono's `format` parses its pattern again on
/// every call, and two of these per ticket were a visible share of an order's CPU. A leap second
/// (nanoseconds past 10^9) shows as second 60, as `%S` does; a parsed RFC 3339 year has four
/// digits, as `%Y` pads it.
fn shown_time<Tz: chrono::TimeZone>(t: &chrono::DateTime<Tz>) -> String {
    use chrono::{Datelike, Timelike};
    let second = t.second() + u32::from(t.nanosecond() >= 1_000_000_000);
    format!(
        "{:02}/{:02}/{:04} {:02}:{:02}:{:02}",
        t.day(),
        t.month(),
        t.year(),
        t.hour(),
        t.minute(),
        second
    )
}

/// The customer ticket of a signed receipt (`Registrar::receipt_json`).
pub fn customer_ticket(receipt: &Value, ctx: &TicketContext) -> Document {
    let w = words(&ctx.language);
    let mut d = Document::new(ctx.width);
    let label = s(receipt, "label");
    let e = &ctx.establishment;
    // Headings.
    match (label.chars().next(), s(receipt, "record_kind")) {
        (_, "money_movement") => {
            d.row(w.money_in, Align::Center, Style::Bold);
            d.row(w.not_vat, Align::Center, Style::Bold);
        }
        (_, "table_change") => {
            d.row(w.table_change, Align::Center, Style::Bold);
            d.row(w.not_vat, Align::Center, Style::Bold);
        }
        (Some('N'), _) => {
            d.row(w.vat_ticket, Align::Center, Style::Big);
            if label == "NR" {
                d.row(w.refund, Align::Center, Style::Bold);
            }
        }
        (Some('P'), _) => {
            d.row(w.pro_forma, Align::Center, Style::Big);
            if s(receipt, "table_role") == "bill" {
                d.row(w.bill, Align::Center, Style::Bold);
            }
            d.row(w.not_vat, Align::Center, Style::Bold);
        }
        (Some('T'), _) => {
            d.row(w.training, Align::Center, Style::Big);
            d.row(w.not_vat, Align::Center, Style::Bold);
        }
        (Some('C'), _) => {
            d.row(w.copy, Align::Center, Style::Big);
            d.row(w.not_vat, Align::Center, Style::Bold);
        }
        _ => {}
    }
    d.row(e.name.clone(), Align::Center, Style::Bold);
    d.row(e.address.clone(), Align::Center, Style::Normal);
    d.row(
        format!("{} {}", w.vat_no, e.vat_number),
        Align::Center,
        Style::Normal,
    );
    d.rule();
    let issued = receipt
        .get("pos_time")
        .and_then(Value::as_str)
        .unwrap_or(s(receipt, "fdm_time"));
    d.pair(w.date, &when(issued));
    if !label.is_empty() {
        d.pair(
            w.ticket,
            &format!("{label} {}", s(receipt, "ticket_number")),
        );
    }
    d.pair(w.register, s(receipt, "register"));
    if !s(receipt, "operator").is_empty() {
        d.pair(w.operator, &operator(ctx, s(receipt, "operator")));
    }
    if !s(receipt, "table").is_empty() {
        d.pair(w.table, s(receipt, "table"));
    }
    if !s(receipt, "check").is_empty() {
        d.pair(w.check, s(receipt, "check"));
    }
    if !s(receipt, "catering_event").is_empty() {
        let role = match s(receipt, "catering_role") {
            "deposit" => w.catering_roles[0],
            "estimate" => w.catering_roles[1],
            "supplement" => w.catering_roles[2],
            "correction" => w.catering_roles[3],
            "no_correction" => w.catering_roles[4],
            _ => "",
        };
        let event = s(receipt, "catering_event");
        if role.is_empty() {
            d.pair(w.catering, event);
        } else {
            d.pair(w.catering, &format!("{event} ({role})"));
        }
        if !s(receipt, "catering_end").is_empty() {
            d.pair(w.catering_end, &when(s(receipt, "catering_end")));
        }
    }
    match s(receipt, "purpose") {
        "work_in" => d.row(w.work_in, Align::Center, Style::Bold),
        "work_out" => d.row(w.work_out, Align::Center, Style::Bold),
        _ => {}
    }
    for (key, title) in [("copy_of", w.copy_of), ("refund_of", w.refund_of)] {
        if let Some(o) = receipt.get(key).filter(|o| o.is_object()) {
            d.wrapped(&format!(
                "{title} {} {} ({})",
                s(o, "label"),
                number(ctx, o, "ticket_number"),
                when(s(o, "fdm_time"))
            ));
        }
    }
    if s(receipt, "record_kind") == "table_change" {
        d.line(format!(
            "{} {} -> {}",
            s(receipt, "action"),
            s(receipt, "from"),
            s(receipt, "to")
        ));
    }
    d.rule();
    lines(&mut d, receipt, w, ctx);
    if let Some(Value::Array(vouchers)) = receipt.get("vouchers") {
        for v in vouchers {
            d.pair(&format!("{} {}", w.voucher, s(v, "code")), s(v, "amount"));
        }
    }
    if !s(receipt, "total").is_empty() {
        d.rule();
        d.row(
            format!("{} {}", w.total, s(receipt, "total")),
            Align::Left,
            Style::Big,
        );
    }
    if let Some(Value::Array(rates)) = receipt.get("vat")
        && !rates.is_empty()
    {
        d.line(format!(
            "{:<8}{:>11}{:>11}{:>11}",
            w.rate, w.base, w.vat, w.total
        ));
        for r in rates {
            d.line(format!(
                "{} {:>4}%{:>12}{:>11}{:>11}",
                s(r, "rate"),
                s(r, "percent"),
                s(r, "base"),
                s(r, "vat"),
                s(r, "total")
            ));
        }
    }
    if let Some(Value::Array(payments)) = receipt.get("payments") {
        for p in payments {
            d.pair(
                &format!("{} {}", w.payments, s(p, "method")),
                s(p, "amount"),
            );
        }
    }
    if let Some(r) = receipt.get("cash_rounding").and_then(Value::as_str)
        && r != "0.00"
    {
        d.pair(w.rounding, r);
    }
    // Control data of the FDM.
    d.rule();
    if !s(receipt, "plu_hash").is_empty() {
        let plu = s(receipt, "plu_hash");
        d.pair("PLU", &plu[plu.len().saturating_sub(8)..]);
    }
    d.pair("FDM", &when(s(receipt, "fdm_time")));
    if !label.is_empty() {
        d.pair(
            w.counters,
            &format!(
                "{} {}/{}",
                label,
                shown(receipt, "event_counter"),
                shown(receipt, "total_counter")
            ),
        );
    }
    d.pair("FDM ID", s(receipt, "fdm_id"));
    d.pair("VSC ID", s(receipt, "vsc_id"));
    d.pair(w.signature, s(receipt, "short_signature"));
    d.pair("Journal", &shown(receipt, "journal_seq"));
    // The GKS 2.0 FDM's own reference, when one signed the event (docs/gks2.md §8), with its
    // verification URL as text and, on ESC/POS printers, as a QR code.
    if let Some(g) = receipt.get("gks2").filter(|g| g.is_object()) {
        let r = &g["fdmRef"];
        d.rule();
        d.line("GKS 2.0 FDM");
        d.pair("FDM ID", &shown(r, "fdmId"));
        d.pair("FDM", &shown(r, "fdmDateTime"));
        d.pair(
            w.counters,
            &format!(
                "{} {}/{}",
                shown(r, "eventLabel"),
                shown(r, "eventCounter"),
                shown(r, "totalCounter")
            ),
        );
        d.pair(w.signature, &shown(g, "shortSignature"));
        let url = shown(g, "verificationUrl");
        if !url.is_empty() {
            d.wrapped(&url);
            d.qr(&url);
        }
        for line in g["footer"].as_array().into_iter().flatten() {
            if let Some(text) = line.as_str() {
                d.wrapped(text);
            }
        }
    }
    // The FDM v1 box's control data, when a box signed the event (docs/fdm-v1-backend.md):
    // FDM date and time, counters and label, FDM and VSC ids, signature.
    if let Some(f) = receipt.get("fdm_v1").filter(|f| f.is_object()) {
        d.rule();
        d.line("FDM v1");
        d.pair("FDM ID", &shown(f, "fdm_id"));
        d.pair("VSC ID", &shown(f, "vsc_id"));
        d.pair(
            "FDM",
            &format!("{} {}", shown(f, "fdm_date"), shown(f, "fdm_time")),
        );
        d.pair(
            w.counters,
            &format!(
                "{} {}/{}",
                shown(f, "label"),
                shown(f, "event_counter"),
                shown(f, "total_counter")
            ),
        );
        d.wrapped(&shown(f, "signature"));
    }
    // The record's hash, with its journal number an anchor an inspector gives to
    // `fdmctl verify --anchor SEQ:HASH` (in groups of eight, so that it wraps between them).
    let digest = s(receipt, "signed_digest");
    if !digest.is_empty() {
        d.line("SHA-256");
        d.wrapped(&grouped(digest));
    }
    d.line(concat!("fdmd ", env!("CARGO_PKG_VERSION")));
    d
}

fn lines(d: &mut Document, receipt: &Value, w: &Words, ctx: &TicketContext) {
    let Some(Value::Array(lines)) = receipt.get("lines") else {
        return;
    };
    for l in lines {
        let qty = s(l, "quantity");
        let mut left = format!("{qty} x {}", s(l, "description"));
        let note = match s(l, "role") {
            "discount" => Some(w.discount),
            "deposit_applied" => Some(w.deposit),
            _ if qty.starts_with('-') => Some(w.correction),
            _ => None,
        };
        if let Some(n) = note {
            left = format!("{left} ({n})");
        }
        d.pair(&left, &format!("{} {}", s(l, "total"), s(l, "vat")));
        if let Some(o) = l.get("origin").filter(|o| o.is_object()) {
            d.line(format!(
                "   <- {} {}",
                s(o, "label"),
                number(ctx, o, "ticket_number")
            ));
        }
    }
}

/// `hex` in groups of eight characters.
fn grouped(hex: &str) -> String {
    let mut out = String::with_capacity(hex.len() + hex.len() / 8);
    for (i, c) in hex.chars().enumerate() {
        if i > 0 && i % 8 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// A kitchen or bar ticket for one station (the `StationTicket` payload).
pub fn station_ticket(payload: &Value, ctx: &TicketContext) -> Document {
    let w = words(&ctx.language);
    let mut d = Document::new(ctx.width);
    d.row(w.order_ticket, Align::Center, Style::Bold);
    d.row(w.not_vat, Align::Center, Style::Normal);
    d.row(
        format!("{} {}", w.station, s(payload, "station")),
        Align::Center,
        Style::Big,
    );
    if !s(payload, "table").is_empty() {
        d.row(
            format!("{} {}", w.table, s(payload, "table")),
            Align::Center,
            Style::Big,
        );
    }
    d.pair(w.date, &when(s(payload, "fdm_time")));
    d.pair(
        w.ticket,
        &format!(
            "{} {}",
            s(payload, "label"),
            number(ctx, payload, "ticket_number")
        ),
    );
    d.pair(w.register, s(payload, "register"));
    d.pair(w.operator, &operator(ctx, s(payload, "operator")));
    d.rule();
    if let Some(Value::Array(lines)) = payload.get("lines") {
        for l in lines {
            let q = shown(l, "quantity");
            let style = if q.starts_with('-') {
                Style::Bold
            } else {
                Style::Big
            };
            d.row(format!("{q} x {}", s(l, "description")), Align::Left, style);
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `shown_time` prints what chrono's `%d/%m/%Y %H:%M:%S` printed, over every kind of time
    /// a register or the FDM sends (offsets, fractions, a leap second, years of one digit).
    #[test]
    fn times_show_as_chrono_formats_them() {
        let mut times = vec![
            "2026-11-22T20:15:03.123+01:00".to_owned(),
            "2026-12-31T23:59:60Z".to_owned(),
            "2016-12-31T23:59:60.5+00:00".to_owned(),
            "0001-01-01T00:00:00Z".to_owned(),
            "9999-12-31T23:59:59.999999999-14:00".to_owned(),
        ];
        for i in 0..5000u32 {
            let (y, mo, d) = (1 + i * 7 % 9999, 1 + i % 12, 1 + i * 3 % 28);
            let (h, mi, s) = (i % 24, i * 7 % 60, i * 13 % 60);
            let offset = ["Z", "+01:00", "-05:30", "+14:00"][i as usize % 4];
            times.push(format!(
                "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{i}{offset}"
            ));
        }
        for time in &times {
            let t = chrono::DateTime::parse_from_rfc3339(time).expect(time);
            assert_eq!(
                shown_time(&t),
                t.format("%d/%m/%Y %H:%M:%S").to_string(),
                "{time}"
            );
        }
        assert_eq!(when("not a time"), "not a time");
    }

    #[test]
    fn digests_group_by_eight() {
        let old = |hex: &str| {
            hex.chars()
                .collect::<Vec<char>>()
                .chunks(8)
                .map(|c| c.iter().collect::<String>())
                .collect::<Vec<String>>()
                .join(" ")
        };
        let hex = "0123456789abcdef".repeat(4);
        for n in 0..=hex.len() {
            assert_eq!(grouped(&hex[..n]), old(&hex[..n]));
        }
        assert_eq!(grouped("éèàüöäß€ab"), old("éèàüöäß€ab"));
    }

    fn ctx(language: &str) -> TicketContext {
        TicketContext {
            establishment: EstablishmentSection {
                name: "Chez Nous".into(),
                address: "Rue Haute 1, 1000 Bruxelles".into(),
                vat_number: "BE0123456789".into(),
            },
            language: language.into(),
            width: 42,
            operator_names: BTreeMap::from([("85073003328".into(), "Anna".into())]),
            digits: 6,
        }
    }

    fn receipt(label: &str) -> Value {
        json!({"label": label, "ticket_number": "000012", "register": "till-1", "operator": "85073003328",
            "fdm_time": "2026-11-22T20:15:03.123+01:00", "total": "14.10", "table": "12",
            "lines": [{"description": "Cola", "quantity": "1", "total": "2.20", "vat": "A"},
                      {"description": "Snack", "quantity": "1", "total": "11.90", "vat": "B"},
                      {"description": "Snack", "quantity": "-1", "total": "-11.90", "vat": "B",
                       "origin": {"seq": 4, "label": "PR", "ticket_number": 3}}],
            "vat": [{"rate": "A", "percent": "21", "total": "2.20", "vat": "0.38", "base": "1.82"}],
            "payments": [{"method": "cash", "amount": "2.20"}],
            "plu_hash": "c2b9aaaaaaaaaaaaaaaaaaaaaaaaaaaaff797bc46f", "event_counter": 141, "total_counter": 154,
            "fdm_id": "DEVFDMD0001", "vsc_id": "DEVSW-1234", "short_signature": "1CD58A73", "journal_seq": 9,
            "signed_digest": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"})
    }

    #[test]
    fn vat_ticket_has_every_mandatory_mention() {
        let text = customer_ticket(&receipt("NS"), &ctx("fr")).text();
        for needle in [
            "TICKET DE CAISSE TVA",
            "Chez Nous",
            "Rue Haute 1",
            "TVA BE0123456789",
            "22/11/2026 20:15:03",
            "NS 000012",
            "till-1",
            "Anna",
            "Table",
            "1 x Cola",
            "2.20 A",
            "-1 x Snack (correction)",
            "<- PR 000003",
            "0.38",
            "1.82",
            "PLU",
            "797bc46f",
            "NS 141/154",
            "DEVFDMD0001",
            "DEVSW-1234",
            "1CD58A73",
            // The anchor for `fdmctl verify --anchor`: journal number and record hash, whole.
            "SHA-256\n01234567 89abcdef 01234567 89abcdef\n01234567 89abcdef 01234567 89abcdef\n",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        assert!(!text.contains("85073003328"), "the INSZ is not printed");
        assert!(!text.contains("CECI N'EST PAS"));
    }

    #[test]
    fn other_documents_say_what_they_are_in_four_languages() {
        let t = |label: &str, lang: &str| customer_ticket(&receipt(label), &ctx(lang)).text();
        assert!(t("NS", "nl").contains("BTW-KASTICKET"));
        assert!(t("NS", "de").contains("MWST-KASSENBON"));
        assert!(t("NR", "en").contains("VAT RECEIPT") && t("NR", "en").contains("REFUND"));
        let ps = t("PS", "nl");
        assert!(
            ps.contains("PRO FORMA") && ps.contains("DIT IS GEEN GELDIG BTW-KASTICKET"),
            "{ps}"
        );
        assert!(t("PS", "fr").contains("CECI N'EST PAS UN TICKET DE CAISSE TVA"));
        assert!(t("TS", "fr").contains("MODE FORMATION"));
        assert!(t("CS", "en").contains("COPY") && t("CS", "en").contains("NOT A VALID VAT"));
        assert!(!t("CS", "en").contains("VAT RECEIPT"));
    }

    #[test]
    fn station_ticket_lists_the_lines() {
        let p = json!({"station": "kitchen", "table": "12", "operator": "85073003328", "label": "PS",
            "ticket_number": "000004", "register": "till-1", "fdm_time": "2026-11-22T20:15:03.123+01:00",
            "lines": [{"description": "Steak", "quantity": 2}, {"description": "Soep", "quantity": -1}]});
        let text = station_ticket(&p, &ctx("nl")).text();
        assert!(
            text.contains("BESTELBON") && text.contains("Post kitchen"),
            "{text}"
        );
        assert!(
            text.contains("2 x Steak") && text.contains("-1 x Soep"),
            "{text}"
        );
    }
}
