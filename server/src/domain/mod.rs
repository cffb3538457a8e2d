//! Pure rules of the product, with no IO: who may act on a consultation,
//! which status changes are allowed, and what makes a message body valid.
//!
//! Depends on nothing but `consult-protocol` types and the [`Principal`]
//! (plain data). Everything here is unit-tested without a runtime.
//!
//! [`Principal`]: crate::auth::Principal

pub mod access;
pub mod consultation;
pub mod status;
pub mod text;

pub use consultation::Consultation;
