//! Where things are: the workspace, the built filters and fixtures, the Envoy binary and
//! the service binaries cargo built, free loopback ports, and per-test scratch directories
//! that never collide when tests run in parallel.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The workspace root: the parent of this crate's directory.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `dist/portcullis-<filter>.wasm`, as `make build` writes it. Panics if it is missing.
pub fn wasm(filter: &str) -> PathBuf {
    built(workspace_root().join(format!("dist/portcullis-{filter}.wasm")))
}

/// `dist/fixtures/<name>.wasm`, as `make build` writes it. Panics if it is missing.
pub fn fixture(name: &str) -> PathBuf {
    built(workspace_root().join(format!("dist/fixtures/{name}.wasm")))
}

fn built(path: PathBuf) -> PathBuf {
    assert!(
        path.is_file(),
        "{} is missing: run `make build` first",
        path.display()
    );
    path
}

/// The Envoy to run: `$PORTCULLIS_ENVOY` (the Makefile sets it), else the one `make setup`
/// installs at `<workspace>/.venv/bin/envoy`. Panics if neither exists.
pub fn envoy_binary() -> PathBuf {
    let path = std::env::var_os("PORTCULLIS_ENVOY")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/envoy"));
    assert!(
        path.is_file(),
        "no Envoy at {}: run `make setup` first (or set PORTCULLIS_ENVOY)",
        path.display()
    );
    path
}

/// The binary `name` cargo built alongside the running test: `$<variable>` if set; else
/// `<target>/<profile>/<name>` next to this test executable's `deps/` (so it follows
/// `CARGO_TARGET_DIR` and the profile); else `<workspace>/target/debug/<name>`, where
/// `make build` puts it. Panics if none exists. For the service crates' binaries, whose
/// package is named as the binary: a test inside that package has
/// `env!("CARGO_BIN_EXE_<name>")` instead.
pub fn built_binary(name: &str, variable: &str) -> PathBuf {
    let from_env = std::env::var_os(variable)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from);
    let beside_test = std::env::current_exe().ok().and_then(|exe| {
        let deps = exe.parent()?;
        let profile = if deps.ends_with("deps") {
            deps.parent()?
        } else {
            deps
        };
        Some(profile.join(name))
    });
    let default = workspace_root().join("target/debug").join(name);
    let candidates: Vec<PathBuf> = from_env
        .into_iter()
        .chain(beside_test)
        .chain(Some(default))
        .collect();
    let found = candidates.iter().find(|path| path.is_file()).cloned();
    assert!(
        found.is_some(),
        "no {name} binary at any of {candidates:?}: run `make build` (or `cargo build -p {name}`)"
    );
    found.unwrap_or_default()
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A fresh directory under the system temp dir, removed on drop unless [`keep`](Self::keep)
/// was called (the Envoy harness keeps it when a test fails, so its files can be read).
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
    keep: bool,
}

impl ScratchDir {
    /// Creates `<tmp>/portcullis-<label>-<pid>-<n>-<nanos>`: unique across the threads of one
    /// test binary (the counter) and across test binaries running at once (the pid).
    pub fn new(label: &str) -> std::io::Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "portcullis-{label}-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path)?;
        Ok(Self { path, keep: false })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Leaves the directory in place when this value is dropped.
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
