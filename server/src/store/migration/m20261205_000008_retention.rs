//! What message retention needs: when a consultation ended
//! (`consultations.ended_at`, set on the move to `ended` or `cancelled`;
//! consultations that ended before this migration take their `updated_at`,
//! the time of their last status change), when its messages were deleted
//! (`consultations.messages_purged_at`), and each clinic's retention
//! (`clinic_policies.message_retention_days`, `NULL`: keep forever).

// `async_trait` signatures of `MigrationTrait` cannot name the lifetime.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum Consultations {
    Table,
    EndedAt,
    MessagesPurgedAt,
}

#[derive(DeriveIden)]
enum ClinicPolicies {
    Table,
    MessageRetentionDays,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        for column in [Consultations::EndedAt, Consultations::MessagesPurgedAt] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Consultations::Table)
                        .add_column(ColumnDef::new(column).timestamp_with_time_zone().null())
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(ClinicPolicies::Table)
                    .add_column(
                        ColumnDef::new(ClinicPolicies::MessageRetentionDays)
                            .integer()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE consultations SET ended_at = updated_at \
                 WHERE status IN ('ended', 'cancelled') AND ended_at IS NULL",
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_consultations_clinic_ended")
                    .table(Consultations::Table)
                    .col(Alias::new("clinic_id"))
                    .col(Consultations::EndedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_consultations_clinic_ended")
                    .table(Consultations::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(ClinicPolicies::Table)
                    .drop_column(ClinicPolicies::MessageRetentionDays)
                    .to_owned(),
            )
            .await?;
        for column in [Consultations::MessagesPurgedAt, Consultations::EndedAt] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Consultations::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
