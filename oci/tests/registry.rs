//! Every module (the four filters and the one-VM gateway) through a real registry (Debian's
//! `docker-registry` on loopback): pushed as `make push` pushes it, pulled back by tag and by digest, and read the way Istio's and Envoy
//! Gateway's fetchers read it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use portcullis_oci::archive::read_tar_gzip;
use portcullis_oci::layout::Layout;
use portcullis_oci::manifest::{ImageManifest, RuntimeConfig};
use portcullis_oci::media;
use portcullis_oci::registry::{runtime, Registry};
use portcullis_oci::{image_name, layout_dir, package, provenance, wasm_path, Variant};
use support::RegistryServer;

/// The module a fetcher would hand Envoy, found as Istio's and Envoy Gateway's image fetchers
/// find it: a `tar+gzip` last layer is the compat variant, read for a `plugin.wasm` entry;
/// otherwise exactly two layers, one of them the Wasm content layer, read as is.
fn wasm_as_fetchers_read_it(
    manifest: &ImageManifest,
    blobs: &BTreeMap<String, Vec<u8>>,
) -> Vec<u8> {
    let last = manifest.layers.last().expect("at least one layer");
    if last.media_type == media::LAYER_TAR_GZIP {
        let files = read_tar_gzip(&blobs[&last.digest]).expect("a gzipped tar");
        return files
            .into_iter()
            .find(|(name, _)| name.rsplit('/').next() == Some("plugin.wasm"))
            .expect("plugin.wasm in the layer")
            .1;
    }
    assert_eq!(
        manifest.layers.len(),
        2,
        "the oci variant has exactly two layers"
    );
    let content = manifest
        .layers
        .iter()
        .find(|l| l.media_type == media::WASM_CONTENT)
        .expect("a Wasm content layer");
    blobs[&content.digest].clone()
}

fn check_image(
    filter: &str,
    variant: Variant,
    manifest: &ImageManifest,
    blobs: &BTreeMap<String, Vec<u8>>,
) {
    let wasm = std::fs::read(wasm_path(&support::dist(), filter)).unwrap();
    assert!(
        wasm_as_fetchers_read_it(manifest, blobs) == wasm,
        "{filter} {variant:?}: the module pulled back differs from dist/"
    );

    assert_eq!(manifest.schema_version, 2);
    assert_eq!(manifest.media_type, media::IMAGE_MANIFEST);
    let layer_types: Vec<&str> = manifest
        .layers
        .iter()
        .map(|l| l.media_type.as_str())
        .collect();
    let runtime_config = match variant {
        Variant::Compat => {
            assert_eq!(manifest.config.media_type, media::IMAGE_CONFIG);
            assert_eq!(layer_types, [media::LAYER_TAR_GZIP]);
            assert_eq!(manifest.annotations[media::VARIANT], "compat");
            let files = read_tar_gzip(&blobs[&manifest.layers[0].digest]).unwrap();
            let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, ["plugin.wasm", "runtime-config.json"]);
            let config: serde_json::Value =
                serde_json::from_slice(&blobs[&manifest.config.digest]).unwrap();
            assert_eq!(config["architecture"], "wasm");
            assert_eq!(config["os"], "wasip1");
            files[1].1.clone()
        }
        Variant::Oci => {
            assert_eq!(manifest.config.media_type, media::WASM_CONFIG);
            assert_eq!(layer_types, [media::WASM_CONFIG, media::WASM_CONTENT]);
            assert!(!manifest.annotations.contains_key(media::VARIANT));
            assert_eq!(
                manifest.layers[0].annotations[media::TITLE],
                "runtime-config.json"
            );
            assert_eq!(manifest.layers[1].annotations[media::TITLE], "filter.wasm");
            blobs[&manifest.layers[0].digest].clone()
        }
    };
    let runtime_config: RuntimeConfig = serde_json::from_slice(&runtime_config).unwrap();
    assert_eq!(runtime_config.kind, "envoy_proxy");
    assert_eq!(runtime_config.abi_versions, ["v0.2.1"]);
    assert_eq!(runtime_config.config.root_ids, [filter]);

    let p = support::provenance();
    let description = provenance::crate_description(
        &support::root()
            .join("filters")
            .join(filter)
            .join("Cargo.toml"),
    )
    .unwrap();
    let a = &manifest.annotations;
    assert_eq!(a[media::TITLE], image_name(filter));
    assert_eq!(a[media::VERSION], p.version);
    assert_eq!(a[media::REVISION], p.revision);
    assert_eq!(a[media::SOURCE], p.source);
    assert_eq!(a[media::CREATED], p.created_rfc3339());
    assert_eq!(a[media::LICENSES], p.licenses);
    assert_eq!(a[media::DESCRIPTION], description);
}

