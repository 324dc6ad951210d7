//! Image manifests: building the one we push for a classic-store image, and
//! reading the ones a containerd-store export carries (index -> platform).
//! Pure functions over bytes; serialisation uses oci-client's manifest types.

use oci_client::manifest::{OciDescriptor, OciImageManifest};
use sha2::{Digest, Sha256};

pub const DOCKER_MANIFEST: &str = oci_client::manifest::IMAGE_MANIFEST_MEDIA_TYPE;
pub const DOCKER_MANIFEST_LIST: &str = oci_client::manifest::IMAGE_MANIFEST_LIST_MEDIA_TYPE;
pub const DOCKER_CONFIG: &str = oci_client::manifest::IMAGE_DOCKER_CONFIG_MEDIA_TYPE;
pub const DOCKER_LAYER_GZIP: &str = oci_client::manifest::IMAGE_DOCKER_LAYER_GZIP_MEDIA_TYPE;
pub const OCI_MANIFEST: &str = oci_client::manifest::OCI_IMAGE_MEDIA_TYPE;
pub const OCI_CONFIG: &str = oci_client::manifest::IMAGE_CONFIG_MEDIA_TYPE;
/// Not among oci-client's constants; from the OCI image spec (media-types.md).
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const OCI_INDEX: &str = oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE;

/// A blob as a manifest refers to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobDescriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// Manifest bytes exactly as they will be sent, with their digest.
#[derive(Debug, Clone)]
pub struct ManifestBytes {
    pub media_type: String,
    pub bytes: Vec<u8>,
    pub digest: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("the image's manifest {digest} is not valid JSON: {detail}")]
    Invalid { digest: String, detail: String },
    #[error("the image has no manifest for platform {wanted}; it has {available}")]
    NoSuchPlatform { wanted: String, available: String },
    #[error("platform {value:?} is not os/arch[/variant]")]
    BadPlatform { value: String },
}

impl ManifestError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ManifestError::NoSuchPlatform { .. } => {
                Some("choose one of the listed platforms with --platform".to_owned())
            }
            ManifestError::BadPlatform { .. } => {
                Some("for example --platform linux/arm64/v8".to_owned())
            }
            ManifestError::Invalid { .. } => None,
        }
    }
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A Docker v2 schema 2 manifest, as `docker push` writes for the classic
/// store: every registry and runtime reads it. The config blob is the local
/// config byte for byte, so the pushed image ID equals the local one.
pub fn docker_manifest(config: &BlobDescriptor, layers: &[BlobDescriptor]) -> ManifestBytes {
    image_manifest(DOCKER_MANIFEST, config, layers)
}

/// An OCI image manifest, needed for zstd layers (Docker schema 2 has no
/// zstd media type). The config bytes are the same as for `docker_manifest`:
/// only the descriptor's media type differs, so the image ID stays.
pub fn oci_manifest(config: &BlobDescriptor, layers: &[BlobDescriptor]) -> ManifestBytes {
    image_manifest(OCI_MANIFEST, config, layers)
}

fn image_manifest(
    media_type: &str,
    config: &BlobDescriptor,
    layers: &[BlobDescriptor],
) -> ManifestBytes {
    let descriptor = |blob: &BlobDescriptor| OciDescriptor {
        media_type: blob.media_type.clone(),
        digest: blob.digest.clone(),
        size: blob.size as i64,
        urls: None,
        annotations: None,
        artifact_type: None,
    };
    let manifest = OciImageManifest {
        schema_version: 2,
        media_type: Some(media_type.to_owned()),
        config: descriptor(config),
        layers: layers.iter().map(descriptor).collect(),
        subject: None,
        artifact_type: None,
        annotations: None,
    };
    let bytes = serde_json::to_vec(&manifest).expect("a manifest always serialises");
    ManifestBytes {
        media_type: media_type.to_owned(),
        digest: sha256_digest(&bytes),
        bytes,
    }
}

