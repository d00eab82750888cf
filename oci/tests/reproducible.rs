//! Two builds of one commit are the same images, byte for byte.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use portcullis_oci::layout::Layout;
use portcullis_oci::{layout_dir, package};

/// Every file under `dir`, by relative path.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn building_twice_gives_the_same_digests_and_bytes() {
    let filters = support::modules();
    let p = support::provenance();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = package(&support::root(), &support::dist(), a.path(), &filters, &p).unwrap();
    let second = package(&support::root(), &support::dist(), b.path(), &filters, &p).unwrap();

    for (x, y) in first.iter().zip(&second) {
        assert_eq!(
            x.images, y.images,
            "{}: digests differ between builds",
            x.filter
        );
    }
    for f in &filters {
        let (da, db) = (layout_dir(a.path(), f), layout_dir(b.path(), f));
        assert_eq!(
            Layout::open(&da).unwrap().digests(),
            Layout::open(&db).unwrap().digests()
        );
        let (fa, fb) = (files(&da), files(&db));
        assert_eq!(
            fa.keys().collect::<Vec<_>>(),
            fb.keys().collect::<Vec<_>>(),
            "{f}"
        );
        for (name, bytes) in &fa {
            assert!(*bytes == fb[name], "{f}: {name} differs between builds");
        }
    }
}

#[test]
fn a_rebuild_replaces_the_layout_whole() {
    let filters = support::modules();
    let p = support::provenance();
    let out = tempfile::tempdir().unwrap();
    package(&support::root(), &support::dist(), out.path(), &filters, &p).unwrap();
    let stale = layout_dir(out.path(), &filters[0])
        .join("blobs/sha256")
        .join("0".repeat(64));
    std::fs::write(&stale, b"left over").unwrap();
    package(&support::root(), &support::dist(), out.path(), &filters, &p).unwrap();
    assert!(!stale.exists(), "no blob of an older build lingers");
}

#[test]
fn every_layout_blob_is_named_by_its_digest() {
    let filters = support::modules();
    let out = tempfile::tempdir().unwrap();
    package(
        &support::root(),
        &support::dist(),
        out.path(),
        &filters,
        &support::provenance(),
    )
    .unwrap();
    for f in &filters {
        let dir = layout_dir(out.path(), f);
        assert_eq!(
            std::fs::read_to_string(dir.join("oci-layout")).unwrap(),
            r#"{"imageLayoutVersion":"1.0.0"}"#
        );
        let layout = Layout::open(&dir).unwrap();
        assert_eq!(layout.index.media_type, portcullis_oci::media::IMAGE_INDEX);
        // 2 manifests, compat config + layer, oci config(=layer 0) + module.
        assert_eq!(files(&dir.join("blobs/sha256")).len(), 6, "{f}");
        for (name, bytes) in files(&dir.join("blobs/sha256")) {
            assert_eq!(
                portcullis_oci::manifest::digest_of(&bytes),
                format!("sha256:{name}")
            );
        }
    }
}
