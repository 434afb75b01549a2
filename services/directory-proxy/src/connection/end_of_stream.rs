//! A stream that remembers whether the server ended it.
//!
//! `mail-send` reports a stream that ends before a complete reply as an unparseable reply,
//! the same error as garbage. An ended stream is a server that closed the connection (idle
//! timeout, restart), which a pool answers by reconnecting; garbage is not.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `inner`, noting when a read finds the end of the stream.
pub(crate) struct EndAware<S> {
    inner: S,
    ended: bool,
}

impl<S> EndAware<S> {
    /// Wraps `inner`, not ended yet.
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            ended: false,
        }
    }

    /// Whether a read found the end of the stream.
    pub(crate) fn ended(&self) -> bool {
        self.ended
    }

    /// The wrapped stream.
    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped stream, to upgrade it (STARTTLS).
    pub(crate) fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for EndAware<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let wanted = buf.remaining() > 0;
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && wanted && buf.filled().len() == before {
            self.ended = true;
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for EndAware<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn the_end_is_noted_only_when_the_peer_ends_the_stream() {
        let (mut server, client) = tokio::io::duplex(64);
        let mut stream = EndAware::new(client);
        tokio::io::AsyncWriteExt::write_all(&mut server, b"220 hi\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(stream.read(&mut buf).await.unwrap(), 8);
        assert!(!stream.ended());
        drop(server);
        assert_eq!(stream.read(&mut buf).await.unwrap(), 0);
        assert!(stream.ended());
    }
}
