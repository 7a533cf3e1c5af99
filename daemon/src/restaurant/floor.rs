//! The floor: which tables are open and what has been registered on them.
//!
//! A table opens with its first pro forma round (PS/PR with `table`), collects the lines of every
//! round, and closes with its normal sale (NS/NR with `table`). Moves and merges are
//! `table_change` records. A *check* (a bill id, `check`) is the same for pro formas without a
//! table (a counter bill printed before payment): it opens with its first pro forma and closes
//! with the normal sale that names it; checks are never moved or merged. The state is a fold over the journal ([`OpenTables::apply_fiscal`],
//! [`OpenTables::apply_table_change`]): rebuilt at start-up, advanced after each durable record.

use crate::fiscal::money::{format_amount, round_cents};
use crate::fiscal::order::{LineOrigin, OrderLine};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// A line registered on an open table, with the pro forma it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct TableLine {
    /// The line as registered (its `origin` names the pro forma).
    pub line: OrderLine,
}

/// A pro forma registered for a table (a round or a bill).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRecord {
    /// Journal sequence number.
    pub seq: u64,
    /// PS or PR.
    pub label: String,
    /// Ticket number in its series.
    pub ticket_number: Option<u64>,
    /// `round` or `bill`.
    pub role: String,
    /// Register that sent it.
    pub register: String,
    /// FDM time.
    pub time: String,
}

/// One open table.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenTable {
    /// Table name (or check id when `check` is true).
    pub table: String,
    /// True for a check (pro formas without a table), false for a table.
    pub check: bool,
    /// FDM time of its first pro forma.
    pub opened_at: String,
    /// Operator of its last operation.
    pub operator: String,
    /// Every line registered, in order (corrections are negative lines).
    pub lines: Vec<TableLine>,
    /// Every pro forma of the table, in order.
    pub records: Vec<TableRecord>,
    /// Tables moved or merged into this one, in order.
    pub history: Vec<String>,
    /// Journal sequence numbers of the `table_change` records that moved or merged into it.
    pub changes: Vec<u64>,
}

impl OpenTable {
    /// Sum of the line totals, VAT included.
    pub fn total(&self) -> Decimal {
        self.lines
            .iter()
            .map(|l| round_cents(l.line.quantity * l.line.unit_price))
            .sum()
    }

    /// The table as shown by `GET /v1/tables`, the status topic and `fdmctl tables`.
    pub fn to_json(&self) -> Value {
        let (table, check) = if self.check {
            (None, Some(&self.table))
        } else {
            (Some(&self.table), None)
        };
        json!({
            "table": table,
            "check": check,
            "opened_at": self.opened_at,
            "operator": self.operator,
            "total": format_amount(self.total()),
            "lines": self.lines.len(),
            "pro_formas": self.records.iter().map(|r| json!({
                "journal_seq": r.seq, "label": r.label, "ticket_number": r.ticket_number,
                "role": r.role, "register": r.register, "fdm_time": r.time,
            })).collect::<Vec<_>>(),
            "history": self.history,
        })
    }
}

/// The open tables of the establishment (tables are shared by all registers).
///
/// Query API for other modules (the Z report refuses while [`OpenTables::is_empty`] is false):
/// [`OpenTables::is_empty`], [`OpenTables::len`], [`OpenTables::get`], [`OpenTables::iter`].
/// Get a snapshot with `App::restaurant.open_tables()`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpenTables {
    tables: BTreeMap<String, OpenTable>,
    checks: BTreeMap<String, OpenTable>,
}

fn text<'a>(body: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str)
}

