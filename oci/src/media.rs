//! The media types and annotation keys a Wasm image is made of, each named once.
//!
//! The Wasm ones come from the solo-io Wasm image specification (`spec/spec.md` for the *oci*
//! variant, `spec/spec-compat.md` for the *compat* one), which Istio and Envoy Gateway fetch.
//! They are not the CNCF "Wasm OCI artifact" types (`application/vnd.wasm.*`) that some
//! libraries also name: those fetchers do not read them.

/// An OCI image manifest: what every image we build is.
pub const IMAGE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The `index.json` of an OCI image layout.
pub const IMAGE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The config of the *compat* variant: a standard OCI image config, so docker, podman and
/// buildah handle the image like any other.
pub const IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// The single layer of the *compat* variant: a gzipped tar holding `plugin.wasm`.
pub const LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The runtime config of the *oci* variant (`type`, `abiVersions`, `config.root_ids`): the
/// manifest's config and the first of its two layers.
pub const WASM_CONFIG: &str = "application/vnd.module.wasm.config.v1+json";
/// The second layer of the *oci* variant: the Wasm module itself, uncompressed.
pub const WASM_CONTENT: &str = "application/vnd.module.wasm.content.layer.v1+wasm";

/// Required by spec-compat on a *compat* image whose layer is `LAYER_TAR_GZIP`.
pub const VARIANT: &str = "module.wasm.image/variant";

/// Where the source lives (the workspace's `repository`).
pub const SOURCE: &str = "org.opencontainers.image.source";
/// The workspace version.
pub const VERSION: &str = "org.opencontainers.image.version";
/// The git commit the image was built from.
pub const REVISION: &str = "org.opencontainers.image.revision";
/// The image's name on a manifest; a file name on an *oci*-variant layer, as `wasme` and
/// `oras` write it.
pub const TITLE: &str = "org.opencontainers.image.title";
/// What the filter does (its crate's `description`).
pub const DESCRIPTION: &str = "org.opencontainers.image.description";
/// When: the commit time, not the build time, so that two builds agree.
pub const CREATED: &str = "org.opencontainers.image.created";
/// The SPDX licence expression of the workspace.
pub const LICENSES: &str = "org.opencontainers.image.licenses";
/// The tag an `index.json` entry answers to in an OCI image layout.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The Wasm module's name inside the *compat* layer, read by every fetcher.
pub const PLUGIN_FILE: &str = "plugin.wasm";
/// The runtime config's name, inside the *compat* layer and as the *oci* config layer's title.
pub const RUNTIME_CONFIG_FILE: &str = "runtime-config.json";
/// The *oci* variant's content layer title, as in the spec's example.
pub const FILTER_FILE: &str = "filter.wasm";
