//! Talking to a registry, through `oci-client` (the ORAS project's Rust client): push a
//! layout's images byte for byte, pull manifests and blobs back.
//!
//! Plain HTTP is used for a loopback registry (`127.0.0.0/8`, `localhost`, `[::1]`) and when
//! asked for; HTTPS everywhere else. Credentials, when the registry wants them, come from
//! `REGISTRY_USERNAME` and `REGISTRY_PASSWORD`.

use anyhow::{bail, Context};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use crate::image::Variant;
use crate::layout::Layout;
use crate::manifest::digest_of;
use crate::media;

/// A registry and a repository prefix in it: `host[:port]/path`.
pub struct Registry {
    client: Client,
    auth: RegistryAuth,
    prefix: String,
}

/// What one push did: the reference and the digest the registry now serves for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pushed {
    pub reference: String,
    pub variant: Variant,
    pub digest: String,
}

impl Registry {
    /// `prefix` is `host[:port]/repo`; `plain_http` forces HTTP for a non-loopback host.
    pub fn new(prefix: &str, plain_http: bool) -> anyhow::Result<Self> {
        let prefix = prefix.trim_end_matches('/').to_owned();
        let Some((host, path)) = prefix.split_once('/') else {
            bail!("REGISTRY={prefix:?}: expected host[:port]/repo, e.g. 127.0.0.1:5000/portcullis");
        };
        if host.is_empty() || path.is_empty() {
            bail!("REGISTRY={prefix:?}: expected host[:port]/repo");
        }
        let protocol = if plain_http || is_loopback(host) {
            ClientProtocol::HttpsExcept(vec![host.to_owned()])
        } else {
            ClientProtocol::Https
        };
        let client = Client::new(ClientConfig {
            protocol,
            use_monolithic_push: true,
            connect_timeout: Some(std::time::Duration::from_secs(10)),
            read_timeout: Some(std::time::Duration::from_secs(60)),
            ..ClientConfig::default()
        });
        let auth = match (
            std::env::var("REGISTRY_USERNAME"),
            std::env::var("REGISTRY_PASSWORD"),
        ) {
            (Ok(user), Ok(password)) => RegistryAuth::Basic(user, password),
            _ => RegistryAuth::Anonymous,
        };
        Ok(Self {
            client,
            auth,
            prefix,
        })
    }

    /// `<prefix>/<image>:<tag>`.
    pub fn tagged(&self, image: &str, tag: &str) -> anyhow::Result<Reference> {
        parse(&format!("{}/{image}:{tag}", self.prefix))
    }

    /// `<prefix>/<image>@<digest>`.
    pub fn pinned(&self, image: &str, digest: &str) -> anyhow::Result<Reference> {
        parse(&format!("{}/{image}@{digest}", self.prefix))
    }

    /// Pushes every image of `layout` as `<prefix>/<image>`, the compat variant as `tag` and
    /// the oci one as `<tag>-oci`. Blobs the registry already has are not sent again. Each
    /// push is checked: the registry must serve the tag at the digest that was built.
    pub async fn push_layout(
        &self,
        layout: &Layout,
        image: &str,
        tag: &str,
    ) -> anyhow::Result<Vec<Pushed>> {
        let mut pushed = Vec::new();
        for entry in layout.entries()? {
            let reference = self.tagged(image, &entry.variant.tag(tag))?;
            self.client
                .auth(&reference, &self.auth, RegistryOperation::Push)
                .await
                .with_context(|| format!("{reference}: authenticating"))?;
            for blob in entry.manifest.blobs() {
                let exists = self
                    .client
                    .blob_exists(&reference, &blob.digest)
                    .await
                    .with_context(|| format!("{reference}: HEAD blob {}", blob.digest))?;
                if !exists {
                    self.client
                        .push_blob(&reference, layout.blob(&blob.digest)?, &blob.digest)
                        .await
                        .with_context(|| format!("{reference}: pushing blob {}", blob.digest))?;
                }
            }
            self.client
                .push_manifest_raw(
                    &reference,
                    entry.manifest_bytes.clone(),
                    http_header(media::IMAGE_MANIFEST)?,
                )
                .await
                .with_context(|| format!("{reference}: pushing the manifest"))?;
            let served = self
                .client
                .fetch_manifest_digest(&reference, &self.auth)
                .await
                .with_context(|| format!("{reference}: reading the digest back"))?;
            if served != entry.digest {
                bail!(
                    "{reference}: registry serves {served}, built {}",
                    entry.digest
                );
            }
            pushed.push(Pushed {
                reference: reference.whole(),
                variant: entry.variant,
                digest: served,
            });
        }
        Ok(pushed)
    }

    /// The manifest `reference` names, as the registry stores it, and its digest (checked).
    pub async fn pull_manifest(&self, reference: &Reference) -> anyhow::Result<(Vec<u8>, String)> {
        let (bytes, digest) = self
            .client
            .pull_manifest_raw(reference, &self.auth, &[media::IMAGE_MANIFEST])
            .await
            .with_context(|| format!("{reference}: pulling the manifest"))?;
        if digest_of(&bytes) != digest {
            bail!("{reference}: manifest does not match its digest {digest}");
        }
        Ok((bytes.to_vec(), digest))
    }

    /// The blob `digest` of `reference`'s repository (checked against the digest).
    pub async fn pull_blob(&self, reference: &Reference, digest: &str) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.client
            .pull_blob(reference, digest, &mut out)
            .await
            .with_context(|| format!("{reference}: pulling blob {digest}"))?;
        Ok(out)
    }
}

/// A current-thread runtime for the client: the CLI and the tests are one task at a time.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn parse(reference: &str) -> anyhow::Result<Reference> {
    reference
        .parse()
        .with_context(|| format!("{reference:?}: not an image reference"))
}

fn http_header(value: &str) -> anyhow::Result<http::HeaderValue> {
    Ok(value.parse()?)
}

/// Whether `host` (with or without `:port`) is this machine.
fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_get_plain_http() {
        for host in [
            "127.0.0.1:5000",
            "127.1.2.3",
            "localhost:5000",
            "[::1]:5000",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["registry.example.com", "10.0.0.1:5000", "ghcr.io"] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn references_put_the_image_under_the_prefix() {
        let r = Registry::new("127.0.0.1:5000/portcullis/", false).unwrap();
        let tagged = r.tagged("portcullis-jwt", "0.1.0-oci").unwrap();
        assert_eq!(tagged.registry(), "127.0.0.1:5000");
        assert_eq!(tagged.repository(), "portcullis/portcullis-jwt");
        assert_eq!(tagged.tag(), Some("0.1.0-oci"));
        let digest = format!("sha256:{}", "a".repeat(64));
        let pinned = r.pinned("portcullis-jwt", &digest).unwrap();
        assert_eq!(pinned.digest(), Some(digest.as_str()));
    }

    #[test]
    fn a_registry_needs_a_repository() {
        assert!(Registry::new("127.0.0.1:5000", false).is_err());
        assert!(Registry::new("/portcullis", false).is_err());
    }
}
