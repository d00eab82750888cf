//! The command line: where to listen, which Redis, how long to wait for it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::plan::Ceilings;
use crate::store::Target;
use portcullis_tls::TlsFiles;

pub const USAGE: &str = "\
usage: portcullis-ratelimit [--listen ADDR:PORT] [--redis-timeout-ms MS] [--config FILE]
         [--metrics-listen ADDR:PORT]
         [--redis-url URL | --redis-cluster URL,URL… | --redis-sentinel MASTER,URL,URL…]
         [--max-hits-addend N] [--max-limit N] [--secret-file FILE] [--trusted-network]
         [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]

Envoy's rate limit service (envoy.service.ratelimit.v3.RateLimitService) over gRPC, with
every counter in Redis. Each descriptor carries its limit in its `limit` override.

  --listen ADDR:PORT      gRPC address (HTTP/2; cleartext unless --tls-cert); port 0 picks
                          a free one. Default 127.0.0.1:8081. The bound address is
                          printed on stdout: `portcullis-ratelimit listening on ADDR:PORT`.
  --metrics-listen ADDR:PORT
                          serve GET /metrics (Prometheus), /healthz (liveness) and /readyz
                          (readiness: Redis answers a PING) over HTTP/1.1 on this address;
                          off unless given. No authentication: keep it on loopback or a
                          network only your scrapers and probes reach. The ready line then
                          ends `, metrics on ADDR:PORT`.
  --redis-url URL         one Redis server: redis://[user:pass@]host:port/db (no TLS).
                          Default redis://127.0.0.1:6379/0.
  --redis-cluster URLS    a Redis Cluster, found from any of these nodes (comma-separated).
  --redis-sentinel M,URLS the primary that these Sentinels call M, e.g.
                          mymaster,redis://10.0.0.1:26379,redis://10.0.0.2:26379
  --redis-timeout-ms MS   the most one call waits on Redis, connecting included; past it
                          the call fails with gRPC UNAVAILABLE. Default 100.
  --config FILE           JSON limits for descriptors that come without an override
                          (see the README, Static limits). Without it such descriptors are OK.
  --max-hits-addend N     the most hits one call may add to a counter (the request's or a
                          descriptor's hits_addend); above it the call is refused with
                          INVALID_ARGUMENT and counts nowhere. 1 to 4294967295, default 1000000.
  --max-limit N           the most requests_per_unit a descriptor's limit override may ask;
                          above it the descriptor is counted against N instead (its
                          current_limit says N). 1 to 4294967295, default 1000000000.
  --secret-file FILE      a shared secret (visible ASCII, at least 16 bytes; a trailing
                          newline is ignored) every call must carry as gRPC metadata
                          `authorization: Bearer <secret>`; else UNAUTHENTICATED. Or set
                          PORTCULLIS_RATELIMIT_SECRET (not both).
  --trusted-network       serve unauthenticated calls on a non-loopback --listen address:
                          every host that can reach it may then spend any counter. Without
                          a secret or client certificates the service refuses to listen
                          beyond loopback otherwise.
  --tls-cert FILE         serve gRPC over TLS with this PEM certificate (chain, leaf first)
  --tls-key FILE          and its PEM private key (PKCS#8, PKCS#1 or SEC1).
  --tls-client-ca FILE    mutual TLS: every caller must present a client certificate that
                          one of these PEM CA certificates signed; else no connection.
";

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub listen: SocketAddr,
    /// `--metrics-listen`: where the operators' HTTP endpoint listens, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    pub redis: Target,
    pub redis_timeout: Duration,
    /// The static limits file, if any.
    pub config: Option<PathBuf>,
    /// `--max-hits-addend` and `--max-limit`.
    pub ceilings: Ceilings,
    /// `--secret-file`: the file holding the shared secret.
    pub secret_file: Option<PathBuf>,
    /// `--trusted-network`: unauthenticated calls are fine beyond loopback.
    pub trusted_network: bool,
    /// `--tls-cert`, `--tls-key`, `--tls-client-ca`.
    pub tls: TlsFiles,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            metrics_listen: None,
            redis: Target::Server("redis://127.0.0.1:6379/0".to_owned()),
            redis_timeout: Duration::from_millis(100),
            config: None,
            ceilings: Ceilings::default(),
            secret_file: None,
            trusted_network: false,
            tls: TlsFiles::default(),
        }
    }
}

/// The options in `args` (program name excluded); `Ok(None)` for `--help`. Every flag
/// takes its value as the next argument or after `=`. At most one of `--redis-url`,
/// `--redis-cluster` and `--redis-sentinel`.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options::default();
    let mut redis_flag: Option<String> = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--help" || arg == "-h" {
            return Ok(None);
        }
        if arg == "--trusted-network" {
            options.trusted_network = true;
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
            "--listen" => {
                let text = value()?;
                options.listen = text
                    .parse()
                    .map_err(|e| format!("--listen {text}: {e} (want ADDR:PORT)"))?;
            }
            "--metrics-listen" => {
                let text = value()?;
                options.metrics_listen = Some(
                    text.parse()
                        .map_err(|e| format!("--metrics-listen {text}: {e} (want ADDR:PORT)"))?,
                );
            }
            "--config" => options.config = Some(PathBuf::from(value()?)),
            "--secret-file" => options.secret_file = Some(PathBuf::from(value()?)),
            "--tls-cert" => options.tls.cert = Some(PathBuf::from(value()?)),
            "--tls-key" => options.tls.key = Some(PathBuf::from(value()?)),
            "--tls-client-ca" => options.tls.client_ca = Some(PathBuf::from(value()?)),
            "--redis-url" | "--redis-cluster" | "--redis-sentinel" => {
                if let Some(earlier) = redis_flag.replace(flag.clone()) {
                    return Err(format!("{flag}: {earlier} already says which Redis"));
                }
                options.redis = target(&flag, &value()?)?;
            }
            "--redis-timeout-ms" => {
                let text = value()?;
                let millis: u64 = text.parse().ok().filter(|ms| *ms > 0).ok_or_else(|| {
                    format!("--redis-timeout-ms {text}: want a number of milliseconds above 0")
                })?;
                options.redis_timeout = Duration::from_millis(millis);
            }
            "--max-hits-addend" => {
                options.ceilings.hits_addend = u64::from(ceiling(&flag, &value()?)?);
            }
            "--max-limit" => options.ceilings.limit = ceiling(&flag, &value()?)?,
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    Ok(Some(options))
}

