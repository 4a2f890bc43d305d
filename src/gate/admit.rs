//! Admitting one request: choose what the signature's payload hash is checked against, verify,
//! and hand on a body that is either the bytes already hashed or a stream checked against the
//! declared hash while it flows.
//!
//! A client that sends `x-amz-content-sha256` with the body's hex SHA-256 (aws-sdk-rust and
//! botocore can, `curl --aws-sigv4` signs it when given) is verified before a byte of its body
//! is read, and the body is then streamed: nothing is buffered, however large. Without that
//! header the body must fit in `max_body_bytes`, is read whole and hashed, as the STS API does.
//! (`docs/gate.md#bodies`)

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::{Body, Frame, SizeHint};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::refusal::Refusal;
use crate::clock::SharedClock;
use crate::verifier::{Payload, Presented, VerifiedCaller, Verifier, VerifyPolicy};

/// The error type of the bodies a gate hands on.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a gate checks requests with: the verifier, the policy, its clock and its body limit.
pub(crate) struct Gatekeeper {
    pub(crate) verifier: Verifier,
    pub(crate) policy: VerifyPolicy,
    pub(crate) clock: SharedClock,
    pub(crate) max_body_bytes: usize,
}

/// The 32 bytes of a lowercase or uppercase 64-digit hex `x-amz-content-sha256`, when the
/// request declares one. `UNSIGNED-PAYLOAD` and the streaming markers are not digests, so they
/// are not declarations: such a request is hashed like one without the header, and the
/// verifier then refuses the header as not matching the body.
pub(crate) fn declared_sha256(headers: &HeaderMap) -> Option<[u8; 32]> {
    let value = headers.get("x-amz-content-sha256")?;
    let mut digest = [0u8; 32];
    hex::decode_to_slice(value.as_bytes().trim_ascii(), &mut digest).ok()?;
    Some(digest)
}

/// The declared `Content-Length`, when there is a readable one.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

impl Gatekeeper {
    /// Reads what must be read of `req`, verifies it, and returns its parts, its body (to hand
    /// on) and the caller; or the refusal.
    pub(crate) async fn admit<B>(
        &self,
        req: Request<B>,
    ) -> Result<(Parts, VerifiedBody<B>, VerifiedCaller), Refusal>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = req.into_parts();
        if let Some(digest) = declared_sha256(&parts.headers) {
            let caller = self.verify(&parts, Payload::Sha256(digest))?;
            let body = VerifiedBody::streamed(body, digest);
            return Ok((parts, body, caller));
        }
        if content_length(&parts.headers).is_some_and(|n| n > self.max_body_bytes as u64) {
            return Err(Refusal::too_large(self.max_body_bytes));
        }
        let bytes = match Limited::new(body, self.max_body_bytes).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return Err(Refusal::too_large(self.max_body_bytes));
            }
            Err(_) => return Err(Refusal::incomplete_body()),
        };
        let caller = self.verify(&parts, Payload::Bytes(&bytes))?;
        Ok((parts, VerifiedBody::buffered(bytes), caller))
    }

    /// Verifies `parts` with `payload` at the gate's now; a refusal records the key it claimed.
    pub(crate) fn verify(
        &self,
        parts: &Parts,
        payload: Payload<'_>,
    ) -> Result<VerifiedCaller, Refusal> {
        let presented = Presented::new(parts, payload);
        self.verifier
            .verify_presented(&presented, &self.policy, self.clock.now())
            .map_err(|e| Refusal::from(e).claimed_by(presented.access_key_id()))
    }
}

/// What went wrong with a streamed body, seen by whoever relays it after the fact.
#[derive(Clone, Debug, Default)]
pub(crate) struct StreamFault(Arc<AtomicU8>);

// 0: no fault.
const FAULT_MISMATCH: u8 = 1;
const FAULT_CLIENT: u8 = 2;

impl StreamFault {
    /// The body did not hash to what the client declared and signed.
    pub(crate) fn mismatch(&self) -> bool {
        self.0.load(Ordering::Acquire) == FAULT_MISMATCH
    }

    /// Reading the body from the client failed (it went away, or broke its framing).
    pub(crate) fn client(&self) -> bool {
        self.0.load(Ordering::Acquire) == FAULT_CLIENT
    }

    fn set(&self, fault: u8) {
        self.0.store(fault, Ordering::Release);
    }
}

/// The body of an admitted request: bytes that were hashed and verified, or a stream checked
/// against the declared SHA-256 as it flows.
///
/// A streamed body holds back its latest chunk until the whole body has hashed to the declared
/// digest, and ends in an error instead of that chunk when it has not: whoever reads it (an
/// upstream, a handler) never receives a complete body the client did not sign.
pub struct VerifiedBody<B> {
    inner: Inner<B>,
}

enum Inner<B> {
    Buffered(Full<Bytes>),
    Streamed(CheckedStream<B>),
}

struct CheckedStream<B> {
    body: B,
    hasher: Sha256,
    expected: [u8; 32],
    held: Option<Bytes>,
    ended: bool,
    fault: StreamFault,
}

/// A streamed body that did not hash to its declared `x-amz-content-sha256`.
#[derive(Debug, thiserror::Error)]
#[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
pub(crate) struct PayloadMismatch;

