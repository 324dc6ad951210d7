//! containerd store: blobs go as they are stored and the platform's original
//! manifest is pushed verbatim, so its digest is the one the daemon knows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::uploads::export_and_upload;
use super::{put_manifest, LayerOutcome, PushOutcome};
use crate::config::PushConfig;
use crate::daemon::{Daemon, ImageInfo};
use crate::error::Error;
use crate::export::{self, ExportPlan, ExportResult};
use crate::manifest::{self, BlobDescriptor, Document, ManifestBytes};
use crate::output::{short_digest, LayerStatus, Reporter};
use crate::registry::Registry;

/// containerd store: blobs go as they are stored and the platform's original
/// manifest is pushed verbatim, so its digest is the one the daemon knows.
pub async fn push_as_stored(
    config: &PushConfig,
    daemon: &Daemon,
    image: &ImageInfo,
    registry: &Arc<Registry>,
    reporter: &Arc<Reporter>,
) -> Result<PushOutcome, Error> {
    let plan = ExportPlan {
        image: image.clone(),
        present: HashMap::new(),
        match_sizes: false,
        platform: config.platform.clone(),
        stop_when_complete: false,
        need_config: false,
    };
    let spare_sessions = Arc::new(Mutex::new(Vec::new()));
    let result = export_and_upload(config, daemon, registry, &plan, reporter, &spare_sessions)
        .await
        .map_err(|failure| failure.error)?;
    let (manifest_digest, manifest_bytes, media_type, blob_config, layers) =
        resolve_stored_manifest(&plan, &result)?;
    if registry.blob_size(&blob_config.digest).await?.is_none() {
        let bytes = result
            .documents
            .get(&blob_config.digest)
            .cloned()
            .ok_or_else(|| Error::Image {
                image: image.name.clone(),
                detail: format!(
                    "the export did not contain the config {}",
                    blob_config.digest
                ),
            })?;
        registry
            .upload_small_blob(&blob_config.digest, Bytes::from(bytes))
            .await?;
    }
    let mut outcomes = Vec::new();
    for layer in &layers {
        let status = match result.passed_through.get(&layer.digest) {
            Some(size) if *size > 0 => LayerStatus::Pushed,
            _ if registry.blob_size(&layer.digest).await?.is_some() => LayerStatus::Exists,
            _ => {
                return Err(Error::Image {
                    image: image.name.clone(),
                    detail: format!("the export did not contain layer {}", layer.digest),
                })
            }
        };
        if status == LayerStatus::Exists {
            reporter.layer_done(short_digest(&layer.digest), status, layer.size);
        }
        outcomes.push(LayerOutcome {
            digest: layer.digest.clone(),
            size: layer.size,
            status,
        });
    }
    let manifest = ManifestBytes {
        media_type,
        bytes: manifest_bytes,
        digest: manifest_digest,
    };
    let digest = put_manifest(config, registry, &manifest).await?;
    Ok(PushOutcome {
        pinned: config.destination.pinned(&digest),
        digest,
        manifest_size: manifest.bytes.len() as u64,
        registry: config.destination.registry().to_owned(),
        repository: config.destination.repository().to_owned(),
        tag: config.destination.tag().map(str::to_owned),
        media_type: manifest.media_type,
        layers: outcomes,
        exported: true,
    })
}

type StoredManifest = (String, Vec<u8>, String, BlobDescriptor, Vec<BlobDescriptor>);

fn resolve_stored_manifest(
    plan: &ExportPlan,
    result: &ExportResult,
) -> Result<StoredManifest, Error> {
    let image = &plan.image;
    let missing = |what: &str| Error::Image {
        image: image.name.clone(),
        detail: format!("the export did not contain {what}"),
    };
    let root = image
        .descriptor
        .as_ref()
        .map(|descriptor| descriptor.digest.clone())
        .unwrap_or_default();
    let mut digest = root;
    for _ in 0..3 {
        let bytes = result
            .documents
            .get(&digest)
            .ok_or_else(|| missing(&format!("the manifest {digest}")))?;
        match manifest::read_document(&digest, bytes)? {
            Document::Index(entries) => {
                let wanted = plan
                    .platform
                    .clone()
                    .unwrap_or_else(|| export::native_platform(image));
                digest = manifest::select_platform(&entries, &wanted)?.digest.clone();
            }
            Document::Manifest {
                media_type,
                config,
                layers,
            } => {
                return Ok((digest, bytes.clone(), media_type, config, layers));
            }
            Document::Other => break,
        }
    }
    Err(missing("an image manifest"))
}