/// A ceiling: a whole number from 1 to 2³²−1 (Envoy's `requests_per_unit` is a uint32).
fn ceiling(flag: &str, text: &str) -> Result<u32, String> {
    text.parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{flag} {text}: want a whole number from 1 to {}", u32::MAX))
}

fn target(flag: &str, value: &str) -> Result<Target, String> {
    let list: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect();
    match flag {
        "--redis-cluster" if !list.is_empty() => Ok(Target::Cluster(list)),
        "--redis-cluster" => Err(format!("{flag}: want one node URL or more")),
        "--redis-sentinel" => match list.split_first() {
            Some((master, sentinels)) if !sentinels.is_empty() && !master.contains("://") => {
                Ok(Target::Sentinel {
                    master: master.clone(),
                    sentinels: sentinels.to_vec(),
                })
            }
            _ => Err(format!(
                "{flag} {value}: want MASTER,URL[,URL…], e.g. mymaster,redis://127.0.0.1:26379"
            )),
        },
        _ => Ok(Target::Server(value.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn defaults_suit_a_local_redis() {
        assert_eq!(parse(args("")), Ok(Some(Options::default())));
    }

    #[test]
    fn reads_every_flag_in_both_spellings() {
        let options = parse(args(
            "--listen 127.0.0.1:0 --metrics-listen=[::1]:9102 --redis-url=redis://10.0.0.2:7000/1 --redis-timeout-ms 250 --config limits.json --max-hits-addend 5 --max-limit=1000 --secret-file s --trusted-network --tls-cert c.pem --tls-key=k.pem --tls-client-ca ca.pem",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(options.listen, SocketAddr::from(([127, 0, 0, 1], 0)));
        assert_eq!(options.metrics_listen, Some("[::1]:9102".parse().unwrap()));
        assert_eq!(
            options.redis,
            Target::Server("redis://10.0.0.2:7000/1".to_owned())
        );
        assert_eq!(options.redis_timeout, Duration::from_millis(250));
        assert_eq!(options.config, Some(PathBuf::from("limits.json")));
        assert_eq!(options.secret_file, Some(PathBuf::from("s")));
        assert!(options.trusted_network);
        assert_eq!(
            options.tls,
            TlsFiles {
                cert: Some(PathBuf::from("c.pem")),
                key: Some(PathBuf::from("k.pem")),
                client_ca: Some(PathBuf::from("ca.pem")),
            }
        );
        assert_eq!(
            options.ceilings,
            Ceilings {
                hits_addend: 5,
                limit: 1000
            }
        );
    }

    #[test]
    fn reads_a_cluster_and_a_sentinel_set() {
        let cluster = parse(args("--redis-cluster redis://a:7000,redis://b:7001"));
        assert_eq!(
            cluster.unwrap().unwrap().redis,
            Target::Cluster(vec![
                "redis://a:7000".to_owned(),
                "redis://b:7001".to_owned()
            ])
        );
        let sentinel = parse(args(
            "--redis-sentinel mymaster,redis://s1:26379,redis://s2:26379",
        ));
        assert_eq!(
            sentinel.unwrap().unwrap().redis,
            Target::Sentinel {
                master: "mymaster".to_owned(),
                sentinels: vec!["redis://s1:26379".to_owned(), "redis://s2:26379".to_owned()],
            }
        );
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        let rows = [
            (
                "--listen localhost",
                "--listen localhost: invalid socket address syntax (want ADDR:PORT)",
            ),
            (
                "--redis-timeout-ms 0",
                "--redis-timeout-ms 0: want a number of milliseconds above 0",
            ),
            ("--redis-url", "--redis-url needs a value"),
            (
                "--metrics-listen 9102",
                "--metrics-listen 9102: invalid socket address syntax (want ADDR:PORT)",
            ),
            ("--metrics-listen", "--metrics-listen needs a value"),
            ("--port 1", "unknown argument --port"),
            (
                "--max-hits-addend 0",
                "--max-hits-addend 0: want a whole number from 1 to 4294967295",
            ),
            (
                "--max-limit 4294967296",
                "--max-limit 4294967296: want a whole number from 1 to 4294967295",
            ),
            (
                "--max-limit -1",
                "--max-limit -1: want a whole number from 1 to 4294967295",
            ),
            (
                "--redis-url redis://a --redis-cluster redis://b",
                "--redis-cluster: --redis-url already says which Redis",
            ),
            ("--redis-cluster ,", "--redis-cluster: want one node URL or more"),
            (
                "--redis-sentinel redis://s1:26379",
                "--redis-sentinel redis://s1:26379: want MASTER,URL[,URL…], e.g. mymaster,redis://127.0.0.1:26379",
            ),
        ];
        for (line, message) in rows {
            assert_eq!(parse(args(line)), Err(message.to_owned()), "{line}");
        }
    }
}
