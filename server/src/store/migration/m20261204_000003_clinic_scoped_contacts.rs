//! Push devices and SMS preferences scoped by clinic: `devices` is keyed by
//! `(clinic_id, token)` and `sms_preferences` by `(clinic_id, user_id)`, so a
//! record written under one clinic is never read for another. Both tables
//! are rebuilt (SQLite cannot change a primary key in place); existing rows
//! take their clinic from the participant they belong to, and rows of no
//! known participant are dropped, since no clinic could have reached them.

// `async_trait` signatures of `MigrationTrait` cannot name the lifetime.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum Devices {
    Table,
    ClinicId,
    Token,
    UserId,
    Platform,
    NotificationsEnabled,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum DevicesByClinic {
    Table,
}

#[derive(DeriveIden)]
enum SmsPreferences {
    ClinicId,
    UserId,
    Consent,
    OptedOut,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum SmsPreferencesByClinic {
    Table,
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

/// Copies `old` into `new`, drops `old` and renames `new` to `old`, in one
/// batch on one connection (a pooled SQLite connection could otherwise run
/// the rename against a schema that still holds `old`).
async fn replace(
    manager: &SchemaManager<'_>,
    old: &str,
    new: &str,
    copy: &str,
) -> Result<(), DbErr> {
    let batch = format!("{copy}; DROP TABLE \"{old}\"; ALTER TABLE \"{new}\" RENAME TO \"{old}\"");
    manager.get_connection().execute_unprepared(&batch).await?;
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DevicesByClinic::Table)
                    .col(key(Devices::ClinicId))
                    .col(ColumnDef::new(Devices::Token).string_len(512).not_null())
                    .col(key(Devices::UserId))
                    .col(ColumnDef::new(Devices::Platform).string_len(16).not_null())
                    .col(
                        ColumnDef::new(Devices::NotificationsEnabled)
                            .boolean()
                            .not_null(),
                    )
                    .col(timestamp(Devices::CreatedAt))
                    .col(timestamp(Devices::UpdatedAt))
                    .primary_key(Index::create().col(Devices::ClinicId).col(Devices::Token))
                    .to_owned(),
            )
            .await?;
        replace(
            manager,
            "devices",
            "devices_by_clinic",
            "INSERT INTO devices_by_clinic \
               (clinic_id, token, user_id, platform, notifications_enabled, created_at, updated_at) \
             SELECT p.clinic_id, d.token, d.user_id, d.platform, d.notifications_enabled, \
                    d.created_at, d.updated_at \
             FROM devices d JOIN participants p ON p.id = d.user_id",
        )
        .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_devices_clinic_user")
                    .table(Devices::Table)
                    .col(Devices::ClinicId)
                    .col(Devices::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_devices_token")
                    .table(Devices::Table)
                    .col(Devices::Token)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SmsPreferencesByClinic::Table)
                    .col(key(SmsPreferences::ClinicId))
                    .col(key(SmsPreferences::UserId))
                    .col(ColumnDef::new(SmsPreferences::Consent).boolean().not_null())
                    .col(
                        ColumnDef::new(SmsPreferences::OptedOut)
                            .boolean()
                            .not_null(),
                    )
                    .col(timestamp(SmsPreferences::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(SmsPreferences::ClinicId)
                            .col(SmsPreferences::UserId),
                    )
                    .to_owned(),
            )
            .await?;
        replace(
            manager,
            "sms_preferences",
            "sms_preferences_by_clinic",
            "INSERT INTO sms_preferences_by_clinic \
               (clinic_id, user_id, consent, opted_out, updated_at) \
             SELECT p.clinic_id, s.user_id, s.consent, s.opted_out, s.updated_at \
             FROM sms_preferences s JOIN participants p ON p.id = s.user_id",
        )
        .await
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Err(DbErr::Migration(
            "clinic-scoped devices and SMS preferences cannot be unscoped".to_owned(),
        ))
    }
}
