//! The two images of one filter, as the solo-io Wasm image spec draws them.
//!
//! *compat* (`spec-compat.md`), the default tag, read by every fetcher and by docker, podman and
//! buildah: an OCI image config, exactly one `tar+gzip` layer holding `plugin.wasm` (and the
//! optional `runtime-config.json`), and the manifest annotation `module.wasm.image/variant:
//! compat`, which the spec requires for this layer type.
//!
//! *oci* (`spec.md`), tagged `-oci`: exactly two layers, the runtime config
//! (`application/vnd.module.wasm.config.v1+json`) then the module
//! (`application/vnd.module.wasm.content.layer.v1+wasm`), each titled with its file name. The
//! runtime config is also the manifest's config, as `wasme` (the spec's own tool) pushes it.
//! Istio and Envoy Gateway take a two-layer image with that content layer; other layer counts
//! they refuse.
//!
//! Both manifests carry the same `org.opencontainers.image.*` annotations.

use std::collections::BTreeMap;

use crate::abi::proxy_abi_versions;
use crate::archive::{self, Entry};
use crate::manifest::{
    digest_of, to_bytes, Descriptor, EnvoyConfig, ImageConfig, ImageManifest, RootFs, RuntimeConfig,
};
use crate::media;
use crate::provenance::Provenance;

/// One filter's module and what to say about it.
pub struct Plugin<'a> {
    /// The filter's name (`jwt`): its root id, and the image is `portcullis-<name>`.
    pub name: &'a str,
    /// The `.wasm` bytes.
    pub wasm: &'a [u8],
    /// One line on what it does.
    pub description: &'a str,
}

impl Plugin<'_> {
    /// The repository name of the filter's images.
    pub fn image_name(&self) -> String {
        image_name(self.name)
    }
}

/// `portcullis-<filter>`: the repository name under a registry prefix.
pub fn image_name(filter: &str) -> String {
    format!("portcullis-{filter}")
}

/// Which of the spec's two layouts an image follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Variant {
    Compat,
    Oci,
}

impl Variant {
    /// The tag of this variant for a release tag: `<tag>` for compat, `<tag>-oci` for oci.
    pub fn tag(self, tag: &str) -> String {
        match self {
            Variant::Compat => tag.to_owned(),
            Variant::Oci => format!("{tag}-oci"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Variant::Compat => "compat",
            Variant::Oci => "oci",
        }
    }

    /// Recognises a manifest by its layers, as a fetcher does.
    pub fn of(manifest: &ImageManifest) -> Option<Variant> {
        let types: Vec<&str> = manifest
            .layers
            .iter()
            .map(|l| l.media_type.as_str())
            .collect();
        match types.as_slice() {
            [media::LAYER_TAR_GZIP] => Some(Variant::Compat),
            [media::WASM_CONFIG, media::WASM_CONTENT] => Some(Variant::Oci),
            _ => None,
        }
    }
}

/// A built image: its manifest's exact bytes and every blob it points to.
#[derive(Clone, Debug)]
pub struct Image {
    pub variant: Variant,
    pub manifest: ImageManifest,
    pub manifest_bytes: Vec<u8>,
    /// Config and layers, each once, in manifest order.
    pub blobs: Vec<Vec<u8>>,
}

impl Image {
    /// The manifest digest: what `name@sha256:…` pulls.
    pub fn digest(&self) -> String {
        digest_of(&self.manifest_bytes)
    }

