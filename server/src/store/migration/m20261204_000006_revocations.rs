//! Token revocations: one row per revoked token (`jti`) or per user whose
//! tokens issued up to a time are revoked.

// `async_trait` signatures of `MigrationTrait` cannot name the lifetime.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum TokenRevocations {
    Table,
    Id,
    Kind,
    Jti,
    ClinicId,
    UserId,
    IssuedBefore,
    ExpiresAt,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TokenRevocations::Table)
                    .col(
                        ColumnDef::new(TokenRevocations::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(TokenRevocations::Kind)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(ColumnDef::new(TokenRevocations::Jti).string_len(128).null())
                    .col(
                        ColumnDef::new(TokenRevocations::ClinicId)
                            .string_len(128)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(TokenRevocations::UserId)
                            .string_len(128)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(TokenRevocations::IssuedBefore)
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(TokenRevocations::ExpiresAt)
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(TokenRevocations::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TokenRevocations::Table).to_owned())
            .await
    }
}
