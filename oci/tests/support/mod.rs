//! What the integration tests share: where the workspace is, which filters it builds, and a
//! real registry (Debian's `docker-registry`) on a free loopback port.

// Each test binary uses part of this module.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_oci::Provenance;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("oci/ sits in the workspace")
        .to_owned()
}

/// `dist/`, where `make build` leaves the filters.
pub fn dist() -> PathBuf {
    root().join("dist")
}

/// The filters the Makefile builds (`FILTERS := …`): the one list of them.
pub fn filters() -> Vec<String> {
    built(makefile_list("FILTERS"))
}

/// Every module the Makefile builds and `make oci` packages (`MODULES := $(FILTERS) gateway`):
/// the filters, then the one-VM gateway.
pub fn modules() -> Vec<String> {
    let filters = makefile_list("FILTERS");
    let modules = makefile_list("MODULES")
        .into_iter()
        .flat_map(|word| match word.as_str() {
            "$(FILTERS)" => filters.clone(),
            _ => vec![word],
        })
        .collect();
    built(modules)
}

/// The one-VM gateway's module name: the module `MODULES` adds to `FILTERS`.
pub const GATEWAY: &str = "gateway";

/// The words of the Makefile's `<name> := …` line.
fn makefile_list(name: &str) -> Vec<String> {
    let makefile = std::fs::read_to_string(root().join("Makefile")).expect("reading Makefile");
    let line = makefile
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.trim_start().strip_prefix(":="))
        .unwrap_or_else(|| panic!("Makefile: {name} := …"));
    line.split('#')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// `modules`, each checked to be in `dist/`.
fn built(modules: Vec<String>) -> Vec<String> {
    for m in &modules {
        let wasm = portcullis_oci::wasm_path(&dist(), m);
        assert!(
            wasm.exists(),
            "{} is missing: run `make build` first",
            wasm.display()
        );
    }
    modules
}

/// The filters in the order the demo chains them: the gateway's stage order
/// (`portcullis_core::gateway::STAGES`), which the demo's four filters follow too
/// (`envoy-config/demo.yaml.tmpl`, `portcullis_services::demo::FILTERS`).
pub fn demo_chain() -> Vec<String> {
    portcullis_core::gateway::STAGES
        .iter()
        .map(|stage| stage.replace('_', "-"))
        .collect()
}

/// What this workspace's images say about their origin.
pub fn provenance() -> Provenance {
    Provenance::of_workspace(&root()).expect("reading the workspace")
}

/// A `docker-registry` serving `127.0.0.1:<port>` from a temporary directory, with a config
/// file written there. Stopped, and its storage removed, on drop.
pub struct RegistryServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl RegistryServer {
    const BINARY: &'static str = "docker-registry";
    const READY_WITHIN: Duration = Duration::from_secs(20);

    pub fn start() -> Self {
        let mut last_failure = String::new();
        // A port found free can be taken before the registry binds it: try a few.
        for _ in 0..3 {
            match Self::try_start() {
                Ok(server) => return server,
                Err(failure) => last_failure = failure,
            }
        }
        panic!("docker-registry did not start:\n{last_failure}");
    }

    fn try_start() -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(&config, config_yaml(&dir.path().join("storage"), port))
            .map_err(|e| e.to_string())?;
        let log =
            std::fs::File::create(dir.path().join("registry.log")).map_err(|e| e.to_string())?;
        let child = Command::new(Self::BINARY)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{}: {e} (installed by `make setup`)", Self::BINARY))?;
        let mut server = Self { child, port, dir };
        let deadline = Instant::now() + Self::READY_WITHIN;
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("exited with {status}:\n{}", server.log()));
            }
            if server.answers_v2() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no answer on {} within {:?}:\n{}",
                    server.address(),
                    Self::READY_WITHIN,
                    server.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The registry's own log, for a failing test to print.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// `GET /v2/` answers 200: the registry is up (the distribution spec's version check).
    fn answers_v2(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!(
            "GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.address()
        );
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response.starts_with("HTTP/1.1 200")
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_yaml(storage: &Path, port: u16) -> String {
    format!(
        "version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  secret: portcullis-oci-tests
",
        storage = storage.display()
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
