//! Which Envoy release the tests run ([`paths::envoy_binary`]), and what that release can do,
//! asked once per test process: `envoy --version` for the release, `envoy --help` for its
//! flags. The suites run against Envoy 1.36 to 1.40 (`make test-envoy ENVOY_VERSION=…`,
//! docs/envoy-releases.md); where a release differs, a test asks here instead of assuming
//! the newest.

use std::fmt;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::paths;

/// An Envoy release, `major.minor.patch` as `envoy --version` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Release {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Release {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Release {
        Release {
            major,
            minor,
            patch,
        }
    }

    /// The release in `envoy --version`'s output (`envoy  version: <sha>/1.36.4/Clean/…`).
    pub fn parse_version_output(output: &str) -> Option<Release> {
        let after = output.split("version:").nth(1)?;
        let field = after.trim_start().split('/').nth(1)?;
        let mut parts = field.split('.').map(|p| p.parse::<u32>().ok());
        Some(Release::new(parts.next()??, parts.next()??, parts.next()??))
    }

    /// Whether this release is at least `major.minor`.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }

    /// Whether Envoy has the foreign function `sign` (`envoy.wasm.sign`): 1.37 and later.
    /// On 1.36 `call_foreign_function("sign", …)` answers NotFound, and the token issuer
    /// signs RS256 and ES256 in the module (it says so in its start line).
    pub fn has_sign(&self) -> bool {
        self.at_least(1, 37)
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The release of the Envoy the tests run. Panics, with Envoy's output, if `--version`
/// names none.
pub fn current() -> Release {
    static RELEASE: OnceLock<Release> = OnceLock::new();
    *RELEASE.get_or_init(|| {
        let output = envoy_output("--version");
        Release::parse_version_output(&output)
            .unwrap_or_else(|| panic!("no release in `envoy --version`: {output}"))
    })
}

/// Whether the Envoy the tests run has the command-line flag `flag` (`--file-flush-min-size-kb`
/// is new in 1.37), from its `--help`.
pub fn has_flag(flag: &str) -> bool {
    static HELP: OnceLock<String> = OnceLock::new();
    HELP.get_or_init(|| envoy_output("--help"))
        .split(|c: char| c.is_whitespace() || c == '[' || c == ']')
        .any(|word| word == flag)
}

fn envoy_output(arg: &str) -> String {
    let binary = paths::envoy_binary();
    let output = Command::new(&binary)
        .arg(arg)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {} {arg}: {e}", binary.display()));
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_release_from_envoys_version_line() {
        let line = "\n.venv/bin/envoy  version: bad8280de85c25b147a90c1d9b8a8c67a13e7134/1.36.4/Clean/RELEASE/BoringSSL\n\n";
        assert_eq!(
            Release::parse_version_output(line),
            Some(Release::new(1, 36, 4))
        );
        assert_eq!(Release::parse_version_output("envoy: no such file"), None);
        assert_eq!(
            Release::parse_version_output("version: abc/1.x/Clean"),
            None
        );
    }

    #[test]
    fn releases_order_by_minor_then_patch() {
        let r = Release::new(1, 37, 0);
        assert!(r.at_least(1, 37) && r.at_least(1, 36) && !r.at_least(1, 38));
        assert!(Release::new(1, 36, 4) < Release::new(1, 37, 0));
        assert!(!Release::new(1, 36, 4).has_sign() && r.has_sign());
        assert_eq!(r.to_string(), "1.37.0");
    }
}
