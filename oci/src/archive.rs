//! The *compat* layer: a gzipped tar whose bytes depend on nothing but its files and one
//! timestamp.
//!
//! Every header field that a plain `tar` would take from the machine is fixed: mode 0644,
//! uid/gid 0 with no user or group names, the given mtime, ustar format. Entries are written
//! sorted by name. gzip gets no file name, mtime 0 and OS byte 255 ("unknown"), at level 9.
//! The compressor is flate2's, pinned by `Cargo.lock`: another deflate implementation could
//! produce other (equally valid) bytes, so reproducibility holds for one lock file.

use std::io::Write;

use anyhow::Context;
use flate2::{Compression, GzBuilder};

/// A file to put in the archive.
pub struct Entry<'a> {
    pub name: &'a str,
    pub bytes: &'a [u8],
}

/// An uncompressed ustar archive of `entries`, sorted by name, every entry stamped `mtime`.
pub fn tar(entries: &[Entry<'_>], mtime: u64) -> anyhow::Result<Vec<u8>> {
    let mut sorted: Vec<&Entry<'_>> = entries.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(b.name));
    let mut builder = tar::Builder::new(Vec::new());
    for entry in sorted {
        let mut header = tar::Header::new_ustar();
        header
            .set_path(entry.name)
            .with_context(|| format!("tar entry name {:?}", entry.name))?;
        header.set_size(entry.bytes.len() as u64);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(mtime);
        header.set_cksum();
        builder.append(&header, entry.bytes)?;
    }
    Ok(builder.into_inner()?)
}

/// gzip of `bytes` with no name, no timestamp and a fixed OS byte.
pub fn gzip(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut encoder = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), Compression::best());
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?)
}

/// Reads every file of a gzipped tar back, in archive order: `(name, bytes)`.
pub fn read_tar_gzip(bytes: &[u8]) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut files = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let mut content = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut content)?;
        files.push((name, content));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<Entry<'static>> {
        vec![
            Entry {
                name: "runtime-config.json",
                bytes: b"{}",
            },
            Entry {
                name: "plugin.wasm",
                bytes: b"\0asm\x01\0\0\0",
            },
        ]
    }

    #[test]
    fn same_files_give_the_same_bytes() {
        let a = gzip(&tar(&entries(), 1_700_000_000).unwrap()).unwrap();
        let b = gzip(&tar(&entries(), 1_700_000_000).unwrap()).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn entries_are_sorted_whatever_order_they_come_in() {
        let mut reversed = entries();
        reversed.reverse();
        assert_eq!(tar(&entries(), 7).unwrap(), tar(&reversed, 7).unwrap());
        let names: Vec<String> = read_tar_gzip(&gzip(&tar(&entries(), 7).unwrap()).unwrap())
            .unwrap()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(names, ["plugin.wasm", "runtime-config.json"]);
    }

    #[test]
    fn headers_carry_nothing_from_the_machine() {
        let bytes = tar(&entries(), 1_700_000_000).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let h = entry.header();
            assert_eq!(h.mode().unwrap(), 0o644);
            assert_eq!(h.uid().unwrap(), 0);
            assert_eq!(h.gid().unwrap(), 0);
            assert_eq!(h.mtime().unwrap(), 1_700_000_000);
            assert_eq!(h.username().unwrap(), Some(""));
            assert_eq!(h.groupname().unwrap(), Some(""));
            assert!(h.as_ustar().is_some(), "ustar, not GNU, headers");
        }
    }

    #[test]
    fn the_mtime_is_the_only_time_in_the_archive() {
        let a = tar(&entries(), 1).unwrap();
        let b = tar(&entries(), 2).unwrap();
        assert_ne!(a, b, "the given mtime is recorded");
    }

    #[test]
    fn gzip_header_has_no_timestamp_name_or_host_os() {
        let gz = gzip(b"hello").unwrap();
        // RFC 1952: ID1 ID2 CM FLG MTIME(4) XFL OS
        assert_eq!(
            &gz[..4],
            &[0x1f, 0x8b, 8, 0],
            "deflate, no FNAME/FCOMMENT/FEXTRA"
        );
        assert_eq!(&gz[4..8], &[0, 0, 0, 0], "MTIME is zero");
        assert_eq!(gz[9], 255, "OS is 'unknown'");
    }

    #[test]
    fn round_trips_the_bytes() {
        let files = read_tar_gzip(&gzip(&tar(&entries(), 0).unwrap()).unwrap()).unwrap();
        assert_eq!(
            files[0],
            ("plugin.wasm".to_owned(), b"\0asm\x01\0\0\0".to_vec())
        );
        assert_eq!(files[1], ("runtime-config.json".to_owned(), b"{}".to_vec()));
    }
}
