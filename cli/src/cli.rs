//! The command line: arguments, reading the input (bounded), writing the output directory
//! all at once (a temporary sibling renamed into place: on any error nothing is written),
//! `--admin-url`, and the exit codes: 0 converted, 1 `--strict` with a non-empty report
//! (nothing written), 2 malformed input, bad usage or a failure (nothing written).

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::admin::{self, AdminTarget};
use crate::envoy::{EnvoyOptions, HostPort};
use crate::kong::input::MAX_INPUT_BYTES;
use crate::{convert, ConvertOptions};

pub const USAGE: &str = "\
usage: portcullis kong import <FILE|-> --out <DIR> [--strict] [--force]
           [--listen 0.0.0.0:8000] [--envoy-admin 127.0.0.1:9901] [--wasm-dir ./dist]
           [--rate-limit-service HOST:PORT]
           [--admin-url URL [--admin-token TOKEN] [--admin-data-plane HOST:PORT]]

Turns a Kong declarative configuration (kong.yml, decK; _format_version 1.1, 2.1 or 3.0;
YAML or JSON; - reads standard input) into DIR/envoy.yaml (run: envoy -c DIR/envoy.yaml),
DIR/policies/{jwt,acl,rate-limiting}.json and DIR/report.txt, the list of what was not
carried over and why (also printed, with a summary).

  --out DIR                  where to write; an existing non-empty DIR needs --force
  --strict                   exit 1, writing nothing, when the report is not empty
  --force                    replace an existing non-empty DIR
  --listen ADDR:PORT         Envoy's listener (Kong's proxy port). Default 0.0.0.0:8000
  --envoy-admin ADDR:PORT    Envoy's admin interface. Default 127.0.0.1:9901
  --wasm-dir DIR             where Envoy finds portcullis-<filter>.wasm (as Envoy sees
                             it; relative to Envoy's working directory). Default ./dist
  --rate-limit-service H:P   the rate limit service (services/ratelimit), for
                             rate-limiting policy redis (and Kong's cluster)
  --admin-url URL            load consumers, JWT credentials and ACL groups into
                             portcullis-admin (its Admin API, e.g. http://127.0.0.1:8001)
                             and have the jwt filter look them up (consumer_source)
  --admin-token TOKEN        sent as Kong-Admin-Token (portcullis-admin's --admin-token-file)
  --admin-data-plane H:P     portcullis-admin's data plane, as Envoy reaches it. Default the
                             admin URL's host, port 8005

Exit: 0 converted; 1 --strict and something was not carried over; 2 malformed input,
bad usage or a failure (in every case but 0, nothing is written).
";

/// The parsed arguments of `kong import`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportArgs {
    pub input: String,
    pub out: PathBuf,
    pub strict: bool,
    pub force: bool,
    pub listen: HostPort,
    pub envoy_admin: HostPort,
    pub wasm_dir: String,
    pub rate_limit_service: Option<HostPort>,
    pub admin_url: Option<String>,
    pub admin_token: Option<String>,
    pub admin_data_plane: Option<HostPort>,
}

/// Parses `kong import …`; the error is a usage message.
pub fn parse_args(args: &[String]) -> Result<ImportArgs, String> {
    let mut it = args.iter();
    match (it.next().map(String::as_str), it.next().map(String::as_str)) {
        (Some("kong"), Some("import")) => {}
        (Some("-h") | Some("--help") | Some("help"), _) | (None, _) => return Err(String::new()),
        _ => return Err("unknown command: portcullis kong import is the one command".to_owned()),
    }
    let mut input = None;
    let mut out = None;
    let mut strict = false;
    let mut force = false;
    let mut listen = "0.0.0.0:8000".to_owned();
    let mut envoy_admin = "127.0.0.1:9901".to_owned();
    let mut wasm_dir = "./dist".to_owned();
    let mut rate_limit_service = None;
    let mut admin_url: Option<String> = None;
    let mut admin_token = None;
    let mut admin_data_plane = None;
    let rest: Vec<&String> = it.collect();
    let mut i = 0;
    while let Some(arg) = rest.get(i) {
        i += 1;
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            if let Some(v) = &inline {
                return Ok(v.clone());
            }
            let v = rest.get(i).ok_or_else(|| format!("{name} needs a value"))?;
            i += 1;
            Ok((*v).clone())
        };
        match flag {
            "--out" => out = Some(PathBuf::from(value("--out")?)),
            "--strict" => strict = true,
            "--force" => force = true,
            "--listen" => listen = value("--listen")?,
            "--envoy-admin" => envoy_admin = value("--envoy-admin")?,
            "--wasm-dir" => wasm_dir = value("--wasm-dir")?,
            "--rate-limit-service" => rate_limit_service = Some(value("--rate-limit-service")?),
            "--admin-url" => admin_url = Some(value("--admin-url")?),
            "--admin-token" => admin_token = Some(value("--admin-token")?),
            "--admin-data-plane" => admin_data_plane = Some(value("--admin-data-plane")?),
            "-h" | "--help" => return Err(String::new()),
            "-" => input = Some("-".to_owned()),
            f if f.starts_with('-') => return Err(format!("unknown flag {f}")),
            _ if input.is_none() => input = Some((*arg).clone()),
            _ => return Err(format!("one input file only (also {arg})")),
        }
    }
    let input = input.ok_or("no input file (a path, or - for standard input)")?;
    let out = out.ok_or("--out DIR is required")?;
    let ip_port = |flag: &str, text: &str| -> Result<HostPort, String> {
        text.parse::<std::net::SocketAddr>()
            .map(|a| HostPort {
                host: a.ip().to_string(),
                port: a.port(),
            })
            .map_err(|_| {
                format!("{flag} {text}: expected an IP address and port, e.g. 127.0.0.1:9901")
            })
    };
    let host_port = |flag: &str, text: &str| -> Result<HostPort, String> {
        HostPort::parse(text).ok_or_else(|| format!("{flag} {text}: expected HOST:PORT"))
    };
    let listen = ip_port("--listen", &listen)?;
    let envoy_admin = ip_port("--envoy-admin", &envoy_admin)?;
    let rate_limit_service = rate_limit_service
        .map(|t| host_port("--rate-limit-service", &t))
        .transpose()?;
    if admin_url.is_none() && (admin_token.is_some() || admin_data_plane.is_some()) {
        return Err("--admin-token and --admin-data-plane go with --admin-url".to_owned());
    }
    let mut admin_data_plane = admin_data_plane
        .map(|t| host_port("--admin-data-plane", &t))
        .transpose()?;
    let admin_url = match admin_url {
        None => None,
        Some(u) => {
            let parsed = url::Url::parse(&u).map_err(|e| format!("--admin-url {u}: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(format!("--admin-url {u}: expected http(s)://HOST[:PORT]"));
            }
            if admin_data_plane.is_none() {
                let host = parsed.host_str().unwrap_or_default();
                let host = host.trim_start_matches('[').trim_end_matches(']');
                admin_data_plane = Some(HostPort {
                    host: host.to_owned(),
                    port: 8005,
                });
            }
            Some(u.trim_end_matches('/').to_owned())
        }
    };
    if wasm_dir.is_empty() {
        return Err("--wasm-dir: empty".to_owned());
    }
    Ok(ImportArgs {
        input,
        out,
        strict,
        force,
        listen,
        envoy_admin,
        wasm_dir,
        rate_limit_service,
        admin_url,
        admin_token,
        admin_data_plane,
    })
}

/// Runs the command line; returns the exit code.
pub fn run(args: &[String]) -> i32 {
    let args = match parse_args(args) {
        Ok(a) => a,
        Err(message) if message.is_empty() => {
            print!("{USAGE}");
            return 0;
        }
        Err(message) => {
            eprintln!("portcullis: {message}\n\n{USAGE}");
            return 2;
        }
    };
    match import(&args, &mut std::io::stdout()) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("{message}");
            2
        }
    }
}

/// `kong import`: the exit code, or the message of a failure (exit 2).
pub fn import(args: &ImportArgs, stdout: &mut dyn Write) -> Result<i32, String> {
    let name = if args.input == "-" {
        "<stdin>"
    } else {
        args.input.as_str()
    };
    check_out(&args.out, args.force)?;
    let bytes = read_input(&args.input).map_err(|e| format!("{name}: {e}"))?;
    let options = ConvertOptions {
        envoy: EnvoyOptions {
            listen: args.listen.clone(),
            admin: args.envoy_admin.clone(),
            wasm_dir: args.wasm_dir.clone(),
            rate_limit_service: args.rate_limit_service.clone(),
            admin_data_plane: args.admin_data_plane.clone(),
        },
        admin: args.admin_url.is_some(),
    };
    let conversion = convert(&bytes, &options).map_err(|e| format!("{name}: {e}"))?;
    let report = conversion.report.render();
    let _ = stdout.write_all(report.as_bytes());
    if args.strict && !conversion.report.is_empty() {
        let _ = writeln!(stdout, "{}", conversion.summary);
        eprintln!(
            "{name}: --strict: {} items not carried over (listed above); nothing written",
            conversion.report.len()
        );
        return Ok(1);
    }
    let staging = Staging::write(&args.out, &conversion.files)?;
    if let Some(url) = &args.admin_url {
        let target = AdminTarget {
            url: url.clone(),
            token: args.admin_token.clone(),
        };
        let loaded = admin::load(&target, &conversion.admin_load).map_err(|e| {
            format!("portcullis-admin: {e}\nnothing written; the loads are upserts: run again once this is fixed")
        })?;
        let _ = writeln!(
            stdout,
            "portcullis-admin at {url}: {} consumers, {} credentials, {} groups loaded",
            loaded.consumers, loaded.credentials, loaded.groups
        );
    }
    staging.commit(args.force)?;
    let _ = writeln!(
        stdout,
        "{}; written to {}",
        conversion.summary,
        args.out.display()
    );
    Ok(0)
}

/// Refuses an existing non-empty output directory without `--force`.
fn check_out(out: &Path, force: bool) -> Result<(), String> {
    match fs::read_dir(out) {
        Ok(mut entries) => {
            if entries.next().is_some() && !force {
                return Err(format!(
                    "{}: exists and is not empty: give --force to replace it",
                    out.display()
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            Err(format!("{}: exists and is not a directory", out.display()))
        }
        Err(e) => Err(format!("{}: {e}", out.display())),
    }
}

fn read_input(input: &str) -> Result<Vec<u8>, String> {
    let limit = u64::try_from(MAX_INPUT_BYTES).unwrap_or(u64::MAX) + 1;
    let mut bytes = Vec::new();
    let result = if input == "-" {
        std::io::stdin().lock().take(limit).read_to_end(&mut bytes)
    } else {
        let file = fs::File::open(input).map_err(|e| e.to_string())?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err("is a directory".to_owned());
        }
        file.take(limit).read_to_end(&mut bytes)
    };
    result.map_err(|e| e.to_string())?;
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(format!("larger than the {MAX_INPUT_BYTES} bytes accepted"));
    }
    Ok(bytes)
}

/// The output, written in a temporary sibling of the target directory; removed unless
/// committed.
struct Staging {
    tmp: PathBuf,
    out: PathBuf,
    committed: bool,
}

impl Staging {
    fn write(out: &Path, files: &[(String, String)]) -> Result<Staging, String> {
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let base = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| format!("{}: not a directory name", out.display()))?;
        fs::create_dir_all(&parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        let tmp = parent.join(format!(".{base}.tmp-{}", std::process::id()));
        let staging = Staging {
            tmp: tmp.clone(),
            out: out.to_owned(),
            committed: false,
        };
        let _ = fs::remove_dir_all(&tmp);
        for (path, content) in files {
            let target = tmp.join(path);
            if let Some(dir) = target.parent() {
                fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            fs::write(&target, content).map_err(|e| format!("{}: {e}", target.display()))?;
        }
        Ok(staging)
    }

    /// Moves the output into place (replacing what `--force` allowed).
    fn commit(mut self, force: bool) -> Result<(), String> {
        check_out(&self.out, force)?;
        let old = self.tmp.with_file_name(format!(
            "{}.old",
            self.tmp
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        let had = self.out.exists();
        if had {
            fs::rename(&self.out, &old).map_err(|e| format!("{}: {e}", self.out.display()))?;
        }
        if let Err(e) = fs::rename(&self.tmp, &self.out) {
            if had {
                let _ = fs::rename(&old, &self.out);
            }
            return Err(format!("{}: {e}", self.out.display()));
        }
        self.committed = true;
        if had {
            let _ = fs::remove_dir_all(&old);
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_the_contract() {
        let a = parse_args(&args(&[
            "kong",
            "import",
            "kong.yml",
            "--out",
            "out",
            "--strict",
            "--listen=127.0.0.1:0",
            "--wasm-dir",
            "/d",
            "--rate-limit-service",
            "rls.internal:8081",
            "--admin-url",
            "http://127.0.0.1:8001/",
            "--admin-token",
            "t0k3n",
        ]))
        .unwrap();
        assert_eq!(a.input, "kong.yml");
        assert_eq!(a.out, PathBuf::from("out"));
        assert!(a.strict && !a.force);
        assert_eq!(
            a.listen,
            HostPort {
                host: "127.0.0.1".into(),
                port: 0
            }
        );
        assert_eq!(
            a.envoy_admin,
            HostPort {
                host: "127.0.0.1".into(),
                port: 9901
            }
        );
        assert_eq!(
            a.rate_limit_service,
            Some(HostPort {
                host: "rls.internal".into(),
                port: 8081
            })
        );
        assert_eq!(a.admin_url.as_deref(), Some("http://127.0.0.1:8001"));
        assert_eq!(
            a.admin_data_plane,
            Some(HostPort {
                host: "127.0.0.1".into(),
                port: 8005
            })
        );
        let stdin = parse_args(&args(&["kong", "import", "-", "--out", "o"])).unwrap();
        assert_eq!(stdin.input, "-");
    }

    #[test]
    fn usage_errors_say_what() {
        let cases = [
            (vec!["kong", "import", "--out", "o"], "no input file"),
            (vec!["kong", "import", "k.yml"], "--out DIR is required"),
            (
                vec!["kong", "import", "k.yml", "--out", "o", "--bogus"],
                "unknown flag --bogus",
            ),
            (
                vec!["kong", "import", "k.yml", "--out", "o", "--listen", "nope"],
                "--listen nope",
            ),
            (
                vec![
                    "kong",
                    "import",
                    "k.yml",
                    "--out",
                    "o",
                    "--admin-token",
                    "x",
                ],
                "go with --admin-url",
            ),
            (vec!["kong", "export"], "unknown command"),
            (
                vec!["kong", "import", "a", "b", "--out", "o"],
                "one input file only",
            ),
        ];
        for (list, want) in cases {
            let err = parse_args(&args(&list)).unwrap_err();
            assert!(err.contains(want), "{list:?}: {err}");
        }
        assert_eq!(parse_args(&args(&["--help"])), Err(String::new()));
    }
}
