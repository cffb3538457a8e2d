//! sea-orm entities: one file per table. Only `store` uses them; past the
//! store's edge, rows become domain and protocol types.

// sea-orm derives generate `pub` items; the module itself is crate-private.
#![allow(unreachable_pub)]

pub(crate) mod audit_log;
pub(crate) mod clinic;
pub(crate) mod clinic_policy;
pub(crate) mod consultation;
pub(crate) mod device;
pub(crate) mod message;
pub(crate) mod outbox;
pub(crate) mod participant;
pub(crate) mod quick_template;
pub(crate) mod receipt;
pub(crate) mod sms_preference;
pub(crate) mod token_revocation;
