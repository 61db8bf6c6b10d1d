//! Cache keys: tenant, method and normalised URI, then the `Vary` secondary key.
//!
//! Every component is length-prefixed (`<len>:<bytes>`), so no choice of tenant, path or header
//! value can make two different requests share a key: tenant `a:b` with path `c` and tenant `a`
//! with path `b:c` give `…t3:a:b|…u2:/c` and `…t1:a|…u4:/b:c`. The configured prefix comes
//! first so a deployment can keep its keys apart from others in one Redis. After the tenant
//! comes its generation (`n<len>:<generation>|`), which a tenant purge bumps: the keys of the old
//! generation are never built again. A path and query longer than 256 bytes is named by its
//! SHA-256 (`h64:<hex>|`), so a key stays small whatever the client sends.

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};
use http::Uri;
use sha2::{Digest, Sha256};

/// The primary key of a URI for one tenant (GET and HEAD share it).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PrimaryKey {
    bytes: Bytes,
    /// Length of the prefix-and-tenant part.
    tenant_len: usize,
}

/// Paths and queries longer than this are hashed into the key (SHA-256, hex).
pub(crate) const HASHED_URI_LENGTH: usize = 256;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The prefix shared by every key of one tenant (`None`: the single-tenant keys).
#[must_use]
pub fn tenant_prefix(prefix: &str, tenant: Option<&str>) -> Bytes {
    let mut out = BytesMut::with_capacity(prefix.len() + 16);
    out.put_slice(prefix.as_bytes());
    match tenant {
        Some(tenant) => put_component(&mut out, b't', tenant.as_bytes()),
        None => out.put_slice(b"s|"),
    }
    out.freeze()
}

/// The key of the index of primary keys tagged `tag`, under a tenant prefix (a sorted set
/// scored by each member's expiry).
pub(crate) fn tag_index(tenant_prefix: &[u8], tag: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(tenant_prefix.len() + tag.len() + 8);
    out.put_slice(tenant_prefix);
    put_component(&mut out, b'z', tag.as_bytes());
    out.freeze()
}

/// The key holding a tenant's generation (bumped by a tenant purge), under its tenant prefix.
///
/// `G|` never starts a component (components are a tag byte then a length), so it cannot
/// equal any entry or index key.
#[must_use]
pub fn generation_key(tenant_prefix: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(tenant_prefix.len() + 2);
    out.put_slice(tenant_prefix);
    out.put_slice(b"G|");
    out.freeze()
}

/// The key holding when a tenant was last soft-purged (milliseconds since the Unix epoch),
/// under its tenant prefix. Like [`generation_key`], `S|` never starts a component.
#[must_use]
pub fn soft_purge_key(tenant_prefix: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(tenant_prefix.len() + 2);
    out.put_slice(tenant_prefix);
    out.put_slice(b"S|");
    out.freeze()
}

impl PrimaryKey {
    /// Builds the key. `tenant` is `None` only in single-tenant mode, which uses a component
    /// no tenant id can produce. `generation` is the tenant's current generation (see
    /// [`Store::generation`](crate::Store::generation)): a tenant purge bumps it, which makes
    /// every key built with the old one unreachable.
    #[must_use]
    pub fn new(prefix: &str, tenant: Option<&str>, generation: u64, path_and_query: &str) -> Self {
        Self::finish(
            Self::start(prefix, tenant, path_and_query),
            generation,
            path_and_query,
        )
    }

    /// Builds the key under a [`tenant_prefix`] already made (the generation is read under
    /// it first, so a request makes the prefix once).
    #[cfg(test)]
    pub(crate) fn under(tenant_prefix: &[u8], generation: u64, path_and_query: &str) -> Self {
        Self::finish(tenant_prefix.to_vec(), generation, path_and_query)
    }

    /// The buffer a key is built in, holding its [`tenant_prefix`] so far: a request reads the
    /// generation under that prefix, then [`finish`](Self::finish)es the key in the same
    /// allocation. Its capacity is the whole key's length for a generation of one digit, so the
    /// key usually ends exactly as long as its buffer (a `Bytes` made from a buffer with room
    /// left costs one more allocation).
    pub(crate) fn start(prefix: &str, tenant: Option<&str>, path_and_query: &str) -> Vec<u8> {
        let tenant_part = tenant.map_or(2, |t| component_len(t.len()));
        let uri_part = component_len(uri_len(path_and_query));
        let mut out = Vec::with_capacity(
            prefix.len() + tenant_part + component_len(1) + METHOD.len() + uri_part,
        );
        out.extend_from_slice(prefix.as_bytes());
        match tenant {
            Some(tenant) => put_component(&mut out, b't', tenant.as_bytes()),
            None => out.extend_from_slice(b"s|"),
        }
        out
    }

