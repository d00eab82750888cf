//! The two listeners (Admin API, data plane), the pruner, and a graceful stop on SIGTERM
//! or SIGINT: requests in flight finish, new connections are refused, then the process
//! exits 0 (after at most [`GRACE`] for clients that keep connections open).
//!
//! Each listener has its own accept loop over hyper's HTTP/1.1 ([`Limits`]): a client has
//! `--header-timeout-ms` to send a request's head and `--body-timeout-ms` for its body,
//! and at most `--max-connections` connections are open at once, so slow or idle clients
//! cannot hold the service.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::cli::Options;
use crate::db::{self, Access, Tx};
use crate::failure::Failure;
use crate::{admin_api, data_plane, events, ops, App};

/// How long a stop waits for open connections.
pub const GRACE: Duration = Duration::from_secs(2);

/// Binds both listeners; the bound addresses (port 0 resolved).
pub async fn bind(options: &Options) -> Result<(TcpListener, TcpListener), String> {
    let admin = TcpListener::bind(options.listen)
        .await
        .map_err(|e| format!("--listen {}: {e}", options.listen))?;
    let data_plane = TcpListener::bind(options.data_plane_listen)
        .await
        .map_err(|e| format!("--data-plane-listen {}: {e}", options.data_plane_listen))?;
    Ok((admin, data_plane))
}

/// The Admin API's router.
pub fn admin_router(app: Arc<App>) -> Router {
    Router::new().fallback(admin_api::handle).with_state(app)
}

/// The data plane's router.
pub fn data_plane_router(app: Arc<App>) -> Router {
    Router::new().fallback(data_plane::handle).with_state(app)
}

/// Prints the ready line (stdout, flushed: tests and scripts read the ports from it).
pub fn announce(admin: SocketAddr, data_plane: SocketAddr) {
    let mut stdout = std::io::stdout();
    let _ = writeln!(
        stdout,
        "portcullis-admin listening on {admin}, data plane on {data_plane}"
    );
    let _ = stdout.flush();
}

/// What one client may take of a listener: bounds on slow or idle clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The most a client may take to send a request's head (`--header-timeout-ms`); an idle
    /// keep-alive connection is closed after it too. Past it the connection is closed.
    pub header_timeout: Duration,
    /// The most a client may take to send a request's body (`--body-timeout-ms`); past it
    /// the answer is 408.
    pub body_timeout: Duration,
    /// The most connections open at once on each listener (`--max-connections`); the next
    /// one waits in the kernel's accept queue until one closes.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 256,
        }
    }
}

/// Serves both listeners until `stop` turns true, pruning on the side.
pub async fn serve(
    app: Arc<App>,
    admin: TcpListener,
    data_plane: TcpListener,
    retention: Duration,
    stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let pruner = tokio::spawn(prune_forever(Arc::clone(&app), retention));
    let limits = app.limits;
    let admin_server = accept_loop(
        admin,
        admin_router(Arc::clone(&app)),
        app.tls.clone(),
        limits,
        stop.clone(),
    );
    let data_server = accept_loop(
        data_plane,
        data_plane_router(Arc::clone(&app)),
        app.tls.clone(),
        limits,
        stop.clone(),
    );
    let (admin_open, data_open) = tokio::join!(admin_server, data_server);
    pruner.abort();
    if !(admin_open && data_open) {
        eprintln!(
            "portcullis-admin: connections still open {} ms after the signal, closing them",
            GRACE.as_millis()
        );
    }
    Ok(())
}

/// Accepts connections (at most `limits.max_connections` open at once), over TLS if
/// `tls`, and serves each with hyper's HTTP/1.1, until `stop`; then lets requests in
/// flight finish, for at most [`GRACE`]. Whether every connection closed in time.
async fn accept_loop(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) -> bool {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        // A slot first: past the cap, connections wait in the accept queue.
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = stopped(&mut stop) => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and the like: wait a little rather than spin.
                    eprintln!("portcullis-admin: level=warn accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        let (router, stop, tls) = (router.clone(), stop.clone(), tls.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_connection(stream, router, limits, stop).await,
                Some(tls) => {
                    // A failed or slow handshake (no client certificate, a wrong CA,
                    // cleartext) closes the connection; nothing reaches the routers.
                    if let Ok(Ok(stream)) =
                        tokio::time::timeout(portcullis_tls::HANDSHAKE_TIMEOUT, tls.accept(stream))
                            .await
                    {
                        serve_connection(stream, router, limits, stop).await;
                    }
                }
            }
        });
    }
    drop(listener);
    // Every slot back: every connection closed.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let closed = tokio::time::timeout(GRACE, slots.acquire_many(all))
        .await
        .is_ok();
    closed
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// One connection: HTTP/1.1 with keep-alive and a header-read timeout; on `stop`, the
/// request in flight finishes and the connection closes.
async fn serve_connection<I>(io: I, router: Router, limits: Limits, mut stop: watch::Receiver<bool>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(router);
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = stopped(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// How many rows the pruner deletes per transaction.
const PRUNE_BATCH: i64 = 1000;

/// Every `retention / 10` (1 s to 60 s): deletes events past the retention and
/// revocations past their `expires_at` plus the grace.
async fn prune_forever(app: Arc<App>, retention: Duration) {
    let every = (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let db = Arc::clone(app.store.database());
        let older_than =
            crate::clock::now_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let grace = app.revocations.grace;
        let done = tokio::task::spawn_blocking(move || prune(&*db, older_than, grace)).await;
        match done {
            Ok(Ok((events, revocations))) => {
                app.store.metrics.pruned(events, revocations);
                if events + revocations > 0 {
                    eprintln!("portcullis-admin: level=info pruned events={events} revocations={revocations}");
                }
            }
            Ok(Err(failure)) => eprintln!(
                "portcullis-admin: level=warn pruning failed, will retry: {}",
                failure.body()["message"]
            ),
            Err(e) => eprintln!("portcullis-admin: level=warn pruning failed, will retry: {e}"),
        }
    }
}

/// One pruning pass: marks old events pruned (one short write), then deletes them and the
/// forgotten revocations in batches that do not hold up the writers.
pub fn prune(db: &dyn db::Database, older_than_ms: i64, grace: i64) -> Result<(u64, u64), Failure> {
    let through = db::run(db, Access::Write, |tx: &mut dyn Tx| {
        events::mark_pruned(tx, older_than_ms)
    })?;
    let mut events = 0;
    if let Some(through) = through {
        loop {
            let deleted = db::run(db, Access::Maintenance, |tx: &mut dyn Tx| {
                events::delete_pruned(tx, through, PRUNE_BATCH)
            })?;
            events += deleted;
            if deleted == 0 {
                break;
            }
        }
    }
    let now = crate::clock::now_secs();
    let mut revocations = 0;
    loop {
        let deleted = db::run(db, Access::Maintenance, |tx: &mut dyn Tx| {
            ops::revocations::forget_expired(tx, now, grace, PRUNE_BATCH)
        })?;
        revocations += deleted;
        if deleted == 0 {
            break;
        }
    }
    Ok((events, revocations))
}

/// SIGTERM and SIGINT, watched from start-up on: `stop` turns true on the first.
pub fn watch_signals() -> Result<watch::Receiver<bool>, String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("watching SIGTERM: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("watching SIGINT: {e}"))?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => eprintln!("portcullis-admin: SIGTERM, stopping"),
            _ = int.recv() => eprintln!("portcullis-admin: SIGINT, stopping"),
        }
        let _ = tx.send(true);
    });
    Ok(rx)
}
