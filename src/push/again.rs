//! An image pushed before to this repository: the cache holds the manifest it
//! got. One manifest HEAD tells whether the tag still points at it (nothing to
//! send); else, when the registry still has that manifest, one PUT of the same
//! bytes points the tag at it again. No blob is asked about and nothing is
//! exported. Anything else falls back to the full path: a stale entry only
//! costs a request or two.

use bytes::Bytes;
use reqwest::StatusCode;

use super::{LayerOutcome, PushOutcome};
use crate::cache::{CachedManifest, LayerCache};
use crate::config::PushConfig;
use crate::daemon::ImageInfo;
use crate::error::Error;
use crate::manifest;
use crate::output::{short_digest, LayerStatus, Reporter};
use crate::registry::{Registry, RegistryError};

/// The push done through the cached manifest, or `None` when the full path
/// has to run.
pub async fn push_again(
    config: &PushConfig,
    image: &ImageInfo,
    registry: &Registry,
    cache: &mut LayerCache,
    variant: &str,
    reporter: &Reporter,
) -> Result<Option<PushOutcome>, Error> {
    let repository = registry.repository();
    let Some(entry) = cache.manifest(&image.id, repository, variant).cloned() else {
        return Ok(None);
    };
    let layers = match cached_layers(&entry, image) {
        Ok(layers) => layers,
        Err(problem) => {
            let file = cache
                .path()
                .map(|path| path.display().to_string())
                .unwrap_or_default();
            reporter.warn(&format!(
                "ignoring the corrupt entry for image {} in {repository} of the layer cache {file}: {problem}",
                short_digest(&image.id)
            ));
            cache.forget_manifest(&image.id, repository);
            return Ok(None);
        }
    };
    let reference = config.destination.manifest_reference();
    let accept = accepted_types(&entry.media_type);
    let current = registry.manifest_digest(reference, &accept).await?;
    if current.as_deref() != Some(entry.digest.as_str()) {
        if reference == entry.digest {
            tracing::debug!("the cached manifest {} is gone", entry.digest);
            return Ok(None);
        }
        let stored = registry.manifest_digest(&entry.digest, &accept).await?;
        if stored.as_deref() != Some(entry.digest.as_str()) {
            tracing::debug!("the cached manifest {} is gone", entry.digest);
            return Ok(None);
        }
        let body = Bytes::from(entry.manifest.clone().into_bytes());
        match registry
            .put_manifest(reference, &entry.media_type, body, &entry.digest)
            .await
        {
            Ok(_) => {}
            // The registry refuses the manifest (a blob it names is gone, say):
            // the full path uploads what is missing.
            Err(RegistryError::Status { status, .. })
                if status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND =>
            {
                tracing::debug!("the registry refused the cached manifest ({status})");
                return Ok(None);
            }
            Err(error) => return Err(error.into()),
        }
    }
    let layers: Vec<LayerOutcome> = layers
        .into_iter()
        .map(|(digest, size)| {
            reporter.layer_done(short_digest(&digest), LayerStatus::Exists, size);
            LayerOutcome {
                digest,
                size,
                status: LayerStatus::Exists,
            }
        })
        .collect();
    Ok(Some(PushOutcome {
        pinned: config.destination.pinned(&entry.digest),
        digest: entry.digest.clone(),
        media_type: entry.media_type.clone(),
        manifest_size: entry.manifest.len() as u64,
        registry: config.destination.registry().to_owned(),
        repository: config.destination.repository().to_owned(),
        tag: config.destination.tag().map(str::to_owned),
        layers,
        exported: false,
    }))
}

/// The cached manifest's layers (digest, size), once the entry proves sound:
/// its bytes hash to its digest and describe this image.
fn cached_layers(entry: &CachedManifest, image: &ImageInfo) -> Result<Vec<(String, u64)>, String> {
    let actual = manifest::sha256_digest(entry.manifest.as_bytes());
    if actual != entry.digest {
        return Err(format!(
            "the manifest bytes hash to {actual}, not to the recorded {}",
            entry.digest
        ));
    }
    match manifest::read_document(&entry.digest, entry.manifest.as_bytes()) {
        Ok(manifest::Document::Manifest { config, layers, .. })
            if config.digest == image.id && layers.len() == image.diff_ids.len() =>
        {
            Ok(layers
                .into_iter()
                .map(|layer| (layer.digest, layer.size))
                .collect())
        }
        Ok(_) => Err("the manifest describes another image".to_owned()),
        Err(error) => Err(format!("the manifest is not valid: {error}")),
    }
}

/// The cached manifest's own type first, then every manifest type, so the
/// registry reports the true digest of whatever the tag points at.
fn accepted_types(media_type: &str) -> Vec<&str> {
    let mut types = vec![media_type];
    for other in [
        manifest::DOCKER_MANIFEST,
        manifest::OCI_MANIFEST,
        manifest::DOCKER_MANIFEST_LIST,
        manifest::OCI_INDEX,
    ] {
        if !types.contains(&other) {
            types.push(other);
        }
    }
    types
}
