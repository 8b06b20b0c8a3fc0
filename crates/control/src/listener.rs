//! The API listener: plain TCP on loopback, or TLS. With TLS, handshakes
//! run in their own tasks (a slow client delays no one) and each connection
//! carries the client certificate it showed, if any.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is at the other end of a connection.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The client certificate (DER), verified against the cluster CA.
    pub cert: Option<Arc<Vec<u8>>>,
}

pub struct ApiListener {
    local: SocketAddr,
    inner: Inner,
}

enum Inner {
    Plain(TcpListener),
    Tls { accepted: mpsc::Receiver<(TlsStream<TcpStream>, Peer)>, accept_loop: tokio::task::JoinHandle<()> },
}

impl ApiListener {
    pub fn new(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let inner = match tls {
            None => Inner::Plain(listener),
            Some(config) => {
                let (tx, accepted) = mpsc::channel(64);
                let accept_loop = tokio::spawn(accept_tls(listener, tokio_rustls::TlsAcceptor::from(config), tx));
                Inner::Tls { accepted, accept_loop }
            }
        };
        Ok(Self { local, inner })
    }
}

impl Drop for ApiListener {
    fn drop(&mut self) {
        if let Inner::Tls { accept_loop, .. } = &self.inner {
            accept_loop.abort();
        }
    }
}

async fn accept_tls(listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor, tx: mpsc::Sender<(TlsStream<TcpStream>, Peer)>) {
    loop {
        let (tcp, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        no_delay(&tcp);
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| Arc::new(c.to_vec()));
                    let _ = tx.send((tls, Peer { addr, cert })).await;
                }
                Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
            }
        });
    }
}

/// No Nagle: gRPC replies would otherwise wait for the client's delayed ACK (40 ms).
fn no_delay(tcp: &TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
}

impl axum::serve::Listener for ApiListener {
    type Io = Either<TlsStream<TcpStream>, TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match &mut self.inner {
            Inner::Plain(listener) => {
                let (tcp, addr) = axum::serve::Listener::accept(listener).await;
                no_delay(&tcp);
                (Either::Right(tcp), Peer { addr, cert: None })
            }
            Inner::Tls { accepted, .. } => match accepted.recv().await {
                Some((tls, peer)) => (Either::Left(tls), peer),
                // The accept loop only ends when this listener is dropped.
                None => std::future::pending().await,
            },
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer { addr: self.local, cert: None })
    }
}

impl Connected<IncomingStream<'_, ApiListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, ApiListener>) -> Self {
        stream.remote_addr().clone()
    }
}