    /// The key whose [`start`](Self::start) (its tenant prefix) is `out`, for `generation`.
    pub(crate) fn finish(mut out: Vec<u8>, generation: u64, path_and_query: &str) -> Self {
        let path_and_query = normalized(path_and_query);
        let tenant_len = out.len();
        let mut digits = itoa::Buffer::new();
        let generation = digits.format(generation).as_bytes();
        let rest = component_len(generation.len())
            + METHOD.len()
            + component_len(uri_len(&path_and_query));
        if out.capacity() - out.len() < rest {
            out.reserve_exact(rest);
        }
        put_component(&mut out, b'n', generation);
        // Only GET responses are stored; HEAD is answered from them.
        out.extend_from_slice(METHOD);
        if path_and_query.len() > HASHED_URI_LENGTH {
            // A long URI (a cursor of kilobytes) is named by its SHA-256: keys, tag index
            // members and invalidation messages stay small whatever the client sends.
            let digest = Sha256::digest(path_and_query.as_bytes());
            let mut hex = [0u8; 64];
            for (i, byte) in digest.iter().enumerate() {
                hex[2 * i] = HEX[usize::from(byte >> 4)];
                hex[2 * i + 1] = HEX[usize::from(byte & 0xf)];
            }
            put_component(&mut out, b'h', &hex);
        } else {
            put_component(&mut out, b'u', path_and_query.as_bytes());
        }
        Self {
            bytes: Bytes::from(out),
            tenant_len,
        }
    }

    /// The key of a request URI (its path and query; scheme and authority are not part of it,
    /// the tenant scopes the key instead).
    #[must_use]
    pub fn for_uri(prefix: &str, tenant: Option<&str>, generation: u64, uri: &Uri) -> Self {
        Self::new(prefix, tenant, generation, uri_path_and_query(uri))
    }

    /// The prefix-and-tenant part of the key (see [`tenant_prefix`]).
    #[must_use]
    pub fn tenant_prefix(&self) -> &[u8] {
        &self.bytes[..self.tenant_len]
    }

    /// The key of one variant of this URI, for a `Vary` marker's generation and the request's
    /// secondary key (see [`secondary_key`](crate::policy::secondary_key)).
    #[must_use]
    pub fn variant(&self, generation: u64, secondary: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(self.bytes.len() + secondary.len() + 32);
        out.put_slice(&self.bytes);
        put_component(
            &mut out,
            b'g',
            itoa::Buffer::new().format(generation).as_bytes(),
        );
        put_component(&mut out, b'v', secondary);
        out.freeze()
    }

    /// The key bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The key of the index of `tag` for this key's tenant.
    #[must_use]
    pub fn tag_index(&self, tag: &str) -> Bytes {
        tag_index(&self.bytes[..self.tenant_len], tag)
    }
}

impl std::fmt::Debug for PrimaryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PrimaryKey")
            .field(&String::from_utf8_lossy(&self.bytes))
            .finish()
    }
}

/// The part of a request URI a key is made of: its path and query (`/` when it has none).
pub(crate) fn uri_path_and_query(uri: &Uri) -> &str {
    uri.path_and_query().map_or("/", |pq| pq.as_str())
}

/// Writes `<tag><len>:<bytes>|`.
fn put_component(out: &mut impl BufMut, tag: u8, bytes: &[u8]) {
    out.put_u8(tag);
    out.put_slice(itoa::Buffer::new().format(bytes.len()).as_bytes());
    out.put_u8(b':');
    out.put_slice(bytes);
    out.put_u8(b'|');
}

/// The length of a component of `len` bytes (see `put_component`).
fn component_len(len: usize) -> usize {
    3 + itoa::Buffer::new().format(len).len() + len
}

/// How long the URI part of a key is for a normalised `path_and_query`: as it is, or its
/// SHA-256 in hex when it is longer than [`HASHED_URI_LENGTH`].
fn uri_len(path_and_query: &str) -> usize {
    // `normalized` may add a leading `/`; an estimate one byte short only costs a reallocation.
    if path_and_query.len() > HASHED_URI_LENGTH {
        64
    } else {
        path_and_query.len()
    }
}

/// The method component of every primary key.
const METHOD: &[u8] = b"mGET|";

/// Normalises a path and query: an empty path is `/`, and percent-encoded triplets are
/// uppercased (`%2f` and `%2F` are the same octet, RFC 3986 §6.2.2.1). Query order is kept.
#[must_use]
pub fn normalize_path_and_query(input: &str) -> String {
    normalized(input).into_owned()
}

