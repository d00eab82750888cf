//! The command line: `serve` (the default), `import`, `bench`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::db::{PoolOptions, Target};
use crate::ops::revocations::RevocationPolicy;
use crate::server::Limits;
use portcullis_tls::TlsFiles;

pub const USAGE: &str = "\
usage: portcullis-admin [serve] [--db sqlite:PATH | --db postgres://USER@HOST:PORT/DB]
         [--listen ADDR:PORT] [--data-plane-listen ADDR:PORT]
         [--admin-token-file FILE] [--data-plane-token-file FILE]
         [--event-retention SECONDS] [--max-body-bytes N] [--db-pool N] [--db-timeout-ms MS]
         [--header-timeout-ms MS] [--body-timeout-ms MS] [--max-connections N]
         [--revocation-grace SECONDS] [--max-revocations N]
         [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]
       portcullis-admin import [--db …] JWT_CONFIG.json
       portcullis-admin bench [--db …] [--consumers N] [--seconds S] [--concurrency C]

The Portcullis control plane: consumers, JWT credentials, ACL groups and revocations
through Kong's Admin API, kept in SQLite or PostgreSQL, and a read-only data-plane API
the gateways follow.

  --db TARGET               sqlite:PATH (a file, created if need be) or a PostgreSQL URL.
                            Default sqlite:portcullis-admin.db, or $PORTCULLIS_ADMIN_DB
                            (keeps a password out of `ps`). The schema is migrated at start.
  --listen ADDR:PORT        the Admin API. Default 127.0.0.1:8001 (Kong's). Beyond
                            loopback it needs --admin-token-file or --tls-client-ca, else
                            the service refuses to start. Port 0 picks a free port.
  --data-plane-listen A:P   the data-plane API (/v1/…). Default 127.0.0.1:8005. It serves
                            secrets: beyond loopback it needs --data-plane-token-file
                            or --tls-client-ca.
  --admin-token-file FILE   every Admin API request must carry `Kong-Admin-Token: <token>`
                            (visible ASCII, at least 16 bytes; a trailing newline ignored).
                            Or $PORTCULLIS_ADMIN_TOKEN (not both).
  --data-plane-token-file F every data-plane request must carry `Authorization: Bearer
                            <token>`. Or $PORTCULLIS_ADMIN_DATA_PLANE_TOKEN (not both).
  --event-retention SECONDS change events older than this are pruned; a gateway that
                            asks for pruned ones is told to drop its cache. Default 3600.
  --max-body-bytes N        the largest request body (else 413). Default 65536.
  --db-pool N               the most database connections. Default 16.
  --db-timeout-ms MS        the most a connection, lock wait or statement may take (then
                            503). Default 5000.
  --header-timeout-ms MS    the most a client may take to send a request's head, or stay
                            idle between requests; then its connection is closed. Default 10000.
  --body-timeout-ms MS      the most a client may take to send a body (then 408). Default 30000.
  --max-connections N       the most connections open at once on each listener; more wait
                            in the accept queue. Default 256.
  --revocation-grace SEC    a revocation is kept and served this long past its expires_at,
                            so it outlives the jwt filter's leeway. Default 86400 (the
                            filter's largest leeway).
  --max-revocations N       the most revocations in force; past it POST /revocations is a
                            409. Default 10000.
  --tls-cert FILE           serve both listeners over TLS with this PEM certificate (chain,
  --tls-key FILE            leaf first) and its PEM private key (PKCS#8, PKCS#1 or SEC1).
  --tls-client-ca FILE      mutual TLS: every client must present a certificate signed by
                            one of these CAs; that authenticates it beyond loopback, as a
                            token does.

import: creates or updates, in one transaction, the static `consumers` of a jwt filter
configuration (username, id if a UUID, custom_id, credentials, groups as ACLs).
bench: fills a scratch database with --consumers (default 100000) and prints credential
lookups per second over the data-plane API and the change-to-event latency.
";

/// `serve`'s options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub db: Target,
    pub listen: SocketAddr,
    pub data_plane_listen: SocketAddr,
    pub admin_token_file: Option<PathBuf>,
    pub data_plane_token_file: Option<PathBuf>,
    pub event_retention: Duration,
    pub max_body_bytes: usize,
    pub pool: PoolOptions,
    pub limits: Limits,
    pub revocations: RevocationPolicy,
    /// `--tls-cert`, `--tls-key`, `--tls-client-ca`: both listeners.
    pub tls: TlsFiles,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            db: Target::Sqlite(PathBuf::from("portcullis-admin.db")),
            listen: SocketAddr::from(([127, 0, 0, 1], 8001)),
            data_plane_listen: SocketAddr::from(([127, 0, 0, 1], 8005)),
            admin_token_file: None,
            data_plane_token_file: None,
            event_retention: Duration::from_secs(3600),
            max_body_bytes: 64 * 1024,
            pool: PoolOptions::default(),
            limits: Limits::default(),
            revocations: RevocationPolicy::default(),
            tls: TlsFiles::default(),
        }
    }
}

