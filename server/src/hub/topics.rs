//! Topic names for rooms and dashboard feeds.
//!
//! A topic is a kind followed by its parts, each part escaped so that no
//! two different lists of parts give the same name: `:` separates parts, so
//! a `:` inside a part is written `%3A` and a `%` is written `%25`. Clinic
//! `acme` with provider `east:dr-z` is `feed:provider:acme:east%3Adr-z`;
//! clinic `acme:east` with provider `dr-z` is `feed:provider:acme%3Aeast:dr-z`.
//! Redis channels and presence keys are built with the same [`escape`].

use crate::broker::Topic;
use consult_protocol::{ClinicId, ConsultationId, UserId};
use std::borrow::Cow;
use std::fmt::Write as _;

/// One part of a topic or key, with `%` and `:` escaped.
pub fn escape(part: &str) -> Cow<'_, str> {
    if !part.contains(['%', ':']) {
        return Cow::Borrowed(part);
    }
    let mut escaped = String::with_capacity(part.len() + 8);
    for c in part.chars() {
        match c {
            '%' => escaped.push_str("%25"),
            ':' => escaped.push_str("%3A"),
            other => escaped.push(other),
        }
    }
    Cow::Owned(escaped)
}

/// `kind` and each escaped part, joined by `:`.
pub fn join(kind: &str, parts: &[&str]) -> String {
    let mut name =
        String::with_capacity(kind.len() + parts.iter().map(|p| p.len() + 1).sum::<usize>());
    name.push_str(kind);
    for part in parts {
        let _ = write!(name, ":{}", escape(part));
    }
    name
}

/// `kind:{part:part…}`: each part escaped as [`escape`] does and braces
/// too (`{` is `%7B`, `}` is `%7D`), so the braces around the parts are a
/// Redis Cluster hash tag that no id can end early, and different lists of
/// parts still give different names. On a single Redis the braces are just
/// characters of the key.
pub fn hash_tagged(kind: &str, parts: &[&str]) -> String {
    let mut name =
        String::with_capacity(kind.len() + 3 + parts.iter().map(|p| p.len() + 1).sum::<usize>());
    name.push_str(kind);
    name.push_str(":{");
    for (index, part) in parts.iter().enumerate() {
        if index > 0 {
            name.push(':');
        }
        for c in escape(part).chars() {
            match c {
                '{' => name.push_str("%7B"),
                '}' => name.push_str("%7D"),
                other => name.push(other),
            }
        }
    }
    name.push('}');
    name
}

/// The room of one consultation.
pub fn room(consultation: &ConsultationId) -> Topic {
    join("room", &[consultation.as_str()]).into()
}

/// The "Active and Waiting" feed of one provider in one clinic. The clinic
/// is part of the name so that a watcher from another clinic naming the same
/// provider id never hears this clinic's rows.
pub fn provider_feed(clinic: &ClinicId, provider: &UserId) -> Topic {
    join("feed:provider", &[clinic.as_str(), provider.as_str()]).into()
}

/// The "Active and Waiting" feed of a whole clinic.
pub fn clinic_feed(clinic: &ClinicId) -> Topic {
    join("feed:clinic", &[clinic.as_str()]).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tags_hold_every_part_and_no_id_closes_them_early() {
        assert_eq!(
            hash_tagged("presence", &["acme", "pat"]),
            "presence:{acme:pat}"
        );
        assert_eq!(
            hash_tagged("presence", &["a}c", "p{:%"]),
            "presence:{a%7Dc:p%7B%3A%25}"
        );
        assert_ne!(
            hash_tagged("presence", &["a:b", "c"]),
            hash_tagged("presence", &["a", "b:c"])
        );
    }

    #[test]
    fn a_colon_in_a_clinic_or_provider_id_cannot_make_two_feeds_one() {
        let a = provider_feed(&ClinicId::from("acme"), &UserId::from("east:dr-z"));
        let b = provider_feed(&ClinicId::from("acme:east"), &UserId::from("dr-z"));
        assert_ne!(a, b);
        assert_eq!(&*a, "feed:provider:acme:east%3Adr-z");
        assert_eq!(&*b, "feed:provider:acme%3Aeast:dr-z");
    }

    #[test]
    fn a_feed_of_one_provider_never_names_a_clinic_feed() {
        let provider = provider_feed(&ClinicId::from("acme"), &UserId::from("x"));
        let clinic = clinic_feed(&ClinicId::from("acme:x"));
        assert_ne!(provider, clinic);
        assert_ne!(
            room(&ConsultationId::from("a:b")),
            room(&ConsultationId::from("a%3Ab"))
        );
    }

    #[test]
    fn plain_ids_are_not_copied() {
        assert!(matches!(escape("pat-alex"), Cow::Borrowed(_)));
        assert_eq!(escape("a%b:c"), "a%25b%3Ac");
    }
}
