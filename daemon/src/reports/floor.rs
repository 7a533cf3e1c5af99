//! What stands in the way of a Z report: open tables and operators still clocked in.
//!
//! The running daemon takes both lists from the restaurant workflows (`crate::restaurant`, see
//! `Reports::with_restaurant`). This fold over the records of the report's period is the
//! fallback for a [`super::Reports`] without them (library use, tests): it needs nothing but
//! the journal.
//!
//! Rules used here:
//! - A table is open when the last non-training fiscal event that names it (`table` in the body)
//!   is a pro forma (PS or PR). A normal sale (NS or NR) on the table closes it. Training and
//!   copies do not change a table.
//! - An operator is clocked in after a WORK IN and out after a WORK OUT. Either is recognised as
//!   a fiscal event whose body has `"purpose": "work_in"` / `"work_out"` (as the restaurant
//!   workflows journal them), or (the FDM v1 practice in
//!   the reference §6) a zero-total NS whose first line's description is `WORK IN` / `WORK OUT`.
//!   Operators a previous Z report recorded as clocked in (under an override) start clocked in.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A table with a pro forma and no final sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenTable {
    /// Table id as the registers send it.
    pub table: String,
    /// Register of the last pro forma.
    pub register: String,
    /// Journal sequence number of the last pro forma.
    pub seq: u64,
}

/// Tables and staff as the records of a period leave them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Floor {
    tables: BTreeMap<String, Option<OpenTable>>,
    /// Operator → register of the WORK IN.
    clocked_in: BTreeMap<String, String>,
}

/// A WORK IN or WORK OUT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Clocked in.
    In,
    /// Clocked out.
    Out,
}

/// Whether a fiscal event body is a WORK IN or WORK OUT.
pub fn work_event(body: &Map<String, Value>) -> Option<Work> {
    match body.get("purpose").and_then(Value::as_str) {
        Some("work_in") => return Some(Work::In),
        Some("work_out") => return Some(Work::Out),
        _ => {}
    }
    if body.get("label").and_then(Value::as_str) != Some("NS")
        || body.get("total").and_then(Value::as_str) != Some("0.00")
    {
        return None;
    }
    let first = body
        .get("lines")
        .and_then(Value::as_array)
        .and_then(|l| l.first())
        .and_then(|l| l.get("description"))
        .and_then(Value::as_str)?;
    let normalised: String = first.split_whitespace().collect::<Vec<_>>().join(" ");
    match normalised.to_ascii_uppercase().as_str() {
        "WORK IN" => Some(Work::In),
        "WORK OUT" => Some(Work::Out),
        _ => None,
    }
}

impl Floor {
    /// Starts with the operators (and their registers) a previous report left clocked in.
    pub fn starting_with(clocked_in: impl IntoIterator<Item = (String, String)>) -> Self {
        Floor {
            tables: BTreeMap::new(),
            clocked_in: clocked_in.into_iter().collect(),
        }
    }

    /// Takes one fiscal event of the period into account.
    pub fn add(&mut self, seq: u64, register: &str, body: &Map<String, Value>) {
        let operator = body.get("operator").and_then(Value::as_str).unwrap_or("");
        match work_event(body) {
            Some(Work::In) => {
                self.clocked_in
                    .insert(operator.to_owned(), register.to_owned());
            }
            Some(Work::Out) => {
                self.clocked_in.remove(operator);
            }
            None => {}
        }
        let Some(table) = body.get("table").and_then(Value::as_str) else {
            return;
        };
        match body
            .get("label")
            .and_then(Value::as_str)
            .and_then(|l| l.chars().next())
        {
            Some('P') => {
                self.tables.insert(
                    table.to_owned(),
                    Some(OpenTable {
                        table: table.to_owned(),
                        register: register.to_owned(),
                        seq,
                    }),
                );
            }
            Some('N') => {
                self.tables.insert(table.to_owned(), None);
            }
            _ => {}
        }
    }

    /// Tables whose pro forma has no final sale yet.
    pub fn open_tables(&self) -> Vec<OpenTable> {
        self.tables.values().flatten().cloned().collect()
    }

    /// Operators clocked in, with the register they clocked in on.
    pub fn clocked_in(&self) -> Vec<(String, String)> {
        self.clocked_in
            .iter()
            .map(|(o, r)| (o.clone(), r.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn tables_open_with_a_pro_forma_and_close_with_a_sale() {
        let mut f = Floor::default();
        f.add(
            1,
            "hh-1",
            &body(json!({"label":"PS","table":"12","total":"9.00"})),
        );
        f.add(
            2,
            "hh-1",
            &body(json!({"label":"PS","table":"7","total":"9.00"})),
        );
        f.add(
            3,
            "till-1",
            &body(json!({"label":"NS","table":"12","total":"9.00"})),
        );
        f.add(
            4,
            "till-1",
            &body(json!({"label":"TS","table":"7","total":"9.00"})),
        );
        let open = f.open_tables();
        assert_eq!(open.len(), 1);
        assert_eq!((open[0].table.as_str(), open[0].seq), ("7", 2));
    }

    #[test]
    fn work_in_and_out() {
        let mut f = Floor::starting_with([("a".to_owned(), "t".to_owned())]);
        let work = |op: &str, what: &str| {
            body(json!({"label":"NS","total":"0.00","operator":op,
                "lines":[{"description":what,"total":"0.00"}]}))
        };
        f.add(1, "t", &work("b", "WORK IN"));
        f.add(2, "t", &work("a", "work  out"));
        f.add(
            3,
            "t",
            &body(json!({"label":"NS","total":"0.00","operator":"c","purpose":"work_in"})),
        );
        let ops: Vec<String> = f.clocked_in().into_iter().map(|(o, _)| o).collect();
        assert_eq!(ops, ["b", "c"]);
        assert_eq!(work_event(&work("x", "Cola")), None);
    }
}