/// `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn parse(value: &str) -> Result<Platform, ManifestError> {
        let parts: Vec<&str> = value.split('/').collect();
        let bad = || ManifestError::BadPlatform {
            value: value.to_owned(),
        };
        if parts.iter().any(|part| part.is_empty()) {
            return Err(bad());
        }
        match parts.as_slice() {
            [os, architecture] => Ok(Platform {
                os: os.to_string(),
                architecture: architecture.to_string(),
                variant: None,
            }),
            [os, architecture, variant] => Ok(Platform {
                os: os.to_string(),
                architecture: architecture.to_string(),
                variant: Some(variant.to_string()),
            }),
            _ => Err(bad()),
        }
    }

    /// Equal os and architecture; the variant only counts when both name one.
    pub fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && match (&self.variant, &other.variant) {
                (Some(mine), Some(theirs)) => mine == theirs,
                _ => true,
            }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(formatter, "/{variant}")?;
        }
        Ok(())
    }
}

/// What a JSON blob of an export turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Document {
    /// An image index or manifest list: its platform manifests.
    Index(Vec<(Platform, BlobDescriptor)>),
    /// An image manifest: its config and layers.
    Manifest {
        media_type: String,
        config: BlobDescriptor,
        layers: Vec<BlobDescriptor>,
    },
    Other,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDocument {
    media_type: Option<String>,
    manifests: Option<Vec<RawDescriptor>>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: String,
    digest: String,
    size: u64,
    platform: Option<RawPlatform>,
}

#[derive(serde::Deserialize)]
struct RawPlatform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

impl From<&RawDescriptor> for BlobDescriptor {
    fn from(raw: &RawDescriptor) -> Self {
        BlobDescriptor {
            media_type: raw.media_type.clone(),
            digest: raw.digest.clone(),
            size: raw.size,
        }
    }
}

/// Classifies a JSON document found in an export.
pub fn read_document(digest: &str, bytes: &[u8]) -> Result<Document, ManifestError> {
    let raw: RawDocument =
        serde_json::from_slice(bytes).map_err(|error| ManifestError::Invalid {
            digest: digest.to_owned(),
            detail: error.to_string(),
        })?;
    if let Some(manifests) = raw.manifests {
        let entries = manifests
            .iter()
            .filter_map(|entry| {
                let platform = entry.platform.as_ref()?;
                Some((
                    Platform {
                        os: platform.os.clone(),
                        architecture: platform.architecture.clone(),
                        variant: platform
                            .variant
                            .clone()
                            .filter(|variant| !variant.is_empty()),
                    },
                    BlobDescriptor::from(entry),
                ))
            })
            .collect();
        return Ok(Document::Index(entries));
    }
    match (raw.config, raw.layers) {
        (Some(config), Some(layers)) => Ok(Document::Manifest {
            media_type: raw.media_type.unwrap_or_else(|| OCI_MANIFEST.to_owned()),
            config: BlobDescriptor::from(&config),
            layers: layers.iter().map(BlobDescriptor::from).collect(),
        }),
        _ => Ok(Document::Other),
    }
}

