//! The rule a looked-up consumer's token is checked against (services/admin/README.md,
//! "Revocations"): a token is revoked when its `jti` is listed without a credential, or
//! with the credential that verified it (by key); or when its consumer or its credential
//! has a cutoff and the token's `iat` is at or before `issued_before` — a token without
//! `iat` under a cutoff is revoked. Every entry is in force until `expires_at + grace`.
//!
//! Memory: one entry per revocation in force, each under ~1.3 KB with its indexes (a jti of
//! at most 256 bytes, a key of at most 1024); the admin keeps at most `--max-revocations`
//! in force, which bounds this set per worker.

use std::collections::HashMap;

use super::answer::{AnswerCutoff, Revocation};

/// A cutoff as the check needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cutoff {
    pub issued_before: i64,
    pub expires_at: Option<i64>,
}

impl From<AnswerCutoff> for Cutoff {
    fn from(c: AnswerCutoff) -> Cutoff {
        Cutoff {
            issued_before: c.issued_before,
            expires_at: c.expires_at,
        }
    }
}

impl Cutoff {
    /// Whether this cutoff revokes a token issued at `iat` (`None`: no `iat`), at `now`.
    pub fn revokes(&self, iat: Option<f64>, now: u64, grace: u64) -> bool {
        in_force(self.expires_at, now, grace)
            && iat.is_none_or(|iat| iat <= self.issued_before as f64)
    }
}

fn in_force(expires_at: Option<i64>, now: u64, grace: u64) -> bool {
    match expires_at {
        None => true,
        Some(at) => at.saturating_add(grace as i64) >= now as i64,
    }
}

/// What the check needs to know of a verified token and who verified it.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokenFacts<'a> {
    pub jti: Option<&'a str>,
    pub iat: Option<f64>,
    /// The key of the consumer credential that verified the token, if one did.
    pub key: Option<&'a str>,
    pub consumer_id: Option<&'a str>,
    pub credential_id: Option<&'a str>,
}

/// Every revocation in force, indexed for the check, and by id for the feed's deltas.
#[derive(Clone, Debug, Default)]
pub struct RevocationSet {
    grace: u64,
    by_id: HashMap<String, Revocation>,
    /// jti → ids of the entries naming it.
    jtis: HashMap<String, Vec<String>>,
    consumers: HashMap<String, Vec<String>>,
    credentials: HashMap<String, Vec<String>>,
}

impl RevocationSet {
    pub fn new(grace: u64) -> RevocationSet {
        RevocationSet {
            grace,
            ..RevocationSet::default()
        }
    }

    /// A set of these entries.
    pub fn of(grace: u64, entries: impl IntoIterator<Item = Revocation>) -> RevocationSet {
        let mut set = RevocationSet::new(grace);
        for entry in entries {
            set.insert(entry);
        }
        set
    }

    pub fn grace(&self) -> u64 {
        self.grace
    }

