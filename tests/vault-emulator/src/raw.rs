//! Injected raw answers: any status, headers and body bytes, including
//! bodies produced on the fly (huge, trickled, or cut short), so that
//! clients can be tested against answers no Vault would give.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, SizeHint};
use serde_json::Value;
use tokio::time::Sleep;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type every emulator response is sent with.
pub(crate) type RespBody = UnsyncBoxBody<Bytes, BoxError>;

/// Bytes per frame of a generated body: the most it holds in memory.
const GENERATED_CHUNK: usize = 64 << 10;
/// Pause after the last bytes of a cut-short body, so that they are
/// flushed to the client before the connection is dropped.
const SHORT_BODY_FLUSH: Duration = Duration::from_millis(50);

/// A raw answer, sent instead of what Vault would answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    pub status: u16,
    /// Sent as given (no `content-type` is added). `content-length` and
    /// `transfer-encoding` follow from [`body`](Self::body).
    pub headers: Vec<(String, String)>,
    pub body: RawBody,
}

/// How the body of a [`RawResponse`] is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawBody {
    /// Exactly these bytes, with a matching `Content-Length`.
    Bytes(Vec<u8>),
    /// `prefix`, then `fill` bytes up to `len` bytes in all, produced 64 KiB
    /// at a time (never held in memory): `Content-Length: len`, or chunked
    /// transfer encoding when `chunked`.
    Generated {
        prefix: Vec<u8>,
        fill: u8,
        len: u64,
        chunked: bool,
    },
    /// `prefix` at once, then `chunk` bytes of `fill` every `every`, until
    /// `len` bytes in all were sent, or forever when `len` is `None`;
    /// chunked transfer encoding.
    Trickle {
        prefix: Vec<u8>,
        fill: u8,
        chunk: usize,
        every: Duration,
        len: Option<u64>,
    },
    /// `Content-Length: claimed`, but only `sent` is sent (which must be
    /// shorter); then the connection is closed.
    ShortLength { sent: Vec<u8>, claimed: u64 },
}

