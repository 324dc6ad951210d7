//! The push, top to bottom: find the image in the daemon, settle auth with the
//! registry, skip what the registry already has, stream the export through
//! compression into uploads, and write the manifest last, so an interrupted or
//! failed push never leaves a tag pointing at a partial image.

use std::collections::HashMap;

mod again;
mod known;
mod stored;
mod uploads;

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::cache::{CachedLayer, CachedManifest, LayerCache};
use crate::compress::Compression;
use crate::config::PushConfig;
use crate::daemon::{Daemon, ImageInfo};
use crate::error::Error;
use crate::export::{self, ExportPlan, ExportResult};
use crate::manifest::{self, BlobDescriptor, ManifestBytes, Platform};
use crate::output::{short_digest, LayerStatus, Reporter};
use crate::registry::{Registry, RegistryError};
use known::Known;
use uploads::export_and_upload;

/// A finished push.
#[derive(Debug, Clone, Default)]
pub struct PushOutcome {
    /// `host/ns/name:tag@sha256:...`
    pub pinned: String,
    pub digest: String,
    pub media_type: String,
    /// Bytes of the manifest document `digest` names.
    pub manifest_size: u64,
    /// host[:port] of the registry.
    pub registry: String,
    /// The repository inside the registry, e.g. "giteaadmin/myapp".
    pub repository: String,
    /// None when pushed by digest.
    pub tag: Option<String>,
    pub layers: Vec<LayerOutcome>,
    /// False when every blob was already in the registry and nothing was exported.
    pub exported: bool,
}

#[derive(Debug, Clone)]
pub struct LayerOutcome {
    pub digest: String,
    pub size: u64,
    pub status: LayerStatus,
}

/// Where the push leaves its registry connection, so an interruption can
/// cancel the upload sessions it opened.
pub type RegistrySlot = std::sync::OnceLock<Arc<Registry>>;

pub async fn push(
    config: &PushConfig,
    reporter: Arc<Reporter>,
    registry_slot: &RegistrySlot,
) -> Result<PushOutcome, Error> {
    let daemon = Daemon::connect(config.daemon_timeout).await?;
    let image = daemon
        .inspect(&config.image.to_string(), &config.image.daemon_candidates())
        .await?;
    reporter.info(&format!(
        "Pushing {} ({}) from {} to {}",
        image.name,
        short_digest(&image.id),
        daemon.endpoint().endpoint,
        config.destination
    ));
    reporter.layer_count(image.diff_ids.len());
    let containerd_store = is_containerd_store(&image);
    if !containerd_store {
        check_platform(&image, config.platform.as_ref())?;
    }
    let mut registry_config = config.registry.clone();
    let notifier = Arc::clone(&reporter);
    registry_config.on_retry = Some(crate::registry::RetryNotifier(Arc::new(
        move |text: &str| notifier.warn(text),
    )));
    let registry = Arc::new(Registry::connect(registry_config).await?);
    let _ = registry_slot.set(Arc::clone(&registry));
    let mut cache = open_cache(config, &registry.host(), &reporter);
    let outcome = if containerd_store {
        stored::push_as_stored(config, &daemon, &image, &registry, &reporter).await?
    } else {
        let variant = manifest_variant(config);
        let again =
            again::push_again(config, &image, &registry, &mut cache, variant, &reporter).await?;
        match again {
            Some(outcome) => outcome,
            None => {
                let media_types = MediaTypes::of(config.compression);
                let known =
                    known::known_layers(&registry, &mut cache, &image, media_types.layer).await?;
                push_classic(
                    config, &daemon, &image, &registry, known, &mut cache, &reporter,
                )
                .await?
            }
        }
    };
    if let Err(error) = cache.save() {
        reporter.warn(&format!("could not save the layer cache: {error}"));
    }
    Ok(outcome)
}

/// The push settings that shape the classic manifest (the layers' compression):
/// a cached manifest is reused only by a push with the same variant.
fn manifest_variant(config: &PushConfig) -> &'static str {
    config.compression.name()
}

/// The containerd store reports the index (or manifest) digest as the image ID;
/// the classic store reports the config digest.
fn is_containerd_store(image: &ImageInfo) -> bool {
    image
        .descriptor
        .as_ref()
        .is_some_and(|descriptor| descriptor.digest == image.id)
}

fn check_platform(image: &ImageInfo, wanted: Option<&Platform>) -> Result<(), Error> {
    let native = export::native_platform(image);
    match wanted {
        Some(wanted) if !wanted.matches(&native) => {
            Err(Error::Manifest(manifest::ManifestError::NoSuchPlatform {
                wanted: wanted.to_string(),
                available: native.to_string(),
            }))
        }
        _ => Ok(()),
    }
}