#[test]
fn every_module_round_trips_through_a_real_registry() {
    let server = RegistryServer::start();
    let out = tempfile::tempdir().unwrap();
    let filters = support::modules();
    assert!(filters.iter().any(|m| m == support::GATEWAY), "{filters:?}");
    let p = support::provenance();
    package(&support::root(), &support::dist(), out.path(), &filters, &p).unwrap();
    let registry = Registry::new(&format!("{}/portcullis", server.address()), false).unwrap();
    let rt = runtime().unwrap();

    for filter in &filters {
        let image = image_name(filter);
        let layout = Layout::open(&layout_dir(out.path(), filter)).unwrap();
        let pushed = rt
            .block_on(registry.push_layout(&layout, &image, &p.version))
            .unwrap_or_else(|e| panic!("{filter}: {e:#}\n{}", server.log()));
        let entries = layout.entries().unwrap();
        assert_eq!(pushed.len(), 2, "{filter}: compat and oci");

        for (entry, pushed) in entries.iter().zip(&pushed) {
            assert_eq!(
                pushed.digest, entry.digest,
                "{filter}: the registry's digest is ours"
            );
            let tag = entry.variant.tag(&p.version);
            assert_eq!(
                pushed.reference,
                format!("{}/portcullis/{image}:{tag}", server.address())
            );

            for reference in [
                registry.tagged(&image, &tag).unwrap(),
                registry.pinned(&image, &entry.digest).unwrap(),
            ] {
                let (bytes, digest) = rt.block_on(registry.pull_manifest(&reference)).unwrap();
                assert_eq!(digest, entry.digest, "{reference}");
                assert!(
                    bytes == entry.manifest_bytes,
                    "{reference}: manifest bytes differ"
                );
                let manifest: ImageManifest = serde_json::from_slice(&bytes).unwrap();
                let mut blobs = BTreeMap::new();
                for d in manifest.blobs() {
                    let pulled = rt
                        .block_on(registry.pull_blob(&reference, &d.digest))
                        .unwrap();
                    assert_eq!(pulled.len() as u64, d.size, "{reference}: {}", d.digest);
                    assert!(
                        pulled == layout.blob(&d.digest).unwrap(),
                        "{reference}: {}",
                        d.digest
                    );
                    blobs.insert(d.digest.clone(), pulled);
                }
                check_image(filter, entry.variant, &manifest, &blobs);
            }
        }
    }
}

#[test]
fn another_tag_is_the_same_image() {
    let server = RegistryServer::start();
    let out = tempfile::tempdir().unwrap();
    let filter = support::filters().remove(0);
    let p = support::provenance();
    package(
        &support::root(),
        &support::dist(),
        out.path(),
        std::slice::from_ref(&filter),
        &p,
    )
    .unwrap();
    let layout = Layout::open(&layout_dir(out.path(), &filter)).unwrap();
    let registry = Registry::new(&format!("{}/portcullis", server.address()), false).unwrap();
    let rt = runtime().unwrap();

    let release = rt
        .block_on(registry.push_layout(&layout, &image_name(&filter), &p.version))
        .unwrap();
    let candidate = rt
        .block_on(registry.push_layout(&layout, &image_name(&filter), "rc1"))
        .unwrap();
    for (a, b) in release.iter().zip(&candidate) {
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.variant, b.variant);
    }
    assert!(candidate[0].reference.ends_with(":rc1"));
    assert!(candidate[1].reference.ends_with(":rc1-oci"));
}

