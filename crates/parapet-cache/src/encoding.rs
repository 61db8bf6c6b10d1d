//! The compact, versioned binary encoding of stored values (used by the Redis tier).
//!
//! Layout (version 1, integers big-endian):
//!
//! ```text
//! u8 version (1) | u8 kind (0 response, 1 vary marker, 2 soft-purged vary marker) | payload
//! response: u16 status | u64 request_ms | u64 response_ms | u8 flags
//!           [u64 date_ms] [u64 age_s] | u64 lifetime_ms [u64 swr_ms] [u64 sie_ms]
//!           headers | u16 n, n × (u16 len, name) | headers (vary request) |
//!           u16 n, n × (u16 len, tag) | u32 raw_len | u32 len | body (lz4 when flagged)
//! headers:  u32 n, n × (u16 len, name, u32 len, value)
//! marker:   u64 generation | u64 expires_ms | u16 n, n × (u16 len, name)
//! soft-purged marker: u64 generation | u64 expires_ms | u64 stale_before_ms |
//!           u16 n, n × (u16 len, name)
//! ```
//!
//! Decoding never panics: anything malformed, truncated, of an unknown version, or longer than
//! the limits decodes to `None`, which the store reports as a miss.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::entry::{ANSWER_ROOM, Entry, StoredValue, VaryMarker};
use crate::policy::StoredTimes;

/// The current encoding version.
const VERSION: u8 = 1;
/// Bodies at least this long are compressed with lz4 by default.
pub(crate) const DEFAULT_COMPRESS_THRESHOLD: usize = 1024;
/// A decoded body may not claim more than this (a hostile value cannot make us allocate more).
const MAX_BODY: usize = 256 * 1024 * 1024;

const FLAG_DATE: u8 = 1;
const FLAG_AGE: u8 = 2;
const FLAG_SWR: u8 = 4;
const FLAG_SIE: u8 = 8;
const FLAG_LZ4: u8 = 16;

/// Encodes a value; bodies of at least `compress_threshold` bytes are lz4-compressed (when
/// that makes them smaller).
pub(crate) fn encode(value: &StoredValue, compress_threshold: usize) -> Bytes {
    let mut out = BytesMut::with_capacity(value.weight());
    out.put_u8(VERSION);
    match value {
        StoredValue::Response(entry) => {
            out.put_u8(0);
            encode_entry(&mut out, entry, compress_threshold);
        }
        StoredValue::Vary(marker) => {
            // A marker without a soft purge keeps kind 1, which every version reads.
            out.put_u8(if marker.stale_before.is_some() { 2 } else { 1 });
            out.put_u64(marker.generation);
            out.put_u64(millis(marker.expires_at));
            if let Some(stale_before) = marker.stale_before {
                out.put_u64(millis(stale_before));
            }
            put_names(&mut out, &marker.fields);
        }
    }
    out.freeze()
}

fn encode_entry(out: &mut BytesMut, entry: &Entry, compress_threshold: usize) {
    out.put_u16(entry.status.as_u16());
    out.put_u64(millis(entry.times.request_time));
    out.put_u64(millis(entry.times.response_time));
    let compressed = (entry.body.len() >= compress_threshold)
        .then(|| lz4_flex::compress(&entry.body))
        .filter(|c| c.len() < entry.body.len());
    let mut flags = 0;
    for (set, flag) in [
        (entry.times.date.is_some(), FLAG_DATE),
        (entry.times.age_header.is_some(), FLAG_AGE),
        (entry.stale_while_revalidate.is_some(), FLAG_SWR),
        (entry.stale_if_error.is_some(), FLAG_SIE),
        (compressed.is_some(), FLAG_LZ4),
    ] {
        if set {
            flags |= flag;
        }
    }
    out.put_u8(flags);
    if let Some(date) = entry.times.date {
        out.put_u64(millis(date));
    }
    if let Some(age) = entry.times.age_header {
        out.put_u64(age.as_secs());
    }
    out.put_u64(duration_millis(entry.lifetime));
    for window in [entry.stale_while_revalidate, entry.stale_if_error]
        .into_iter()
        .flatten()
    {
        out.put_u64(duration_millis(window));
    }
    put_headers(out, &entry.headers);
    put_names(out, &entry.vary);
    put_headers(out, &entry.vary_request);
    out.put_u16(len16(entry.tags.len()));
    for tag in entry.tags.iter().take(usize::from(u16::MAX)) {
        put_short(out, tag.as_bytes());
    }
    out.put_u32(len32(entry.body.len()));
    let body: &[u8] = compressed.as_deref().unwrap_or(&entry.body);
    out.put_u32(len32(body.len()));
    out.put_slice(body);
}

