//! `inbound_sms`: the Twilio `MessageSid` of every signed inbound SMS the hub
//! acted on, so a replayed request (same signature, same body) is seen and
//! ignored.

// `async_trait` signatures of `MigrationTrait` cannot name the lifetime.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(super) struct Migration;

#[derive(DeriveIden)]
enum InboundSms {
    Table,
    MessageSid,
    ReceivedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(InboundSms::Table)
                    .col(
                        ColumnDef::new(InboundSms::MessageSid)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(InboundSms::ReceivedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(InboundSms::Table).to_owned())
            .await
    }
}