    pub fn set_grace(&mut self, grace: u64) {
        self.grace = grace;
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Every entry (for the shared copy).
    pub fn entries(&self) -> impl Iterator<Item = &Revocation> {
        self.by_id.values()
    }

    /// Adds (or replaces) an entry.
    pub fn insert(&mut self, entry: Revocation) {
        self.remove(&entry.id.clone());
        let id = entry.id.clone();
        let index = if let Some(jti) = &entry.jti {
            Some((&mut self.jtis, jti.clone()))
        } else if let Some(credential) = &entry.credential_id {
            Some((&mut self.credentials, credential.clone()))
        } else {
            entry
                .consumer_id
                .clone()
                .map(|consumer| (&mut self.consumers, consumer))
        };
        if let Some((index, name)) = index {
            index.entry(name).or_default().push(id.clone());
        }
        self.by_id.insert(id, entry);
    }

    /// Removes the entry with this id, if there is one.
    pub fn remove(&mut self, id: &str) {
        let Some(old) = self.by_id.remove(id) else {
            return;
        };
        for (index, name) in [
            (&mut self.jtis, old.jti.as_ref()),
            (
                &mut self.credentials,
                old.credential_id.as_ref().filter(|_| old.jti.is_none()),
            ),
            (&mut self.consumers, old.consumer_id.as_ref()),
        ] {
            if let Some(name) = name {
                if let Some(ids) = index.get_mut(name) {
                    ids.retain(|i| i != id);
                    if ids.is_empty() {
                        index.remove(name);
                    }
                }
            }
        }
    }

    /// Forgets the entries no longer in force at `now`.
    pub fn expire(&mut self, now: u64) {
        let grace = self.grace;
        let gone: Vec<String> = self
            .by_id
            .values()
            .filter(|e| !in_force(e.expires_at, now, grace))
            .map(|e| e.id.clone())
            .collect();
        for id in gone {
            self.remove(&id);
        }
    }

    /// Whether `token` is revoked at `now` by an entry of this set.
    pub fn revokes(&self, token: &TokenFacts<'_>, now: u64) -> bool {
        let live = |ids: Option<&Vec<String>>| {
            ids.into_iter()
                .flatten()
                .filter_map(|id| self.by_id.get(id))
                .filter(|e| in_force(e.expires_at, now, self.grace))
                .collect::<Vec<_>>()
        };
        if let Some(jti) = token.jti {
            let listed = live(self.jtis.get(jti)).into_iter().any(|e| match &e.key {
                None => e.credential_id.is_none(),
                Some(key) => token.key == Some(key.as_str()),
            });
            if listed {
                return true;
            }
        }
        let cutoff = |entries: Vec<&Revocation>| {
            entries.into_iter().any(|e| {
                token
                    .iat
                    .is_none_or(|iat| e.issued_before.is_some_and(|b| iat <= b as f64))
            })
        };
        token
            .consumer_id
            .is_some_and(|c| cutoff(live(self.consumers.get(c))))
            || token
                .credential_id
                .is_some_and(|c| cutoff(live(self.credentials.get(c))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jti(id: &str, jti: &str, key: Option<&str>, expires_at: i64) -> Revocation {
        Revocation {
            id: id.into(),
            expires_at: Some(expires_at),
            jti: Some(jti.into()),
            credential_id: key.map(|_| "cred-1".to_owned()),
            key: key.map(str::to_owned),
            consumer_id: None,
            issued_before: None,
        }
    }

    fn cutoff(id: &str, consumer: &str, issued_before: i64) -> Revocation {
        Revocation {
            id: id.into(),
            expires_at: None,
            jti: None,
            credential_id: None,
            key: None,
            consumer_id: Some(consumer.into()),
            issued_before: Some(issued_before),
        }
    }

    #[test]
    fn a_listed_jti_is_revoked_until_exp_plus_grace() {
        let set = RevocationSet::of(100, [jti("r1", "t-1", None, 1000)]);
        let token = TokenFacts {
            jti: Some("t-1"),
            iat: Some(10.0),
            ..TokenFacts::default()
        };
        assert!(set.revokes(&token, 1000));
        assert!(set.revokes(&token, 1100));
        assert!(!set.revokes(&token, 1101));
        assert!(!set.revokes(
            &TokenFacts {
                jti: Some("t-2"),
                ..token
            },
            1000
        ));
    }

    #[test]
    fn a_credentials_jti_revokes_only_that_credentials_token() {
        let set = RevocationSet::of(0, [jti("r1", "t-1", Some("mobile"), 9999)]);
        let mut token = TokenFacts {
            jti: Some("t-1"),
            key: Some("mobile"),
            ..TokenFacts::default()
        };
        assert!(set.revokes(&token, 1));
        token.key = Some("web");
        assert!(!set.revokes(&token, 1));
        token.key = None;
        assert!(!set.revokes(&token, 1));
    }

    #[test]
    fn a_cutoff_revokes_at_or_before_and_no_iat() {
        let set = RevocationSet::of(0, [cutoff("r1", "c1", 500)]);
        let at = |iat: Option<f64>| TokenFacts {
            iat,
            consumer_id: Some("c1"),
            ..TokenFacts::default()
        };
        assert!(set.revokes(&at(Some(500.0)), 1000));
        assert!(set.revokes(&at(Some(499.5)), 1000));
        assert!(!set.revokes(&at(Some(500.5)), 1000));
        assert!(set.revokes(&at(None), 1000));
        assert!(!set.revokes(
            &TokenFacts {
                consumer_id: Some("c2"),
                ..at(None)
            },
            1000
        ));
    }

    #[test]
    fn deltas_replace_and_remove_and_time_forgets() {
        let mut set = RevocationSet::of(10, [jti("r1", "a", None, 100), cutoff("r2", "c1", 5)]);
        set.insert(jti("r1", "b", None, 100));
        let facts = |j| TokenFacts {
            jti: Some(j),
            iat: Some(50.0),
            ..TokenFacts::default()
        };
        assert!(!set.revokes(&facts("a"), 1));
        assert!(set.revokes(&facts("b"), 1));
        set.remove("r1");
        assert!(!set.revokes(&facts("b"), 1));
        set.insert(jti("r3", "c", None, 100));
        set.expire(111);
        assert_eq!(
            set.len(),
            1,
            "r3 forgotten past exp + grace, the cutoff kept"
        );
        let answer_cutoff = Cutoff {
            issued_before: 60,
            expires_at: Some(200),
        };
        assert!(answer_cutoff.revokes(Some(60.0), 210, 10));
        assert!(!answer_cutoff.revokes(Some(60.0), 211, 10));
    }
}
