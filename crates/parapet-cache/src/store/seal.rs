//! Invalidation messages on the pub/sub channel: sealed with an HMAC when the cache has a
//! secret, and confined to the cache's own keys either way.
//!
//! A message is `kind | key`, followed with a secret by `HMAC-SHA-256(secret, channel | kind |
//! key)` (32 bytes). Anyone who can `PUBLISH` on the channel could otherwise make every
//! instance drop its local tier; with a secret, only holders of the secret can. Without one,
//! a message is still only obeyed for keys under the cache's prefix (all of them, for a batch
//! of keys: `K` deleted, `T` tombstoned), and a purge (`p`, or `s` for a soft one) only for one
//! well-formed tenant prefix, so a forged message can drop at most one tenant's local entries,
//! never the whole tier.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The length of a message's HMAC tag.
const TAG_LEN: usize = 32;

/// Seals outgoing invalidation messages and opens incoming ones.
#[derive(Clone)]
pub(crate) struct Seal {
    secret: Option<Arc<[u8]>>,
    channel: String,
    key_prefix: Bytes,
}

impl fmt::Debug for Seal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Seal")
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("channel", &self.channel)
            .field("key_prefix", &String::from_utf8_lossy(&self.key_prefix))
            .finish()
    }
}

impl Seal {
    pub(crate) fn new(channel: String, key_prefix: &str, secret: Option<Arc<[u8]>>) -> Self {
        Self {
            secret,
            channel,
            key_prefix: Bytes::copy_from_slice(key_prefix.as_bytes()),
        }
    }

    /// The same seal on another channel.
    pub(crate) fn with_channel(self, channel: String) -> Self {
        Self { channel, ..self }
    }

    /// The channel messages travel on.
    pub(crate) fn channel(&self) -> &str {
        &self.channel
    }

    fn mac(&self, secret: &[u8], kind: u8, key: &[u8]) -> HmacSha256 {
        // Any key length is valid for HMAC.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(&(self.channel.len() as u64).to_be_bytes());
        mac.update(self.channel.as_bytes());
        mac.update(&[kind]);
        mac.update(key);
        mac
    }

    /// The payload announcing `kind` for `key`.
    pub(crate) fn seal(&self, kind: u8, key: &[u8]) -> Vec<u8> {
        let mut payload = Vec::with_capacity(1 + key.len() + TAG_LEN);
        payload.push(kind);
        payload.extend_from_slice(key);
        if let Some(secret) = &self.secret {
            payload.extend_from_slice(&self.mac(secret, kind, key).finalize().into_bytes());
        }
        payload
    }

    /// The kind and key of a message to obey, or `None` for one that is forged (a missing or
    /// wrong tag when there is a secret) or names keys outside the cache's own.
    pub(crate) fn open<'a>(&self, payload: &'a [u8]) -> Option<(u8, &'a [u8])> {
        let body = match &self.secret {
            Some(secret) => {
                let split = payload.len().checked_sub(TAG_LEN)?;
                let (body, tag) = payload.split_at(split);
                let (&kind, key) = body.split_first()?;
                self.mac(secret, kind, key).verify_slice(tag).ok()?;
                body
            }
            None => payload,
        };
        let (&kind, key) = body.split_first()?;
        let confined = match kind {
            b'k' | b't' => self.confined(key),
            b'K' | b'T' => batch_keys(key)
                .is_some_and(|keys| !keys.is_empty() && keys.iter().all(|key| self.confined(key))),
            b'p' | b's' => key
                .strip_prefix(&self.key_prefix[..])
                .is_some_and(is_tenant_component),
            _ => false,
        };
        confined.then_some((kind, key))
    }
}

impl Seal {
    /// Whether `key` is one of the cache's own keys.
    fn confined(&self, key: &[u8]) -> bool {
        key.starts_with(&self.key_prefix) && key.len() > self.key_prefix.len()
    }
}

/// The body of a message naming several keys (`K`: deleted, `T`: tombstoned): each key as a
/// big-endian `u32` length and its bytes.
pub(crate) fn batch<'a>(keys: impl IntoIterator<Item = &'a Bytes>) -> Vec<u8> {
    let mut out = Vec::new();
    for key in keys {
        let len = u32::try_from(key.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&key[..len as usize]);
    }
    out
}

/// The keys of a [`batch`] body; `None` when it is malformed.
pub(crate) fn batch_keys(mut body: &[u8]) -> Option<Vec<&[u8]>> {
    let mut keys = Vec::new();
    while !body.is_empty() {
        let (len, rest) = body.split_at_checked(4)?;
        let len = u32::from_be_bytes(len.try_into().ok()?) as usize;
        let (key, rest) = rest.split_at_checked(len)?;
        keys.push(key);
        body = rest;
    }
    Some(keys)
}

