//! What the registry already has, before anything is exported: layers the
//! cache knows, confirmed by HEAD in this repository or mounted from another
//! repository of the same registry.

use std::collections::HashMap;

use futures_util::future::join_all;

use crate::cache::{CachedLayer, LayerCache};
use crate::daemon::ImageInfo;
use crate::error::Error;
use crate::output::LayerStatus;
use crate::registry::{Mount, Registry, UploadSession};

/// Layers already in the repository, and upload sessions a refused mount
/// opened (used for the next uploads instead of opening new ones).
pub struct Known {
    pub layers: HashMap<String, (CachedLayer, LayerStatus)>,
    pub spare_sessions: Vec<UploadSession>,
    /// A repository a layer was mounted from: it likely has the config too.
    pub mounted_from: Option<String>,
}

/// Confirms each cached layer with HEAD (concurrently); a stale entry costs one
/// request and is forgotten, never trusted. A layer the cache saw in another
/// repository is mounted. Only blobs of `media_type` (the chosen compression)
/// are considered.
pub async fn known_layers(
    registry: &Registry,
    cache: &mut LayerCache,
    image: &ImageInfo,
    media_type: &str,
) -> Result<Known, Error> {
    let mut unique: Vec<&String> = Vec::new();
    for diff_id in &image.diff_ids {
        if !unique.contains(&diff_id) {
            unique.push(diff_id);
        }
    }
    let candidates: Vec<(String, CachedLayer)> = unique
        .into_iter()
        .filter_map(|diff_id| Some((diff_id.clone(), cache.lookup(diff_id, media_type)?.clone())))
        .collect();
    let checks = candidates.iter().map(|(_, cached)| check(registry, cached));
    let results = join_all(checks).await;
    let mut known = Known {
        layers: HashMap::new(),
        spare_sessions: Vec::new(),
        mounted_from: None,
    };
    for ((diff_id, cached), result) in candidates.into_iter().zip(results) {
        match result? {
            Check::Present(status) => {
                if status == LayerStatus::Mounted {
                    known.mounted_from = cached.repositories.iter().next().cloned();
                }
                known.layers.insert(diff_id, (cached, status));
            }
            Check::Absent(session) => {
                tracing::debug!("cache entry for {diff_id} is stale");
                cache.forget(&diff_id, media_type, registry.repository());
                known.spare_sessions.extend(session);
            }
        }
    }
    Ok(known)
}

enum Check {
    Present(LayerStatus),
    Absent(Option<UploadSession>),
}

async fn check(registry: &Registry, cached: &CachedLayer) -> Result<Check, Error> {
    let here = cached.repositories.contains(registry.repository());
    if here {
        return Ok(
            if registry.blob_size(&cached.digest).await? == Some(cached.size) {
                Check::Present(LayerStatus::Exists)
            } else {
                Check::Absent(None)
            },
        );
    }
    let Some(from) = cached.repositories.iter().next() else {
        return Ok(Check::Absent(None));
    };
    match registry.mount_blob(&cached.digest, from).await? {
        Mount::Mounted => Ok(Check::Present(LayerStatus::Mounted)),
        Mount::Session(session) => Ok(Check::Absent(Some(session))),
    }
}

/// The image config, mounted from `from` when this repository lacks it: its
/// size when it is (now) here.
pub async fn mount_config(
    registry: &Registry,
    config_digest: &str,
    from: &str,
) -> Result<Option<u64>, Error> {
    match registry.mount_blob(config_digest, from).await? {
        Mount::Mounted => Ok(registry.blob_size(config_digest).await?),
        Mount::Session(session) => {
            registry.cancel_upload(session).await;
            Ok(None)
        }
    }
}
