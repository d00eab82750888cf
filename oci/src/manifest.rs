//! The JSON documents of an image: descriptors, manifests, the layout index, the OCI image
//! config and the Wasm runtime config.
//!
//! Fields serialise in declaration order and annotations are a `BTreeMap`, so the same values
//! always give the same bytes, and so the same digest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::media;

/// `sha256:<hex>` of some bytes: how every blob and manifest is named.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A content descriptor: what a manifest or index says about a blob it points to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// Describes `bytes` as a blob of `media_type`.
    pub fn of(media_type: &str, bytes: &[u8]) -> Self {
        Self {
            media_type: media_type.to_owned(),
            digest: digest_of(bytes),
            size: bytes.len() as u64,
            annotations: BTreeMap::new(),
        }
    }

    /// The same descriptor with one more annotation.
    pub fn annotated(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_owned(), value.to_owned());
        self
    }
}

/// An OCI image manifest (`application/vnd.oci.image.manifest.v1+json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ImageManifest {
    /// A schema-2 OCI image manifest of `config` and `layers`.
    pub fn new(
        config: Descriptor,
        layers: Vec<Descriptor>,
        annotations: BTreeMap<String, String>,
    ) -> Self {
        Self {
            schema_version: 2,
            media_type: media::IMAGE_MANIFEST.to_owned(),
            config,
            layers,
            annotations,
        }
    }

    /// The config and every layer, each once, in manifest order: what a push uploads.
    pub fn blobs(&self) -> Vec<&Descriptor> {
        let mut out: Vec<&Descriptor> = Vec::with_capacity(self.layers.len() + 1);
        for d in std::iter::once(&self.config).chain(&self.layers) {
            if !out.iter().any(|seen| seen.digest == d.digest) {
                out.push(d);
            }
        }
        out
    }
}

/// The `index.json` of an OCI image layout (`application/vnd.oci.image.index.v1+json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    pub schema_version: u32,
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
}

/// The *compat* variant's config: a minimal OCI image config. The platform says what the
/// module was built for (`wasm32-wasip1`), in the GOOS/GOARCH words the image spec uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub created: String,
    pub architecture: String,
    pub os: String,
    pub rootfs: RootFs,
}

/// The layers of an [`ImageConfig`], by the digest of their uncompressed tar.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

/// The Wasm runtime config (`application/vnd.module.wasm.config.v1+json`), with the property
/// names of the spec's table: `type`, `abiVersions`, `config`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuntimeConfig {
    /// `envoy_proxy` for every proxy-wasm filter.
    #[serde(rename = "type")]
    pub kind: String,
    /// The proxy-wasm ABI versions the module exports, e.g. `v0.2.1`.
    pub abi_versions: Vec<String>,
    pub config: EnvoyConfig,
}

/// The Envoy part of a [`RuntimeConfig`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvoyConfig {
    /// The root ids the module answers to; ours is the filter's name, as in the demo config.
    pub root_ids: Vec<String>,
}

/// Serialises a document as compact JSON: the exact bytes that get hashed.
pub fn to_bytes<T: Serialize>(value: &T) -> anyhow::Result<Vec<u8>> {
    Ok(serde_json::to_vec(value)?)
}