impl RawResponse {
    /// An empty body with `status`; add headers and a body with the
    /// builder methods.
    pub fn new(status: u16) -> Self {
        RawResponse {
            status,
            headers: Vec::new(),
            body: RawBody::Bytes(Vec::new()),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = RawBody::Bytes(bytes.into());
        self
    }

    /// `prefix` then `fill` bytes, `len` bytes in all, with its
    /// `Content-Length`.
    pub fn generated(mut self, prefix: impl Into<Vec<u8>>, fill: u8, len: u64) -> Self {
        self.body = RawBody::Generated {
            prefix: prefix.into(),
            fill,
            len,
            chunked: false,
        };
        self
    }

    /// Like [`generated`](Self::generated), without `Content-Length`.
    pub fn generated_chunked(mut self, prefix: impl Into<Vec<u8>>, fill: u8, len: u64) -> Self {
        self.body = RawBody::Generated {
            prefix: prefix.into(),
            fill,
            len,
            chunked: true,
        };
        self
    }

    /// `prefix`, then one `fill` byte every `every`; `len` bytes in all, or
    /// forever.
    pub fn trickle(
        mut self,
        prefix: impl Into<Vec<u8>>,
        fill: u8,
        every: Duration,
        len: Option<u64>,
    ) -> Self {
        self.body = RawBody::Trickle {
            prefix: prefix.into(),
            fill,
            chunk: 1,
            every,
            len,
        };
        self
    }

    /// Claims `claimed` bytes, sends `sent`, then closes the connection.
    pub fn short_length(mut self, sent: impl Into<Vec<u8>>, claimed: u64) -> Self {
        self.body = RawBody::ShortLength {
            sent: sent.into(),
            claimed,
        };
        self
    }

    /// Parses the body of `POST /_emulator/raw` (see the crate docs).
    pub(crate) fn from_json(v: &Value) -> Result<(RawResponse, usize), String> {
        let num = |k: &str| -> Result<Option<u64>, String> {
            match v.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(x) => x
                    .as_u64()
                    .map(Some)
                    .ok_or_else(|| format!("{k} must be a non-negative integer")),
            }
        };
        let status = num("status")?.ok_or("status is required")?;
        if !(100..=999).contains(&status) {
            return Err("status must be within 100..=999".into());
        }
        let count = num("count")?.unwrap_or(1) as usize;
        let mut headers = Vec::new();
        match v.get("headers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, val) in m {
                    let val = val
                        .as_str()
                        .ok_or_else(|| format!("headers[{k:?}] must be a string"))?;
                    headers.push((k.clone(), val.to_string()));
                }
            }
            Some(_) => return Err("headers must be an object of strings".into()),
        }
        let body: Vec<u8> = match (v.get("body"), v.get("body_base64")) {
            (Some(Value::String(s)), None) => s.as_bytes().to_vec(),
            (None, Some(Value::String(b))) => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|e| format!("body_base64: {e}"))?
            }
            (None, None) => Vec::new(),
            _ => return Err("set body (a string) or body_base64, not both".into()),
        };
        let fill = match v.get("fill") {
            None | Some(Value::Null) => b' ',
            Some(Value::String(s)) if s.len() == 1 => s.as_bytes()[0],
            Some(_) => return Err("fill must be one ASCII character".into()),
        };
        let size = num("size")?;
        let chunked = v.get("chunked").and_then(Value::as_bool).unwrap_or(false);
        let body = if let Some(claimed) = num("claimed_length")? {
            if claimed <= body.len() as u64 {
                return Err("claimed_length must exceed the body's length".into());
            }
            RawBody::ShortLength {
                sent: body,
                claimed,
            }
        } else if let Some(ms) = num("trickle_ms")? {
            RawBody::Trickle {
                prefix: body,
                fill,
                chunk: num("chunk")?.unwrap_or(1).max(1) as usize,
                every: Duration::from_millis(ms),
                len: size,
            }
        } else if let Some(len) = size {
            RawBody::Generated {
                prefix: body,
                fill,
                len,
                chunked,
            }
        } else {
            RawBody::Bytes(body)
        };
        Ok((
            RawResponse {
                status: status as u16,
                headers,
                body,
            },
            count,
        ))
    }

    pub(crate) fn to_response(&self) -> Response<RespBody> {
        let mut builder = Response::builder().status(self.status);
        for (k, v) in &self.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let body = match &self.body {
            RawBody::Bytes(b) => full(Bytes::from(b.clone())),
            RawBody::Generated {
                prefix,
                fill,
                len,
                chunked,
            } => {
                let len = (*len).max(prefix.len() as u64);
                Generated::new(prefix, *fill, GENERATED_CHUNK, len, None)
                    .declare((!*chunked).then_some(len))
                    .boxed_unsync()
            }
            RawBody::Trickle {
                prefix,
                fill,
                chunk,
                every,
                len,
            } => {
                let mut g = Generated::new(prefix, *fill, (*chunk).max(1), 0, Some(*every));
                g.remaining = len.map(|l| l.saturating_sub(prefix.len() as u64));
                g.boxed_unsync()
            }
            RawBody::ShortLength { sent, claimed } => {
                let mut g =
                    Generated::new(sent, b' ', 1, sent.len() as u64, None).declare(Some(*claimed));
                g.cut_short = true;
                g.boxed_unsync()
            }
        };
        builder.body(body).unwrap_or_else(|e| {
            let mut r = Response::new(full(Bytes::from(format!("bad raw response: {e}"))));
            *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            r
        })
    }
}

pub(crate) fn full(b: Bytes) -> RespBody {
    Full::new(b).map_err(|never| match never {}).boxed_unsync()
}

/// A body made on the fly: a prefix, then fill bytes in chunks, optionally
/// paced, optionally ending in an error that makes the server drop the
/// connection.
struct Generated {
    head: Option<Bytes>,
    /// One chunk of fill bytes, sliced for each frame (no copy).
    block: Bytes,
    /// Fill bytes still to send; `None` is forever.
    remaining: Option<u64>,
    every: Option<Duration>,
    sleep: Option<Pin<Box<Sleep>>>,
    declared: Option<u64>,
    /// After the last bytes: wait for them to be flushed, then fail.
    cut_short: bool,
    failed: bool,
}

impl Generated {
    /// `len` bytes in all, the prefix included.
    fn new(prefix: &[u8], fill: u8, chunk: usize, len: u64, every: Option<Duration>) -> Self {
        Generated {
            head: (!prefix.is_empty()).then(|| Bytes::copy_from_slice(prefix)),
            block: Bytes::from(vec![fill; chunk]),
            remaining: Some(len.saturating_sub(prefix.len() as u64)),
            every,
            sleep: None,
            declared: None,
            cut_short: false,
            failed: false,
        }
    }

