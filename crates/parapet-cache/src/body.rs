//! Buffering a response body up to a limit, or streaming it through.

use axum_core::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, stream};
use http_body_util::BodyExt;

/// Why a body was not buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotBuffered {
    /// Longer than the limit (by `Content-Length` or while reading).
    TooLarge,
    /// The body failed while being read.
    Failed,
}

impl NotBuffered {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::TooLarge => "too-large",
            Self::Failed => "body-error",
        }
    }
}

/// Reads `body` whole if it is at most `limit` bytes.
///
/// When it is longer, the body is handed back for streaming: untouched when `Content-Length`
/// already says so, otherwise as the chunks read so far followed by the rest of the stream (it
/// is never read whole). A body that fails while being read is handed back as the chunks read
/// followed by the error.
pub(crate) async fn buffer(
    body: Body,
    content_length: Option<u64>,
    limit: usize,
) -> Result<Bytes, (Body, NotBuffered)> {
    if content_length.is_some_and(|len| len > limit as u64) {
        return Err((body, NotBuffered::TooLarge));
    }
    let mut body = body;
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut size = 0usize;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                let Ok(data) = frame.into_data() else {
                    continue; // trailers are not stored
                };
                size = size.saturating_add(data.len());
                chunks.push(data);
                if size > limit {
                    let head = stream::iter(chunks.into_iter().map(Ok));
                    let rest = body.into_data_stream();
                    return Err((Body::from_stream(head.chain(rest)), NotBuffered::TooLarge));
                }
            }
            Err(error) => {
                let head = stream::iter(chunks.into_iter().map(Ok));
                let tail = stream::once(async move { Err::<Bytes, _>(error) });
                return Err((Body::from_stream(head.chain(tail)), NotBuffered::Failed));
            }
        }
    }
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => {
            let mut out = BytesMut::with_capacity(size);
            for chunk in chunks {
                out.extend_from_slice(&chunk);
            }
            out.freeze()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(parts: Vec<&'static [u8]>) -> Body {
        Body::from_stream(stream::iter(
            parts
                .into_iter()
                .map(|p| Ok::<_, std::io::Error>(Bytes::from_static(p))),
        ))
    }

    #[tokio::test]
    async fn small_bodies_are_buffered() {
        let bytes = buffer(chunked(vec![b"ab", b"cd"]), None, 4).await.unwrap();
        assert_eq!(&bytes[..], b"abcd");
    }

    #[tokio::test]
    async fn large_bodies_stream_through_whole() {
        let (body, why) = buffer(chunked(vec![b"ab", b"cd", b"ef"]), None, 3)
            .await
            .unwrap_err();
        assert_eq!(why, NotBuffered::TooLarge);
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(&all[..], b"abcdef");

        let (body, why) = buffer(Body::from("0123456789"), Some(10), 5)
            .await
            .unwrap_err();
        assert_eq!(why, NotBuffered::TooLarge);
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 10);
    }

    #[tokio::test]
    async fn failing_bodies_keep_their_error() {
        let body = Body::from_stream(stream::iter(vec![
            Ok(Bytes::from_static(b"ab")),
            Err(std::io::Error::other("boom")),
        ]));
        let (body, why) = buffer(body, None, 100).await.unwrap_err();
        assert_eq!(why, NotBuffered::Failed);
        assert!(body.collect().await.is_err());
    }
}