impl OpenTables {
    /// True when no table is open.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty() && self.checks.is_empty()
    }

    /// Number of open tables and checks.
    pub fn len(&self) -> usize {
        self.tables.len() + self.checks.len()
    }

    /// One open table.
    pub fn get(&self, table: &str) -> Option<&OpenTable> {
        self.tables.get(table)
    }

    /// One open check (pro formas without a table).
    pub fn get_check(&self, check: &str) -> Option<&OpenTable> {
        self.checks.get(check)
    }

    /// A table (`check` false) or a check (`check` true).
    pub fn get_place(&self, name: &str, check: bool) -> Option<&OpenTable> {
        if check {
            self.get_check(name)
        } else {
            self.get(name)
        }
    }

    /// Every open table by name, then every open check by id.
    pub fn iter(&self) -> impl Iterator<Item = &OpenTable> {
        self.tables.values().chain(self.checks.values())
    }

    /// The journal records that make up the open tables and checks (their pro formas and the
    /// moves and merges into them): folded again in order, they give the same floor.
    pub fn records(&self) -> impl Iterator<Item = u64> + '_ {
        self.iter().flat_map(|t| {
            t.records
                .iter()
                .map(|r| r.seq)
                .chain(t.changes.iter().copied())
        })
    }

    /// The list as JSON.
    pub fn to_json(&self) -> Value {
        Value::Array(self.iter().map(OpenTable::to_json).collect())
    }

    /// Advances the floor with a durable `fiscal_event` record.
    pub fn apply_fiscal(&mut self, seq: u64, time: &str, body: &serde_json::Map<String, Value>) {
        let Some(label) = text(body, "label") else {
            return;
        };
        let (table, check) = match (text(body, "table"), text(body, "check")) {
            (Some(t), _) => (t, false),
            (None, Some(c)) => (c, true),
            (None, None) => return,
        };
        let places = if check {
            &mut self.checks
        } else {
            &mut self.tables
        };
        let operator = text(body, "operator").unwrap_or_default().to_owned();
        match label.chars().next() {
            Some('P') => {
                let role = text(body, "table_role").unwrap_or("round").to_owned();
                let entry = places.entry(table.to_owned()).or_insert_with(|| OpenTable {
                    table: table.to_owned(),
                    check,
                    opened_at: time.to_owned(),
                    operator: operator.clone(),
                    lines: Vec::new(),
                    records: Vec::new(),
                    history: Vec::new(),
                    changes: Vec::new(),
                });
                entry.operator = operator;
                let ticket_number = body.get("ticket_number").and_then(Value::as_u64);
                if role == "round"
                    && let Some(Value::Array(lines)) = body.get("lines")
                {
                    for l in lines {
                        if let Some(mut line) = OrderLine::from_journal(l) {
                            line.origin = Some(LineOrigin {
                                seq,
                                label: label.to_owned(),
                                ticket_number,
                            });
                            entry.lines.push(TableLine { line });
                        }
                    }
                }
                entry.records.push(TableRecord {
                    seq,
                    label: label.to_owned(),
                    ticket_number,
                    role,
                    register: text(body, "register").unwrap_or_default().to_owned(),
                    time: time.to_owned(),
                });
            }
            Some('N') => {
                places.remove(table);
            }
            _ => {}
        }
    }

    /// Advances the floor with a durable `table_change` record (`move` or `merge`).
    pub fn apply_table_change(&mut self, seq: u64, body: &serde_json::Map<String, Value>) {
        let (Some(from), Some(to)) = (text(body, "from"), text(body, "to")) else {
            return;
        };
        let Some(mut moved) = self.tables.remove(from) else {
            return;
        };
        match self.tables.get_mut(to) {
            Some(target) => {
                target.changes.append(&mut moved.changes);
                target.changes.push(seq);
                target.changes.sort_unstable();
                target.history.push(from.to_owned());
                target.history.append(&mut moved.history);
                target.lines.append(&mut moved.lines);
                target.records.append(&mut moved.records);
                target.records.sort_by_key(|r| r.seq);
                if moved.opened_at < target.opened_at {
                    target.opened_at = moved.opened_at;
                }
            }
            None => {
                moved.changes.push(seq);
                moved.history.push(from.to_owned());
                moved.table = to.to_owned();
                self.tables.insert(to.to_owned(), moved);
            }
        }
    }

    /// How much of an article (same description, unit, price and VAT letter) is still on the
    /// table: the sum of its quantities, corrections included.
    pub fn net_quantity(&self, table: &str, article: &OrderLine) -> Decimal {
        self.get(table)
            .map(|t| {
                t.lines
                    .iter()
                    .filter(|l| l.line.same_article(article))
                    .map(|l| l.line.quantity)
                    .sum()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> serde_json::Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn round(table: &str, label: &str, lines: Value) -> serde_json::Map<String, Value> {
        body(
            json!({"table": table, "label": label, "operator": "85073003328", "register": "r",
            "ticket_number": 1, "lines": lines}),
        )
    }

    #[test]
    fn rounds_open_moves_merge_and_sales_close() {
        let mut f = OpenTables::default();
        let cola = json!({"description":"Cola","quantity":"2","unit":"piece","unit_price":"2.50","vat":"A","total":"5.00"});
        let less = json!({"description":"Cola","quantity":"-1","unit":"piece","unit_price":"2.50","vat":"A","total":"-2.50"});
        f.apply_fiscal(1, "t1", &round("12", "PS", json!([cola])));
        f.apply_fiscal(2, "t2", &round("12", "PR", json!([less])));
        f.apply_fiscal(3, "t3", &round("7", "PS", json!([cola])));
        assert_eq!(f.len(), 2);
        let art = OrderLine::from_journal(&cola).unwrap();
        assert_eq!(f.net_quantity("12", &art), Decimal::ONE);
        f.apply_table_change(10, &body(json!({"action":"move","from":"12","to":"14"})));
        assert!(f.get("12").is_none());
        assert_eq!(f.get("14").unwrap().history, ["12"]);
        f.apply_table_change(11, &body(json!({"action":"merge","from":"7","to":"14"})));
        assert_eq!(f.len(), 1);
        let t = f.get("14").unwrap();
        assert_eq!(t.lines.len(), 3);
        assert_eq!(t.total().to_string(), "7.50");
        assert_eq!(t.lines[2].line.origin.as_ref().unwrap().seq, 3);
        assert_eq!(t.changes, [10, 11]);
        // A bill adds no lines; a training or copy ticket changes nothing; the NS closes.
        f.apply_fiscal(
            4,
            "t4",
            &body(json!({"table":"14","label":"PS","table_role":"bill","lines":[cola]})),
        );
        f.apply_fiscal(5, "t5", &round("14", "TS", json!([cola])));
        assert_eq!(f.get("14").unwrap().lines.len(), 3);
        assert_eq!(f.get("14").unwrap().records.len(), 4);
        f.apply_fiscal(6, "t6", &round("14", "NS", json!([])));
        assert!(f.is_empty());
    }

    #[test]
    fn checks_are_tracked_apart_from_tables() {
        let mut f = OpenTables::default();
        let cola = json!({"description":"Cola","quantity":"1","unit":"piece","unit_price":"2.50","vat":"A","total":"2.50"});
        f.apply_fiscal(
            1,
            "t1",
            &body(json!({"check":"C-1","label":"PS","operator":"o","register":"r","lines":[cola]})),
        );
        f.apply_fiscal(2, "t2", &round("C-1", "PS", json!([cola])));
        assert_eq!(f.len(), 2);
        assert!(f.get("C-1").is_some() && f.get_check("C-1").is_some());
        let json = f.to_json();
        assert_eq!(json[0]["table"], "C-1");
        assert_eq!(json[1]["check"], "C-1");
        assert!(json[1]["table"].is_null());
        f.apply_fiscal(
            3,
            "t3",
            &body(json!({"check":"C-1","label":"NS","operator":"o","register":"r"})),
        );
        assert_eq!(f.len(), 1);
        assert!(f.get_check("C-1").is_none());
    }
}