fn open_cache(config: &PushConfig, registry_host: &str, reporter: &Reporter) -> LayerCache {
    let Some(directory) = &config.cache_directory else {
        return LayerCache::disabled();
    };
    let (cache, warning) = LayerCache::open(directory, registry_host);
    if let Some(warning) = warning {
        reporter.warn(&warning);
    }
    cache
}

/// The media types of a classic-store push in one compression.
struct MediaTypes {
    layer: &'static str,
    config: &'static str,
    build: fn(&BlobDescriptor, &[BlobDescriptor]) -> ManifestBytes,
}

impl MediaTypes {
    /// gzip: Docker schema 2, as `docker push` writes. zstd: OCI, the only
    /// manifest with a zstd layer type.
    fn of(compression: Compression) -> MediaTypes {
        match compression {
            Compression::Gzip => MediaTypes {
                layer: manifest::DOCKER_LAYER_GZIP,
                config: manifest::DOCKER_CONFIG,
                build: manifest::docker_manifest,
            },
            Compression::Zstd => MediaTypes {
                layer: manifest::OCI_LAYER_ZSTD,
                config: manifest::OCI_CONFIG,
                build: manifest::oci_manifest,
            },
        }
    }
}

/// Classic store: our own gzip (or zstd) layers and a Docker schema 2 (or OCI)
/// manifest around the local config, byte for byte.
async fn push_classic(
    config: &PushConfig,
    daemon: &Daemon,
    image: &ImageInfo,
    registry: &Arc<Registry>,
    known: Known,
    cache: &mut LayerCache,
    reporter: &Arc<Reporter>,
) -> Result<PushOutcome, Error> {
    let media_types = MediaTypes::of(config.compression);
    let mut config_size = registry.blob_size(&image.id).await?;
    if let (None, Some(from)) = (config_size, known.mounted_from.as_deref()) {
        config_size = known::mount_config(registry, &image.id, from).await?;
    }
    let present = &known.layers;
    let spare_sessions = Arc::new(Mutex::new(known.spare_sessions));
    let everything_present = image
        .diff_ids
        .iter()
        .all(|diff_id| present.contains_key(diff_id));
    let mut exported = None;
    if !(everything_present && config_size.is_some()) {
        let mut plan = ExportPlan {
            image: image.clone(),
            present: present
                .iter()
                .map(|(diff_id, (layer, _))| (diff_id.clone(), layer.uncompressed_size))
                .collect(),
            match_sizes: true,
            platform: None,
            stop_when_complete: true,
            need_config: config_size.is_none(),
        };
        exported = Some(
            export_in_passes(
                config,
                daemon,
                registry,
                &mut plan,
                reporter,
                &spare_sessions,
            )
            .await?,
        );
    }
    let mut layers = Vec::new();
    let mut outcomes = Vec::new();
    for diff_id in &image.diff_ids {
        let uploaded = exported
            .as_ref()
            .and_then(|result| result.layers.get(diff_id));
        let (descriptor, status, uncompressed_size) = match (uploaded, present.get(diff_id)) {
            (Some(layer), _) => (
                BlobDescriptor {
                    media_type: media_types.layer.to_owned(),
                    digest: layer.digest.clone(),
                    size: layer.size,
                },
                LayerStatus::Pushed,
                layer.uncompressed_size,
            ),
            (None, Some((cached, status))) => (
                BlobDescriptor {
                    media_type: cached.media_type.clone(),
                    digest: cached.digest.clone(),
                    size: cached.size,
                },
                *status,
                cached.uncompressed_size,
            ),
            (None, None) => {
                return Err(Error::Image {
                    image: image.name.clone(),
                    detail: format!("the daemon's export did not contain layer {diff_id}"),
                })
            }
        };
        if status != LayerStatus::Pushed {
            reporter.layer_done(short_digest(&descriptor.digest), status, descriptor.size);
        }
        cache.record(
            diff_id,
            CachedLayer {
                digest: descriptor.digest.clone(),
                size: descriptor.size,
                media_type: descriptor.media_type.clone(),
                uncompressed_size,
                repositories: Default::default(),
            },
            registry.repository(),
        );
        outcomes.push(LayerOutcome {
            digest: descriptor.digest.clone(),
            size: descriptor.size,
            status,
        });
        layers.push(descriptor);
    }
    let leftover: Vec<_> = spare_sessions
        .lock()
        .map(|mut spare| spare.drain(..).collect())
        .unwrap_or_default();
    for session in leftover {
        registry.cancel_upload(session).await;
    }
    let config_descriptor = upload_config(
        image,
        registry,
        config_size,
        exported.as_ref(),
        media_types.config,
    )
    .await?;
    let manifest = (media_types.build)(&config_descriptor, &layers);
    let digest = put_manifest(config, registry, &manifest).await?;
    if let Ok(text) = String::from_utf8(manifest.bytes.clone()) {
        cache.record_manifest(
            &image.id,
            registry.repository(),
            CachedManifest {
                digest: digest.clone(),
                media_type: manifest.media_type.clone(),
                manifest: text,
                variant: manifest_variant(config).to_owned(),
            },
        );
    }
    Ok(PushOutcome {
        pinned: config.destination.pinned(&digest),
        digest,
        manifest_size: manifest.bytes.len() as u64,
        registry: config.destination.registry().to_owned(),
        repository: config.destination.repository().to_owned(),
        tag: config.destination.tag().map(str::to_owned),
        media_type: manifest.media_type,
        layers: outcomes,
        exported: exported.is_some(),
    })
}

