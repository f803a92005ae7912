//! The HTTP/2 client preface: read before a connection is served, so a client that never sends it
//! is dropped after the handshake timeout, then handed back to the HTTP/2 server unread.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// What every HTTP/2 client sends first (RFC 9113, section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A connection whose preface has been read and checked; reading it yields the preface again,
/// then the rest of the connection.
#[derive(Debug)]
pub(crate) struct Prefaced<IO> {
    /// The connection (TCP, or TLS over TCP).
    io: IO,
    /// How many bytes of [`PREFACE`] have been yielded again.
    replayed: usize,
}

/// Reads the preface from `io`.
///
/// # Errors
/// An I/O error, or `InvalidData` when the client sent something else (such as HTTP/1.1).
pub(crate) async fn read<IO: AsyncRead + Unpin>(mut io: IO) -> io::Result<Prefaced<IO>> {
    let mut received = [0; PREFACE.len()];
    io.read_exact(&mut received).await?;
    if &received != PREFACE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not an HTTP/2 client preface",
        ));
    }
    Ok(Prefaced { io, replayed: 0 })
}

// === impl Prefaced ===

impl<IO: Connected> Prefaced<IO> {
    /// What tonic's `Request::remote_addr` and `peer_certs` read: the connection's addresses, and
    /// for TLS the client's certificates.
    pub(crate) fn connect_info(&self) -> IO::ConnectInfo {
        self.io.connect_info()
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefaced<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let rest = &PREFACE[self.replayed..];
        if rest.is_empty() {
            return Pin::new(&mut self.io).poll_read(cx, buf);
        }
        let n = rest.len().min(buf.remaining());
        buf.put_slice(&rest[..n]);
        self.replayed += n;
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Prefaced<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt as _;

    use super::*;

    #[tokio::test]
    async fn the_preface_is_checked_and_read_again() {
        let (mut client, server) = tokio::io::duplex(256);
        client.write_all(PREFACE).await.unwrap();
        client.write_all(b"SETTINGS").await.unwrap();
        let mut prefaced = read(server).await.unwrap();
        let mut replay = [0; 32];
        prefaced.read_exact(&mut replay).await.unwrap();
        assert_eq!(&replay[..24], PREFACE);
        assert_eq!(&replay[24..], b"SETTINGS");

        let (mut client, server) = tokio::io::duplex(256);
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: bridge\r\n\r\n")
            .await
            .unwrap();
        let error = read(server).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }
}
