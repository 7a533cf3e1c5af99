//! Event types and labels: the type letter (N, P, T, C) plus S (sale) or R (refund).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The four event types of an FDM v1 ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// A VAT receipt (N).
    Normal,
    /// A pro forma: order round, bill before payment (P). Not a VAT receipt.
    ProForma,
    /// Training mode (T). Never a VAT receipt, never turnover.
    Training,
    /// A copy of an earlier ticket (C).
    Copy,
}

impl EventType {
    /// Every type.
    pub const ALL: [EventType; 4] = [
        EventType::Normal,
        EventType::ProForma,
        EventType::Training,
        EventType::Copy,
    ];

    /// The type letter.
    pub fn letter(self) -> char {
        match self {
            EventType::Normal => 'N',
            EventType::ProForma => 'P',
            EventType::Training => 'T',
            EventType::Copy => 'C',
        }
    }

    /// The wire name (`normal`, `pro_forma`, `training`, `copy`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "normal",
            EventType::ProForma => "pro_forma",
            EventType::Training => "training",
            EventType::Copy => "copy",
        }
    }

    /// Parses the wire name.
    pub fn parse(text: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == text)
    }

    fn from_letter(c: char) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.letter() == c)
    }
}

/// Sale or refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// S: total positive (or zero with a positive first line).
    Sale,
    /// R: total negative (or zero with a negative first line).
    Refund,
}

impl Direction {
    /// `S` or `R`.
    pub fn letter(self) -> char {
        match self {
            Direction::Sale => 'S',
            Direction::Refund => 'R',
        }
    }
}

/// An event label such as `NS` or `PR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    /// The event type.
    pub event_type: EventType,
    /// Sale or refund.
    pub direction: Direction,
}

impl Label {
    /// Every label, in the order NS NR PS PR TS TR CS CR.
    pub fn all() -> impl Iterator<Item = Label> {
        EventType::ALL.into_iter().flat_map(|event_type| {
            [Direction::Sale, Direction::Refund]
                .into_iter()
                .map(move |direction| Label {
                    event_type,
                    direction,
                })
        })
    }

    /// The label of a ticket: R when the total is negative; a zero total takes the sign of the
    /// first line's quantity (reference §2, Odoo's rule); no lines at all is a sale.
    pub fn for_ticket(
        event_type: EventType,
        total: Decimal,
        first_quantity: Option<Decimal>,
    ) -> Self {
        let negative = if total.is_zero() {
            first_quantity.is_some_and(|q| q.is_sign_negative() && !q.is_zero())
        } else {
            total.is_sign_negative()
        };
        Label {
            event_type,
            direction: if negative {
                Direction::Refund
            } else {
                Direction::Sale
            },
        }
    }

    /// Parses `NS`, `PR`, … .
    pub fn parse(text: &str) -> Option<Label> {
        let mut chars = text.chars();
        let event_type = EventType::from_letter(chars.next()?)?;
        let direction = match chars.next()? {
            'S' => Direction::Sale,
            'R' => Direction::Refund,
            _ => return None,
        };
        if chars.next().is_some() {
            return None;
        }
        Some(Label {
            event_type,
            direction,
        })
    }

    /// True for NS and NR, the only VAT receipts.
    pub fn is_vat_receipt(self) -> bool {
        self.event_type == EventType::Normal
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.event_type.letter(), self.direction.letter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn labels_from_totals() {
        let l =
            |t, total: &str, q: Option<&str>| Label::for_ticket(t, d(total), q.map(d)).to_string();
        assert_eq!(l(EventType::Normal, "14.10", Some("1")), "NS");
        assert_eq!(l(EventType::Normal, "-2.20", Some("1")), "NR");
        assert_eq!(l(EventType::ProForma, "0", Some("-1")), "PR");
        assert_eq!(l(EventType::ProForma, "0", Some("1")), "PS");
        assert_eq!(l(EventType::Normal, "0", None), "NS");
        assert_eq!(l(EventType::Training, "-1", Some("1")), "TR");
        assert_eq!(l(EventType::Copy, "5", Some("1")), "CS");
    }

    #[test]
    fn parse_round_trips_every_label() {
        let names: Vec<String> = Label::all().map(|l| l.to_string()).collect();
        assert_eq!(names, ["NS", "NR", "PS", "PR", "TS", "TR", "CS", "CR"]);
        for l in Label::all() {
            assert_eq!(Label::parse(&l.to_string()), Some(l));
        }
        for bad in ["", "N", "NX", "XS", "NSS", "ns"] {
            assert_eq!(Label::parse(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn direction_follows_the_sign_of_a_nonzero_total(cents in -1_000_000i64..1_000_000, q in -5i64..5) {
            prop_assume!(cents != 0);
            let label = Label::for_ticket(EventType::Normal, Decimal::new(cents, 2), Some(Decimal::from(q)));
            prop_assert_eq!(label.direction == Direction::Refund, cents < 0);
        }
    }
}