/// Most passes a push makes over the export: a lost upload session or a
/// wrong size guess needs another, which keeps what the earlier ones uploaded.
const EXPORT_PASSES: usize = 3;

async fn export_in_passes(
    config: &PushConfig,
    daemon: &Daemon,
    registry: &Arc<Registry>,
    plan: &mut ExportPlan,
    reporter: &Arc<Reporter>,
    spare_sessions: &Arc<Mutex<Vec<crate::registry::UploadSession>>>,
) -> Result<ExportResult, Error> {
    let mut carried: HashMap<String, export::UploadedLayer> = HashMap::new();
    for pass in 1..=EXPORT_PASSES {
        let last = pass == EXPORT_PASSES;
        for (diff_id, layer) in &carried {
            plan.present
                .insert(diff_id.clone(), layer.uncompressed_size);
        }
        match export_and_upload(config, daemon, registry, plan, reporter, spare_sessions).await {
            Ok(mut result) if result.missed.is_empty() || last => {
                result.layers.extend(carried);
                return Ok(result);
            }
            Ok(result) => {
                tracing::debug!(
                    "a layer matched a cached size but not its digest: exporting again"
                );
                plan.match_sizes = false;
                plan.present
                    .retain(|diff_id, _| result.skipped.contains(diff_id));
                carried.extend(result.layers);
            }
            Err(failure)
                if !last
                    && matches!(
                        failure.error,
                        Error::Registry(RegistryError::SessionLost { .. })
                    ) =>
            {
                reporter.warn(&format!(
                    "{}; exporting the image again (pass {} of {EXPORT_PASSES}; {} layer(s) already uploaded are kept)",
                    failure.error.render(),
                    pass + 1,
                    carried.len() + failure.completed.len()
                ));
                carried.extend(failure.completed);
            }
            Err(failure) => return Err(failure.error),
        }
    }
    unreachable!("the last pass returns")
}

async fn upload_config(
    image: &ImageInfo,
    registry: &Registry,
    size_in_registry: Option<u64>,
    exported: Option<&ExportResult>,
    media_type: &str,
) -> Result<BlobDescriptor, Error> {
    let descriptor = |size| BlobDescriptor {
        media_type: media_type.to_owned(),
        digest: image.id.clone(),
        size,
    };
    if let Some(size) = size_in_registry {
        return Ok(descriptor(size));
    }
    let bytes = exported
        .and_then(|result| result.config.clone())
        .ok_or_else(|| Error::Image {
            image: image.name.clone(),
            detail: format!(
                "the daemon's export did not contain the image config {}",
                image.id
            ),
        })?;
    if manifest::sha256_digest(&bytes) != image.id {
        return Err(Error::Image {
            image: image.name.clone(),
            detail: format!(
                "the exported config does not hash to the image ID {}",
                image.id
            ),
        });
    }
    let size = bytes.len() as u64;
    registry
        .upload_small_blob(&image.id, Bytes::from(bytes))
        .await?;
    Ok(descriptor(size))
}

pub(crate) async fn put_manifest(
    config: &PushConfig,
    registry: &Registry,
    manifest: &ManifestBytes,
) -> Result<String, Error> {
    Ok(registry
        .put_manifest(
            config.destination.manifest_reference(),
            &manifest.media_type,
            Bytes::from(manifest.bytes.clone()),
            &manifest.digest,
        )
        .await?)
}
