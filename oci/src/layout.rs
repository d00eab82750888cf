//! An OCI image layout on disk (`oci-layout`, `index.json`, `blobs/sha256/<hex>`): one per
//! filter, holding both variants, each `index.json` entry named by its tag.
//!
//! It is what `make oci` leaves and what `make push` sends, so a push uploads exactly the bytes
//! that were built, and anything that reads OCI layouts (skopeo, oras, crane, podman) can copy
//! it too.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::image::{Image, Variant};
use crate::manifest::{digest_of, to_bytes, Descriptor, ImageIndex, ImageManifest};
use crate::media;

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Writes `images` as the layout at `dir`, each tagged by `tag` and its variant. Whatever was
/// at `dir` is replaced whole, so no blob of an older build lingers.
pub fn write(dir: &Path, tag: &str, images: &[Image]) -> anyhow::Result<()> {
    let staging = sibling(dir, "tmp")?;
    if staging.exists() {
        fs::remove_dir_all(&staging)?;
    }
    let blobs = staging.join("blobs").join("sha256");
    fs::create_dir_all(&blobs)?;
    fs::write(staging.join("oci-layout"), OCI_LAYOUT)?;

    let mut manifests = Vec::with_capacity(images.len());
    for image in images {
        for blob in image
            .blobs
            .iter()
            .chain(std::iter::once(&image.manifest_bytes))
        {
            fs::write(blobs.join(hex_of(&digest_of(blob))?), blob)?;
        }
        manifests.push(
            Descriptor::of(media::IMAGE_MANIFEST, &image.manifest_bytes)
                .annotated(media::REF_NAME, &image.variant.tag(tag)),
        );
    }
    let index = ImageIndex {
        schema_version: 2,
        media_type: media::IMAGE_INDEX.to_owned(),
        manifests,
    };
    fs::write(staging.join("index.json"), to_bytes(&index)?)?;

    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::rename(&staging, dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(())
}

/// A layout read back from disk.
pub struct Layout {
    dir: PathBuf,
    pub index: ImageIndex,
}

/// One image of a layout: its tag in `index.json`, its manifest and the manifest's bytes.
pub struct Entry {
    pub tag: String,
    pub variant: Variant,
    pub digest: String,
    pub manifest: ImageManifest,
    pub manifest_bytes: Vec<u8>,
}

impl Layout {
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let index_path = dir.join("index.json");
        let bytes = fs::read(&index_path)
            .with_context(|| format!("reading {} (run `make oci` first)", index_path.display()))?;
        let index: ImageIndex = serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing {}", index_path.display()))?;
        Ok(Self {
            dir: dir.to_owned(),
            index,
        })
    }

    /// The blob named `digest`, checked against it.
    pub fn blob(&self, digest: &str) -> anyhow::Result<Vec<u8>> {
        let path = self.dir.join("blobs").join("sha256").join(hex_of(digest)?);
        let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        if digest_of(&bytes) != digest {
            bail!("{}: content does not match its digest", path.display());
        }
        Ok(bytes)
    }

    /// Every image in the layout, in `index.json` order.
    pub fn entries(&self) -> anyhow::Result<Vec<Entry>> {
        self.index
            .manifests
            .iter()
            .map(|d| {
                let tag = d
                    .annotations
                    .get(media::REF_NAME)
                    .with_context(|| format!("{}: index entry without a tag", d.digest))?
                    .clone();
                let manifest_bytes = self.blob(&d.digest)?;
                let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes)
                    .with_context(|| format!("{tag}: not an image manifest"))?;
                let variant = Variant::of(&manifest)
                    .with_context(|| format!("{tag}: neither the compat nor the oci variant"))?;
                Ok(Entry {
                    tag,
                    variant,
                    digest: d.digest.clone(),
                    manifest,
                    manifest_bytes,
                })
            })
            .collect()
    }

    /// The manifest digest of each tag: what two builds are compared by.
    pub fn digests(&self) -> BTreeMap<String, String> {
        self.index
            .manifests
            .iter()
            .filter_map(|d| {
                let tag = d.annotations.get(media::REF_NAME)?;
                Some((tag.clone(), d.digest.clone()))
            })
            .collect()
    }
}

/// The hex part of `sha256:<hex>`, refused if it is anything else (it becomes a file name).
fn hex_of(digest: &str) -> anyhow::Result<&str> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(hex),
        _ => bail!("not a sha256 digest: {digest:?}"),
    }
}

fn sibling(dir: &Path, suffix: &str) -> anyhow::Result<PathBuf> {
    let name = dir
        .file_name()
        .with_context(|| format!("{}: not a directory name", dir.display()))?;
    let mut staged = name.to_owned();
    staged.push(format!(".{suffix}"));
    Ok(dir.with_file_name(staged))
}
