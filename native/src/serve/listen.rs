//! Accepting connections, with the limits a slow or hostile client meets before any handler runs:
//!
//! - at most `max_connections` open at once: a slot is taken before `accept`, so past the cap new
//!   connections wait in the kernel's backlog instead of taking file descriptors (the open-file soft
//!   limit is raised to the hard one at start, and the cap is kept below it);
//! - a request head must arrive within `header_timeout` (from the connection's start, and on idle
//!   keep-alive connections), else the connection is closed: silent or half-sent requests cannot hold slots;
//! - a request head over [`MAX_REQUEST_HEAD_BYTES`] is answered 431 and the connection closed;
//! - on SIGTERM/SIGINT the listener closes, requests in flight get `shutdown_deadline`, then the caller
//!   saves the index and the process exits even if some never finished.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::ConnectionLimits;

/// Largest request head (request line and headers) read; hyper answers 431 past it. Browsers send a
/// few KB; 64 KiB leaves room for large cookies and tokens.
pub const MAX_REQUEST_HEAD_BYTES: usize = 64 << 10;
/// File descriptors kept out of the connection cap (the catalog, blobs, model files, the log): half the
/// limit, at most this many.
const RESERVED_FDS: u64 = 256;

/// How serving ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every connection finished within the deadline.
    All,
    /// The deadline passed with this many connections still open (they are dropped).
    DeadlinePassed(usize),
}

/// Raises the open-file soft limit to the hard limit; returns the soft limit now in force.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit write only the struct passed, which lives on this stack frame.
    unsafe {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
        limit.rlim_cur as u64
    }
}

/// The connection cap a process with `fd_limit` open files can hold, at most `wanted`.
pub fn connection_cap(wanted: usize, fd_limit: u64) -> usize {
    let reserved = RESERVED_FDS.min(fd_limit / 2);
    (fd_limit.saturating_sub(reserved).max(16) as usize).min(wanted)
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains (see the module docs).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> Drained {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    // HTTP/1 only: telling HTTP/2's preface apart would first wait for bytes with no timeout (a client
    // that connects and sends nothing would hold its slot), and without TLS no browser speaks HTTP/2.
    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_REQUEST_HEAD_BYTES);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and the like: wait for descriptors to come back rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = tower::service_fn(move |mut request: axum::extract::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            let mut app = app.clone();
            async move { tower::Service::call(&mut app, request.map(axum::body::Body::new)).await }
        });
        let (builder, watcher, header_timeout) = (builder.clone(), graceful.watcher(), limits.header_timeout);
        tokio::spawn(async move {
            // hyper times a request head from its first byte on: a client that sends nothing is closed here.
            // (`peek`, not `readable`: readiness may be reported before any byte has come.)
            let mut first = [0u8; 1];
            if let Ok(Ok(1..)) = tokio::time::timeout(header_timeout, stream.peek(&mut first)).await {
                let connection =
                    builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service));
                let _ = watcher.watch(connection.into_owned()).await;
            }
            drop(permit);
        });
    }
    drop(listener);
    let open = limits.max_connections - slots.available_permits();
    tracing::info!(open, deadline_s = limits.shutdown_deadline.as_secs_f64(), "draining connections");
    tokio::select! {
        () = graceful.shutdown() => Drained::All,
        () = tokio::time::sleep(limits.shutdown_deadline) => {
            Drained::DeadlinePassed(limits.max_connections - slots.available_permits())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stays_below_the_descriptor_limit() {
        assert_eq!(connection_cap(10_000, 1024), 768);
        assert_eq!(connection_cap(500, 1_048_576), 500);
        assert_eq!(connection_cap(10_000, 128), 64);
        assert_eq!(connection_cap(10_000, 20), 16);
        assert!(raise_fd_limit() >= 16);
    }
}
