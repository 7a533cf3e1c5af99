//! A report as printable text (fixed 42 columns, the width of an 80 mm receipt printer).

use serde_json::Value;
use std::fmt::Write;

const WIDTH: usize = 42;

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn row(out: &mut String, left: &str, right: &str) {
    let pad = WIDTH
        .saturating_sub(left.chars().count() + right.chars().count())
        .max(1);
    let _ = writeln!(out, "{left}{}{right}", " ".repeat(pad));
}

fn rule(out: &mut String) {
    let _ = writeln!(out, "{}", "-".repeat(WIDTH));
}

fn turnover(out: &mut String, t: &Value) {
    if let Some(labels) = t.get("labels").and_then(Value::as_object) {
        for (label, tally) in labels {
            let count = tally.get("count").and_then(Value::as_u64).unwrap_or(0);
            row(out, &format!("{label} x{count}"), s(tally, "/total"));
        }
    }
    row(out, "Gross sales", s(t, "/gross"));
    row(out, "Discounts", s(t, "/discounts"));
    row(out, "Refunds", s(t, "/refunds"));
    // Reports made before these figures existed have neither.
    if t.get("deposits_deducted").is_some() {
        row(out, "Deposits deducted", s(t, "/deposits_deducted"));
        row(out, "Line corrections", s(t, "/line_corrections"));
    }
    row(out, "NET TURNOVER (VAT incl.)", s(t, "/net"));
    for v in t.get("vat").and_then(Value::as_array).into_iter().flatten() {
        row(
            out,
            &format!(
                "  {} {}% base {}",
                s(v, "/rate"),
                s(v, "/percent"),
                s(v, "/base")
            ),
            &format!("VAT {}", s(v, "/vat")),
        );
    }
    if s(t, "/net_without_vat_split") != "0.00" {
        row(out, "  without VAT split", s(t, "/net_without_vat_split"));
    }
    if let Some(p) = t.get("payments").and_then(Value::as_object) {
        for (method, amount) in p {
            row(
                out,
                &format!("Paid {method}"),
                amount.as_str().unwrap_or(""),
            );
        }
    }
    row(out, "Cash rounding", s(t, "/cash_rounding"));
    let corrections = t
        .pointer("/corrections/count")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    row(
        out,
        &format!("Corrections (PR) x{corrections}"),
        s(t, "/corrections/total"),
    );
}

