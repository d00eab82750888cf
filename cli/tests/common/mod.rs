//! Running `portcullis kong import` on a fixture and reading what it wrote.

// Test helpers outside #[test] functions may fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use portcullis_tests::paths::{workspace_root, ScratchDir};
use portcullis_tests::Envoy;
use serde_json::Value;

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn json(path: &Path) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One run of the binary: its exit code, outputs, and the scratch directory its `--out`
/// points into (`<scratch>/out`).
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub scratch: ScratchDir,
}

impl Run {
    pub fn out(&self) -> PathBuf {
        self.scratch.path().join("out")
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.out().join(name)
    }

    /// Nothing at `--out`, and no temporary sibling left behind.
    pub fn assert_nothing_written(&self) {
        let left: Vec<String> = fs::read_dir(self.scratch.path())
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            left.is_empty(),
            "written: {left:?}\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
    }

    pub fn validate(&self) {
        let yaml = read(&self.file("envoy.yaml"));
        if let Err(log) = Envoy::validate(&yaml) {
            panic!(
                "envoy --mode validate refused {}:\n{log}",
                self.file("envoy.yaml").display()
            );
        }
    }
}

pub fn run_with(input: &str, extra: &[&str], scratch: ScratchDir, stdin: Option<&[u8]>) -> Run {
    let out = scratch.path().join("out");
    let dist = workspace_root().join("dist");
    let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    command
        .args(["kong", "import", input, "--out"])
        .arg(&out)
        .args(["--wasm-dir"])
        .arg(&dist)
        .args(["--listen", "127.0.0.1:0", "--envoy-admin", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output: Output = match stdin {
        Some(bytes) => {
            command.stdin(Stdio::piped());
            let mut child = command.spawn().expect("spawn portcullis");
            {
                use std::io::Write as _;
                let mut pipe = child.stdin.take().expect("stdin");
                let _ = pipe.write_all(bytes);
            }
            child.wait_with_output().expect("wait")
        }
        None => command
            .stdin(Stdio::null())
            .output()
            .expect("run portcullis"),
    };
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        scratch,
    }
}

pub fn import(fixture_name: &str, extra: &[&str]) -> Run {
    let scratch = ScratchDir::new("kong-import").expect("scratch");
    let path = fixture(fixture_name);
    run_with(path.to_str().expect("utf-8 path"), extra, scratch, None)
}

/// The Envoy route names of envoy.yaml, in order.
pub fn route_names(run: &Run) -> Vec<String> {
    let yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&read(&run.file("envoy.yaml"))).expect("yaml");
    let routes = &yaml["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["route_config"]["virtual_hosts"][0]["routes"];
    routes
        .as_sequence()
        .expect("routes")
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}