impl<B> VerifiedBody<B> {
    fn buffered(bytes: Bytes) -> Self {
        Self {
            inner: Inner::Buffered(Full::new(bytes)),
        }
    }

    fn streamed(body: B, expected: [u8; 32]) -> Self {
        Self {
            inner: Inner::Streamed(CheckedStream {
                body,
                hasher: Sha256::new(),
                expected,
                held: None,
                ended: false,
                fault: StreamFault::default(),
            }),
        }
    }

    /// Whether the body is streamed (the client declared its hash).
    pub fn is_streamed(&self) -> bool {
        matches!(self.inner, Inner::Streamed(_))
    }

    /// What went wrong while streaming, for the relay to tell the client.
    pub(crate) fn fault(&self) -> StreamFault {
        match &self.inner {
            Inner::Streamed(s) => s.fault.clone(),
            Inner::Buffered(_) => StreamFault::default(),
        }
    }
}

impl<B> std::fmt::Debug for VerifiedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedBody")
            .field("streamed", &self.is_streamed())
            .finish_non_exhaustive()
    }
}

impl<B> Body for VerifiedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().inner {
            Inner::Buffered(full) => Pin::new(full).poll_frame(cx).map_err(|e| match e {}),
            Inner::Streamed(stream) => stream.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Buffered(full) => full.is_end_stream(),
            Inner::Streamed(s) => s.ended && s.held.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Buffered(full) => full.size_hint(),
            Inner::Streamed(s) => s.body.size_hint(),
        }
    }
}

impl<B> CheckedStream<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if self.ended {
                return Poll::Ready(self.held.take().map(|chunk| Ok(Frame::data(chunk))));
            }
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    // Trailers are not part of the signed payload; they are not relayed.
                    let Ok(chunk) = frame.into_data() else {
                        continue;
                    };
                    if chunk.is_empty() {
                        continue;
                    }
                    self.hasher.update(&chunk);
                    if let Some(previous) = self.held.replace(chunk) {
                        return Poll::Ready(Some(Ok(Frame::data(previous))));
                    }
                }
                Some(Err(e)) => {
                    self.fault.set(FAULT_CLIENT);
                    self.ended = true;
                    self.held = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
                None => {
                    self.ended = true;
                    let digest: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
                    if !bool::from(digest.ct_eq(&self.expected)) {
                        self.fault.set(FAULT_MISMATCH);
                        self.held = None;
                        return Poll::Ready(Some(Err(Box::new(PayloadMismatch))));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that yields the given chunks, one frame each.
    struct Chunks(std::collections::VecDeque<&'static [u8]>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(
                self.0
                    .pop_front()
                    .map(|c| Ok(Frame::data(Bytes::from_static(c)))),
            )
        }
    }

    fn chunks(parts: &[&'static [u8]]) -> Chunks {
        Chunks(parts.iter().copied().collect())
    }

    async fn drain<B>(mut body: VerifiedBody<B>) -> (Vec<u8>, Option<String>)
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
    {
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => out.extend_from_slice(&f.into_data().unwrap()),
                Err(e) => return (out, Some(e.to_string())),
            }
        }
        (out, None)
    }

    #[tokio::test]
    async fn a_matching_stream_is_relayed_whole() {
        let digest: [u8; 32] = Sha256::digest(b"hello, world").into();
        let body = VerifiedBody::streamed(chunks(&[b"hello", b", ", b"world"]), digest);
        let fault = body.fault();
        assert_eq!(drain(body).await, (b"hello, world".to_vec(), None));
        assert!(!fault.mismatch());
    }

    #[tokio::test]
    async fn a_tampered_stream_never_delivers_its_last_chunk() {
        let digest: [u8; 32] = Sha256::digest(b"hello, world").into();
        let body = VerifiedBody::streamed(chunks(&[b"hello", b", ", b"WORLD"]), digest);
        let fault = body.fault();
        let (seen, error) = drain(body).await;
        assert_eq!(seen, b"hello, ");
        assert_eq!(error.as_deref(), Some(PayloadMismatch.to_string().as_str()));
        assert!(fault.mismatch());
    }

    #[tokio::test]
    async fn an_empty_stream_must_declare_the_empty_hash() {
        let empty: [u8; 32] = Sha256::digest(b"").into();
        assert_eq!(
            drain(VerifiedBody::streamed(chunks(&[]), empty)).await,
            (Vec::new(), None)
        );
        let other: [u8; 32] = Sha256::digest(b"x").into();
        let (_, error) = drain(VerifiedBody::streamed(chunks(&[]), other)).await;
        assert!(error.is_some());
    }

    #[test]
    fn only_hex_digests_are_declarations() {
        let mut h = HeaderMap::new();
        h.insert("x-amz-content-sha256", "UNSIGNED-PAYLOAD".parse().unwrap());
        assert_eq!(declared_sha256(&h), None);
        let hex = hex::encode(Sha256::digest(b"a"));
        h.insert("x-amz-content-sha256", hex.to_uppercase().parse().unwrap());
        assert_eq!(
            declared_sha256(&h),
            Some(<[u8; 32]>::from(Sha256::digest(b"a")))
        );
    }
}