    fn declare(mut self, len: Option<u64>) -> Self {
        self.declared = len;
        self
    }

    /// Waits `d` (once per call site); Ready when it has passed.
    fn wait(&mut self, cx: &mut Context<'_>, d: Duration) -> Poll<()> {
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(d)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.sleep = None;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Body for Generated {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(h) = this.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(h))));
        }
        if this.remaining == Some(0) {
            if this.cut_short && !this.failed {
                if this.wait(cx, SHORT_BODY_FLUSH).is_pending() {
                    return Poll::Pending;
                }
                this.failed = true;
                return Poll::Ready(Some(Err("body cut short on purpose".into())));
            }
            return Poll::Ready(None);
        }
        if let Some(every) = this.every
            && this.wait(cx, every).is_pending()
        {
            return Poll::Pending;
        }
        let n = match this.remaining {
            Some(r) => r.min(this.block.len() as u64) as usize,
            None => this.block.len(),
        };
        if let Some(r) = this.remaining.as_mut() {
            *r -= n as u64;
        }
        Poll::Ready(Some(Ok(Frame::data(this.block.slice(..n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none() && self.remaining == Some(0) && !self.cut_short
    }

    fn size_hint(&self) -> SizeHint {
        match self.declared {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// Whether `path` starts with `pattern`, where `*` in the pattern stands
/// for any run of characters (`auth/*/login` matches `auth/approle/login`).
pub(crate) fn path_matches(pattern: &str, path: &str) -> bool {
    let mut pieces = pattern.split('*');
    let first = pieces.next().unwrap_or("");
    let Some(mut rest) = path.strip_prefix(first) else {
        return false;
    };
    // With nothing anchoring the end, the leftmost occurrence of each
    // piece is always the best choice.
    for piece in pieces {
        match rest.find(piece) {
            Some(i) => rest = &rest[i + piece.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patterns() {
        for (pattern, path, want) in [
            ("", "anything", true),
            ("secret/data/app", "secret/data/app", true),
            ("secret/data/app", "secret/data/app/db", true),
            ("secret/data/app", "secret/data/ap", false),
            ("secret/*/app", "secret/data/app", true),
            ("secret/*/app", "secret/metadata/app/x", true),
            ("secret/*/app", "secret/data/other", false),
            ("auth/*/login", "auth/approle/login", true),
            ("auth/*/login", "auth/token/lookup-self", false),
            ("*", "", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxcyyb", false),
        ] {
            assert_eq!(path_matches(pattern, path), want, "{pattern} {path}");
        }
    }

    #[test]
    fn control_json() {
        let (r, n) = RawResponse::from_json(&json!({
            "status": 200, "count": 2, "headers": {"content-type": "text/html"}, "body": "<html>"
        }))
        .unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            r,
            RawResponse::new(200)
                .header("content-type", "text/html")
                .body("<html>")
        );
        let (r, n) =
            RawResponse::from_json(&json!({"status": 200, "body": "{", "size": 10})).unwrap();
        assert_eq!(n, 1);
        assert_eq!(r, RawResponse::new(200).generated("{", b' ', 10));
        let (r, _) = RawResponse::from_json(
            &json!({"status": 200, "size": 10, "chunked": true, "fill": "a"}),
        )
        .unwrap();
        assert_eq!(r, RawResponse::new(200).generated_chunked("", b'a', 10));
        let (r, _) =
            RawResponse::from_json(&json!({"status": 200, "body": "{", "trickle_ms": 5})).unwrap();
        assert_eq!(
            r,
            RawResponse::new(200).trickle("{", b' ', Duration::from_millis(5), None)
        );
        let (r, _) = RawResponse::from_json(
            &json!({"status": 200, "body_base64": "e30=", "claimed_length": 9}),
        )
        .unwrap();
        assert_eq!(r, RawResponse::new(200).short_length("{}", 9));
        for bad in [
            json!({}),
            json!({"status": "200"}),
            json!({"status": 42}),
            json!({"status": 200, "headers": ["x"]}),
            json!({"status": 200, "headers": {"x": 1}}),
            json!({"status": 200, "body": "a", "body_base64": "YQ=="}),
            json!({"status": 200, "body": "abc", "claimed_length": 3}),
            json!({"status": 200, "fill": "ab", "size": 3}),
        ] {
            assert!(RawResponse::from_json(&bad).is_err(), "{bad}");
        }
    }
}
