//! The core schema: clinics, participants, consultations, messages, receipts
//! and the audit log.

// `async_trait` signatures of `MigrationTrait` cannot name the lifetime.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum Clinics {
    Table,
    Id,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Participants {
    Table,
    Id,
    ClinicId,
    Role,
    DisplayName,
    Phone,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Consultations {
    Table,
    Id,
    ClinicId,
    ProviderId,
    PatientId,
    Status,
    ScheduledAt,
    WaitingSince,
    StaffMessagedFirst,
    LastSeq,
    Rev,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    ConsultationId,
    Seq,
    SenderId,
    SenderRole,
    Kind,
    Body,
    ClientMsgId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Receipts {
    Table,
    ConsultationId,
    UserId,
    DeliveredSeq,
    ReadSeq,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    At,
    ActorId,
    ActorRole,
    Action,
    ConsultationId,
    Detail,
}

fn text_key<T: IntoIden>(name: T) -> ColumnDef {
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
                    .table(Clinics::Table)
                    .col(text_key(Clinics::Id).primary_key())
                    .col(ColumnDef::new(Clinics::Name).string().not_null())
                    .col(timestamp(Clinics::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Participants::Table)
                    .col(text_key(Participants::Id).primary_key())
                    .col(text_key(Participants::ClinicId))
                    .col(ColumnDef::new(Participants::Role).string_len(16).not_null())
                    .col(
                        ColumnDef::new(Participants::DisplayName)
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Participants::Phone).string_len(32).null())
                    .col(timestamp(Participants::CreatedAt))
                    .col(timestamp(Participants::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Consultations::Table)
                    .col(text_key(Consultations::Id).primary_key())
                    .col(text_key(Consultations::ClinicId))
                    .col(text_key(Consultations::ProviderId))
                    .col(text_key(Consultations::PatientId))
                    .col(
                        ColumnDef::new(Consultations::Status)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(timestamp(Consultations::ScheduledAt))
                    .col(
                        ColumnDef::new(Consultations::WaitingSince)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Consultations::StaffMessagedFirst)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(
                        ColumnDef::new(Consultations::LastSeq)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(Consultations::Rev)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(timestamp(Consultations::CreatedAt))
                    .col(timestamp(Consultations::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("idx_consultations_clinic_status", Consultations::ClinicId),
            (
                "idx_consultations_provider_status",
                Consultations::ProviderId,
            ),
            ("idx_consultations_patient", Consultations::PatientId),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Consultations::Table)
                        .col(column)
                        .col(Consultations::Status)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(Messages::Table)
                    .col(
                        ColumnDef::new(Messages::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(text_key(Messages::ConsultationId))
                    .col(ColumnDef::new(Messages::Seq).big_integer().not_null())
                    .col(text_key(Messages::SenderId))
                    .col(
                        ColumnDef::new(Messages::SenderRole)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Messages::Kind).string_len(16).not_null())
                    .col(ColumnDef::new(Messages::Body).text().not_null())
                    .col(ColumnDef::new(Messages::ClientMsgId).string_len(128).null())
                    .col(timestamp(Messages::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_messages_consultation_seq")
                    .table(Messages::Table)
                    .col(Messages::ConsultationId)
                    .col(Messages::Seq)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_messages_client_msg_id")
                    .table(Messages::Table)
                    .col(Messages::ConsultationId)
                    .col(Messages::SenderId)
                    .col(Messages::ClientMsgId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Receipts::Table)
                    .col(text_key(Receipts::ConsultationId))
                    .col(text_key(Receipts::UserId))
                    .col(
                        ColumnDef::new(Receipts::DeliveredSeq)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(Receipts::ReadSeq)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(timestamp(Receipts::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(Receipts::ConsultationId)
                            .col(Receipts::UserId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .col(
                        ColumnDef::new(AuditLog::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(timestamp(AuditLog::At))
                    .col(text_key(AuditLog::ActorId))
                    .col(
                        ColumnDef::new(AuditLog::ActorRole)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(ColumnDef::new(AuditLog::Action).string_len(64).not_null())
                    .col(
                        ColumnDef::new(AuditLog::ConsultationId)
                            .string_len(128)
                            .null(),
                    )
                    .col(ColumnDef::new(AuditLog::Detail).text().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_log_consultation")
                    .table(AuditLog::Table)
                    .col(AuditLog::ConsultationId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AuditLog::Table.into_iden(),
            Receipts::Table.into_iden(),
            Messages::Table.into_iden(),
            Consultations::Table.into_iden(),
            Participants::Table.into_iden(),
            Clinics::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
