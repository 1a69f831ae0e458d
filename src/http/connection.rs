//! The connection under the HTTP/1 codec, for the answers that codec writes itself.
//!
//! actix-http refuses some requests before any application code runs — a request line or head
//! that does not parse (a URL over 64 KiB, two `Content-Length` headers), a head over 128 KiB
//! (431), a head that arrives too late (408) — and answers them with an empty body, then closes
//! the connection. It offers no hook for those answers, so the connection itself rewrites them:
//! an error status with `content-length: 0` gets an OperationOutcome body. Carnet's own error
//! answers always carry an OperationOutcome (see `edges`), so nothing else matches.
//!
//! The connection also hands the codec one request at a time (see `Pipeline`): pipelined
//! requests otherwise confuse its HEAD bookkeeping and desynchronise the connection. Following
//! the answers' framing for that also says where each answer head starts: only a write that
//! starts there is looked at, and never the answer to a HEAD, so a body that mimics a bare
//! error head is never rewritten. Once the framing is lost (see `Pipeline`), nothing is.

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
    pipeline: Pipeline,
}

impl<T> OutcomeOnBareErrors<T> {
    pub fn new(io: T) -> Self {
        OutcomeOnBareErrors {
            io,
            pending: Vec::new(),
            sent: 0,
            pipeline: Pipeline::default(),
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
        let this = &mut *self;
        loop {
            let pipeline = &mut this.pipeline;
            pipeline.release();
            if pipeline.released > 0 {
                let n = pipeline.released.min(buf.remaining());
                buf.put_slice(&pipeline.inbox[..n]);
                pipeline.inbox.drain(..n);
                pipeline.released -= n;
                return Poll::Ready(Ok(()));
            }
            if !pipeline.inbox.is_empty() || pipeline.gated() {
                // The next request waits for the answer being written (see `Pipeline`).
                pipeline.waiting = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
            this.pipeline.inbox.extend_from_slice(read.filled());
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for OutcomeOnBareErrors<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        let may_rewrite =
            self.pipeline.at_head() && self.pipeline.unanswered.front() != Some(&true);
        match rewrite_bare_error(buf).filter(|_| may_rewrite) {
            Some(rewritten) => {
                self.pipeline.written(buf);
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
                if let Poll::Ready(Ok(n)) = written {
                    self.pipeline.written(&buf[..n]);
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

/// One request at a time: actix-http's codec remembers whether "the request" was HEAD in one
/// flag, set by the last request it decoded, and it decodes pipelined requests while an earlier
/// one is still being answered; a GET answered after a HEAD was decoded then loses its body, a
/// HEAD answered after a GET was decoded gets one, and the connection desynchronises. So the
/// connection hands the codec the next request only once the previous answer is written whole,
/// following both directions' framing. Framing it cannot follow (a chunked request body, an
/// answer delimited by the connection's end, anything unparsable) opens the gate for good:
/// the codec then refuses or closes as it would have without the gate.
#[derive(Default)]
struct Pipeline {
    /// Bytes read from the client and not yet handed to the codec.
    inbox: Vec<u8>,
    request: RequestScan,
    response: ResponseScan,
    /// For each request handed over and not yet answered: whether it is a HEAD.
    unanswered: std::collections::VecDeque<bool>,
    /// Request framing lost: everything flows as it comes.
    open: bool,
    /// Answer framing lost: where the next answer head starts is not known.
    blind: bool,
    /// Bytes at the front of the inbox the codec may have.
    released: usize,
    /// The codec waiting for the next request while the previous answer is being written.
    waiting: Option<std::task::Waker>,
}

#[derive(Default)]
enum RequestScan {
    /// Between requests: the next byte starts one.
    #[default]
    Idle,
    Head(Vec<u8>),
    Body(u64),
}

#[derive(Default)]
enum ResponseScan {
    #[default]
    Head,
    HeadBytes(Vec<u8>),
    Body(u64),
    Chunked(Chunks),
}

/// Where a chunked answer's parser stands.
enum Chunks {
    SizeLine(Vec<u8>),
    Data(u64),
    /// The CRLF after a chunk's data: bytes still to skip.
    DataEnd(u8),
    /// After the last chunk: trailer lines until an empty one.
    Trailer(Vec<u8>),
}

/// Heads larger than actix accepts are refused by the codec: stop following.
const HEAD_LIMIT: usize = 256 * 1024;

impl Pipeline {
    /// The next request waits: the previous one is not answered yet.
    fn gated(&self) -> bool {
        !self.open && matches!(self.request, RequestScan::Idle) && !self.unanswered.is_empty()
    }

    /// Releases what the codec may have now of the inbox: the rest of the request it is
    /// reading, or the next one once every earlier request has its answer head written.
    fn release(&mut self) {
        let mut n = self.released;
        while n < self.inbox.len() && !self.open {
            match &mut self.request {
                RequestScan::Idle if !self.unanswered.is_empty() => break,
                RequestScan::Idle => self.request = RequestScan::Head(Vec::new()),
                RequestScan::Head(head) => {
                    let byte = self.inbox[n];
                    n += 1;
                    // Empty lines before a request line are skipped (RFC 9112 §2.2), not
                    // a request: counting one would wait for an answer that never comes.
                    if head.is_empty() && (byte == b'\r' || byte == b'\n') {
                        continue;
                    }
                    head.push(byte);
                    if head.ends_with(b"\r\n\r\n") {
                        match request_framing(head) {
                            Some((is_head, 0)) => {
                                self.unanswered.push_back(is_head);
                                self.request = RequestScan::Idle;
                            }
                            Some((is_head, length)) => {
                                self.unanswered.push_back(is_head);
                                self.request = RequestScan::Body(length);
                            }
                            None => self.open = true,
                        }
                    } else if head.len() > HEAD_LIMIT {
                        self.open = true;
                    }
                }
                RequestScan::Body(left) => {
                    let take = (*left).min((self.inbox.len() - n) as u64);
                    n += take as usize;
                    *left -= take;
                    if *left == 0 {
                        self.request = RequestScan::Idle;
                    }
                }
            }
        }
        self.released = if self.open { self.inbox.len() } else { n };
    }

    /// Answer framing is lost: stop following it, and stop holding requests back.
    fn lost(&mut self) {
        self.blind = true;
        self.open = true;
    }

    /// The next byte written starts an answer head.
    fn at_head(&self) -> bool {
        !self.blind && matches!(self.response, ResponseScan::Head)
    }

    /// Follows the answer bytes the codec wrote; wakes the codec once an answer is whole.
    fn written(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.blind {
            match &mut self.response {
                ResponseScan::Head => self.response = ResponseScan::HeadBytes(Vec::new()),
                ResponseScan::HeadBytes(head) => {
                    let end = head.len();
                    head.extend_from_slice(bytes);
                    let Some(at) = find_head_end(head, end.saturating_sub(3)) else {
                        if head.len() > HEAD_LIMIT {
                            self.lost();
                        }
                        return;
                    };
                    bytes = &bytes[at - end..];
                    head.truncate(at);
                    match response_framing(head) {
                        // An interim answer (100 Continue): the final one follows.
                        Some(Framing::Interim) => self.response = ResponseScan::Head,
                        Some(framing) => {
                            let Some(was_head) = self.unanswered.pop_front() else {
                                self.lost();
                                break;
                            };
                            self.response = match framing {
                                _ if was_head => ResponseScan::Body(0),
                                Framing::Length(n) => ResponseScan::Body(n),
                                Framing::Chunked => {
                                    ResponseScan::Chunked(Chunks::SizeLine(Vec::new()))
                                }
                                Framing::Interim => ResponseScan::Head,
                            };
                        }
                        None => self.lost(),
                    }
                }
                ResponseScan::Body(left) => {
                    let take = (*left).min(bytes.len() as u64);
                    bytes = &bytes[take as usize..];
                    *left -= take;
                }
                ResponseScan::Chunked(chunks) => match chunks.consume(&mut bytes) {
                    Some(true) => self.response = ResponseScan::Body(0),
                    Some(false) => {}
                    None => self.lost(),
                },
            }
            if matches!(self.response, ResponseScan::Body(0)) {
                self.response = ResponseScan::Head;
            }
        }
        if matches!(self.response, ResponseScan::Body(0)) {
            self.response = ResponseScan::Head;
        }
        if self.open || self.unanswered.is_empty() {
            if let Some(waker) = self.waiting.take() {
                waker.wake();
            }
        }
    }
}

impl Chunks {
    /// Consumes chunked body bytes; `Some(true)` once the body ended, `None` if unparsable.
    fn consume(&mut self, bytes: &mut &[u8]) -> Option<bool> {
        while let Some((&byte, rest)) = bytes.split_first() {
            let trailer = matches!(self, Chunks::Trailer(_));
            match self {
                Chunks::SizeLine(line) | Chunks::Trailer(line) => {
                    *bytes = rest;
                    line.push(byte);
                    if line.len() > 1024 {
                        return None;
                    }
                    if !line.ends_with(b"\r\n") {
                        continue;
                    }
                    let text = std::str::from_utf8(&line[..line.len() - 2]).ok()?;
                    if trailer {
                        if text.is_empty() {
                            return Some(true);
                        }
                        *self = Chunks::Trailer(Vec::new());
                        continue;
                    }
                    let size = text.split(';').next()?.trim();
                    let size = u64::from_str_radix(size, 16).ok()?;
                    *self = if size == 0 {
                        Chunks::Trailer(Vec::new())
                    } else {
                        Chunks::Data(size)
                    };
                }
                Chunks::Data(left) => {
                    let take = (*left).min(bytes.len() as u64);
                    *bytes = &bytes[take as usize..];
                    *left -= take;
                    if *left == 0 {
                        *self = Chunks::DataEnd(2);
                    }
                }
                Chunks::DataEnd(left) => {
                    *bytes = rest;
                    *left -= 1;
                    if *left == 0 {
                        *self = Chunks::SizeLine(Vec::new());
                    }
                }
            }
        }
        Some(false)
    }
}

/// The end of the head (`\r\n\r\n` included) in `bytes`, searching from `from`.
fn find_head_end(bytes: &[u8], from: usize) -> Option<usize> {
    bytes[from..]
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| from + at + 4)
}

/// The header values named `name` in a head's header lines.
fn header_values<'a>(lines: &'a [&'a str], name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    lines.iter().filter_map(move |line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// A request head's method (whether HEAD) and body length; `None` when its framing is not a
/// plain `Content-Length` (chunked, repeated or unparsable lengths): then the gate opens.
fn request_framing(head: &[u8]) -> Option<(bool, u64)> {
    let text = std::str::from_utf8(head).ok()?;
    let lines: Vec<&str> = text.trim_end().split("\r\n").collect();
    let method = lines.first()?.split(' ').next()?;
    if header_values(&lines[1..], "transfer-encoding")
        .next()
        .is_some()
    {
        return None;
    }
    let mut lengths = header_values(&lines[1..], "content-length");
    let length = match (lengths.next(), lengths.next()) {
        (None, _) => 0,
        (Some(value), None) => value.parse().ok()?,
        _ => return None,
    };
    Some((method == "HEAD", length))
}

enum Framing {
    Interim,
    Length(u64),
    Chunked,
}

/// How an answer head frames its body; `None` when its end is the connection's.
fn response_framing(head: &[u8]) -> Option<Framing> {
    let text = std::str::from_utf8(head).ok()?;
    let lines: Vec<&str> = text.trim_end().split("\r\n").collect();
    let status: u16 = lines.first()?.split(' ').nth(1)?.parse().ok()?;
    match status {
        100..=199 => return Some(Framing::Interim),
        204 | 304 => return Some(Framing::Length(0)),
        _ => {}
    }
    if header_values(&lines[1..], "transfer-encoding").any(|v| v.eq_ignore_ascii_case("chunked")) {
        return Some(Framing::Chunked);
    }
    let length = header_values(&lines[1..], "content-length")
        .next()?
        .parse()
        .ok()?;
    Some(Framing::Length(length))
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

    /// Feeds `input` as read from the client; returns what the codec may have now.
    fn feed(pipeline: &mut Pipeline, input: &[u8]) -> Vec<u8> {
        pipeline.inbox.extend_from_slice(input);
        pipeline.release();
        let out = pipeline.inbox[..pipeline.released].to_vec();
        pipeline.inbox.drain(..pipeline.released);
        pipeline.released = 0;
        out
    }

    #[test]
    fn a_pipelined_request_waits_for_the_previous_answer_head() {
        let mut p = Pipeline::default();
        let first = b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n";
        let second = b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n";
        let both = [&first[..], &second[..]].concat();
        assert_eq!(feed(&mut p, &both), first);
        assert!(p.gated());
        // The answer to HEAD announces a length but has no body: the next head follows.
        p.written(b"HTTP/1.1 404 Not Found\r\ncontent-length: 130\r\n\r\n");
        assert!(!p.gated());
        assert_eq!(feed(&mut p, b""), second);
    }

    #[test]
    fn a_body_that_looks_like_a_head_is_counted_as_body() {
        let mut p = Pipeline::default();
        let body = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        let first = format!(
            "POST /Binary HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let first = [first.as_bytes(), &body[..]].concat();
        let second = b"GET /b HTTP/1.1\r\n\r\n";
        assert_eq!(feed(&mut p, &[&first[..], &second[..]].concat()), first);
        p.written(
            format!(
                "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        // Its head is written: the next request may be read while its body goes out.
        assert_eq!(feed(&mut p, b""), second);
        // Inside the body (which mimics a bare error head): not where an answer head starts.
        assert!(!p.at_head());
        p.written(body);
        assert!(p.at_head());
        p.written(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nHTTP/\r\n0\r\n\r\n");
        assert!(matches!(p.response, ResponseScan::Head));
        assert!(p.unanswered.is_empty() && !p.open);
    }

    #[test]
    fn empty_lines_between_requests_are_no_request() {
        let mut p = Pipeline::default();
        let first = b"GET /a HTTP/1.1\r\n\r\n";
        let input = [&first[..], b"\r\n\r\n\r\nGET /b HTTP/1.1\r\n\r\n"].concat();
        assert_eq!(feed(&mut p, &input), first);
        p.written(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        assert_eq!(feed(&mut p, b""), &input[first.len()..]);
        assert_eq!(p.unanswered.len(), 1, "one request, not three");
    }

    #[test]
    fn framing_it_cannot_follow_opens_the_gate() {
        let mut p = Pipeline::default();
        let input = b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
        assert_eq!(feed(&mut p, input), input);
        let mut p = Pipeline::default();
        let input = b"GET /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxGET /b HTTP/1.1\r\n\r\n";
        assert_eq!(feed(&mut p, input), input);
    }
}