/// Whether `rest` is exactly one tenant component (`t<len>:<id>|`) or the single-tenant one
/// (`s|`): what follows the prefix in a tenant prefix (see `key::tenant_prefix`).
fn is_tenant_component(rest: &[u8]) -> bool {
    if rest == b"s|" {
        return true;
    }
    let Some(rest) = rest.strip_prefix(b"t") else {
        return false;
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let Some(len) = std::str::from_utf8(&rest[..digits])
        .ok()
        .and_then(|d| d.parse::<usize>().ok())
    else {
        return false;
    };
    let rest = &rest[digits..];
    len > 0 && rest.len() == len + 2 && rest[0] == b':' && rest[len + 1] == b'|'
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::tenant_prefix;

    fn seal(secret: Option<&[u8]>) -> Seal {
        Seal::new(
            "parapet:cache:invalidate".to_owned(),
            "parapet:cache:",
            secret.map(Arc::from),
        )
    }

    #[test]
    fn what_is_obeyed_without_a_secret() {
        let s = seal(None);
        let acme = tenant_prefix("parapet:cache:", Some("acme"));
        let single = tenant_prefix("parapet:cache:", None);
        let key = b"parapet:cache:t4:acme|n1:0|mGET|u2:/a|";
        type Opened<'a> = Option<(u8, &'a [u8])>;
        let cases: Vec<(Vec<u8>, Opened<'_>)> = vec![
            (s.seal(b'k', key), Some((b'k', key))),
            (s.seal(b't', key), Some((b't', key))),
            (s.seal(b'p', &acme), Some((b'p', &acme[..]))),
            (s.seal(b'p', &single), Some((b'p', &single[..]))),
            // A purge of everything, of the bare prefix, of another deployment's keys.
            (b"p".to_vec(), None),
            (b"pparapet:cache:".to_vec(), None),
            (b"pother:t4:acme|".to_vec(), None),
            // A purge that is not exactly one tenant: wider or narrower or malformed.
            (b"pparapet:cache:t".to_vec(), None),
            (b"pparapet:cache:t4:ac".to_vec(), None),
            (b"pparapet:cache:t2:acme|".to_vec(), None),
            (b"pparapet:cache:t4:acme|n1:0|".to_vec(), None),
            (b"pparapet:cache:t0:|".to_vec(), None),
            (b"pparapet:cache:t99999999999999999999999:a|".to_vec(), None),
            // Keys outside the prefix, the bare prefix, unknown kinds, nothing.
            (b"kother:key".to_vec(), None),
            (b"kparapet:cache:".to_vec(), None),
            (b"xparapet:cache:t4:acme|".to_vec(), None),
            (Vec::new(), None),
        ];
        for (payload, expected) in cases {
            assert_eq!(
                s.open(&payload),
                expected,
                "{}",
                String::from_utf8_lossy(&payload)
            );
        }
    }

    #[test]
    fn with_a_secret_only_sealed_messages_are_obeyed() {
        let s = seal(Some(b"s3cret"));
        let acme = tenant_prefix("parapet:cache:", Some("acme"));
        let sealed = s.seal(b'p', &acme);
        assert_eq!(sealed.len(), 1 + acme.len() + TAG_LEN);
        assert_eq!(s.open(&sealed), Some((b'p', &acme[..])));
        // Unsealed, sealed with another secret or for another channel, or tampered with.
        let unsealed = seal(None).seal(b'p', &acme);
        assert_eq!(s.open(&unsealed), None);
        assert_eq!(s.open(&seal(Some(b"other")).seal(b'p', &acme)), None);
        let elsewhere = Seal::new(
            "x".to_owned(),
            "parapet:cache:",
            Some(Arc::from(&b"s3cret"[..])),
        );
        assert_eq!(s.open(&elsewhere.seal(b'p', &acme)), None);
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 1;
            assert_eq!(s.open(&tampered), None, "byte {i}");
        }
        assert_eq!(s.open(&sealed[..sealed.len() - 1]), None);
        assert_eq!(s.open(b""), None);
        // A sealed message still has to stay within the prefix.
        assert_eq!(s.open(&s.seal(b'p', b"")), None);
        assert!(!format!("{s:?}").contains("s3cret"));
    }

    #[test]
    fn batches_and_soft_purges_are_confined_like_single_messages() {
        let s = seal(None);
        let acme = tenant_prefix("parapet:cache:", Some("acme"));
        let a = Bytes::from_static(b"parapet:cache:t4:acme|n1:0|mGET|u2:/a|");
        let b = Bytes::from_static(b"parapet:cache:t4:acme|n1:0|mGET|u2:/b|");
        let body = batch([&a, &b]);
        assert_eq!(batch_keys(&body), Some(vec![&a[..], &b[..]]));
        for kind in [b'K', b'T'] {
            let payload = s.seal(kind, &body);
            let (opened, keys) = s.open(&payload).unwrap();
            assert_eq!(opened, kind);
            assert_eq!(batch_keys(keys).unwrap().len(), 2);
        }
        // One key outside the prefix spoils the whole batch; so do a truncated or empty one.
        let outside = Bytes::from_static(b"other:key");
        assert_eq!(s.open(&s.seal(b'K', &batch([&a, &outside]))), None);
        assert_eq!(s.open(&s.seal(b'K', &body[..body.len() - 1])), None);
        assert_eq!(s.open(&s.seal(b'K', &[])), None);
        // A soft tenant purge names exactly one tenant, as a purge does.
        assert_eq!(s.open(&s.seal(b's', &acme)), Some((b's', &acme[..])));
        assert_eq!(s.open(b"sparapet:cache:"), None);
        assert_eq!(s.open(b"sparapet:cache:t4:acme|n1:0|"), None);
        // With a secret, a batch must carry the tag like any message.
        let sealed = seal(Some(b"secret"));
        assert!(sealed.open(&sealed.seal(b'K', &body)).is_some());
        assert_eq!(sealed.open(&s.seal(b'K', &body)), None);
    }
}
