//! The bridge between the export walk (a blocking thread) and the registry:
//! each blob the walk opens becomes an upload task fed through a small
//! bounded channel, gathered into PATCH chunks, so memory stays flat.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;

use crate::compress::{BlockCompressor, CompressError, BLOCK_SIZE};
use crate::config::PushConfig;
use crate::daemon::Daemon;
use crate::error::Error;
use crate::export::{
    self, BlobUploads, BlobWriter, ExportError, ExportPlan, ExportResult, UploadedLayer,
};
use crate::output::{short_digest, LayerProgress, Reporter};
use crate::registry::{Registry, RegistryError, UploadSession};

/// A failed pass, with the layers it uploaded in full (kept by the next pass).
pub struct PassError {
    pub error: Error,
    pub completed: HashMap<String, UploadedLayer>,
}

impl From<Error> for PassError {
    fn from(error: Error) -> Self {
        PassError {
            error,
            completed: HashMap::new(),
        }
    }
}

/// Runs the export walk on a blocking thread while uploads run on the runtime;
/// an upload's own error is reported in preference to the walk's "output closed".
pub async fn export_and_upload(
    config: &PushConfig,
    daemon: &Daemon,
    registry: &Arc<Registry>,
    plan: &ExportPlan,
    reporter: &Arc<Reporter>,
    spare_sessions: &Arc<Mutex<Vec<UploadSession>>>,
) -> Result<ExportResult, PassError> {
    let request = daemon.export(&plan.image.name);
    // Held until the walk ends; dropped early when the push is cancelled.
    let _abort = request.abort_on_drop();
    let mut uploads = UploadBridge {
        runtime: tokio::runtime::Handle::current(),
        registry: Arc::clone(registry),
        reporter: Arc::clone(reporter),
        tasks: Vec::new(),
        spare_sessions: Arc::clone(spare_sessions),
        permits: Arc::new(Semaphore::new(config.max_concurrent_uploads.max(1))),
    };
    let threads = config.compression_threads;
    let compression = config.compression;
    let level = config.compression_level;
    let plan_copy = plan.clone();
    let ((result, walked), uploads) = tokio::task::spawn_blocking(move || {
        let pool = BlockCompressor::new(threads, compression, level);
        let walked = match request.open() {
            Ok(reader) => export::walk(reader, &plan_copy, &pool, &mut uploads),
            Err(error) => (ExportResult::default(), Err(ExportError::Read(error))),
        };
        (walked, uploads)
    })
    .await
    .map_err(|error| Error::Image {
        image: plan.image.name.clone(),
        detail: format!("the export reader stopped: {error}"),
    })?;
    let mut upload_error = None;
    let mut finished = HashSet::new();
    for task in uploads.tasks {
        match task.await {
            Ok(Ok(Some(digest))) => {
                finished.insert(digest);
            }
            Ok(Ok(None)) => {}
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
    let error = match (walked, upload_error) {
        (_, Some(error)) => Error::from(error),
        (Err(source), None) => Error::Export {
            image: plan.image.name.clone(),
            source,
        },
        (Ok(()), None) => return Ok(result),
    };
    let completed = result
        .layers
        .into_iter()
        .filter(|(_, layer)| finished.contains(&layer.digest))
        .collect();
    Err(PassError { error, completed })
}

/// The walk's view of the registry: each opened blob becomes an upload task
/// fed through a small bounded channel, so memory stays flat.
struct UploadBridge {
    runtime: tokio::runtime::Handle,
    registry: Arc<Registry>,
    reporter: Arc<Reporter>,
    /// Each task ends with the digest it stored, or `None` when abandoned.
    tasks: Vec<JoinHandle<Result<Option<String>, RegistryError>>>,
    /// Sessions opened by refused mounts, used before opening new ones.
    spare_sessions: Arc<Mutex<Vec<UploadSession>>>,
    /// One per upload in flight (`--max-concurrent-uploads`): without a bound,
    /// every small layer the walk finishes leaves its buffered chunks behind
    /// when the registry is slower than compression, and memory grows with
    /// the number of layers.
    permits: Arc<Semaphore>,
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

    fn open(&mut self, label: &str, input_size: u64) -> Box<dyn BlobWriter> {
        // Waits (the walk's thread, not the runtime) for an earlier upload to end.
        let permit = self
            .runtime
            .block_on(Arc::clone(&self.permits).acquire_owned())
            .expect("the upload semaphore is never closed");
        let (sender, receiver) = mpsc::channel::<(Bytes, u64)>(CHANNEL_CHUNKS);
        let (done, finished) = oneshot::channel();
        let label = short_digest(label).to_owned();
        let progress = self.reporter.layer_started(input_size);
        let spare = self
            .spare_sessions
            .lock()
            .ok()
            .and_then(|mut spare| spare.pop());
        let task = upload_stream(
            Arc::clone(&self.registry),
            spare,
            receiver,
            finished,
            label,
            progress,
        );
        self.tasks.push(self.runtime.spawn(async move {
            let _permit = permit;
            task.await
        }));
        Box::new(ChannelWriter {
            sender: Some(sender),
            done: Some(done),
            input_left: input_size,
        })
    }
}

/// Sends each chunk with the bytes of input it stands for: every chunk is one
/// block of the archive entry (a gzip member or zstd frame of one block, or the
/// block itself).
struct ChannelWriter {
    sender: Option<mpsc::Sender<(Bytes, u64)>>,
    done: Option<oneshot::Sender<(String, u64)>>,
    input_left: u64,
}

impl BlobWriter for ChannelWriter {
    fn write(&mut self, chunk: Vec<u8>) -> Result<(), CompressError> {
        let sender = self.sender.as_ref().ok_or(CompressError::OutputClosed)?;
        let input = self.input_left.min(BLOCK_SIZE as u64);
        self.input_left -= input;
        sender
            .blocking_send((Bytes::from(chunk), input))
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
    spare: Option<UploadSession>,
    mut receiver: mpsc::Receiver<(Bytes, u64)>,
    finished: oneshot::Receiver<(String, u64)>,
    label: String,
    mut progress: LayerProgress,
) -> Result<Option<String>, RegistryError> {
    let action = format!(
        "uploading layer {label} to {}/{}",
        registry.host(),
        registry.repository()
    );
    let chunk_size = registry.chunk_size();
    let session = match spare {
        Some(session) => session,
        None => registry.start_upload().await?,
    };
    let mut patches = Patches {
        registry: Arc::clone(&registry),
        action,
        idle: Some(session),
        in_flight: None,
        spare: None,
    };
    // Gather compressed members into chunks of at most chunk_size. One chunk
    // is PATCHed while the next fills, so compression does not wait for the
    // registry; each is held until acknowledged, so a failed PATCH can resume
    // from the registry's offset.
    let mut chunk = bytes::BytesMut::new();
    loop {
        let next = receiver.recv().await;
        let at_end = next.is_none();
        if let Some((bytes, input)) = next {
            progress.read(input);
            let mut bytes = bytes;
            while !bytes.is_empty() {
                if chunk.capacity() == 0 {
                    chunk = patches.empty_chunk(chunk_size);
                }
                let room = chunk_size - chunk.len();
                let taken = bytes.split_to(room.min(bytes.len()));
                chunk.extend_from_slice(&taken);
                if chunk.len() == chunk_size {
                    let full = std::mem::take(&mut chunk);
                    patches.send(full.freeze(), &mut progress).await?;
                }
            }
        }
        if at_end {
            break;
        }
    }
    if !chunk.is_empty() {
        patches.send(chunk.freeze(), &mut progress).await?;
    }
    let session = patches.settle(&mut progress).await?;
    match finished.await {
        Ok((digest, size)) => {
            registry.finish_upload(session, &digest, size).await?;
            progress.pushed(&digest, size);
            Ok(Some(digest))
        }
        Err(_) => {
            // The walk gave up on this blob; it reports why. Leave nothing open.
            registry.cancel_upload(session).await;
            Ok(None)
        }
    }
}

/// A PATCH in flight: the session and the chunk come back with its answer.
type InFlight = JoinHandle<(UploadSession, Bytes, Result<u64, RegistryError>)>;

/// The PATCH requests of one upload session: at most one in flight, the
/// session travelling with it and coming back when it is answered.
struct Patches {
    registry: Arc<Registry>,
    action: String,
    idle: Option<UploadSession>,
    in_flight: Option<InFlight>,
    /// The buffer of the last acknowledged chunk, to fill again: a fresh
    /// chunk-sized allocation per PATCH let glibc's per-thread arenas hold
    /// several chunks' worth of freed memory.
    spare: Option<bytes::BytesMut>,
}

impl Patches {
    /// An empty buffer with room for one chunk.
    fn empty_chunk(&mut self, chunk_size: usize) -> bytes::BytesMut {
        match self.spare.take() {
            Some(mut chunk) if chunk.capacity() >= chunk_size => {
                chunk.clear();
                chunk
            }
            // One exact allocation per chunk: growing by doubling would hold
            // up to twice the chunk size.
            _ => bytes::BytesMut::with_capacity(chunk_size),
        }
    }

    /// Waits for the PATCH in flight, then sends `chunk` in the background.
    async fn send(
        &mut self,
        chunk: Bytes,
        progress: &mut LayerProgress,
    ) -> Result<(), RegistryError> {
        let mut session = self.settle(progress).await?;
        let registry = Arc::clone(&self.registry);
        let action = self.action.clone();
        self.in_flight = Some(tokio::spawn(async move {
            let length = chunk.len() as u64;
            let sent = registry.append(&mut session, chunk.clone(), &action).await;
            (session, chunk, sent.map(|()| length))
        }));
        Ok(())
    }

    /// Waits for the PATCH in flight, if any, and hands back the session.
    async fn settle(
        &mut self,
        progress: &mut LayerProgress,
    ) -> Result<UploadSession, RegistryError> {
        if let Some(in_flight) = self.in_flight.take() {
            let (session, chunk, sent) =
                in_flight.await.map_err(|error| RegistryError::Protocol {
                    action: self.action.clone(),
                    detail: format!("the upload task stopped: {error}"),
                })?;
            self.idle = Some(session);
            // Unique once the request is done with it; else a new one is made.
            self.spare = chunk.try_into_mut().ok();
            progress.sent(sent?);
        }
        Ok(self
            .idle
            .take()
            .expect("the session is idle once nothing is in flight"))
    }
}
