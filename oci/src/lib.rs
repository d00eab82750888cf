//! Portcullis modules as Wasm OCI images: `make oci` builds each of them (the four filters and
//! the one-VM gateway) into an OCI image layout under `dist/oci/`, `make push` sends them to a
//! registry. See `oci/README.md`. Here a "filter" is any module: the gateway is packaged,
//! named and described exactly as a filter is.

pub mod abi;
pub mod archive;
pub mod image;
pub mod layout;
pub mod manifest;
pub mod media;
pub mod provenance;
pub mod registry;

use std::path::{Path, PathBuf};

use anyhow::Context;

pub use image::{image_name, Image, Plugin, Variant};
pub use provenance::Provenance;

/// `dist/portcullis-<filter>.wasm`.
pub fn wasm_path(dist: &Path, filter: &str) -> PathBuf {
    dist.join(format!("{}.wasm", image_name(filter)))
}

/// The layout `make oci` writes for one filter: `<out>/portcullis-<filter>`.
pub fn layout_dir(out: &Path, filter: &str) -> PathBuf {
    out.join(image_name(filter))
}

/// What one filter's packaging produced.
pub struct Packaged {
    pub filter: String,
    pub layout: PathBuf,
    /// `(tag, variant, manifest digest)`, compat first.
    pub images: Vec<(String, Variant, String)>,
}

/// Packages each of `filters` (any module: `gateway` too) from `dist/portcullis-<filter>.wasm`
/// into the layout `<out>/portcullis-<filter>`, both variants, tagged with the workspace
/// version. The description comes from the crate's `filters/<filter>/Cargo.toml` under `root`.
pub fn package(
    root: &Path,
    dist: &Path,
    out: &Path,
    filters: &[String],
    provenance: &Provenance,
) -> anyhow::Result<Vec<Packaged>> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    filters
        .iter()
        .map(|filter| {
            let wasm_file = wasm_path(dist, filter);
            let wasm = std::fs::read(&wasm_file)
                .with_context(|| format!("reading {} (run `make build`)", wasm_file.display()))?;
            let description = provenance::crate_description(
                &root.join("filters").join(filter).join("Cargo.toml"),
            )?;
            let plugin = Plugin {
                name: filter,
                wasm: &wasm,
                description: &description,
            };
            let images = image::build(&plugin, provenance)
                .with_context(|| format!("{}", wasm_file.display()))?;
            let dir = layout_dir(out, filter);
            layout::write(&dir, &provenance.version, &images)?;
            Ok(Packaged {
                filter: filter.clone(),
                layout: dir,
                images: images
                    .iter()
                    .map(|i| (i.variant.tag(&provenance.version), i.variant, i.digest()))
                    .collect(),
            })
        })
        .collect()
}

/// Writes `<file>.sha256` beside `file`, in `sha256sum` format (`<hex>  <name>`), so that
/// `cd dist && sha256sum -c *.sha256` checks it.
pub fn write_checksum(file: &Path) -> anyhow::Result<PathBuf> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let name = file
        .file_name()
        .with_context(|| format!("{}: no file name", file.display()))?
        .to_string_lossy();
    let digest = manifest::digest_of(&bytes);
    let hex = digest.trim_start_matches("sha256:");
    let mut out = file.as_os_str().to_owned();
    out.push(".sha256");
    let out = PathBuf::from(out);
    std::fs::write(&out, format!("{hex}  {name}\n"))
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_in_sha256sum_format() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("portcullis-acl.wasm");
        std::fs::write(&file, b"abc").unwrap();
        let sum = write_checksum(&file).unwrap();
        assert_eq!(sum, dir.path().join("portcullis-acl.wasm.sha256"));
        assert_eq!(
            std::fs::read_to_string(sum).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  portcullis-acl.wasm\n"
        );
    }
}
