//! `portcullis-admin`: parses the command line, opens and migrates the database, binds
//! both listeners, prints the ready line, and serves until SIGTERM or SIGINT. Logs go to
//! stderr, one `key=value` line per request, never a body.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use portcullis_admin::cli::{self, Command, Options, USAGE};
use portcullis_admin::db::migrations;
use portcullis_admin::metrics::Metrics;
use portcullis_admin::store::Store;
use portcullis_admin::{bench, import, server, token, App};

fn main() -> ExitCode {
    let command = match cli::parse(
        std::env::args().skip(1),
        std::env::var("PORTCULLIS_ADMIN_DB").ok(),
    ) {
        Ok(command) => command,
        Err(why) => {
            eprintln!("portcullis-admin: {why}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("portcullis-admin: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match command {
        Command::Help => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Command::Serve(options) => match prepare(&options) {
            Ok(app) => runtime.block_on(run(options, app)),
            Err(why) => {
                eprintln!("portcullis-admin: {why}");
                return ExitCode::from(2);
            }
        },
        Command::Import { options, file } => import::run(&options, &file),
        Command::Bench(options) => runtime.block_on(bench::run(options)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("portcullis-admin: {why}");
            ExitCode::FAILURE
        }
    }
}

/// Everything that can be refused before serving: tokens, exposure, database, schema.
fn prepare(options: &Options) -> Result<Arc<App>, String> {
    let admin_token = token::load(
        "--admin-token-file",
        options.admin_token_file.as_deref(),
        "PORTCULLIS_ADMIN_TOKEN",
        std::env::var("PORTCULLIS_ADMIN_TOKEN").ok(),
    )?;
    let data_plane_token = token::load(
        "--data-plane-token-file",
        options.data_plane_token_file.as_deref(),
        "PORTCULLIS_ADMIN_DATA_PLANE_TOKEN",
        std::env::var("PORTCULLIS_ADMIN_DATA_PLANE_TOKEN").ok(),
    )?;
    let tls = portcullis_admin::tls::load(&options.tls)?;
    let client_certificates = options.tls.mutual();
    cli::exposure(
        "--listen",
        options.listen,
        admin_token.is_some() || client_certificates,
        "--admin-token-file",
    )?;
    cli::exposure(
        "--data-plane-listen",
        options.data_plane_listen,
        data_plane_token.is_some() || client_certificates,
        "--data-plane-token-file",
    )?;
    let db: Arc<dyn portcullis_admin::db::Database> = Arc::from(options.db.open(&options.pool)?);
    let applied = migrations::apply(&*db)?;
    eprintln!(
        "portcullis-admin: level=info database={} schema_version={} migrations_applied={applied:?}",
        db.describe(),
        migrations::latest()
    );
    Ok(Arc::new(App {
        database: db.describe(),
        store: Store::new(db, Arc::new(Metrics::new())),
        admin_token,
        data_plane_token,
        max_body: options.max_body_bytes,
        limits: options.limits,
        revocations: options.revocations,
        tls,
        client_certificates,
        started: Instant::now(),
    }))
}

async fn run(options: Options, app: Arc<App>) -> Result<(), String> {
    // Watch for signals before the ready line: a SIGTERM right after it must stop the
    // service gracefully, not kill it with the default action.
    let stop = server::watch_signals()?;
    let (admin, data_plane) = server::bind(&options).await?;
    let admin_address = admin.local_addr().map_err(|e| format!("--listen: {e}"))?;
    let data_address = data_plane
        .local_addr()
        .map_err(|e| format!("--data-plane-listen: {e}"))?;
    server::announce(admin_address, data_address);
    eprintln!(
        "portcullis-admin: level=info admin={admin_address} admin_token={} transport={:?} data_plane={data_address} data_plane_token={} event_retention_s={} max_body_bytes={}",
        app.admin_token.is_some(),
        options.tls.describe("cleartext HTTP/1.1"),
        app.data_plane_token.is_some(),
        options.event_retention.as_secs(),
        options.max_body_bytes,
    );
    server::serve(app, admin, data_plane, options.event_retention, stop).await?;
    eprintln!("portcullis-admin: stopped");
    Ok(())
}
