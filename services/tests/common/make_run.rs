//! `make run` exactly as the README writes it (`make run`, `make run NODES=2`), in a terminal
//! of its own (a new session, so Ctrl-C can go to its whole process group): the Makefile's
//! own set-up, build and binaries, the default run directory `.run/` and no variable of the
//! script's set but the ports, which move to free ones. Whatever the Makefile or
//! `envoy-config/run.sh` gets wrong for a newcomer, these tests get wrong too. (So they write
//! `.run/` in the checkout, and run `make setup build` from inside `cargo test`: a demo a
//! developer runs from the same checkout meanwhile has its `.run/` files rewritten.)

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_tests::{client, paths};

/// The ports `run.sh` reads, by variable.
pub const PORT_VARIABLES: [&str; 8] = [
    "DEMO_PORT",
    "DEMO_ADMIN_PORT",
    "DEMO_USERS_PORT",
    "DEMO_ORDERS_PORT",
    "DEMO_PAYMENTS_PORT",
    "DEMO_LOGIN_PORT",
    "DEMO_ADMIN_API_PORT",
    "DEMO_DATA_PLANE_PORT",
];

/// The ports `run.sh` reads besides [`PORT_VARIABLES`] with `DEMO_NODES=2`.
pub const NODE2_PORT_VARIABLES: [&str; 5] = [
    "DEMO_NODE2_PORT",
    "DEMO_NODE2_ADMIN_PORT",
    "DEMO_REDIS_PORT",
    "DEMO_RATELIMIT_PORT",
    "DEMO_RATELIMIT_METRICS_PORT",
];

