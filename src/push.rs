//! The push, top to bottom: find the image in the daemon, settle auth with the
//! registry, skip what the registry already has, stream the export through
//! compression into uploads, and write the manifest last, so an interrupted or
//! failed push never leaves a tag pointing at a partial image.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::cache::{CachedLayer, LayerCache};
use crate::compress::{BlockCompressor, CompressError};
use crate::config::PushConfig;
use crate::daemon::{Daemon, ImageInfo};
use crate::error::Error;
use crate::export::{self, BlobUploads, BlobWriter, ExportPlan, ExportResult};
use crate::manifest::{self, BlobDescriptor, Document, ManifestBytes, Platform};
use crate::output::{short_digest, LayerStatus, Reporter};
use crate::registry::{Registry, RegistryError};

/// A finished push.
#[derive(Debug, Clone)]
pub struct PushOutcome {
    /// `host/ns/name:tag@sha256:...`
    pub pinned: String,
    pub digest: String,
    pub media_type: String,
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
    let daemon = Daemon::connect().await?;
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
    let present = present_layers(&registry, &mut cache, &image).await?;
    let outcome = if containerd_store {
        push_as_stored(config, &daemon, &image, &registry, &reporter).await?
    } else {
        push_classic(
            config, &daemon, &image, &registry, &present, &mut cache, &reporter,
        )
        .await?
    };
    if let Err(error) = cache.save() {
        reporter.warn(&format!("could not save the layer cache: {error}"));
    }
    Ok(outcome)
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

/// Layers the cache says are in this repository, confirmed by HEAD: a stale
/// entry costs one request and is forgotten, never trusted.
async fn present_layers(
    registry: &Registry,
    cache: &mut LayerCache,
    image: &ImageInfo,
) -> Result<HashMap<String, CachedLayer>, Error> {
    let mut present = HashMap::new();
    for diff_id in &image.diff_ids {
        if present.contains_key(diff_id) {
            continue;
        }
        let Some(cached) = cache.lookup(diff_id).cloned() else {
            continue;
        };
        if !cached.repositories.contains(registry.repository()) {
            continue;
        }
        if registry.blob_size(&cached.digest).await? == Some(cached.size) {
            present.insert(diff_id.clone(), cached);
        } else {
            tracing::debug!("cache entry for {diff_id} is stale");
            cache.forget(diff_id, registry.repository());
        }
    }
    Ok(present)
}

/// Classic store: our own gzip layers and a Docker schema 2 manifest around the
/// local config, byte for byte.
async fn push_classic(
    config: &PushConfig,
    daemon: &Daemon,
    image: &ImageInfo,
    registry: &Arc<Registry>,
    present: &HashMap<String, CachedLayer>,
    cache: &mut LayerCache,
    reporter: &Arc<Reporter>,
) -> Result<PushOutcome, Error> {
    let config_size = registry.blob_size(&image.id).await?;
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
                .map(|(diff_id, layer)| (diff_id.clone(), layer.uncompressed_size))
                .collect(),
            match_sizes: true,
            platform: None,
        };
        let mut result = export_and_upload(config, daemon, registry, &plan, reporter).await?;
        if !result.missed.is_empty() {
            tracing::debug!("a layer matched a cached size but not its digest: exporting again");
            plan.match_sizes = false;
            plan.present
                .retain(|diff_id, _| result.skipped.contains(diff_id));
            let second = export_and_upload(config, daemon, registry, &plan, reporter).await?;
            result.layers.extend(second.layers);
            result.config = result.config.or(second.config);
        }
        exported = Some(result);
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
                    media_type: manifest::DOCKER_LAYER_GZIP.to_owned(),
                    digest: layer.digest.clone(),
                    size: layer.size,
                },
                LayerStatus::Pushed,
                layer.uncompressed_size,
            ),
            (None, Some(cached)) => (
                BlobDescriptor {
                    media_type: cached.media_type.clone(),
                    digest: cached.digest.clone(),
                    size: cached.size,
                },
                LayerStatus::Exists,
                cached.uncompressed_size,
            ),
            (None, None) => {
                return Err(Error::Image {
                    image: image.name.clone(),
                    detail: format!("the daemon's export did not contain layer {diff_id}"),
                })
            }
        };
        if status == LayerStatus::Exists {
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
    let config_descriptor = upload_config(image, registry, config_size, exported.as_ref()).await?;
    let manifest = manifest::docker_manifest(&config_descriptor, &layers);
    let digest = put_manifest(config, registry, &manifest).await?;
    Ok(PushOutcome {
        pinned: config.destination.pinned(&digest),
        digest,
        media_type: manifest.media_type,
        layers: outcomes,
        exported: exported.is_some(),
    })
}

