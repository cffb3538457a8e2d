//! Room for a clinic default template's id: it is the clinic id (up to 128
//! characters) and a key (`{clinic}:running-behind`), longer than the
//! 128-character column PostgreSQL enforced. SQLite does not enforce
//! string lengths, so there is nothing to change there.

// `async_trait` signatures of `MigrationTrait` cannot name the lifetime.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum QuickTemplates {
    Table,
    Id,
}

async fn set_id_length(manager: &SchemaManager<'_>, length: u32) -> Result<(), DbErr> {
    if manager.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(());
    }
    manager
        .alter_table(
            Table::alter()
                .table(QuickTemplates::Table)
                .modify_column(
                    ColumnDef::new(QuickTemplates::Id)
                        .string_len(length)
                        .not_null(),
                )
                .to_owned(),
        )
        .await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        set_id_length(manager, 200).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        set_id_length(manager, 128).await
    }
}
