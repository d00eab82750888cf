//! Where an image comes from: the workspace's version, repository and licence, the git commit
//! and its time. Everything here is a function of the commit, never of the build machine or
//! the clock, so two builds of one commit carry the same annotations.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};
use chrono::{DateTime, SecondsFormat};
use serde::Deserialize;

/// What every image of one build says about its origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provenance {
    /// `[workspace.package] repository`.
    pub source: String,
    /// `[workspace.package] version`: also the default tag.
    pub version: String,
    /// `[workspace.package] license`.
    pub licenses: String,
    /// The commit (`git rev-parse HEAD`). A build from a tree with uncommitted changes still
    /// names HEAD: the `.sha256` files and digests, not this, identify the bytes.
    pub revision: String,
    /// Seconds since the epoch: `SOURCE_DATE_EPOCH` when set, else the commit time. Stamped
    /// on the tar entries and, as RFC 3339, on `created`.
    pub created: u64,
}

impl Provenance {
    /// `created` as RFC 3339 in UTC, e.g. `2025-11-25T14:02:00Z`.
    pub fn created_rfc3339(&self) -> String {
        i64::try_from(self.created)
            .ok()
            .and_then(|secs| DateTime::from_timestamp(secs, 0))
            .unwrap_or_default()
            .to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    /// Reads the workspace at `root` (its `Cargo.toml` and git).
    pub fn of_workspace(root: &Path) -> anyhow::Result<Self> {
        let package = WorkspaceManifest::read(root)?.workspace.package;
        let revision = git(root, &["rev-parse", "HEAD"])?;
        let created = match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(epoch) => epoch
                .trim()
                .parse()
                .with_context(|| format!("SOURCE_DATE_EPOCH={epoch:?}: not seconds"))?,
            Err(_) => git(root, &["log", "-1", "--format=%ct", "HEAD"])?
                .parse()
                .context("git log: commit time")?,
        };
        Ok(Self {
            source: package.repository,
            version: package.version,
            licenses: package.license,
            revision,
            created,
        })
    }
}

/// The `description` of a crate's `Cargo.toml`, e.g. a filter's.
pub fn crate_description(manifest: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let parsed: CrateManifest =
        toml::from_str(&text).with_context(|| format!("parsing {}", manifest.display()))?;
    parsed
        .package
        .description
        .with_context(|| format!("{}: no package.description", manifest.display()))
}

#[derive(Deserialize)]
struct WorkspaceManifest {
    workspace: Workspace,
}

#[derive(Deserialize)]
struct Workspace {
    package: WorkspacePackage,
}

#[derive(Deserialize)]
struct WorkspacePackage {
    version: String,
    repository: String,
    license: String,
}

impl WorkspaceManifest {
    fn read(root: &Path) -> anyhow::Result<Self> {
        let path = root.join("Cargo.toml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| {
            format!(
                "{}: [workspace.package] needs version, repository and license",
                path.display()
            )
        })
    }
}

#[derive(Deserialize)]
struct CrateManifest {
    package: CratePackage,
}

#[derive(Deserialize)]
struct CratePackage {
    description: Option<String>,
}

fn git(root: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .context("running git")?;
    if !out.status.success() {
        bail!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_is_rfc3339_utc_to_the_second() {
        let p = Provenance {
            source: String::new(),
            version: String::new(),
            licenses: String::new(),
            revision: String::new(),
            created: 1_764_079_320,
        };
        assert_eq!(p.created_rfc3339(), "2025-11-25T14:02:00Z");
    }

    #[test]
    fn reads_this_workspace() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let p = Provenance::of_workspace(&root).unwrap();
        assert_eq!(p.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(p.source, env!("CARGO_PKG_REPOSITORY"));
        assert_eq!(p.revision.len(), 40, "a full commit id: {}", p.revision);
        assert!(p.created > 1_600_000_000);
    }
}
