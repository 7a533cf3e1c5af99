//! The fiscal model: orders, VAT, PLU hash, INSZ/BIS numbers, labels and result codes.
//! Pure functions and types; nothing here does I/O.

pub mod error;
pub mod insz;
pub mod label;
pub mod money;
pub mod order;
pub mod plu;
pub mod precomputed;
pub mod request;
pub mod sale;
pub mod vat;

pub use error::{FdmCode, FieldError, ValidationError};
pub use label::{Direction, EventType, Label};
pub use order::{MenuPartNames, Order};
pub use precomputed::PrecomputedEvent;
pub use sale::Sale;
pub use vat::VatLetter;
