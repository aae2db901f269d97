//! The HTTP server loop: axum's router on hyper, with the bounds `axum::serve` does not set.
//!
//! - At most `max_connections` connections at once, never more than the process's descriptor
//!   limit leaves after a reserve for the broker, the store and the log. A connection beyond
//!   that is closed at once rather than left in the kernel's backlog, where it would queue
//!   behind a flood of idle ones; the client sees a reset and may retry.
//! - A request head must arrive within [`HEADER_TIMEOUT`], on a new connection and between
//!   requests on a kept-alive one, so idle and half-sent connections are closed.
//! - A request body that makes no progress for [`BODY_IDLE_TIMEOUT`] is cut off.
//! - With TLS, the handshake must finish within [`HEADER_TIMEOUT`] too.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to send a request head (or finish a TLS handshake).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request body may make no progress.
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Descriptors kept back from HTTP for the broker connection, the store, the log and the rest.
pub const DESCRIPTOR_RESERVE: usize = 64;
/// The default for `http.max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// `wanted` connections, or fewer if the descriptor limit would not leave the reserve.
pub fn connection_cap(wanted: usize) -> usize {
    let limit = std::fs::read_to_string("/proc/self/limits").ok().and_then(|text| {
        text.lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|soft| soft.parse::<usize>().ok())
    });
    match limit {
        Some(limit) => wanted.min(limit.saturating_sub(DESCRIPTOR_RESERVE)).max(1),
        None => wanted.max(1),
    }
}

/// Serves `router` on `listener` (through TLS when `tls` is given) until `shutdown` resolves,
/// then lets open requests finish for up to 5 s.
pub async fn run(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    max_connections: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(BODY_IDLE_TIMEOUT));
    let slots = Arc::new(Semaphore::new(connection_cap(max_connections)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "HTTP connection refused: http.max_connections reached");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let router = router.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_connection(tcp, router, watcher, peer).await,
                Some(acceptor) => match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => serve_connection(stream, router, watcher, peer).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "HTTPS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "HTTPS handshake timed out"),
                },
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
    Ok(())
}

async fn serve_connection<IO>(
    io: IO,
    router: Router,
    watcher: hyper_util::server::graceful::Watcher,
    peer: SocketAddr,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(router);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT).keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}