/// A running `make run`; its process group is killed when dropped.
pub struct MakeRun {
    child: Child,
    /// Port by variable, as [`PORT_VARIABLES`] (and [`NODE2_PORT_VARIABLES`]).
    pub ports: Vec<(&'static str, u16)>,
    /// Everything it printed, stdout and stderr, line by line.
    lines: Arc<Mutex<Vec<String>>>,
    /// The threads reading stdout and stderr into `lines`: done when every writer (the
    /// script and all it started) has closed them.
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// What `run.sh` (and `make run`: NODES, TLS) reads besides the ports: a developer's own
/// settings of these must not reach the test, which runs the defaults a newcomer gets.
const SCRIPT_VARIABLES: [&str; 12] = [
    "NODES",
    "TLS",
    "CHAIN",
    "DEMO_CHAIN",
    "DEMO_TLS",
    "DEMO_RUN_DIR",
    "DEMO_NODES",
    "ENVOY",
    "SERVICES",
    "ADMIN_SERVICE",
    "REDIS",
    "RATELIMIT",
];

/// `count` ports free now, below the kernel's ephemeral range: `make run` binds them seconds
/// later (after make's own set-up and portcullis-admin's start), and a port from that range
/// could meanwhile go to any socket another test opens, bound to port 0 or connecting out
/// (seen: `order-service: port … is already in use` while the scenario's other tests ran).
/// Below the range only an explicit bind takes a port; the start moves with the process id
/// and the clock, so two runs at once look in different places.
fn unclaimable_ports(count: usize) -> Vec<u16> {
    let ephemeral_start: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let low: u16 = 10_000;
    assert!(
        ephemeral_start > low + 1_000,
        "the ephemeral range starts at {ephemeral_start}: no room below it for the demo's ports"
    );
    let span = u32::from(ephemeral_start - low);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let start = (std::process::id().wrapping_mul(7919) ^ nanos) % span;
    let mut ports = Vec::with_capacity(count);
    for step in 0..span {
        let port = low + ((start + step) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports.push(port);
            if ports.len() == count {
                return ports;
            }
        }
    }
    panic!("fewer than {count} free ports between {low} and {ephemeral_start}");
}

impl MakeRun {
    /// Runs `make run` on free ports.
    pub fn start() -> MakeRun {
        Self::start_nodes(1)
    }

    /// Runs `make run` (`nodes` 1) or `make run NODES=<nodes>` on free ports.
    pub fn start_nodes(nodes: u8) -> MakeRun {
        Self::start_with(nodes, &[])
    }

    /// Runs `make run [NODES=<nodes>] <args…>` (`TLS=0`) on free ports.
    pub fn start_with(nodes: u8, args: &[&str]) -> MakeRun {
        let variables: Vec<&'static str> = if nodes == 1 {
            PORT_VARIABLES.to_vec()
        } else {
            [PORT_VARIABLES.as_slice(), NODE2_PORT_VARIABLES.as_slice()].concat()
        };
        let ports: Vec<(&'static str, u16)> = variables
            .iter()
            .copied()
            .zip(unclaimable_ports(variables.len()))
            .collect();
        let mut command = Command::new("setsid");
        command.args(["make", "run"]);
        // On the Envoy the tests run (`make test-envoy ENVOY_VERSION=…` points
        // PORTCULLIS_ENVOY at another release), not whichever `make run` would pick.
        command.arg(format!("ENVOY={}", paths::envoy_binary().display()));
        if nodes != 1 {
            command.arg(format!("NODES={nodes}"));
        }
        // The packaging these tests run (`PORTCULLIS_PACKAGING`), unless the test names one.
        if !args.iter().any(|a| a.starts_with("CHAIN=")) {
            command.arg(format!("CHAIN={}", super::gateway::chain().name()));
        }
        command.args(args);
        for variable in SCRIPT_VARIABLES {
            command.env_remove(variable);
        }
        // What `cargo test` set for this test (CARGO, CARGO_MANIFEST_DIR, CARGO_PKG_NAME,
        // OUT_DIR…) is not in a user's shell, and build scripts that watch such variables
        // (ring's) would make `make run`'s cargo rebuild them, and the service after them.
        for (variable, _) in std::env::vars_os() {
            let name = variable.to_string_lossy();
            let from_cargo_test = name == "CARGO"
                || (name.starts_with("CARGO_")
                    && name != "CARGO_HOME"
                    && name != "CARGO_TARGET_DIR")
                || name == "OUT_DIR";
            if from_cargo_test {
                command.env_remove(&variable);
            }
        }
        let mut child = command
            .current_dir(paths::workspace_root())
            .envs(ports.iter().map(|(v, p)| (v, p.to_string())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        let stderr = child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        let readers = [stdout, stderr]
            .into_iter()
            .flatten()
            .map(|stream| {
                let sink = lines.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(stream).lines().map_while(Result::ok) {
                        sink.lock().unwrap().push(line);
                    }
                })
            })
            .collect();
        MakeRun {
            child,
            ports,
            lines,
            readers,
        }
    }

    pub fn port(&self, variable: &str) -> u16 {
        self.ports
            .iter()
            .find(|(v, _)| *v == variable)
            .map(|(_, p)| *p)
            .unwrap()
    }

    /// Every line printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The value of a `NAME=value` line the script printed (`MOBILE`, `WEB`).
    pub fn printed(&self, name: &str) -> String {
        let prefix = format!("{name}=");
        self.lines()
            .iter()
            .find_map(|line| line.trim().strip_prefix(&prefix).map(str::to_owned))
            .unwrap_or_else(|| panic!("make run printed no {name}=…"))
    }

    /// Asserts that `command` was printed as such, on a line of its own (indentation aside).
    pub fn assert_printed(&self, command: &str) {
        assert!(
            self.lines().iter().any(|line| line.trim() == command),
            "make run printed no line `{command}`:\n{}",
            self.lines().join("\n")
        );
    }

    /// Runs `command` as a user pasting it would: in bash, from the checkout (where `make
    /// run` ran), after the printed `MOBILE=…` and `WEB=…`. Its stdout; panics if it fails.
    pub fn paste(&self, command: &str) -> String {
        let script = format!(
            "MOBILE={}\nWEB={}\n{command}",
            self.printed("MOBILE"),
            self.printed("WEB")
        );
        let out = Command::new("bash")
            .args(["-c", &script])
            .current_dir(paths::workspace_root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{command}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Asserts that the node whose Envoy admin port is `variable`'s has the cluster
    /// `portcullis_admin` at the data plane of the portcullis-admin `make run` started.
    pub fn assert_admin_cluster(&self, variable: &str) {
        let url = format!("http://127.0.0.1:{}/clusters", self.port(variable));
        let clusters = client::get(&url, &[]).text();
        let endpoint = format!(
            "portcullis_admin::127.0.0.1:{}::",
            self.port("DEMO_DATA_PLANE_PORT")
        );
        assert!(
            clusters.contains(&endpoint),
            "{variable}: no {endpoint} in\n{clusters}"
        );
    }

    /// Every live process in the script's process group (itself, and all it started that
    /// did not leave the group): pid and command name.
    pub fn processes(&self) -> Vec<(u32, String)> {
        let group = self.child.id();
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|entry| entry.file_name().to_string_lossy().parse::<u32>().ok())
            .filter_map(|pid| {
                let (name, pgrp) = live_process(pid)?;
                (pgrp == group).then_some((pid, name))
            })
            .collect()
    }

    /// Waits up to `timeout` for a line containing `needle`; panics, showing the output, if
    /// the script exits or none comes.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("make run exited ({status}) before printing {needle:?}");
            }
            assert!(
                Instant::now() < deadline,
                "make run printed no {needle:?} within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What a user's Ctrl-C does: SIGINT to the terminal's process group (the script, the
    /// services and Envoy alike). Returns how the script ended, within 15 s, once everything
    /// it printed is in [`MakeRun::lines`].
    pub fn ctrl_c(&mut self) -> ExitStatus {
        super::sigint_at_its_default();
        self.signal_group("INT");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.read_to_the_end(deadline);
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "make run still running 15 s after Ctrl-C"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits, until `deadline`, for the readers to reach the end of the output: the script
    /// can exit before they have read its last lines (seen: its goodbye missing from
    /// `lines` while the pipe still held it). A process still holding the pipe past the
    /// deadline fails the test, as it outlived the script that should have stopped it.
    fn read_to_the_end(&mut self, deadline: Instant) {
        while !self.readers.iter().all(|r| r.is_finished()) {
            assert!(
                Instant::now() < deadline,
                "make run exited, but something it started still holds its output open"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }

    /// Whether `make run` ended as a Ctrl-C should end it: the script stopped everything and
    /// exited 0, so make reports no failed recipe (`make: *** …`); make itself ends by the
    /// SIGINT it got, as an interrupted program should (a shell shows status 130).
    pub fn stopped_cleanly(&self, status: ExitStatus) -> bool {
        use std::os::unix::process::ExitStatusExt;
        const SIGINT: i32 = 2;
        (status.success() || status.signal() == Some(SIGINT))
            && !self
                .lines()
                .iter()
                .any(|line| line.starts_with("make: ***"))
    }

    fn signal_group(&self, signal: &str) {
        // setsid made make the leader of its own process group: its id is the pid.
        let _ = Command::new("kill")
            .args([
                &format!("-{signal}"),
                "--",
                &format!("-{}", self.child.id()),
            ])
            .stderr(Stdio::null())
            .status();
    }
}

/// The command name (`comm`, at most 15 bytes) and process group of `pid`, if it runs: a
/// zombie has exited (only its parent's wait is missing) and counts as gone.
pub fn live_process(pid: u32) -> Option<(String, u32)> {
    // `pid (comm) state ppid pgrp …`; comm may hold spaces and parentheses.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    let pgrp = fields.get(2)?.parse().ok()?;
    Some((stat.get(open + 1..close)?.to_owned(), pgrp))
}

impl Drop for MakeRun {
    fn drop(&mut self) {
        // Only while the script is unreaped is its pid sure to name its group. Once it has
        // exited on its own, its trap has stopped Envoy and the services already.
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            self.signal_group("KILL");
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- make run output ----\n{}", self.lines().join("\n"));
        }
    }
}