/// Renders the report JSON that [`super::Reports::make`] returns.
pub fn render(report: &Value) -> String {
    let mut out = String::new();
    let kind = s(report, "/report");
    let title = format!("{kind} REPORT (FINANCIAL)");
    let _ = writeln!(out, "{title:^WIDTH$}");
    if kind == "X" {
        let _ = writeln!(out, "{:^WIDTH$}", "does not close the period");
    }
    for p in ["/establishment/name", "/establishment/address"] {
        if !s(report, p).is_empty() {
            let _ = writeln!(out, "{}", s(report, p));
        }
    }
    if !s(report, "/establishment/vat_number").is_empty() {
        let _ = writeln!(out, "VAT {}", s(report, "/establishment/vat_number"));
    }
    rule(&mut out);
    row(&mut out, "Report number", s(report, "/report_number"));
    row(&mut out, "Made at", s(report, "/fdm_time"));
    let registers: Vec<&str> = report
        .get("registers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    row(&mut out, "Register(s)", &registers.join(","));
    let _ = writeln!(out, "Period from {}", s(report, "/period/from"));
    let _ = writeln!(out, "         to {}", s(report, "/period/to"));
    let p = |k: &str| {
        report
            .pointer(&format!("/period/{k}"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    row(
        &mut out,
        "Journal records",
        &format!("{} to {}", p("first_seq"), p("last_seq")),
    );
    rule(&mut out);
    if let Some(t) = report.get("totals") {
        turnover(&mut out, t);
    }
    if let Some(ops) = report.get("operators").and_then(Value::as_object) {
        for (operator, t) in ops {
            rule(&mut out);
            // The INSZ itself is never printed (as on tickets): its last four digits only.
            let _ = writeln!(out, "USER {}", crate::fiscal::insz::masked(operator));
            row(&mut out, "  net", s(t, "/net"));
            if let Some(p) = t.get("payments").and_then(Value::as_object) {
                for (method, amount) in p {
                    row(
                        &mut out,
                        &format!("  paid {method}"),
                        amount.as_str().unwrap_or(""),
                    );
                }
            }
            row(&mut out, "  cash rounding", s(t, "/cash_rounding"));
        }
    }
    rule(&mut out);
    if let Some(o) = report.get("override") {
        let _ = writeln!(out, "OVERRIDE: closed with operators clocked in");
        let _ = writeln!(out, "  reason: {}", s(o, "/reason"));
    }
    row(
        &mut out,
        "Last operation",
        &format!(
            "{} #{}",
            s(report, "/last_operation/short_signature"),
            report
                .pointer("/last_operation/seq")
                .and_then(Value::as_u64)
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into())
        ),
    );
    if kind == "Z" {
        let _ = writeln!(out, "Checkpoint (chain head, Merkle root):");
        let _ = writeln!(out, "  {}", s(report, "/checkpoint/chain_head"));
        let _ = writeln!(out, "  {}", s(report, "/checkpoint/merkle_root"));
    }
    rule(&mut out);
    row(&mut out, "FDM", s(report, "/fdm_id"));
    row(&mut out, "VSC", s(report, "/vsc_id"));
    row(&mut out, "Signature", s(report, "/short_signature"));
    // The GKS 2.0 FDM's signature, when one signed the report (docs/gks2.md §6).
    if let Some(g) = report.get("gks2").filter(|g| g.is_object()) {
        rule(&mut out);
        let _ = writeln!(out, "GKS 2.0 FDM");
        row(&mut out, "FDM ID", s(g, "/fdmRef/fdmId"));
        row(&mut out, "FDM time", s(g, "/fdmRef/fdmDateTime"));
        let counter = |p: &str| {
            g.pointer(p)
                .and_then(Value::as_u64)
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into())
        };
        row(
            &mut out,
            "Counters",
            &format!(
                "{} {}/{}",
                s(g, "/fdmRef/eventLabel"),
                counter("/fdmRef/eventCounter"),
                counter("/fdmRef/totalCounter")
            ),
        );
        row(&mut out, "FDM signature", s(g, "/shortSignature"));
        let url = s(g, "/verificationUrl");
        if !url.is_empty() {
            let _ = writeln!(out, "{url}");
        }
        for line in g
            .get("footer")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(text) = line.as_str() {
                let _ = writeln!(out, "{text}");
            }
        }
    }
    // This report's own record: an anchor for `fdmctl verify --anchor SEQ:HASH`.
    if !s(report, "/signed_digest").is_empty() {
        let seq = report
            .pointer("/journal_seq")
            .and_then(Value::as_u64)
            .map(|n| n.to_string())
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(out, "Anchor (journal record {seq}, SHA-256):");
        let _ = writeln!(out, "  {seq}:{}", s(report, "/signed_digest"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_the_mandatory_items() {
        let r = json!({"report":"Z","report_number":"000004","fdm_time":"2026-11-22T23:59:00.000+01:00",
            "registers":["till-1"],"period":{"first_seq":3,"last_seq":40,"from":"a","to":"b"},
            "totals":{"labels":{"NS":{"count":2,"total":"10.00"}},"gross":"11.00","discounts":"1.00",
                "refunds":"0.00","net":"10.00","vat":[{"rate":"A","percent":"21","base":"8.26","vat":"1.74"}],
                "net_without_vat_split":"0.00","payments":{"cash":"10.00"},"cash_rounding":"0.00",
                "corrections":{"count":0,"total":"0.00"}},
            "last_operation":{"seq":40,"short_signature":"ABCDEF01"},
            "checkpoint":{"chain_head":"00ff","merkle_root":"11ee"},
            "operators":{"85073003328":{"net":"10.00","payments":{"cash":"10.00"},"cash_rounding":"0.00"}},
            "fdm_id":"DEVFDMD0001","vsc_id":"DEVSW-1","short_signature":"12345678",
            "journal_seq":41,"signed_digest":"ab12"});
        let text = render(&r);
        assert!(
            !text.contains("85073003328"),
            "the INSZ is never printed:\n{text}"
        );
        assert!(text.contains("USER ...3328"), "{text}");
        assert!(text.contains("3 to 40"), "no Rust range syntax:\n{text}");
        for needle in [
            "Z REPORT",
            "000004",
            "till-1",
            "NET TURNOVER (VAT incl.)",
            "10.00",
            "ABCDEF01 #40",
            "VAT 1.74",
            "00ff",
            "11ee",
            "12345678",
            "Anchor (journal record 41, SHA-256):\n  41:ab12",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
        assert!(text.lines().all(|l| l.chars().count() <= 80));
    }
}