/// `make oci` then `make push`, through the binary they run: the checksum files, and one line
/// per image naming its reference and the digest the registry serves.
#[test]
fn the_cli_builds_checksums_and_pushes_what_make_runs() {
    let server = RegistryServer::start();
    let work = tempfile::tempdir().unwrap();
    let dist = work.path().join("dist");
    std::fs::create_dir(&dist).unwrap();
    let filters = support::modules();
    for f in &filters {
        std::fs::copy(wasm_path(&support::dist(), f), wasm_path(&dist, f)).unwrap();
    }
    let bin = env!("CARGO_BIN_EXE_portcullis-oci");

    let build = Command::new(bin)
        .current_dir(support::root())
        .arg("build")
        .arg("--dist")
        .arg(&dist)
        .args(&filters)
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    for f in &filters {
        let sum =
            std::fs::read_to_string(dist.join(format!("portcullis-{f}.wasm.sha256"))).unwrap();
        let wasm = std::fs::read(wasm_path(&dist, f)).unwrap();
        let hex = portcullis_oci::manifest::digest_of(&wasm).replace("sha256:", "");
        assert_eq!(sum, format!("{hex}  portcullis-{f}.wasm\n"));
    }

    let registry = format!("{}/portcullis", server.address());
    let push = Command::new(bin)
        .current_dir(support::root())
        .args(["push", "--registry", &registry, "--tag", "e2e", "--dist"])
        .arg(&dist)
        .args(&filters)
        .output()
        .unwrap();
    assert!(
        push.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&push.stderr),
        server.log()
    );
    let stdout = String::from_utf8(push.stdout).unwrap();
    let mut expected = Vec::new();
    for f in &filters {
        let layout = Layout::open(&layout_dir(&dist.join("oci"), f)).unwrap();
        for entry in layout.entries().unwrap() {
            expected.push(format!(
                "{registry}/portcullis-{f}:{}@{}  ({})",
                entry.variant.tag("e2e"),
                entry.digest,
                entry.variant.name()
            ));
        }
    }
    assert_eq!(stdout.lines().collect::<Vec<_>>(), expected);
}

/// `make oci` and `make push` name every module, the gateway included, not only the filters.
#[test]
fn make_oci_and_push_take_every_module() {
    let makefile = std::fs::read_to_string(support::root().join("Makefile")).unwrap();
    let runs: Vec<&str> = makefile
        .lines()
        .filter(|l| l.contains("-p portcullis-oci --"))
        .collect();
    assert_eq!(runs.len(), 2, "the oci and push recipes: {runs:?}");
    for run in runs {
        assert!(run.trim_end().ends_with(" $(MODULES)"), "{run}");
    }
}

#[test]
fn a_registry_that_is_not_there_fails_the_push() {
    let out = tempfile::tempdir().unwrap();
    let filter = support::filters().remove(0);
    package(
        &support::root(),
        &support::dist(),
        out.path(),
        std::slice::from_ref(&filter),
        &support::provenance(),
    )
    .unwrap();
    let layout = Layout::open(&layout_dir(out.path(), &filter)).unwrap();
    // A port nothing listens on: bound, then released, on 127.0.0.2, where the other tests'
    // registries (on 127.0.0.1) cannot take it meanwhile.
    let port = std::net::TcpListener::bind("127.0.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let registry = Registry::new(&format!("127.0.0.2:{port}/portcullis"), false).unwrap();
    let err = runtime()
        .unwrap()
        .block_on(registry.push_layout(&layout, &image_name(&filter), "x"))
        .unwrap_err();
    assert!(
        format!("{err:#}").contains(&format!("127.0.0.2:{port}")),
        "{err:#}"
    );
}
