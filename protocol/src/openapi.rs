//! OpenAPI schemas (`utoipa`) for the identifier and sequence newtypes, with
//! the rules the hub enforces: an id is 1 to [`MAX_ID_LEN`] ASCII letters,
//! digits and [`ID_PUNCTUATION`]; a sequence number is a non-negative
//! integer. Built only with the `openapi` feature.

use crate::ids::{ClinicId, ConsultationId, ID_PUNCTUATION, MAX_ID_LEN, Seq, UserId};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::{PartialSchema, ToSchema};

/// The regular expression every id matches.
pub fn id_pattern() -> String {
    let mut punctuation = String::new();
    for c in ID_PUNCTUATION.chars() {
        if c == '-' {
            punctuation.push('\\');
        }
        punctuation.push(c);
    }
    format!("^[A-Za-z0-9{punctuation}]{{1,{MAX_ID_LEN}}}$")
}

fn id_schema(description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .min_length(Some(1))
        .max_length(Some(MAX_ID_LEN))
        .pattern(Some(id_pattern()))
        .into()
}

macro_rules! id_schemas {
    ($($name:ident => $description:literal),* $(,)?) => {$(
        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                id_schema($description)
            }
        }

        impl ToSchema for $name {}
    )*};
}

id_schemas!(
    ConsultationId => "A consultation (one room), assigned by the hub.",
    UserId => "A patient, provider or clinic admin, as known to the host platform.",
    ClinicId => "A clinic, as known to the host platform.",
);

impl PartialSchema for Seq {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(0))
            .description(Some(
                "Position of a message in its consultation: from 1, without gaps; 0 means nothing yet.",
            ))
            .into()
    }
}

impl ToSchema for Seq {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_pattern_names_every_allowed_character_and_the_length() {
        assert_eq!(id_pattern(), r"^[A-Za-z0-9\-_.:@|+~=]{1,128}$");
    }
}
