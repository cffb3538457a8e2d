//! Pure rules of the product, with no IO: who may act on a consultation,
//! which status changes are allowed, what makes a message body valid, the
//! privacy check of outbound text, Quick Message templates, and the
//! escalation plan that decides which notifications a message queues.
//!
//! Depends on nothing but `consult-protocol` types and the [`Principal`]
//! (plain data). Everything here is unit-tested without a runtime.
//!
//! [`Principal`]: crate::auth::Principal

pub mod access;
pub mod consultation;
pub mod escalation;
pub mod person;
pub mod privacy;
pub mod status;
pub mod templates;
pub mod text;

pub use consultation::Consultation;
pub use person::PersonKey;