async fn upload_config(
    image: &ImageInfo,
    registry: &Registry,
    size_in_registry: Option<u64>,
    exported: Option<&ExportResult>,
) -> Result<BlobDescriptor, Error> {
    let descriptor = |size| BlobDescriptor {
        media_type: manifest::DOCKER_CONFIG.to_owned(),
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

async fn put_manifest(
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

/// containerd store: blobs go as they are stored and the platform's original
/// manifest is pushed verbatim, so its digest is the one the daemon knows.
async fn push_as_stored(
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
    };
    let result = export_and_upload(config, daemon, registry, &plan, reporter).await?;
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

/// Runs the export walk on a blocking thread while uploads run on the runtime;
/// an upload's own error is reported in preference to the walk's "output closed".
async fn export_and_upload(
    config: &PushConfig,
    daemon: &Daemon,
    registry: &Arc<Registry>,
    plan: &ExportPlan,
    reporter: &Arc<Reporter>,
) -> Result<ExportResult, Error> {
    let reader = SyncIoBridge::new(StreamReader::new(daemon.export(&plan.image.name)));
    let mut uploads = UploadBridge {
        runtime: tokio::runtime::Handle::current(),
        registry: Arc::clone(registry),
        reporter: Arc::clone(reporter),
        tasks: Vec::new(),
    };
    let threads = config.compression_threads;
    let level = config.compression_level;
    let plan_copy = ExportPlan {
        image: plan.image.clone(),
        present: plan.present.clone(),
        match_sizes: plan.match_sizes,
        platform: plan.platform.clone(),
    };
    let (walked, uploads) = tokio::task::spawn_blocking(move || {
        let pool = BlockCompressor::new(threads, level);
        let walked = export::walk(reader, &plan_copy, &pool, &mut uploads);
        (walked, uploads)
    })
    .await
    .map_err(|error| Error::Image {
        image: plan.image.name.clone(),
        detail: format!("the export reader stopped: {error}"),
    })?;
    let mut upload_error = None;
    for task in uploads.tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                upload_error.get_or_insert(error);
            }
            Err(error) => {
                upload_error.get_or_insert(RegistryError::Protocol {
                    action: "uploading a layer".into(),
                    detail: error.to_string(),
                });
            }
        }
    }
    match (walked, upload_error) {
        (_, Some(error)) => Err(error.into()),
        (Err(source), None) => Err(Error::Export {
            image: plan.image.name.clone(),
            source,
        }),
        (Ok(result), None) => Ok(result),
    }
}

/// The walk's view of the registry: each opened blob becomes an upload task
/// fed through a small bounded channel, so memory stays flat.
struct UploadBridge {
    runtime: tokio::runtime::Handle,
    registry: Arc<Registry>,
    reporter: Arc<Reporter>,
    tasks: Vec<JoinHandle<Result<(), RegistryError>>>,
}

/// Compressed chunks buffered between compression and the HTTP body.
const CHANNEL_CHUNKS: usize = 8;

impl BlobUploads for UploadBridge {
    fn has_blob(&mut self, digest: &str) -> bool {
        matches!(
            self.runtime.block_on(self.registry.blob_size(digest)),
            Ok(Some(_))
        )
    }

    fn open(&mut self, label: &str) -> Box<dyn BlobWriter> {
        let (sender, receiver) = mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
        let (done, finished) = oneshot::channel();
        let label = short_digest(label).to_owned();
        self.reporter.layer_started(&label);
        let task = upload_stream(
            Arc::clone(&self.registry),
            receiver,
            finished,
            label,
            Arc::clone(&self.reporter),
        );
        self.tasks.push(self.runtime.spawn(task));
        Box::new(ChannelWriter {
            sender: Some(sender),
            done: Some(done),
        })
    }
}

struct ChannelWriter {
    sender: Option<mpsc::Sender<Bytes>>,
    done: Option<oneshot::Sender<(String, u64)>>,
}

impl BlobWriter for ChannelWriter {
    fn write(&mut self, chunk: Vec<u8>) -> Result<(), CompressError> {
        let sender = self.sender.as_ref().ok_or(CompressError::OutputClosed)?;
        sender
            .blocking_send(Bytes::from(chunk))
            .map_err(|_| CompressError::OutputClosed)
    }

    fn finish(mut self: Box<Self>, digest: String, size: u64) {
        // Closing the channel ends the request body; then the digest follows.
        self.sender.take();
        if let Some(done) = self.done.take() {
            let _ = done.send((digest, size));
        }
    }
}

async fn upload_stream(
    registry: Arc<Registry>,
    mut receiver: mpsc::Receiver<Bytes>,
    finished: oneshot::Receiver<(String, u64)>,
    label: String,
    reporter: Arc<Reporter>,
) -> Result<(), RegistryError> {
    let action = format!(
        "uploading layer {label} to {}/{}",
        registry.host(),
        registry.repository()
    );
    let chunk_size = registry.chunk_size();
    let mut session = registry.start_upload().await?;
    // Gather compressed members into chunks of at most chunk_size; one chunk
    // is held at a time so a failed PATCH can resume from the registry's offset.
    let mut chunk = bytes::BytesMut::new();
    loop {
        let next = receiver.recv().await;
        let at_end = next.is_none();
        if let Some(bytes) = next {
            let mut bytes = bytes;
            while !bytes.is_empty() {
                let room = chunk_size - chunk.len();
                let taken = bytes.split_to(room.min(bytes.len()));
                chunk.extend_from_slice(&taken);
                if chunk.len() == chunk_size {
                    registry
                        .append(&mut session, chunk.split().freeze(), &action)
                        .await?;
                }
            }
        }
        if at_end {
            break;
        }
    }
    if !chunk.is_empty() {
        registry
            .append(&mut session, chunk.split().freeze(), &action)
            .await?;
    }
    match finished.await {
        Ok((digest, size)) => {
            registry.finish_upload(session, &digest, size).await?;
            reporter.layer_done(short_digest(&digest), LayerStatus::Pushed, size);
            Ok(())
        }
        Err(_) => {
            // The walk gave up on this blob; it reports why. Leave nothing open.
            registry.cancel_upload(session).await;
            Ok(())
        }
    }
}
