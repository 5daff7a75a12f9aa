//! Who a user is and which drop they are in: validated newtypes for platform, user and
//! event ids.
//!
//! Every id ends up inside a Redis key (`{ev:<id>}:user:<platform>:<uid>`), a Kafka
//! key and a URL path, so the charset is restricted up front: `:` separates the parts
//! of a queue member, `{`/`}` would break the cluster hash tag, and whitespace or
//! control characters would make logs and keys ambiguous.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest accepted id, in bytes. Identity providers issue ids well below this
/// (Firebase 28, Auth0 ~30, UUIDs 36); the cap bounds Redis key and message sizes.
pub const MAX_ID_LEN: usize = 128;

/// Why an id was rejected. Each variant names the field so an HTTP error can say
/// which claim or path segment was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id was empty (a missing claim usually arrives as "").
    #[error("{field} is empty")]
    Empty {
        /// Which id: `platform_id`, `user_id` or `event_id`.
        field: &'static str,
    },
    /// The id was longer than [`MAX_ID_LEN`] bytes.
    #[error("{field} is {len} bytes long; at most {MAX_ID_LEN} are allowed")]
    TooLong {
        /// Which id.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// The id held a character outside the allowed set.
    #[error("{field} contains {found:?}; allowed are ASCII letters, digits and {allowed}")]
    BadCharacter {
        /// Which id.
        field: &'static str,
        /// The first offending character.
        found: char,
        /// The punctuation allowed for this kind of id.
        allowed: &'static str,
    },
    /// A queue member without the `<platform>:<user>` separator.
    #[error("{0:?} is not a `<platform>:<user>` member")]
    NotAMember(String),
}

/// Punctuation allowed in user and platform ids besides ASCII letters and digits. `|`
/// and `@` appear in real identity-provider subjects (`auth0|5f1c...`, emails).
const SUBJECT_PUNCTUATION: &str = "-_.@|+=";
/// Punctuation allowed in event ids: they appear in URL paths, so nothing that needs
/// percent-encoding.
const EVENT_PUNCTUATION: &str = "-_.";

fn validate(field: &'static str, raw: &str, punctuation: &'static str) -> Result<(), IdError> {
    if raw.is_empty() {
        return Err(IdError::Empty { field });
    }
    if raw.len() > MAX_ID_LEN {
        return Err(IdError::TooLong {
            field,
            len: raw.len(),
        });
    }
    if let Some(found) = raw
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || punctuation.contains(*c)))
    {
        return Err(IdError::BadCharacter {
            field,
            found,
            allowed: punctuation,
        });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $field:literal, $punct:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates `raw` (non-empty, at most [`MAX_ID_LEN`] bytes, safe charset).
            pub fn parse(raw: impl Into<String>) -> Result<Self, IdError> {
                let raw = raw.into();
                validate($field, &raw, $punct)?;
                Ok(Self(raw))
            }

            /// The id as it was given.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(raw: String) -> Result<Self, IdError> {
                Self::parse(raw)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// The platform (tenant, storefront) a user signed in through: the token's
    /// `platformId` claim.
    PlatformId,
    "platform_id",
    SUBJECT_PUNCTUATION
);
id_type!(
    /// The user's id on its platform: the token's `userId` claim.
    UserId,
    "user_id",
    SUBJECT_PUNCTUATION
);
id_type!(
    /// One drop (sale, raffle): the `{event_id}` path segment.
    EventId,
    "event_id",
    EVENT_PUNCTUATION
);

/// A user of dropgate. The same person on two platforms is two users, so both parts
/// are always carried together.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UserKey {
    /// From the token's `platformId` claim.
    pub platform_id: PlatformId,
    /// From the token's `userId` claim.
    pub user_id: UserId,
}

impl UserKey {
    /// Validates both parts.
    pub fn parse(platform_id: &str, user_id: &str) -> Result<Self, IdError> {
        Ok(Self {
            platform_id: PlatformId::parse(platform_id)?,
            user_id: UserId::parse(user_id)?,
        })
    }

    /// `<platform>:<user>`: the queue member, hash field and Kafka message key.
    /// Unambiguous because neither part may contain `:`.
    pub fn member(&self) -> String {
        format!("{}:{}", self.platform_id, self.user_id)
    }

    /// Inverse of [`UserKey::member`].
    pub fn from_member(member: &str) -> Result<Self, IdError> {
        let (platform, user) = member
            .split_once(':')
            .ok_or_else(|| IdError::NotAMember(member.to_owned()))?;
        Self::parse(platform, user)
    }
}

impl fmt::Display for UserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.platform_id, self.user_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_real_world_subjects() {
        for raw in [
            "auth0|5f1c2b",
            "a@b.example",
            "550e8400-e29b-41d4-a716-446655440000",
        ] {
            assert_eq!(UserId::parse(raw).map(String::from), Ok(raw.to_owned()));
        }
    }

    #[test]
    fn rejects_empty_long_and_unsafe_ids_with_the_field_named() {
        assert_eq!(
            PlatformId::parse(""),
            Err(IdError::Empty {
                field: "platform_id"
            })
        );
        assert_eq!(
            UserId::parse("x".repeat(129)),
            Err(IdError::TooLong {
                field: "user_id",
                len: 129
            })
        );
        for (raw, bad) in [("a:b", ':'), ("{ev}", '{'), ("a b", ' '), ("é", 'é')] {
            match UserId::parse(raw) {
                Err(IdError::BadCharacter { found, .. }) => assert_eq!(found, bad),
                other => panic!("{raw:?} gave {other:?}"),
            }
        }
        assert!(EventId::parse("drop|1").is_err(), "| is not URL-safe");
        assert!(EventId::parse("x".repeat(128)).is_ok());
    }

    #[test]
    fn serde_refuses_invalid_ids() {
        let bad: Result<UserKey, _> =
            serde_json::from_str(r#"{"platform_id":"p","user_id":"a:b"}"#);
        assert!(bad.is_err());
        let good: UserKey = serde_json::from_str(r#"{"platform_id":"p","user_id":"u"}"#)
            .expect("valid key decodes");
        assert_eq!(good.member(), "p:u");
    }

    proptest! {
        #[test]
        fn member_round_trips(p in "[A-Za-z0-9._@|+=-]{1,128}", u in "[A-Za-z0-9._@|+=-]{1,128}") {
            let key = UserKey::parse(&p, &u).expect("generated ids are valid");
            prop_assert_eq!(UserKey::from_member(&key.member()), Ok(key));
        }

        #[test]
        fn parse_never_panics_and_accepts_only_safe_ids(raw in any::<String>()) {
            if let Ok(id) = UserId::parse(raw.clone()) {
                prop_assert!(!raw.is_empty() && raw.len() <= MAX_ID_LEN);
                prop_assert!(!id.as_str().contains(':'));
            }
        }
    }
}