/// `bench`'s options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchOptions {
    pub options: Options,
    pub consumers: u64,
    pub seconds: u64,
    pub concurrency: usize,
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Serve(Options),
    Import { options: Options, file: PathBuf },
    Bench(BenchOptions),
    Help,
}

/// The command in `args` (program name excluded); `db_env` is `$PORTCULLIS_ADMIN_DB`.
pub fn parse(
    args: impl IntoIterator<Item = String>,
    db_env: Option<String>,
) -> Result<Command, String> {
    let mut args: Vec<String> = args.into_iter().collect();
    let verb = match args.first().map(String::as_str) {
        Some("serve" | "import" | "bench") => args.remove(0),
        _ => "serve".to_owned(),
    };
    let mut options = Options::default();
    if let Some(db) = db_env.filter(|db| !db.is_empty()) {
        options.db =
            Target::parse(&db).map_err(|e| e.replacen("--db", "PORTCULLIS_ADMIN_DB", 1))?;
    }
    let mut positional = Vec::new();
    let (mut consumers, mut seconds, mut concurrency) = (100_000u64, 5u64, 16usize);
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--help" || arg == "-h" {
            return Ok(Command::Help);
        }
        if !arg.starts_with("--") {
            positional.push(arg);
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--db" => options.db = Target::parse(&value()?)?,
            "--listen" => options.listen = address(&flag, &value()?)?,
            "--data-plane-listen" => options.data_plane_listen = address(&flag, &value()?)?,
            "--admin-token-file" => options.admin_token_file = Some(PathBuf::from(value()?)),
            "--data-plane-token-file" => {
                options.data_plane_token_file = Some(PathBuf::from(value()?));
            }
            "--event-retention" => {
                options.event_retention =
                    Duration::from_secs(whole(&flag, &value()?, 1, 365 * 86_400)?);
            }
            "--max-body-bytes" => {
                options.max_body_bytes = whole(&flag, &value()?, 1024, 16 * 1024 * 1024)? as usize;
            }
            "--db-pool" => options.pool.connections = whole(&flag, &value()?, 1, 1024)? as usize,
            "--db-timeout-ms" => {
                options.pool.timeout = Duration::from_millis(whole(&flag, &value()?, 1, 600_000)?);
            }
            "--header-timeout-ms" => {
                options.limits.header_timeout =
                    Duration::from_millis(whole(&flag, &value()?, 100, 600_000)?);
            }
            "--body-timeout-ms" => {
                options.limits.body_timeout =
                    Duration::from_millis(whole(&flag, &value()?, 100, 600_000)?);
            }
            "--max-connections" => {
                options.limits.max_connections = whole(&flag, &value()?, 1, 65_536)? as usize;
            }
            "--revocation-grace" => {
                options.revocations.grace = whole(&flag, &value()?, 0, 30 * 86_400)? as i64;
            }
            "--max-revocations" => {
                options.revocations.max_in_force = whole(&flag, &value()?, 1, 10_000_000)?;
            }
            "--tls-cert" => options.tls.cert = Some(PathBuf::from(value()?)),
            "--tls-key" => options.tls.key = Some(PathBuf::from(value()?)),
            "--tls-client-ca" => options.tls.client_ca = Some(PathBuf::from(value()?)),
            "--consumers" if verb == "bench" => consumers = whole(&flag, &value()?, 1, 10_000_000)?,
            "--seconds" if verb == "bench" => seconds = whole(&flag, &value()?, 1, 3600)?,
            "--concurrency" if verb == "bench" => {
                concurrency = whole(&flag, &value()?, 1, 1024)? as usize;
            }
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    match verb.as_str() {
        "import" => match positional.as_slice() {
            [file] => Ok(Command::Import {
                options,
                file: PathBuf::from(file),
            }),
            _ => Err("import: want one jwt filter configuration file".to_owned()),
        },
        _ if !positional.is_empty() => Err(format!("unknown argument {}", positional.join(" "))),
        "bench" => Ok(Command::Bench(BenchOptions {
            options,
            consumers,
            seconds,
            concurrency,
        })),
        _ => Ok(Command::Serve(options)),
    }
}

