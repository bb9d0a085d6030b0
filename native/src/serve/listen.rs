//! Accepting connections, with the limits a slow or hostile client meets before any handler runs:
//!
//! - at most `max_connections` open at once: a slot is taken before `accept`, so past the cap new
//!   connections wait in the kernel's backlog instead of taking file descriptors (the open-file soft
//!   limit is raised to the hard one at start, and the cap is kept below it);
//! - a request head must arrive within `header_timeout` from the connection's start, and a keep-alive
//!   connection idle (no request in flight) that long is closed: silent, half-sent or forgotten
//!   connections cannot hold slots;
//! - a request head over [`MAX_REQUEST_HEAD_BYTES`] is answered 431 and the connection closed;
//! - on SIGTERM/SIGINT the listener closes, requests in flight get `shutdown_deadline`, then the caller
//!   saves the index and the process exits even if some never finished.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

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
    let (stop, stopping) = watch::channel(false);
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
        let activity = Arc::new(Activity::new());
        let (app, counted) = (app.clone(), Arc::clone(&activity));
        let service = tower::service_fn(move |mut request: axum::extract::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            let mut app = app.clone();
            let busy = Busy::new(Arc::clone(&counted));
            async move {
                let response = tower::Service::call(&mut app, request.map(axum::body::Body::new)).await;
                drop(busy);
                response
            }
        });
        let (builder, mut stopping, header_timeout) = (builder.clone(), stopping.clone(), limits.header_timeout);
        tokio::spawn(async move {
            // hyper times a request head from its first byte on: a client that sends nothing is closed here.
            // (`peek`, not `readable`: readiness may be reported before any byte has come.)
            let mut first = [0u8; 1];
            if let Ok(Ok(1..)) = tokio::time::timeout(header_timeout, stream.peek(&mut first)).await {
                let connection =
                    builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service));
                tokio::pin!(connection);
                // Once asked to end (idle, or the server stopping), the connection finishes the response in
                // flight, if any, and closes.
                let mut ending = false;
                loop {
                    let idle_left = header_timeout.saturating_sub(activity.idle_for());
                    tokio::select! {
                        _ = connection.as_mut() => break,
                        _ = stopping.changed(), if !ending => {
                            connection.as_mut().graceful_shutdown();
                            ending = true;
                        }
                        () = tokio::time::sleep(idle_left.max(Duration::from_millis(10))), if !ending => {
                            if activity.idle_for() >= header_timeout {
                                connection.as_mut().graceful_shutdown();
                                ending = true;
                            }
                        }
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    let open = limits.max_connections - slots.available_permits();
    tracing::info!(open, deadline_s = limits.shutdown_deadline.as_secs_f64(), "draining connections");
    stop.send_replace(true);
    // Every slot back: every connection has ended.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    tokio::select! {
        _ = slots.acquire_many(all) => Drained::All,
        () = tokio::time::sleep(limits.shutdown_deadline) => {
            Drained::DeadlinePassed(limits.max_connections - slots.available_permits())
        }
    }
}

/// Requests in flight on one connection, and since when it has had none.
struct Activity {
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl Activity {
    fn new() -> Activity {
        Activity { in_flight: AtomicUsize::new(0), idle_since: Mutex::new(Instant::now()) }
    }

    /// How long the connection has had no request in flight; zero while it has one.
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Duration::ZERO;
        }
        self.idle_since.lock().unwrap_or_else(PoisonError::into_inner).elapsed()
    }
}

/// One request in flight on a connection, until dropped (its response's head is ready, or it was
/// abandoned).
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: Arc<Activity>) -> Busy {
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        Busy(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
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