/// Decodes a value; `None` when it is not a valid encoding of this or an older version.
pub(crate) fn decode(input: &[u8]) -> Option<StoredValue> {
    let mut r = Reader { rest: input };
    if r.u8()? != VERSION {
        return None;
    }
    let value = match r.u8()? {
        0 => StoredValue::Response(Arc::new(decode_entry(&mut r)?)),
        1 => StoredValue::Vary(VaryMarker {
            generation: r.u64()?,
            expires_at: from_millis(r.u64()?)?,
            stale_before: None,
            fields: r.names()?,
        }),
        2 => StoredValue::Vary(VaryMarker {
            generation: r.u64()?,
            expires_at: from_millis(r.u64()?)?,
            stale_before: Some(from_millis(r.u64()?)?),
            fields: r.names()?,
        }),
        _ => return None,
    };
    r.rest.is_empty().then_some(value)
}

fn decode_entry(r: &mut Reader<'_>) -> Option<Entry> {
    let status = StatusCode::from_u16(r.u16()?).ok()?;
    let request_time = from_millis(r.u64()?)?;
    let response_time = from_millis(r.u64()?)?;
    let flags = r.u8()?;
    let has = |flag: u8| flags & flag != 0;
    let date = if has(FLAG_DATE) {
        Some(from_millis(r.u64()?)?)
    } else {
        None
    };
    let age_header = if has(FLAG_AGE) {
        Some(Duration::from_secs(r.u64()?))
    } else {
        None
    };
    let lifetime = Duration::from_millis(r.u64()?);
    let swr = if has(FLAG_SWR) {
        Some(Duration::from_millis(r.u64()?))
    } else {
        None
    };
    let sie = if has(FLAG_SIE) {
        Some(Duration::from_millis(r.u64()?))
    } else {
        None
    };
    let headers = r.headers(ANSWER_ROOM)?;
    let vary = r.names()?;
    let vary_request = r.headers(0)?;
    let tag_count = r.u16()?;
    let mut tags = Vec::new();
    for _ in 0..tag_count {
        tags.push(String::from_utf8(r.short()?.to_vec()).ok()?);
    }
    let raw_len = usize::try_from(r.u32()?).ok()?;
    let stored_len = usize::try_from(r.u32()?).ok()?;
    let stored = r.take(stored_len)?;
    if raw_len > MAX_BODY {
        return None;
    }
    let body = if has(FLAG_LZ4) {
        Bytes::from(lz4_flex::decompress(stored, raw_len).ok()?)
    } else {
        Bytes::copy_from_slice(stored)
    };
    if body.len() != raw_len {
        return None;
    }
    let times = StoredTimes {
        request_time,
        response_time,
        date,
        age_header,
    };
    // `headers` made both maps with values of their own: not copied again.
    let mut entry = Entry::of_compact(status, headers, body, times, lifetime);
    entry.stale_while_revalidate = swr;
    entry.stale_if_error = sie;
    entry.vary = vary;
    entry.vary_request = vary_request;
    entry.tags = tags;
    Some(entry)
}

fn put_headers(out: &mut BytesMut, headers: &HeaderMap) {
    let count = headers.len().min(u32::MAX as usize);
    out.put_u32(len32(count));
    for (name, value) in headers.iter().take(count) {
        put_short(out, name.as_str().as_bytes());
        out.put_u32(len32(value.len()));
        out.put_slice(value.as_bytes());
    }
}

