//! What a connection task reads from and writes to: the TCP socket as is, or a TLS session
//! over it. Both keep the socket's readiness model: the task waits on the TCP socket's
//! readiness (so a FIN or RST is seen while idle, TLS or not) and then reads or writes what it
//! can without blocking.
//!
//! The plain path is [`TcpStream`] itself: its methods are the ones the task called before
//! there was a trait, and what TLS adds ([`Transport::has_pending`]) is a constant `false`
//! there, so the compiler removes it.

use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;

use tokio::net::TcpStream;

use crate::tls::TlsInfo;

/// Size of one read from the socket.
const READ_CHUNK: usize = 8 * 1024;

/// A connection's byte stream, plaintext to the task.
pub(crate) trait Transport: Send + Sync + 'static {
    /// The TCP socket, for readiness and addresses.
    fn tcp(&self) -> &TcpStream;

    /// Reads what is there without waiting and appends it to `buf`. `Ok(0)` is the end of the
    /// stream; `WouldBlock` means nothing yet (for TLS also: part of a record).
    fn read_into(&mut self, buf: &mut Vec<u8>) -> io::Result<usize>;

    /// Takes what it can of `slices` without waiting; returns how much it took.
    fn write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize>;

    /// Whether bytes it took are still on their way to the socket (TLS records the socket
    /// had no room for). The task keeps writing until they are gone.
    fn has_pending(&self) -> bool {
        false
    }

    /// Writes what [`Transport::has_pending`] says is left; `WouldBlock` if the socket is full.
    fn flush_pending(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// The descriptor owner calls may write to themselves
    /// ([`crate::connection::Connection::attach_socket`]): the plain socket's. A TLS
    /// session's bytes must pass through the session, so it has none.
    #[cfg(unix)]
    fn write_through_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }

    /// What the TLS handshake agreed, if this is TLS.
    fn tls_info(&self) -> Option<Arc<TlsInfo>> {
        None
    }

    /// Sends no more: for TLS, a close_notify first; then the TCP FIN.
    fn close_write(&mut self) {
        let _ = socket2::SockRef::from(self.tcp()).shutdown(std::net::Shutdown::Write);
    }
}

impl Transport for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }

    /// The read goes through a buffer on this (synchronous) function's stack and only the
    /// bytes read are appended, so `buf` grows to what arrived, not by a whole read chunk: an
    /// idle stream keeps no read buffer.
    fn read_into(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        let mut chunk = [0u8; READ_CHUNK];
        let n = self.try_read(&mut chunk)?;
        buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        self.try_write_vectored(slices)
    }

    #[cfg(unix)]
    fn write_through_fd(&self) -> Option<std::os::fd::RawFd> {
        Some(std::os::fd::AsRawFd::as_raw_fd(self))
    }
}

/// A TLS session over a TCP socket, after its handshake.
///
/// Backpressure holds: it takes plaintext only once every record it made before is in the
/// socket, so what it holds beyond the socket's buffer is one batch (at most rustls's buffer
/// limit), and the write queue's room is freed as the kernel takes bytes, as on plain TCP.
pub(crate) struct TlsTransport {
    tcp: TcpStream,
    // Boxed: a session is kilobytes, and the task's future is moved once at spawn.
    session: Box<rustls::ServerConnection>,
    /// What the handshake agreed, read once, handed to every request head.
    info: Arc<TlsInfo>,
}

impl TlsTransport {
    /// Takes over a session whose handshake is done. Whatever the client sent along with the
    /// end of the handshake (often its first request) is already in `session`: it is appended
    /// to `buf`, since the socket will not be readable for it again.
    pub(crate) fn new(
        tcp: TcpStream,
        session: rustls::ServerConnection,
        buf: &mut Vec<u8>,
    ) -> io::Result<Self> {
        let info = Arc::new(TlsInfo::of(&session));
        let mut transport = TlsTransport {
            tcp,
            session: Box::new(session),
            info,
        };
        transport.session.process_new_packets().map_err(invalid)?;
        transport.drain_plaintext(buf)?;
        Ok(transport)
    }

    /// Appends the plaintext the session has decrypted. `Ok(None)`: the client sent
    /// close_notify.
    fn drain_plaintext(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        let mut chunk = [0u8; READ_CHUNK];
        let mut total = 0;
        loop {
            match self.session.reader().read(&mut chunk) {
                Ok(0) => return Ok(if total > 0 { Some(total) } else { None }),
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Some(total)),
                Err(e) => return Err(e),
            }
        }
    }
}

fn invalid(error: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

/// `std::io` over a tokio socket's non-blocking calls, for rustls; `WouldBlock` clears the
/// socket's readiness as tokio's own `try_*` calls do.
struct NonBlocking<'a>(&'a TcpStream);

impl Read for NonBlocking<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for NonBlocking<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for TlsTransport {
    fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Decrypts everything one socket read completes, so nothing waits in the session for a
    /// readiness that will not come again.
    fn read_into(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        loop {
            match self.drain_plaintext(buf)? {
                None => return Ok(0),
                Some(0) => {}
                Some(n) => return Ok(n),
            }
            let read = self.session.read_tls(&mut NonBlocking(&self.tcp))?;
            if read == 0 {
                return Ok(0);
            }
            let processed = self.session.process_new_packets();
            // An alert for a bad record, or an answer to a key update, goes out now if it can.
            let _ = self.flush_pending();
            processed.map_err(invalid)?;
        }
    }

    fn write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        self.flush_pending()?;
        let taken = self.session.writer().write_vectored(slices)?;
        match self.flush_pending() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(taken),
        }
    }

    fn tls_info(&self) -> Option<Arc<TlsInfo>> {
        Some(self.info.clone())
    }

    fn has_pending(&self) -> bool {
        self.session.wants_write()
    }

    fn flush_pending(&mut self) -> io::Result<()> {
        while self.session.wants_write() {
            if self.session.write_tls(&mut NonBlocking(&self.tcp))? == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }

    fn close_write(&mut self) {
        self.session.send_close_notify();
        let _ = self.flush_pending();
        let _ = socket2::SockRef::from(&self.tcp).shutdown(std::net::Shutdown::Write);
    }
}
