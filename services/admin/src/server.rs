//! The two listeners (Admin API, data plane), the pruner, and a graceful stop on SIGTERM
//! or SIGINT: requests in flight finish, new connections are refused, then the process
//! exits 0 (after at most [`GRACE`] for clients that keep connections open).

use std::future::IntoFuture as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

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

/// Serves both listeners until `stop` turns true, pruning on the side.
pub async fn serve(
    app: Arc<App>,
    admin: TcpListener,
    data_plane: TcpListener,
    retention: Duration,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let pruner = tokio::spawn(prune_forever(Arc::clone(&app), retention));
    let stopped = |mut stop: watch::Receiver<bool>| async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let admin_server = axum::serve(admin, admin_router(Arc::clone(&app)))
        .with_graceful_shutdown(stopped(stop.clone()));
    let data_server = axum::serve(data_plane, data_plane_router(Arc::clone(&app)))
        .with_graceful_shutdown(stopped(stop.clone()));
    let both = async { tokio::try_join!(admin_server.into_future(), data_server.into_future()) };
    let result = tokio::select! {
        served = both => served.map(|_| ()).map_err(|e| format!("serving: {e}")),
        _ = async {
            let _ = stop.wait_for(|s| *s).await;
            tokio::time::sleep(GRACE).await;
        } => {
            eprintln!("portcullis-admin: connections still open {} ms after the signal, closing them", GRACE.as_millis());
            Ok(())
        }
    };
    pruner.abort();
    result
}

/// Every `retention / 10` (1 s to 60 s): deletes events past the retention and
/// revocations past their `expires_at`.
async fn prune_forever(app: Arc<App>, retention: Duration) {
    let every = (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let db = Arc::clone(app.store.database());
        let older_than =
            crate::clock::now_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let now = crate::clock::now_secs();
        let done = tokio::task::spawn_blocking(move || {
            db::run(
                &*db,
                Access::Write,
                |tx: &mut dyn Tx| -> Result<(u64, u64), Failure> {
                    let events = events::prune(tx, older_than)?;
                    let revocations = ops::revocations::forget_expired(tx, now)?;
                    Ok((events, revocations))
                },
            )
        })
        .await;
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