/// [`normalize_path_and_query`], borrowing `input` when it is already normal (the common case).
fn normalized(input: &str) -> Cow<'_, str> {
    let input: Cow<'_, str> = if input.is_empty() || input.starts_with('?') {
        Cow::Owned(format!("/{input}"))
    } else {
        Cow::Borrowed(input)
    };
    if !input.contains('%') {
        return input;
    }
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while i < bytes.len() {
        let is_triplet = bytes[i] == b'%'
            && bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
        if is_triplet {
            out.push('%');
            out.push(char::from(bytes[i + 1].to_ascii_uppercase()));
            out.push(char::from(bytes[i + 2].to_ascii_uppercase()));
            i += 3;
        } else {
            out.push(char::from(bytes[i]));
            i += 1;
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn components_cannot_run_together() {
        let a = PrimaryKey::new("p:", Some("a:b"), 0, "c");
        let b = PrimaryKey::new("p:", Some("a"), 0, "b:c");
        assert_ne!(a, b);
        assert_eq!(&a.as_bytes()[..], b"p:t3:a:b|n1:0|mGET|u1:c|");
        // Single-tenant keys never equal a tenant's.
        assert_ne!(
            PrimaryKey::new("p:", None, 0, "/x"),
            PrimaryKey::new("p:", Some("s"), 0, "/x")
        );
        // Variants of one URI differ by generation and by secondary key.
        let k = PrimaryKey::new("p:", Some("a"), 0, "/x");
        // Generations separate a tenant's keys before and after a tenant purge.
        assert_ne!(k, PrimaryKey::new("p:", Some("a"), 1, "/x"));
        assert_ne!(
            PrimaryKey::new("p:", Some("a"), 1, "/x"),
            PrimaryKey::new("p:", Some("a"), 11, "/x")
        );
        assert_eq!(
            &PrimaryKey::new("p:", Some("a"), u64::MAX, "?q=%2f").as_bytes()[..],
            b"p:t1:a|n20:18446744073709551615|mGET|u7:/?q=%2F|"
        );
        assert_eq!(
            PrimaryKey::under(&tenant_prefix("p:", Some("a")), 7, "/x"),
            PrimaryKey::new("p:", Some("a"), 7, "/x")
        );
        assert_ne!(k.variant(1, b"accept:a\n"), k.variant(2, b"accept:a\n"));
        assert_ne!(k.variant(1, b"accept:a\n"), k.variant(1, b"accept:b\n"));
        assert!(k.variant(1, b"").starts_with(k.as_bytes()));
        // A tenant's prefix covers its keys and no other tenant's ("a" vs "ab").
        let a = tenant_prefix("p:", Some("a"));
        assert!(k.as_bytes().starts_with(&a));
        assert!(
            !PrimaryKey::new("p:", Some("ab"), 0, "/x")
                .as_bytes()
                .starts_with(&a)
        );
        assert_eq!(k.tenant_prefix(), &a[..]);
        assert_eq!(&k.tag_index("t:1")[..], b"p:t1:a|z3:t:1|");
        assert_eq!(k.tag_index("t"), tag_index(&a, "t"));
        assert_eq!(&generation_key(&a)[..], b"p:t1:a|G|");
        assert_eq!(&soft_purge_key(&a)[..], b"p:t1:a|S|");
    }

    #[test]
    fn long_uris_are_hashed_into_bounded_keys() {
        let cursor = "c".repeat(60 * 1024);
        let long = format!("/api/leads?cursor={cursor}");
        let key = PrimaryKey::new("p:", Some("a"), 0, &long);
        assert!(key.as_bytes().len() < 120, "{}", key.as_bytes().len());
        assert!(key.as_bytes().ends_with(b"|") && key.as_bytes().windows(4).any(|w| w == b"h64:"));
        // Distinct long URIs stay distinct; the same one (normalised) gives the same key.
        let other = format!("/api/leads?cursor={cursor}d");
        assert_ne!(key, PrimaryKey::new("p:", Some("a"), 0, &other));
        let lower = format!("/api/leads?cursor={cursor}%2f");
        let upper = format!("/api/leads?cursor={cursor}%2F");
        assert_eq!(
            PrimaryKey::new("p:", Some("a"), 0, &lower),
            PrimaryKey::new("p:", Some("a"), 0, &upper)
        );
        // A URI at the limit is kept as it is.
        let at_limit = format!("/{}", "x".repeat(HASHED_URI_LENGTH - 1));
        let kept = PrimaryKey::new("p:", Some("a"), 0, &at_limit);
        assert!(
            kept.as_bytes()
                .windows(at_limit.len())
                .any(|w| w == at_limit.as_bytes())
        );
        // The tenant still scopes it.
        assert_ne!(key, PrimaryKey::new("p:", Some("b"), 0, &long));
    }

    #[test]
    fn normalisation() {
        let cases = [
            ("", "/"),
            ("?a=1", "/?a=1"),
            ("/a%2fb?q=%c3%a9", "/a%2Fb?q=%C3%A9"),
            ("/b?z=1&a=2", "/b?z=1&a=2"),
            ("/bad%zz%4", "/bad%zz%4"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_path_and_query(input), expected, "{input}");
        }
    }

    proptest! {
        #[test]
        fn distinct_inputs_give_distinct_keys(
            t1 in "[a-z:|0-9]{1,8}", p1 in "/[a-z:|0-9/]{0,8}",
            t2 in "[a-z:|0-9]{1,8}", p2 in "/[a-z:|0-9/]{0,8}",
        ) {
            let same = t1 == t2 && p1 == p2;
            prop_assert_eq!(
                PrimaryKey::new("x", Some(&t1), 0, &p1) == PrimaryKey::new("x", Some(&t2), 0, &p2),
                same
            );
        }
    }
}
