//! Schema migrations (sea-orm-migration), applied by `consult-hub migrate`
//! and at every `serve`. Migrations are frozen once released: a change is a
//! new migration, never an edit.

use sea_orm_migration::prelude::*;

mod m20261128_000001_core;
mod m20261128_000002_notifications;
mod m20261204_000003_clinic_scoped_contacts;
mod m20261204_000004_inbound_sms;
mod m20261204_000005_preferred_name;
mod m20261204_000006_revocations;
mod m20261205_000007_template_ids;
mod m20261205_000008_retention;
mod m20261205_000009_message_partitions;
mod m20261206_000010_messages_without_autoincrement;
mod m20261206_000011_sqlite_idempotency_by_the_writer;
mod m20261207_000012_pg_receipt_flush;

/// The ordered list of migrations.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261128_000001_core::Migration),
            Box::new(m20261128_000002_notifications::Migration),
            Box::new(m20261204_000003_clinic_scoped_contacts::Migration),
            Box::new(m20261204_000004_inbound_sms::Migration),
            Box::new(m20261204_000005_preferred_name::Migration),
            Box::new(m20261204_000006_revocations::Migration),
            Box::new(m20261205_000007_template_ids::Migration),
            Box::new(m20261205_000008_retention::Migration),
            Box::new(m20261205_000009_message_partitions::Migration),
            Box::new(m20261206_000010_messages_without_autoincrement::Migration),
            Box::new(m20261206_000011_sqlite_idempotency_by_the_writer::Migration),
            Box::new(m20261207_000012_pg_receipt_flush::Migration),
        ]
    }
}
