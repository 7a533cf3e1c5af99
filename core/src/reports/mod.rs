//! What X and Z reports carry that a verifier recomputes from the records of their period: the
//! figures ([`figures`]) and the integrity checkpoint's Merkle root ([`merkle`]). The daemon makes
//! reports with these functions and `fdmctl verify` checks them with the same ones.

pub mod figures;
pub mod merkle;
