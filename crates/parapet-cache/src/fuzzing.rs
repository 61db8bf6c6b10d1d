//! Entry points for the fuzz targets in `fuzz/` and the tests that replay their corpora.
//!
//! Not part of the API: hidden from the docs, may change in any release.

use bytes::Bytes;

use crate::entry::StoredValue;

/// Decodes a value as the Redis tier reads it; `None` when it is not a valid encoding.
#[must_use]
pub fn decode_stored_value(bytes: &[u8]) -> Option<StoredValue> {
    crate::encoding::decode(bytes)
}

/// Encodes a value as the Redis tier writes it, compressing bodies of at least
/// `compress_threshold` bytes.
#[must_use]
pub fn encode_stored_value(value: &StoredValue, compress_threshold: usize) -> Bytes {
    crate::encoding::encode(value, compress_threshold)
}