    fn new(variant: Variant, manifest: ImageManifest, blobs: Vec<Vec<u8>>) -> anyhow::Result<Self> {
        let manifest_bytes = to_bytes(&manifest)?;
        let mut unique: Vec<Vec<u8>> = Vec::with_capacity(blobs.len());
        for blob in blobs {
            if !unique.contains(&blob) {
                unique.push(blob);
            }
        }
        Ok(Self {
            variant,
            manifest,
            manifest_bytes,
            blobs: unique,
        })
    }
}

/// The runtime config of `plugin`: `envoy_proxy`, the ABI versions its exports name, and its
/// name as the one root id.
pub fn runtime_config(plugin: &Plugin<'_>) -> anyhow::Result<RuntimeConfig> {
    Ok(RuntimeConfig {
        kind: "envoy_proxy".to_owned(),
        abi_versions: proxy_abi_versions(plugin.wasm)?,
        config: EnvoyConfig {
            root_ids: vec![plugin.name.to_owned()],
        },
    })
}

/// Both variants of `plugin`, compat first.
pub fn build(plugin: &Plugin<'_>, provenance: &Provenance) -> anyhow::Result<[Image; 2]> {
    Ok([compat(plugin, provenance)?, oci(plugin, provenance)?])
}

/// The *compat* variant.
pub fn compat(plugin: &Plugin<'_>, provenance: &Provenance) -> anyhow::Result<Image> {
    let runtime = to_bytes(&runtime_config(plugin)?)?;
    let tar = archive::tar(
        &[
            Entry {
                name: media::PLUGIN_FILE,
                bytes: plugin.wasm,
            },
            Entry {
                name: media::RUNTIME_CONFIG_FILE,
                bytes: &runtime,
            },
        ],
        provenance.created,
    )?;
    let layer = archive::gzip(&tar)?;
    let config = to_bytes(&ImageConfig {
        created: provenance.created_rfc3339(),
        architecture: "wasm".to_owned(),
        os: "wasip1".to_owned(),
        rootfs: RootFs {
            kind: "layers".to_owned(),
            diff_ids: vec![digest_of(&tar)],
        },
    })?;
    let mut annotations = annotations(plugin, provenance);
    annotations.insert(media::VARIANT.to_owned(), "compat".to_owned());
    let manifest = ImageManifest::new(
        Descriptor::of(media::IMAGE_CONFIG, &config),
        vec![Descriptor::of(media::LAYER_TAR_GZIP, &layer)],
        annotations,
    );
    Image::new(Variant::Compat, manifest, vec![config, layer])
}

/// The *oci* variant.
pub fn oci(plugin: &Plugin<'_>, provenance: &Provenance) -> anyhow::Result<Image> {
    let runtime = to_bytes(&runtime_config(plugin)?)?;
    let config = Descriptor::of(media::WASM_CONFIG, &runtime);
    let layers = vec![
        config
            .clone()
            .annotated(media::TITLE, media::RUNTIME_CONFIG_FILE),
        Descriptor::of(media::WASM_CONTENT, plugin.wasm)
            .annotated(media::TITLE, media::FILTER_FILE),
    ];
    let manifest = ImageManifest::new(config, layers, annotations(plugin, provenance));
    Image::new(Variant::Oci, manifest, vec![runtime, plugin.wasm.to_vec()])
}

/// The `org.opencontainers.image.*` annotations both variants carry.
fn annotations(plugin: &Plugin<'_>, p: &Provenance) -> BTreeMap<String, String> {
    [
        (media::CREATED, p.created_rfc3339()),
        (media::DESCRIPTION, plugin.description.to_owned()),
        (media::LICENSES, p.licenses.clone()),
        (media::REVISION, p.revision.clone()),
        (media::SOURCE, p.source.clone()),
        (media::TITLE, plugin.image_name()),
        (media::VERSION, p.version.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::read_tar_gzip;

    /// The smallest module that says it is proxy-wasm 0.2.1.
    const WASM: &[u8] = &[
        0, b'a', b's', b'm', 1, 0, 0, 0, // header
        1, 4, 1, 0x60, 0, 0, // type: () -> ()
        3, 2, 1, 0, // one function
        7, 27, 1, 23, b'p', b'r', b'o', b'x', b'y', b'_', b'a', b'b', b'i', b'_', b'v', b'e', b'r',
        b's', b'i', b'o', b'n', b'_', b'0', b'_', b'2', b'_', b'1', 0, 0, // export
        10, 4, 1, 2, 0, 0x0b, // code
    ];

    fn plugin() -> Plugin<'static> {
        Plugin {
            name: "jwt",
            wasm: WASM,
            description: "Portcullis jwt filter (proxy-wasm).",
        }
    }

    fn provenance() -> Provenance {
        Provenance {
            source: "https://github.com/portcullis-gateway/portcullis".to_owned(),
            version: "0.1.0".to_owned(),
            licenses: "Apache-2.0".to_owned(),
            revision: "0123456789abcdef0123456789abcdef01234567".to_owned(),
            created: 1_764_079_320,
        }
    }

    fn json(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn compat_is_one_tar_gzip_layer_holding_plugin_wasm() {
        let image = compat(&plugin(), &provenance()).unwrap();
        let m = &image.manifest;
        assert_eq!(m.schema_version, 2);
        assert_eq!(m.media_type, media::IMAGE_MANIFEST);
        assert_eq!(m.config.media_type, media::IMAGE_CONFIG);
        assert_eq!(m.layers.len(), 1);
        assert_eq!(m.layers[0].media_type, media::LAYER_TAR_GZIP);
        assert_eq!(m.annotations[media::VARIANT], "compat");
        assert_eq!(Variant::of(m), Some(Variant::Compat));

        let [config, layer] = image.blobs.as_slice() else {
            panic!("two blobs: config and layer")
        };
        let files = read_tar_gzip(layer).unwrap();
        assert_eq!(files[0], ("plugin.wasm".to_owned(), WASM.to_vec()));
        assert_eq!(files[1].0, "runtime-config.json");

        let config = json(config);
        assert_eq!(config["architecture"], "wasm");
        assert_eq!(config["os"], "wasip1");
        assert_eq!(config["created"], "2025-11-25T14:02:00Z");
        assert_eq!(config["rootfs"]["type"], "layers");
        let tar = archive::tar(
            &[
                Entry {
                    name: "plugin.wasm",
                    bytes: &files[0].1,
                },
                Entry {
                    name: "runtime-config.json",
                    bytes: &files[1].1,
                },
            ],
            provenance().created,
        )
        .unwrap();
        assert_eq!(
            config["rootfs"]["diff_ids"][0],
            digest_of(&tar),
            "diff_id is the tar's digest"
        );
    }

    #[test]
    fn oci_is_the_runtime_config_then_the_module() {
        let image = oci(&plugin(), &provenance()).unwrap();
        let m = &image.manifest;
        assert_eq!(m.media_type, media::IMAGE_MANIFEST);
        assert_eq!(m.config.media_type, media::WASM_CONFIG);
        let types: Vec<&str> = m.layers.iter().map(|l| l.media_type.as_str()).collect();
        assert_eq!(types, [media::WASM_CONFIG, media::WASM_CONTENT]);
        assert_eq!(
            m.layers[0].digest, m.config.digest,
            "the config is also layer 0"
        );
        assert_eq!(m.layers[0].annotations[media::TITLE], "runtime-config.json");
        assert_eq!(m.layers[1].annotations[media::TITLE], "filter.wasm");
        assert_eq!(m.layers[1].digest, digest_of(WASM));
        assert!(!m.annotations.contains_key(media::VARIANT));
        assert_eq!(Variant::of(m), Some(Variant::Oci));

        assert_eq!(image.blobs.len(), 2, "config and layer 0 are one blob");
        assert_eq!(image.blobs[1], WASM);
        assert_eq!(
            json(&image.blobs[0]),
            serde_json::json!({
                "type": "envoy_proxy",
                "abiVersions": ["v0.2.1"],
                "config": { "root_ids": ["jwt"] }
            })
        );
    }

    #[test]
    fn both_variants_carry_the_standard_annotations() {
        for image in build(&plugin(), &provenance()).unwrap() {
            let a = &image.manifest.annotations;
            assert_eq!(a[media::TITLE], "portcullis-jwt");
            assert_eq!(a[media::VERSION], "0.1.0");
            assert_eq!(a[media::REVISION], provenance().revision);
            assert_eq!(a[media::SOURCE], provenance().source);
            assert_eq!(a[media::DESCRIPTION], "Portcullis jwt filter (proxy-wasm).");
            assert_eq!(a[media::CREATED], "2025-11-25T14:02:00Z");
            assert_eq!(a[media::LICENSES], "Apache-2.0");
        }
    }

    #[test]
    fn manifest_bytes_are_what_the_digest_names() {
        for image in build(&plugin(), &provenance()).unwrap() {
            let reparsed: ImageManifest = serde_json::from_slice(&image.manifest_bytes).unwrap();
            assert_eq!(reparsed, image.manifest);
            assert_eq!(image.digest(), digest_of(&image.manifest_bytes));
            for d in image.manifest.blobs() {
                assert!(image.blobs.iter().any(|b| digest_of(b) == d.digest));
            }
        }
    }

    #[test]
    fn same_inputs_same_digests() {
        let a = build(&plugin(), &provenance()).unwrap();
        let b = build(&plugin(), &provenance()).unwrap();
        for (a, b) in a.iter().zip(&b) {
            assert_eq!(a.digest(), b.digest());
            assert_eq!(a.blobs, b.blobs);
        }
    }

    #[test]
    fn another_commit_gives_another_digest() {
        let mut later = provenance();
        later.revision = "f".repeat(40);
        later.created += 60;
        let a = build(&plugin(), &provenance()).unwrap();
        let b = build(&plugin(), &later).unwrap();
        for (a, b) in a.iter().zip(&b) {
            assert_ne!(a.digest(), b.digest());
        }
    }

    #[test]
    fn refuses_a_module_that_is_not_proxy_wasm() {
        let not_proxy = Plugin {
            wasm: b"\0asm\x01\0\0\0",
            ..plugin()
        };
        assert!(build(&not_proxy, &provenance()).is_err());
    }

    #[test]
    fn tags_name_the_variant() {
        assert_eq!(Variant::Compat.tag("0.1.0"), "0.1.0");
        assert_eq!(Variant::Oci.tag("0.1.0"), "0.1.0-oci");
    }
}
