//! The connection under the HTTP/1 codec, for the answers that codec writes itself.
//!
//! actix-http refuses some requests before any application code runs — a request line or head
//! that does not parse (a URL over 64 KiB, two `Content-Length` headers), a head over 128 KiB
//! (431), a head that arrives too late (408) — and answers them with an empty body, then closes
//! the connection. It offers no hook for those answers, so the connection itself rewrites them:
//! an error status with `content-length: 0` gets an OperationOutcome body. Carnet's own error
//! answers always carry an OperationOutcome (see `edges`), so nothing else matches.
//!
//! Only the first bytes written on a connection are looked at: there a response head certainly
//! starts. Further on, a write may start inside a body (after a partial write), and a body that
//! mimics a bare error head must never be rewritten: that would desynchronise the connection
//! for a proxy that reuses it. A refused head after earlier requests on the same connection
//! therefore keeps actix's empty body; clients that open a connection per request, and every
//! first request, get the OperationOutcome.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection whose bodiless error answers are given an OperationOutcome.
pub struct OutcomeOnBareErrors<T> {
    io: T,
    /// Rewritten bytes not yet written to `io`, from `sent` on.
    pending: Vec<u8>,
    sent: usize,
    /// Nothing has been written yet: the next write starts with a response head.
    fresh: bool,
}

impl<T> OutcomeOnBareErrors<T> {
    pub fn new(io: T) -> Self {
        OutcomeOnBareErrors {
            io,
            pending: Vec::new(),
            sent: 0,
            fresh: true,
        }
    }
}

impl<T: AsyncWrite + Unpin> OutcomeOnBareErrors<T> {
    /// Writes what a rewrite left pending; ready once nothing is.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.pending.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.pending[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.pending.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for OutcomeOnBareErrors<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for OutcomeOnBareErrors<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        match rewrite_bare_error(buf).filter(|_| self.fresh) {
            Some(rewritten) => {
                self.fresh = false;
                // Taken whole: the caller sees its bytes written, the rewrite goes out instead.
                self.pending = rewritten;
                // Best effort now; flush and shutdown finish it.
                if let Poll::Ready(Err(e)) = self.poll_pending(cx) {
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Ok(buf.len()))
            }
            None => {
                let written = Pin::new(&mut self.io).poll_write(cx, buf);
                if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
                    self.fresh = false;
                }
                written
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// `bytes` with its leading response head replaced, when that head is an error status with
/// `content-length: 0`: the same head with an OperationOutcome body, then the rest of `bytes`.
fn rewrite_bare_error(bytes: &[u8]) -> Option<Vec<u8>> {
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next()?;
    let status: u16 = parts.next()?.parse().ok()?;
    if !version.starts_with("HTTP/1.") || status < 400 {
        return None;
    }
    let mut kept = Vec::new();
    let mut empty = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        if name.eq_ignore_ascii_case("content-length") {
            empty = value.trim() == "0";
        } else if !name.eq_ignore_ascii_case("content-type") {
            kept.push(line);
        }
    }
    if !empty {
        return None;
    }
    let body = outcome_body(status);
    let mut out = Vec::with_capacity(bytes.len() + body.len() + 128);
    out.extend_from_slice(status_line.as_bytes());
    out.extend_from_slice(b"\r\n");
    for line in kept {
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"content-type: application/fhir+json\r\n");
    out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body.as_bytes());
    out.extend_from_slice(&bytes[head_end + 4..]);
    Some(out)
}

/// The OperationOutcome for an answer of the codec: what it refuses, by status.
fn outcome_body(status: u16) -> String {
    let (code, text) = match status {
        408 => (
            "timeout",
            "The request head was not received in time (limits.header_timeout_seconds)",
        ),
        431 => (
            "too-costly",
            "The request head is too large: at most 128 KiB and 96 header fields",
        ),
        _ => (
            "structure",
            "The request could not be read as HTTP/1.1: a request line or header is malformed, \
             the URL is longer than 64 KiB, or a header such as Content-Length is repeated",
        ),
    };
    serde_json::json!({
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(bytes: &[u8]) -> serde_json::Value {
        let text = std::str::from_utf8(bytes).unwrap();
        let (_, body) = text.split_once("\r\n\r\n").unwrap();
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn a_bare_400_gets_an_operation_outcome_with_a_matching_length() {
        let head = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\ndate: x\r\n\r\n";
        let out = rewrite_bare_error(head).expect("rewritten");
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(text.contains("connection: close\r\n"));
        assert!(text.contains("content-type: application/fhir+json\r\n"));
        let body = body_of(&out);
        assert_eq!(body["resourceType"], "OperationOutcome");
        assert_eq!(body["issue"][0]["code"], "structure");
        let length: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.to_string().len());
    }

    #[test]
    fn timeouts_and_oversized_heads_say_so() {
        let out = rewrite_bare_error(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n",
        );
        assert_eq!(body_of(&out.unwrap())["issue"][0]["code"], "too-costly");
        let out = rewrite_bare_error(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n");
        assert_eq!(body_of(&out.unwrap())["issue"][0]["code"], "timeout");
    }

    #[test]
    fn answers_with_a_body_or_a_success_status_are_left_alone() {
        assert!(
            rewrite_bare_error(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n").is_none()
        );
        assert!(rewrite_bare_error(
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\ncontent-type: application/fhir+json\r\n\r\n{}"
        )
        .is_none());
        // Not a response head (a body chunk written on its own).
        assert!(rewrite_bare_error(b"{\"resourceType\":\"Patient\"}\r\n\r\n").is_none());
        assert!(rewrite_bare_error(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n").is_none());
    }
}
