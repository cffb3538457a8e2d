//! Notifications: Quick Message templates, devices, SMS preferences, clinic
//! escalation policies and the outbox.

// `async_trait` signatures of `MigrationTrait` cannot name the lifetime.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum QuickTemplates {
    Table,
    Id,
    ClinicId,
    ProviderId,
    Title,
    Body,
    Position,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Devices {
    Table,
    Token,
    UserId,
    Platform,
    NotificationsEnabled,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum SmsPreferences {
    Table,
    UserId,
    Consent,
    OptedOut,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ClinicPolicies {
    Table,
    ClinicId,
    PushAfterMs,
    OfflineGraceMs,
    SmsAfterUnreadMs,
    PushIncludeText,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    IdempotencyKey,
    ConsultationId,
    MessageSeq,
    RecipientId,
    Channel,
    Provider,
    Target,
    Title,
    Body,
    Reason,
    CancelRule,
    Status,
    Attempts,
    DueAt,
    NextAttemptAt,
    LeaseUntil,
    LastError,
    ProviderMessageId,
    CreatedAt,
    UpdatedAt,
}

fn key<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).string_len(128).not_null().to_owned()
}

fn timestamp<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(QuickTemplates::Table)
                    .col(key(QuickTemplates::Id).primary_key())
                    .col(key(QuickTemplates::ClinicId))
                    .col(
                        ColumnDef::new(QuickTemplates::ProviderId)
                            .string_len(128)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(QuickTemplates::Title)
                            .string_len(80)
                            .not_null(),
                    )
                    .col(ColumnDef::new(QuickTemplates::Body).text().not_null())
                    .col(
                        ColumnDef::new(QuickTemplates::Position)
                            .integer()
                            .not_null(),
                    )
                    .col(timestamp(QuickTemplates::CreatedAt))
                    .col(timestamp(QuickTemplates::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_quick_templates_clinic_provider")
                    .table(QuickTemplates::Table)
                    .col(QuickTemplates::ClinicId)
                    .col(QuickTemplates::ProviderId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Devices::Table)
                    .col(
                        ColumnDef::new(Devices::Token)
                            .string_len(512)
                            .not_null()
                            .primary_key(),
                    )
                    .col(key(Devices::UserId))
                    .col(ColumnDef::new(Devices::Platform).string_len(16).not_null())
                    .col(
                        ColumnDef::new(Devices::NotificationsEnabled)
                            .boolean()
                            .not_null(),
                    )
                    .col(timestamp(Devices::CreatedAt))
                    .col(timestamp(Devices::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_devices_user")
                    .table(Devices::Table)
                    .col(Devices::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SmsPreferences::Table)
                    .col(key(SmsPreferences::UserId).primary_key())
                    .col(ColumnDef::new(SmsPreferences::Consent).boolean().not_null())
                    .col(
                        ColumnDef::new(SmsPreferences::OptedOut)
                            .boolean()
                            .not_null(),
                    )
                    .col(timestamp(SmsPreferences::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ClinicPolicies::Table)
                    .col(key(ClinicPolicies::ClinicId).primary_key())
                    .col(
                        ColumnDef::new(ClinicPolicies::PushAfterMs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ClinicPolicies::OfflineGraceMs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ClinicPolicies::SmsAfterUnreadMs)
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(ClinicPolicies::PushIncludeText)
                            .boolean()
                            .not_null(),
                    )
                    .col(timestamp(ClinicPolicies::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Outbox::Table)
                    .col(key(Outbox::Id).primary_key())
                    .col(
                        ColumnDef::new(Outbox::IdempotencyKey)
                            .string_len(200)
                            .not_null()
                            .unique_key(),
                    )
                    .col(key(Outbox::ConsultationId))
                    .col(ColumnDef::new(Outbox::MessageSeq).big_integer().null())
                    .col(key(Outbox::RecipientId))
                    .col(ColumnDef::new(Outbox::Channel).string_len(16).not_null())
                    .col(ColumnDef::new(Outbox::Provider).string_len(16).not_null())
                    .col(ColumnDef::new(Outbox::Target).string_len(512).not_null())
                    .col(ColumnDef::new(Outbox::Title).string_len(200).not_null())
                    .col(ColumnDef::new(Outbox::Body).text().not_null())
                    .col(ColumnDef::new(Outbox::Reason).string_len(16).not_null())
                    .col(ColumnDef::new(Outbox::CancelRule).string_len(32).not_null())
                    .col(ColumnDef::new(Outbox::Status).string_len(16).not_null())
                    .col(
                        ColumnDef::new(Outbox::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(timestamp(Outbox::DueAt))
                    .col(timestamp(Outbox::NextAttemptAt))
                    .col(
                        ColumnDef::new(Outbox::LeaseUntil)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(Outbox::LastError).string_len(200).null())
                    .col(
                        ColumnDef::new(Outbox::ProviderMessageId)
                            .string_len(200)
                            .null(),
                    )
                    .col(timestamp(Outbox::CreatedAt))
                    .col(timestamp(Outbox::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_outbox_due")
                    .table(Outbox::Table)
                    .col(Outbox::Status)
                    .col(Outbox::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_outbox_consultation")
                    .table(Outbox::Table)
                    .col(Outbox::ConsultationId)
                    .col(Outbox::Channel)
                    .col(Outbox::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Outbox::Table.into_iden(),
            ClinicPolicies::Table.into_iden(),
            SmsPreferences::Table.into_iden(),
            Devices::Table.into_iden(),
            QuickTemplates::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