fn put_names(out: &mut BytesMut, names: &[HeaderName]) {
    out.put_u16(len16(names.len()));
    for name in names.iter().take(usize::from(u16::MAX)) {
        put_short(out, name.as_str().as_bytes());
    }
}

/// A u16-length-prefixed string (header names and tags are far shorter than 64 KiB; longer
/// ones are truncated, which only makes the value unreadable, never ambiguous).
fn put_short(out: &mut BytesMut, bytes: &[u8]) {
    let len = len16(bytes.len());
    out.put_u16(len);
    out.put_slice(&bytes[..usize::from(len)]);
}

fn len16(len: usize) -> u16 {
    u16::try_from(len).unwrap_or(u16::MAX)
}

fn len32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

fn millis(time: SystemTime) -> u64 {
    duration_millis(time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO))
}

fn duration_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn from_millis(ms: u64) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(Duration::from_millis(ms))
}

/// The most header fields a decoded map is sized for up front (it grows past that).
const MAX_PRESIZED: usize = 1024;

/// A bounds-checked cursor.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.rest.len() < n {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        Some(u8::from_be_bytes(self.array()?))
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.array()?))
    }

    fn short(&mut self) -> Option<&'a [u8]> {
        let len = usize::from(self.u16()?);
        self.take(len)
    }

    fn names(&mut self) -> Option<Vec<HeaderName>> {
        let count = self.u16()?;
        let mut names = Vec::new();
        for _ in 0..count {
            names.push(HeaderName::from_bytes(self.short()?).ok()?);
        }
        Some(names)
    }

    /// A map of its own size and `room` more (as `entry::compact` makes it: the local tier
    /// weighs its slots), its values copied out of the input.
    fn headers(&mut self, room: usize) -> Option<HeaderMap> {
        let count = self.u32()?;
        // Sized from `count` only as far as the input can hold that many fields (6 bytes each
        // at least) and up to `MAX_PRESIZED`: a hostile value may claim any number.
        let fits = (self.rest.len() / 6).min(MAX_PRESIZED);
        let mut map = HeaderMap::with_capacity(usize::try_from(count).ok()?.min(fits) + room);
        for _ in 0..count {
            let name = HeaderName::from_bytes(self.short()?).ok()?;
            let len = usize::try_from(self.u32()?).ok()?;
            let value = HeaderValue::from_bytes(self.take(len)?).ok()?;
            // More names than a `HeaderMap` holds (about 24,000) is not a value we wrote.
            map.try_append(name, value).ok()?;
        }
        Some(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(body: Bytes) -> StoredValue {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut headers = HeaderMap::new();
        headers.insert("cache-control", HeaderValue::from_static("max-age=60"));
        headers.append("x-multi", HeaderValue::from_static("a"));
        headers.append("x-multi", HeaderValue::from_static("b"));
        headers.insert("x-bin", HeaderValue::from_bytes(&[0xff, 0x80]).unwrap());
        let times = StoredTimes {
            request_time: now,
            response_time: now + Duration::from_millis(5),
            date: Some(now),
            age_header: Some(Duration::from_secs(3)),
        };
        let mut entry = Entry::new(
            StatusCode::OK,
            headers,
            body,
            times,
            Duration::from_secs(60),
        );
        entry.stale_if_error = Some(Duration::from_secs(30));
        entry.vary = vec![http::header::ACCEPT];
        entry
            .vary_request
            .insert(http::header::ACCEPT, HeaderValue::from_static("text/html"));
        entry.tags = vec!["user-1".into(), "list".into()];
        StoredValue::Response(Arc::new(entry))
    }

    #[test]
    fn round_trips_small_and_compressed_bodies() {
        for body in [
            Bytes::new(),
            Bytes::from_static(b"hello"),
            Bytes::from(vec![b'x'; 10_000]),
        ] {
            let value = sample(body.clone());
            let encoded = encode(&value, DEFAULT_COMPRESS_THRESHOLD);
            if body.len() >= DEFAULT_COMPRESS_THRESHOLD {
                assert!(encoded.len() < body.len() / 4, "large body is compressed");
            }
            assert_eq!(decode(&encoded), Some(value));
        }
        let marker = StoredValue::Vary(VaryMarker {
            fields: vec![http::header::ACCEPT_ENCODING],
            generation: 42,
            expires_at: UNIX_EPOCH + Duration::from_secs(5),
            stale_before: None,
        });
        assert_eq!(decode(&encode(&marker, 0)), Some(marker));
        let soft_purged = StoredValue::Vary(VaryMarker {
            fields: vec![http::header::ACCEPT_ENCODING],
            generation: 42,
            expires_at: UNIX_EPOCH + Duration::from_secs(5),
            stale_before: Some(UNIX_EPOCH + Duration::from_secs(3)),
        });
        let encoded = encode(&soft_purged, 0);
        assert_eq!(encoded[1], 2, "its own kind: older versions miss it");
        assert_eq!(decode(&encoded), Some(soft_purged));
        for cut in 0..encoded.len() {
            assert_eq!(decode(&encoded[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn garbage_and_truncations_are_none() {
        let encoded = encode(&sample(Bytes::from(vec![b'y'; 4000])), 16);
        for cut in 0..encoded.len() {
            assert_eq!(decode(&encoded[..cut]), None, "cut at {cut}");
        }
        let mut wrong_version = encoded.to_vec();
        wrong_version[0] = 9;
        assert_eq!(decode(&wrong_version), None);
        let mut trailing = encoded.to_vec();
        trailing.push(0);
        assert_eq!(decode(&trailing), None);
        assert_eq!(decode(b"not a cache entry at all"), None);
    }

    /// A stored response whose headers are `count` × `name: ""`, as a hostile or corrupted
    /// Redis value could claim.
    fn with_headers(count: u32, name: impl Fn(u32) -> String) -> Vec<u8> {
        let mut out = BytesMut::new();
        out.put_slice(&[VERSION, 0]);
        out.put_u16(200);
        out.put_u64(1_700_000_000_000);
        out.put_u64(1_700_000_000_000);
        out.put_u8(0);
        out.put_u64(60_000);
        out.put_u32(count);
        for i in 0..count {
            put_short(&mut out, name(i).as_bytes());
            out.put_u32(0);
        }
        put_names(&mut out, &[]);
        put_headers(&mut out, &HeaderMap::new());
        out.put_u16(0);
        out.put_u32(0);
        out.put_u32(0);
        out.to_vec()
    }

    /// More header lines than a `HeaderMap` can index (`with_capacity` and `append` panic past
    /// about 24,000 entries) decode to `None` or to an entry, never to a panic.
    #[test]
    fn more_headers_than_a_header_map_holds_do_not_panic() {
        // Distinct names: more than the map can hold, refused.
        assert_eq!(decode(&with_headers(40_000, |i| format!("h{i}"))), None);
        // One name repeated: the map holds the values; the entry's copy must too.
        let Some(StoredValue::Response(entry)) = decode(&with_headers(40_000, |_| "a".into()))
        else {
            panic!("40,000 values of one field are a valid entry");
        };
        assert_eq!(entry.headers.get_all("a").iter().count(), 40_000);
        // And what fits decodes.
        let Some(StoredValue::Response(entry)) = decode(&with_headers(1_000, |i| format!("h{i}")))
        else {
            panic!("1,000 fields are a valid entry");
        };
        assert_eq!(entry.headers.len(), 1_000);
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
            let mut versioned = vec![VERSION, 0];
            versioned.extend_from_slice(&bytes);
            let _ = decode(&versioned);
        }

        #[test]
        fn flipped_bytes_never_panic(index in 0usize..200, byte in any::<u8>()) {
            let mut encoded = encode(&sample(Bytes::from(vec![b'z'; 3000])), 16).to_vec();
            let i = index % encoded.len();
            encoded[i] = byte;
            let _ = decode(&encoded);
        }
    }
}
