//! `portcullis-ratelimit`: parses the command line, binds, prints the address it listens
//! on, and serves until SIGTERM or SIGINT. Logs go to stderr.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;
use portcullis_ratelimit::auth::{self, Callers, Gate};
use portcullis_ratelimit::cli::{self, Options, USAGE};
use portcullis_ratelimit::config::Limits;
use portcullis_ratelimit::endpoint::{self, Endpoint};
use portcullis_ratelimit::grpc::CountErrors;
use portcullis_ratelimit::metrics::Metrics;
use portcullis_ratelimit::service::{system_clock, RateLimiter};
use portcullis_ratelimit::store::{describe, Store};
use portcullis_ratelimit::tls;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::transport::ServerTlsConfig;

/// How long a stop signal waits for open connections to close.
const GRACE: std::time::Duration = std::time::Duration::from_secs(1);

fn main() -> ExitCode {
    let started = SystemTime::now();
    let options = match cli::parse(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(why) => {
            eprintln!("portcullis-ratelimit: {why}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let secret = match auth::load(
        options.secret_file.as_deref(),
        std::env::var(auth::SECRET_ENV).ok(),
    ) {
        Ok(secret) => secret,
        Err(why) => {
            eprintln!("portcullis-ratelimit: {why}");
            return ExitCode::from(2);
        }
    };
    let callers = Callers {
        secret: secret.is_some(),
        tls: options.tls.cert.is_some(),
        client_certificates: options.tls.mutual(),
    };
    let tls = match tls::load(&options.tls).and_then(|tls| {
        if let Some(warning) = auth::exposure(options.listen, callers, options.trusted_network)? {
            eprintln!("portcullis-ratelimit: warning: {warning}");
        }
        Ok(tls)
    }) {
        Ok(tls) => tls,
        Err(why) => {
            eprintln!("portcullis-ratelimit: {why}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("portcullis-ratelimit: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let metrics = Arc::new(Metrics::new(started));
    match runtime.block_on(serve(options, Gate::new(secret), tls, metrics)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("portcullis-ratelimit: {why}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    options: Options,
    gate: Gate,
    tls: Option<ServerTlsConfig>,
    metrics: Arc<Metrics>,
) -> Result<(), String> {
    let limits = match &options.config {
        Some(path) => {
            let bytes =
                std::fs::read(path).map_err(|e| format!("--config {}: {e}", path.display()))?;
            Limits::from_json(&bytes).map_err(|e| format!("--config {}: {e}", path.display()))?
        }
        None => Limits::default(),
    };
    let store = Arc::new(Store::new(
        &options.redis,
        options.redis_timeout,
        Arc::clone(&metrics),
    )?);
    // Watch for signals before saying we listen: a SIGTERM right after the ready line must
    // stop the service gracefully, not kill it with the default action.
    let signals = Signals::watch();
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| format!("--listen {}: {e}", options.listen))?;
    let address = listener
        .local_addr()
        .map_err(|e| format!("--listen {}: {e}", options.listen))?;
    let operators = match options.metrics_listen {
        Some(metrics_listen) => {
            let listener = tokio::net::TcpListener::bind(metrics_listen)
                .await
                .map_err(|e| format!("--metrics-listen {metrics_listen}: {e}"))?;
            let bound = listener
                .local_addr()
                .map_err(|e| format!("--metrics-listen {metrics_listen}: {e}"))?;
            Some((listener, bound))
        }
        None => None,
    };
    // Tests and scripts read the ports from this line: print it whole, then flush.
    let mut stdout = std::io::stdout();
    let _ = match &operators {
        Some((_, bound)) => writeln!(
            stdout,
            "portcullis-ratelimit listening on {address}, metrics on {bound}"
        ),
        None => writeln!(stdout, "portcullis-ratelimit listening on {address}"),
    };
    let _ = stdout.flush();
    let stopping = Arc::new(AtomicBool::new(false));
    if let Some((listener, bound)) = operators {
        eprintln!(
            "portcullis-ratelimit: /metrics, /healthz and /readyz on http://{bound}{}",
            if bound.ip().is_loopback() {
                ""
            } else {
                " (beyond loopback, unauthenticated: every host that reaches it can read the metrics)"
            }
        );
        let endpoint = Endpoint::new(
            Arc::clone(&metrics),
            Arc::clone(&store),
            Arc::clone(&stopping),
        );
        tokio::spawn(endpoint::serve(listener, Arc::new(endpoint)));
    }
    eprintln!(
        "portcullis-ratelimit: serving on {address} ({}), counters in {} (timeout {} ms), {} static limits, ceilings: hits_addend {}, limit {}, {}",
        options.tls.describe("cleartext HTTP/2"),
        describe(&options.redis),
        options.redis_timeout.as_millis(),
        limits.len(),
        options.ceilings.hits_addend,
        options.ceilings.limit,
        match (gate.authenticates(), options.tls.mutual()) {
            (true, true) => "calls authenticated by client certificate and the shared secret",
            (true, false) => "calls authenticated by the shared secret",
            (false, true) => "calls authenticated by client certificate",
            (false, false) => "calls not authenticated",
        }
    );
    let service = RateLimitServiceServer::with_interceptor(
        RateLimiter::new(
            store,
            Arc::clone(&metrics),
            limits,
            options.ceilings,
            system_clock,
        ),
        move |request| gate.check(request),
    );
    let service = CountErrors::new(Routes::new(service).prepare(), metrics);
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls)
            .map_err(|e| format!("--tls-cert: {e}"))?;
    }
    let server =
        builder.serve_with_incoming_shutdown(service, TcpIncoming::from(listener), async {
            signals.first().await;
            stopping.store(true, Ordering::Relaxed);
            let _ = stop.send(());
        });
    // Graceful, within bounds: calls in flight finish, but a client that keeps its
    // connection open after the GOAWAY does not hold the exit up past GRACE.
    tokio::select! {
        served = server => served.map_err(|e| format!("serving: {e}"))?,
        _ = async {
            let _ = stopped.await;
            tokio::time::sleep(GRACE).await;
        } => eprintln!(
            "portcullis-ratelimit: connections still open {} ms after the signal, closing them",
            GRACE.as_millis()
        ),
    }
    eprintln!("portcullis-ratelimit: stopped");
    Ok(())
}

/// SIGTERM and SIGINT (Ctrl-C), watched from start-up on.
struct Signals(Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>);

impl Signals {
    fn watch() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Signals(Some((term, int))),
            _ => {
                eprintln!("portcullis-ratelimit: cannot watch for signals; stop it with SIGKILL");
                Signals(None)
            }
        }
    }

    /// Resolves on the first SIGTERM or SIGINT.
    async fn first(self) {
        let Some((mut term, mut int)) = self.0 else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => eprintln!("portcullis-ratelimit: SIGTERM, stopping"),
            _ = int.recv() => eprintln!("portcullis-ratelimit: SIGINT, stopping"),
        }
    }
}