fn address(flag: &str, text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|e| format!("{flag} {text}: {e} (want ADDR:PORT)"))
}

fn whole(flag: &str, text: &str, min: u64, max: u64) -> Result<u64, String> {
    text.parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("{flag} {text}: want a whole number from {min} to {max}"))
}

/// Refuses to listen beyond loopback without a token or client certificates (`token`:
/// either is set).
pub fn exposure(
    flag: &str,
    listen: SocketAddr,
    token: bool,
    token_flag: &str,
) -> Result<(), String> {
    if listen.ip().is_loopback() || token {
        return Ok(());
    }
    Err(format!(
        "{flag} {listen}: beyond loopback, and requests are not authenticated: set {token_flag} FILE or --tls-client-ca FILE, or listen on 127.0.0.1"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn defaults_are_kongs_loopback_and_a_local_file() {
        assert_eq!(
            parse(args(""), None),
            Ok(Command::Serve(Options::default()))
        );
        assert_eq!(
            parse(args("serve"), None),
            Ok(Command::Serve(Options::default()))
        );
    }

    #[test]
    fn reads_every_flag_in_both_spellings() {
        let Ok(Command::Serve(o)) = parse(
            args("--db=postgres://a@127.0.0.1:5/b --listen 0.0.0.0:0 --data-plane-listen=127.0.0.1:0 --admin-token-file t --data-plane-token-file d --event-retention 60 --max-body-bytes 2048 --db-pool 4 --db-timeout-ms 250"),
            None,
        ) else {
            panic!("not parsed")
        };
        assert_eq!(
            o.db,
            Target::Postgres("postgres://a@127.0.0.1:5/b".to_owned())
        );
        assert_eq!(o.listen, SocketAddr::from(([0, 0, 0, 0], 0)));
        assert_eq!(o.admin_token_file, Some(PathBuf::from("t")));
        assert_eq!(o.data_plane_token_file, Some(PathBuf::from("d")));
        assert_eq!(o.event_retention, Duration::from_secs(60));
        assert_eq!(o.max_body_bytes, 2048);
        assert_eq!(
            o.pool,
            PoolOptions {
                connections: 4,
                timeout: Duration::from_millis(250)
            }
        );
    }

    #[test]
    fn reads_import_and_bench() {
        assert!(matches!(
            parse(args("import --db sqlite:x.db jwt.json"), None),
            Ok(Command::Import { file, .. }) if file.as_path() == std::path::Path::new("jwt.json")
        ));
        assert!(matches!(
            parse(
                args("bench --consumers 1000 --seconds 2 --concurrency 4"),
                None
            ),
            Ok(Command::Bench(BenchOptions {
                consumers: 1000,
                seconds: 2,
                concurrency: 4,
                ..
            }))
        ));
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        let rows = [
            (
                "--listen localhost",
                "--listen localhost: invalid socket address syntax (want ADDR:PORT)",
            ),
            (
                "--db mysql://x",
                "--db mysql://x: want sqlite:PATH or postgres://USER@HOST:PORT/DB",
            ),
            (
                "--event-retention 0",
                "--event-retention 0: want a whole number from 1 to 31536000",
            ),
            ("--db", "--db needs a value"),
            ("--consumers 5", "unknown argument --consumers"),
            ("import", "import: want one jwt filter configuration file"),
            ("stray", "unknown argument stray"),
        ];
        for (line, message) in rows {
            assert_eq!(parse(args(line), None), Err(message.to_owned()), "{line}");
        }
        assert_eq!(
            parse(args(""), Some("bogus".to_owned())),
            Err(
                "PORTCULLIS_ADMIN_DB bogus: want sqlite:PATH or postgres://USER@HOST:PORT/DB"
                    .to_owned()
            )
        );
    }

    #[test]
    fn refuses_an_open_listener_without_a_token() {
        let any = SocketAddr::from(([0, 0, 0, 0], 8001));
        assert_eq!(
            exposure("--listen", any, false, "--admin-token-file"),
            Err("--listen 0.0.0.0:8001: beyond loopback, and requests are not authenticated: set --admin-token-file FILE or --tls-client-ca FILE, or listen on 127.0.0.1".to_owned())
        );
        assert_eq!(
            exposure("--listen", any, true, "--admin-token-file"),
            Ok(())
        );
        assert_eq!(
            exposure(
                "--listen",
                SocketAddr::from(([127, 0, 0, 1], 8001)),
                false,
                "x"
            ),
            Ok(())
        );
    }
}
