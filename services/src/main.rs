//! `portcullis-services`: serve the demo's upstream services, or render its Envoy config.
//! See [`portcullis_services::cli::USAGE`].
//!
//! Serving holds no state worth saving, so SIGINT and SIGTERM keep their default action and
//! end the process at once.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use portcullis_services::cli::{self, Command, Serve, USAGE};
use portcullis_services::login::Users;
use portcullis_services::{certs, server};

fn main() -> ExitCode {
    let result = match cli::parse(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Serve(serve)) => run(serve),
        Ok(Command::Render(demo)) => demo.render().map(|config| print!("{config}")),
        Ok(Command::Certs(dir)) => certs::generate(&dir).map(|written| {
            for path in written {
                println!("wrote {}", path.display());
            }
        }),
        Err(e) => {
            eprintln!("portcullis-services: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis-services: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Binds every port before serving any, so a taken port stops the lot, then serves forever.
fn run(serve: Serve) -> Result<(), String> {
    let users = match &serve.login_users {
        Some(path) => Users::load(path)?,
        None => Users::fixture()?,
    };
    let users = Arc::new(users);
    let tls = match &serve.tls {
        Some((cert, key)) => Some(server::Tls::load(cert, key)?),
        None => None,
    };
    let listeners = serve
        .services
        .iter()
        .map(|&(service, addr)| server::bind(service, addr).map(|l| (service, l)))
        .collect::<Result<Vec<_>, String>>()?;
    let mut running = Vec::new();
    for (service, listener) in listeners {
        let started = server::serve(service, listener, users.clone(), tls.as_ref())?;
        // Ignore a closed stdout, as the request log does.
        let _ = writeln!(
            std::io::stdout().lock(),
            "{} listening on {}",
            started.service.name(),
            started.url()
        );
        running.push(started);
    }
    for service in running {
        service.join();
    }
    Ok(())
}
