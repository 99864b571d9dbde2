//! Requests hyper cannot parse (a malformed request line or header, a bad or doubled
//! `Content-Length`, too many or too large headers, an over-long URI) never reach the
//! API: hyper answers them itself, with an empty body, and closes the connection. This
//! wrapper around a connection's stream recognizes those answers as they are written and
//! sends in their place the same status with the spec's JSON error body and the API
//! version header, as every other error carries.
//!
//! Recognizing them from the bytes alone must never touch anything else, least of all a
//! blob's bytes on their way out. An answer is rewritten only when all of these hold:
//! it is one whole write; it is exactly hyper's form (`HTTP/1.1` 400, 414 or 431, then
//! `connection: close`, `content-length: 0` and `date`, and nothing else; every
//! response of the API carries the API version header, which this form lacks); and the
//! connection's last operation was a read that returned bytes, which is how hyper comes
//! to answer: it read a head it could not parse, and wrote nothing since.
//!
//! One case keeps hyper's bare answer: a malformed request pipelined behind a good one
//! and read with it, whose answer follows the good one's without a read between.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::errors::{ApiError, ErrorCode};

/// A connection's stream, with hyper's own answers to unparsable requests rewritten.
#[derive(Debug)]
pub struct Unparsed<T> {
    inner: T,
    /// The last operation was a read that returned bytes.
    just_read: bool,
    /// A rewritten answer being written: its bytes, how many are written, and the
    /// length of hyper's answer it stands for (reported once all are written).
    replacing: Option<(Vec<u8>, usize, usize)>,
}

impl<T> Unparsed<T> {
    pub fn new(inner: T) -> Unparsed<T> {
        Unparsed {
            inner,
            just_read: false,
            replacing: None,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Unparsed<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.just_read = true;
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Unparsed<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.replacing.is_none()
            && this.just_read
            && let Some(status) = hypers_own_answer(buf)
        {
            this.replacing = Some((answer(status), 0, buf.len()));
        }
        this.just_read = false;
        let Some((bytes, written, stands_for)) = &mut this.replacing else {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        };
        while *written < bytes.len() {
            match Pin::new(&mut this.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                other => return other,
            }
        }
        let stands_for = *stands_for;
        this.replacing = None;
        Poll::Ready(Ok(stands_for))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut parts = bufs.iter().filter(|b| !b.is_empty());
        match (parts.next(), parts.next()) {
            // One buffer: the form hyper's answer takes.
            (Some(only), None) => self.poll_write(cx, only),
            _ => {
                let this = self.get_mut();
                this.just_read = false;
                Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The status of `buf` if it is exactly hyper's answer to a request it could not parse.
fn hypers_own_answer(buf: &[u8]) -> Option<u16> {
    // Its longest form is 125 bytes; anything longer is not it, and costs no more look.
    if buf.len() > 160 || !buf.starts_with(b"HTTP/1.1 4") {
        return None;
    }
    let text = std::str::from_utf8(buf).ok()?;
    let rest = text.strip_prefix("HTTP/1.1 ")?;
    let status: u16 = rest.get(..3)?.parse().ok()?;
    if !matches!(status, 400 | 414 | 431) {
        return None;
    }
    let (_, headers) = rest.split_once("\r\n")?;
    let headers = headers.strip_suffix("\r\n\r\n")?;
    let mut lines = headers.split("\r\n");
    let date = match (lines.next(), lines.next(), lines.next(), lines.next()) {
        (Some("connection: close"), Some("content-length: 0"), Some(date), None) => {
            date.strip_prefix("date: ")?
        }
        _ => return None,
    };
    // An IMF-fixdate, as hyper writes it: "Sun, 06 Nov 1994 08:49:37 GMT".
    (date.len() == 29 && date.ends_with(" GMT")).then_some(status)
}

/// The answer sent instead: the same status, the spec's body, the API version header.
fn answer(status: u16) -> Vec<u8> {
    let (reason, message) = match status {
        414 => ("URI Too Long", "the request URI is too long"),
        431 => (
            "Request Header Fields Too Large",
            "the request's headers are too many or too large",
        ),
        _ => ("Bad Request", "the request is not valid HTTP/1.1"),
    };
    let body = ApiError::new(ErrorCode::Unsupported, message).body();
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n\
         docker-distribution-api-version: registry/2.0\r\nconnection: close\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYPERS: &str = "HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Mon, 30 Nov 2026 09:32:47 GMT\r\n\r\n";

    #[test]
    fn only_hypers_exact_form_is_recognized() {
        assert_eq!(hypers_own_answer(HYPERS.as_bytes()), Some(431));
        let bad_request = HYPERS.replace("431 Request Header Fields Too Large", "400 Bad Request");
        assert_eq!(hypers_own_answer(bad_request.as_bytes()), Some(400));
        for other in [
            // Another status, an extra header, a body, a cut-off head.
            HYPERS.replace("431", "404"),
            HYPERS.replace("connection: close\r\n", "connection: close\r\nx: y\r\n"),
            format!("{HYPERS}{{}}"),
            HYPERS[..HYPERS.len() - 2].to_owned(),
            HYPERS.replace("GMT", "UTC"),
            // The API's own answers carry the version header.
            HYPERS.replace(
                "connection: close",
                "docker-distribution-api-version: registry/2.0\r\nconnection: close",
            ),
        ] {
            assert_eq!(hypers_own_answer(other.as_bytes()), None, "{other:?}");
        }
    }

    #[tokio::test]
    async fn the_answer_is_rewritten_only_right_after_a_read() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (client, server) = tokio::io::duplex(4096);
        let mut server = Unparsed::new(server);
        let (mut client_read, mut client_write) = tokio::io::split(client);

        // Written without a read before it: passed through as it is.
        server.write_all(HYPERS.as_bytes()).await.unwrap();
        let mut got = vec![0u8; HYPERS.len()];
        client_read.read_exact(&mut got).await.unwrap();
        assert_eq!(got, HYPERS.as_bytes());

        // After a read: the spec's form.
        client_write.write_all(b"GARBAGE\r\n\r\n").await.unwrap();
        let mut head = [0u8; 11];
        server.read_exact(&mut head).await.unwrap();
        server.write_all(HYPERS.as_bytes()).await.unwrap();
        server.shutdown().await.unwrap();
        let mut rest = String::new();
        client_read.read_to_string(&mut rest).await.unwrap();
        assert!(
            rest.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{rest}"
        );
        assert!(rest.contains("docker-distribution-api-version: registry/2.0"));
        assert!(rest.ends_with(r#""code":"UNSUPPORTED","detail":null,"message":"the request's headers are too many or too large"}]}"#), "{rest}");
    }
}
