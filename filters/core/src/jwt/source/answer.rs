//! The admin's data-plane answers (version 1), read strictly enough to trust: every field
//! the filter acts on must be there with its type; fields it does not know are ignored (a
//! newer admin may add some). A body that does not read is no answer at all.

use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Where the admin's feed stood when it answered: every answer carries it (as its own
/// `epoch` and `head` members: `serde(flatten)` would buffer every answer through serde's
/// generic content, which costs the module kilobytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    /// Made with the database: another epoch is another feed (a restored or new database).
    pub epoch: String,
    /// The last event id committed when the answer was read.
    pub head: u64,
}

/// `GET /v1/credentials/{key}`.
#[derive(Clone, Debug, Deserialize)]
pub struct CredentialAnswer {
    pub epoch: String,
    pub head: u64,
    pub found: bool,
    pub consumer: Option<AnswerConsumer>,
    pub credential: Option<AnswerCredential>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct AnswerConsumer {
    pub id: String,
    /// Null when the consumer has only a `custom_id`: then no `X-Consumer-Username`.
    pub username: Option<String>,
    pub custom_id: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    pub cutoff: Option<AnswerCutoff>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct AnswerCredential {
    pub id: String,
    pub key: String,
    pub algorithm: String,
    pub secret: Option<String>,
    pub rsa_public_key: Option<String>,
    pub cutoff: Option<AnswerCutoff>,
}

/// A consumer's or credential's cutoff: tokens issued at or before `issued_before` are
/// revoked, until `expires_at` (+ grace; null: for as long as it exists).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub struct AnswerCutoff {
    pub issued_before: i64,
    pub expires_at: Option<i64>,
}

/// `GET /v1/changes?after=N`.
#[derive(Clone, Debug, Deserialize)]
pub struct ChangesAnswer {
    pub epoch: String,
    pub head: u64,
    #[serde(default)]
    pub reset: bool,
    pub events: Vec<Event>,
}

/// One event of the feed.
#[derive(Clone, Debug, Deserialize)]
pub struct Event {
    pub id: u64,
    pub entity: String,
    pub entity_id: Option<String>,
    /// Every credential key whose answer this change alters.
    #[serde(default)]
    pub credentials: Vec<String>,
}

impl Event {
    /// The revocation this event is about, if it is one: fetch its delta.
    pub fn revocation(&self) -> Option<&str> {
        (self.entity == "revocations")
            .then_some(self.entity_id.as_deref())
            .flatten()
    }
}

/// One revocation, as `/v1/revocations` lists it (and `/v1/revocations/{id}` answers it).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Revocation {
    pub id: String,
    /// The token's `exp`, or the cutoff's end; null: for as long as it exists.
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub jti: Option<String>,
    #[serde(default)]
    pub consumer_id: Option<String>,
    #[serde(default)]
    pub credential_id: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub issued_before: Option<i64>,
}

/// `GET /v1/revocations`.
#[derive(Clone, Debug, Deserialize)]
pub struct RevocationsAnswer {
    pub epoch: String,
    pub head: u64,
    pub grace: u64,
    pub jtis: Vec<Revocation>,
    pub consumers: Vec<Revocation>,
    pub credentials: Vec<Revocation>,
}

/// `GET /v1/revocations/{id}`.
#[derive(Clone, Debug, Deserialize)]
pub struct RevocationAnswer {
    pub epoch: String,
    pub head: u64,
    pub grace: u64,
    pub found: bool,
    pub revocation: Option<Revocation>,
}

/// Reads an answer: only a 200 whose body is the expected document is one. Any other status
/// (a 404 of a wrong path or version, a 401, a 503) is not an answer about anything.
pub fn read<T: DeserializeOwned>(status: Option<&str>, body: &[u8]) -> Result<T, String> {
    match status {
        Some("200") => serde_json::from_slice(body).map_err(|e| format!("unreadable answer: {e}")),
        Some(other) => Err(format!("status {other}")),
        None => Err("no answer (connection failed or timed out)".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_found_credential_reads() {
        let body = br#"{"epoch":"e1","head":7,"found":true,"grace":86400,
            "consumer":{"id":"c1","username":null,"custom_id":"x","groups":["admins"],"cutoff":null},
            "credential":{"id":"k1","key":"mobile","algorithm":"HS256","secret":"s","cutoff":{"issued_before":10,"expires_at":null}}}"#;
        let a: CredentialAnswer = read(Some("200"), body).unwrap();
        assert_eq!(
            a.position(),
            Position {
                epoch: "e1".into(),
                head: 7
            }
        );
        let consumer = a.consumer.unwrap();
        assert_eq!(
            (consumer.username, consumer.groups),
            (None, vec!["admins".to_owned()])
        );
        assert_eq!(a.credential.unwrap().cutoff.unwrap().issued_before, 10);
    }

    #[test]
    fn only_a_200_with_the_document_is_an_answer() {
        assert!(read::<CredentialAnswer>(Some("404"), br#"{"found":false}"#).is_err());
        assert!(read::<CredentialAnswer>(Some("200"), br#"{"found":false}"#).is_err());
        assert!(read::<CredentialAnswer>(None, b"").is_err());
        assert!(
            read::<ChangesAnswer>(Some("200"), br#"{"epoch":"e","head":"1","events":[]}"#).is_err()
        );
        let c: ChangesAnswer = read(
            Some("200"),
            br#"{"epoch":"e","head":3,"events":[{"id":3,"at_ms":1,"entity":"revocations","entity_id":"r","op":"create","credentials":[]}],"new_field":1}"#,
        )
        .unwrap();
        assert_eq!(c.events[0].revocation(), Some("r"));
        assert!(!c.reset);
    }
}

macro_rules! position {
    ($($answer:ty),*) => {$(
        impl $answer {
            /// Where the feed stood when the admin answered.
            pub fn position(&self) -> Position {
                Position {
                    epoch: self.epoch.clone(),
                    head: self.head,
                }
            }
        }
    )*};
}

position!(
    CredentialAnswer,
    ChangesAnswer,
    RevocationsAnswer,
    RevocationAnswer
);
