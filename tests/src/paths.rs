//! Where things are: the workspace, the built filters and fixtures, the Envoy binary, and
//! per-test scratch directories that never collide when tests run in parallel.

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