/// Picks the manifest for `wanted` from an index's entries.
pub fn select_platform<'a>(
    entries: &'a [(Platform, BlobDescriptor)],
    wanted: &Platform,
) -> Result<&'a BlobDescriptor, ManifestError> {
    entries
        .iter()
        .find(|(platform, _)| platform.matches(wanted))
        .map(|(_, descriptor)| descriptor)
        .ok_or_else(|| ManifestError::NoSuchPlatform {
            wanted: wanted.to_string(),
            available: entries
                .iter()
                .map(|(platform, _)| platform.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(media_type: &str, digest: &str, size: u64) -> BlobDescriptor {
        BlobDescriptor {
            media_type: media_type.into(),
            digest: digest.into(),
            size,
        }
    }

    #[test]
    fn docker_manifest_is_schema2_and_digest_covers_the_bytes() {
        let config = blob(DOCKER_CONFIG, "sha256:aa", 1469);
        let layers = [
            blob(DOCKER_LAYER_GZIP, "sha256:bb", 10),
            blob(DOCKER_LAYER_GZIP, "sha256:cc", 20),
        ];
        let manifest = docker_manifest(&config, &layers);
        let value: serde_json::Value = serde_json::from_slice(&manifest.bytes).unwrap();
        assert_eq!(value["schemaVersion"], 2);
        assert_eq!(value["mediaType"], DOCKER_MANIFEST);
        assert_eq!(value["config"]["digest"], "sha256:aa");
        assert_eq!(value["config"]["size"], 1469);
        assert_eq!(value["layers"][1]["mediaType"], DOCKER_LAYER_GZIP);
        assert_eq!(value["layers"].as_array().unwrap().len(), 2);
        assert_eq!(manifest.digest, sha256_digest(&manifest.bytes));
        assert!(value.get("subject").is_none() && value.get("annotations").is_none());
    }

    #[test]
    fn oci_manifest_carries_oci_media_types() {
        let config = blob(OCI_CONFIG, "sha256:aa", 1469);
        let layers = [blob(OCI_LAYER_ZSTD, "sha256:bb", 10)];
        let manifest = oci_manifest(&config, &layers);
        let value: serde_json::Value = serde_json::from_slice(&manifest.bytes).unwrap();
        assert_eq!(manifest.media_type, OCI_MANIFEST);
        assert_eq!(value["schemaVersion"], 2);
        assert_eq!(value["mediaType"], OCI_MANIFEST);
        assert_eq!(
            value["config"]["mediaType"],
            "application/vnd.oci.image.config.v1+json"
        );
        assert_eq!(
            value["layers"][0]["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
        assert_eq!(manifest.digest, sha256_digest(&manifest.bytes));
    }

    #[test]
    fn platforms_parse_and_match() {
        let arm = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(arm.to_string(), "linux/arm64/v8");
        assert!(Platform::parse("linux/arm64").unwrap().matches(&arm));
        assert!(!Platform::parse("linux/arm64/v9").unwrap().matches(&arm));
        assert!(!Platform::parse("linux/amd64").unwrap().matches(&arm));
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", ""] {
            assert!(Platform::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reads_indexes_and_manifests() {
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:m1","size":100,"platform":{"os":"linux","architecture":"amd64"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:m2","size":101,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:att","size":50,"annotations":{"vnd.docker.reference.type":"attestation-manifest"}}]}"#;
        let Document::Index(entries) = read_document("sha256:i", index).unwrap() else {
            panic!("not an index")
        };
        assert_eq!(
            entries.len(),
            2,
            "entries without a platform are not images"
        );
        let chosen = select_platform(&entries, &Platform::parse("linux/arm64").unwrap()).unwrap();
        assert_eq!(chosen.digest, "sha256:m2");
        let error =
            select_platform(&entries, &Platform::parse("windows/amd64").unwrap()).unwrap_err();
        assert!(
            error.to_string().contains("linux/amd64, linux/arm64/v8"),
            "{error}"
        );

        let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:c","size":5},
            "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:l","size":7}]}"#;
        let Document::Manifest {
            config,
            layers,
            media_type,
        } = read_document("sha256:m", manifest).unwrap()
        else {
            panic!("not a manifest")
        };
        assert_eq!(media_type, OCI_MANIFEST);
        assert_eq!(config.digest, "sha256:c");
        assert_eq!(
            layers,
            vec![blob(
                "application/vnd.oci.image.layer.v1.tar+gzip",
                "sha256:l",
                7
            )]
        );
        assert_eq!(
            read_document("sha256:x", br#"{"architecture":"amd64"}"#).unwrap(),
            Document::Other
        );
        assert!(read_document("sha256:x", b"not json").is_err());
    }
}
