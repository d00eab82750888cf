//! A real PostgreSQL for the tests: a cluster of the test's own (`initdb`, then `pg_ctl`)
//! on a free loopback port, its files in a scratch directory, trust authentication for
//! `postgres`, no fsync. Run as the unprivileged `postgres` user when the tests run as root
//! (PostgreSQL refuses root). It can be stopped and started again on the same port with its
//! data, for outage tests; it is stopped (immediate mode) and removed on drop.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context as _};

use crate::paths::{free_port, ScratchDir};

/// Where `initdb`, `pg_ctl` and `createdb` are: on `PATH`, else the newest Debian
/// `/usr/lib/postgresql/N/bin`.
pub fn pg_bin(name: &str) -> anyhow::Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join(name));
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| {
            dirs.filter_map(Result::ok)
                .map(|entry| entry.path().join("bin").join(name))
                .collect()
        })
        .unwrap_or_default();
    // Newest first: versions are whole numbers (15, 16, …), compared as numbers.
    debian.sort_by_key(|path| {
        let version = path
            .iter()
            .rev()
            .nth(2)
            .and_then(|v| v.to_str()?.parse().ok());
        std::cmp::Reverse(version.unwrap_or(0u32))
    });
    on_path
        .chain(debian)
        .find(|path| path.is_file())
        .with_context(|| format!("no {name}: install Debian's postgresql (make setup)"))
}

/// One PostgreSQL cluster; see the module doc.
#[derive(Debug)]
pub struct Postgres {
    dir: ScratchDir,
    port: u16,
    /// The user the server runs as, when not the current one.
    run_as: Option<&'static str>,
}

impl Postgres {
    /// Creates the cluster and starts it; returns once it accepts connections.
    pub fn start() -> anyhow::Result<Postgres> {
        let dir = ScratchDir::new("postgres").context("scratch directory for PostgreSQL")?;
        let run_as = is_root().then_some("postgres");
        if let Some(user) = run_as {
            let chown = Command::new("chown")
                .args(["-R", user])
                .arg(dir.path())
                .status()
                .context("running chown")?;
            if !chown.success() {
                bail!("chown {user} {}: {chown}", dir.path().display());
            }
        }
        let pg = Postgres {
            port: free_port().context("finding a free port")?,
            dir,
            run_as,
        };
        let data = pg.data();
        pg.run(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        pg.start_again()?;
        Ok(pg)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:<port>/<name>`, as `portcullis-admin --db` takes it.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates an empty database `name` and returns its [`url`](Self::url).
    pub fn database(&self, name: &str) -> anyhow::Result<String> {
        let port = self.port.to_string();
        let args = ["-h", "127.0.0.1", "-p", &port, "-U", "postgres", name];
        self.run("createdb", &args)?;
        Ok(self.url(name))
    }

    /// `pg_ctl stop -m fast`: every connection cut, as in an outage; the data stays.
    pub fn stop(&self) -> anyhow::Result<()> {
        let data = self.data();
        self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"])
    }

    /// `pg_ctl start` on the same port and data; returns once it accepts connections.
    pub fn start_again(&self) -> anyhow::Result<()> {
        let data = self.data();
        let log = self.dir.path().join("postgres.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = log.to_string_lossy();
        self.run(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-o", &options, "-w", "start"],
        )
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_string_lossy().into_owned()
    }

    /// Runs one of PostgreSQL's programs (as `run_as`, if set) in the cluster's directory;
    /// its output in the error if it fails.
    fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let program = pg_bin(program)?;
        let mut command = match self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&program);
                command
            }
            None => Command::new(&program),
        };
        let output = command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .with_context(|| format!("running {}", program.display()))?;
        if !output.status.success() {
            bail!(
                "{} {args:?}: {}\n{}{}",
                program.display(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Whether it runs or not (a test may have stopped it): a stopped one refuses, harmlessly.
        let data = self.data();
        let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
        if std::thread::panicking() {
            eprintln!("--- PostgreSQL log ---\n{}", self.log());
        }
    }
}
