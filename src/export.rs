//! Reading a `docker save` stream on the fly, in one pass, without spooling it.
//!
//! Three layouts exist (shared/notes/crates.md): Docker < 25 and Podman
//! (`<id>/layer.tar`, `<config>.json`, Podman also `<diffid>.tar`), Docker >= 25
//! with the classic store (OCI layout, `blobs/sha256/<diffID>` uncompressed) and
//! the containerd store (`blobs/sha256/<digest>` as stored, usually gzip). Blobs
//! come before `manifest.json`/`index.json`, so entries are recognised by name
//! and content as they pass, using what the daemon's inspect said.

use std::collections::{HashMap, HashSet};
use std::io::{Cursor, Read, Seek};

use sha2::{Digest, Sha256};

use crate::compress::{self, BlockCompressor, CompressError, BLOCK_SIZE};
use crate::daemon::ImageInfo;
use crate::legacy::LegacyLayers;
use crate::manifest::{self, Document};

/// Largest JSON document (config, manifest, index) kept in memory.
const MAX_DOCUMENT: u64 = 8 << 20;

/// Where compressed bytes go: implemented by the push over the registry.
pub trait BlobUploads {
    /// Whether the registry already holds a blob (for blobs named by digest).
    fn has_blob(&mut self, digest: &str) -> bool;
    /// Opens a streamed upload of one blob; `input_size` is the archive entry's
    /// size (uncompressed for a layer that is compressed on the way), for progress.
    fn open(&mut self, label: &str, input_size: u64) -> Box<dyn BlobWriter>;
}

pub trait BlobWriter {
    /// Err when the upload has stopped (its error is reported by the uploader).
    fn write(&mut self, chunk: Vec<u8>) -> Result<(), CompressError>;
    /// All bytes are written: close the upload under this digest.
    fn finish(self: Box<Self>, digest: String, size: u64);
}

/// What the walk should do, decided before the export started.
#[derive(Clone)]
pub struct ExportPlan {
    pub image: ImageInfo,
    /// diffID -> uncompressed size, for layers whose blobs the registry has.
    pub present: HashMap<String, u64>,
    /// Whether a legacy `layer.tar` whose size equals a present layer's may be
    /// hashed instead of compressed (its name does not say which layer it is).
    pub match_sizes: bool,
    /// Digests of compressed blobs to upload, once the platform's manifest is
    /// known; `None` uploads every compressed blob seen before it is known.
    pub platform: Option<manifest::Platform>,
    /// Stop reading as soon as every layer is uploaded or present and the
    /// config is read (or `need_config` is false): the rest of the export is
    /// not needed (classic store only; the containerd store needs its index).
    pub stop_when_complete: bool,
    /// Whether the config must be read from the export (the registry lacks it).
    pub need_config: bool,
}

/// A layer compressed and uploaded during the walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedLayer {
    pub digest: String,
    pub size: u64,
    pub uncompressed_size: u64,
}

/// Everything the walk learnt.
#[derive(Debug, Default)]
pub struct ExportResult {
    /// The config bytes, when the config digest is the image ID (classic store).
    pub config: Option<Vec<u8>>,
    /// diffID -> the blob we compressed and uploaded.
    pub layers: HashMap<String, UploadedLayer>,
    /// diffIDs seen and only hashed, because the registry has them.
    pub skipped: HashSet<String>,
    /// Blobs passed through as stored (containerd store): digest -> size.
    pub passed_through: HashMap<String, u64>,
    /// Small JSON blobs by digest (manifests, indexes, configs).
    pub documents: HashMap<String, Vec<u8>>,
    /// `layer.tar` entries hashed on a size match that turned out not to be a
    /// present layer: a second pass without size matching must compress them.
    pub missed: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("reading the image export from the daemon failed")]
    Read(#[source] std::io::Error),
    #[error(transparent)]
    Compress(#[from] CompressError),
    #[error("the image export is inconsistent: {0}")]
    Corrupt(String),
}

enum EntryKind {
    /// `blobs/sha256/<hex>`
    Blob(String),
    /// `<hex>.json` at the root (legacy config)
    LegacyConfig(String),
    /// `<hex>.tar` at the root (Podman names layers by diffID)
    NamedLayer(String),
    /// `<v1 id>/json` (legacy): tells which layer the directory holds
    LegacyJson(String),
    /// `<v1 id>/layer.tar` (legacy; which layer it is shows in its `json`, else
    /// only once hashed)
    LegacyLayer(String),
    Ignored,
}

fn is_sha256_hex(value: &str) -> bool {
    value.len() == 64
        && value
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

fn classify(path: &str) -> EntryKind {
    let path = path.trim_start_matches("./");
    if let Some(hex) = path.strip_prefix("blobs/sha256/") {
        if is_sha256_hex(hex) {
            return EntryKind::Blob(format!("sha256:{hex}"));
        }
    }
    if !path.contains('/') {
        if let Some(hex) = path.strip_suffix(".json").filter(|hex| is_sha256_hex(hex)) {
            return EntryKind::LegacyConfig(format!("sha256:{hex}"));
        }
        if let Some(hex) = path.strip_suffix(".tar").filter(|hex| is_sha256_hex(hex)) {
            return EntryKind::NamedLayer(format!("sha256:{hex}"));
        }
    }
    if let Some((directory, file)) = path.split_once('/') {
        if is_sha256_hex(directory) {
            match file {
                "json" => return EntryKind::LegacyJson(directory.to_owned()),
                "layer.tar" => return EntryKind::LegacyLayer(directory.to_owned()),
                _ => {}
            }
        }
    }
    EntryKind::Ignored
}

/// Walks the export once, compressing and uploading what the plan needs.
/// What was learnt comes back even when the walk fails, so a later pass can
/// keep the layers that were uploaded in full.
pub fn walk(
    reader: impl Read + Seek,
    plan: &ExportPlan,
    pool: &BlockCompressor,
    uploads: &mut dyn BlobUploads,
) -> (ExportResult, Result<(), ExportError>) {
    let diff_ids: HashSet<&str> = plan.image.diff_ids.iter().map(String::as_str).collect();
    let mut walker = Walker {
        plan,
        pool,
        uploads,
        diff_ids,
        legacy: LegacyLayers::new(&plan.image.diff_ids),
        identified: HashMap::new(),
        result: ExportResult::default(),
        entry_size: 0,
    };
    let outcome = walk_entries(reader, &mut walker);
    (walker.result, outcome)
}

/// The archive is walked with seeks: an entry not read, or not to its end, is
/// passed over without being copied out of the stream.
fn walk_entries(reader: impl Read + Seek, walker: &mut Walker) -> Result<(), ExportError> {
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries_with_seek().map_err(ExportError::Read)? {
        let entry = entry.map_err(ExportError::Read)?;
        if !entry.header().entry_type().is_file() {
            // Docker links duplicate layers to their first copy: nothing to read.
            continue;
        }
        let path = entry
            .path()
            .map_err(ExportError::Read)?
            .to_string_lossy()
            .into_owned();
        let size = entry.size();
        let mut entry = WholeEntry::new(entry, size, &path);
        walker.entry(classify(&path), &path, size, &mut entry)?;
        if walker.plan.stop_when_complete && walker.complete() {
            tracing::debug!("the export holds nothing more that is needed: stop reading it");
            return Ok(());
        }
    }
    archive_was_whole(archive.into_inner()).map_err(ExportError::Read)
}

/// An entry's bytes, where an end of input before the entry's size is an
/// error: tar's own reader just ends early there, and the cut would show up
/// later as a layer hashing to the wrong digest.
struct WholeEntry<'a, R> {
    entry: R,
    read: u64,
    size: u64,
    path: &'a str,
}

impl<'a, R> WholeEntry<'a, R> {
    fn new(entry: R, size: u64, path: &'a str) -> WholeEntry<'a, R> {
        WholeEntry {
            entry,
            read: 0,
            size,
            path,
        }
    }
}

impl<R: Read> Read for WholeEntry<'_, R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let count = self.entry.read(buffer)?;
        if count == 0 && self.read < self.size && !buffer.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "the archive stopped {} bytes into {} of {} bytes \
                     (the daemon closed the connection early)",
                    self.read, self.path, self.size
                ),
            ));
        }
        self.read += count as u64;
        Ok(count)
    }
}

/// After tar's entries have ended: whether they ended at the end-of-archive
/// marker. tar also ends them quietly at an end of input between two entries,
/// which is how a daemon closing the connection early looks when the export
/// is framed by the connection's end (see daemon::export_stream). POSIX ends
/// an archive with two zero blocks and tar stops after the first, so a whole
/// archive still has the second to read.
fn archive_was_whole(mut rest: impl Read) -> std::io::Result<()> {
    let mut byte = [0; 1];
    loop {
        match rest.read(&mut byte) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the archive stopped between two entries, before its end-of-archive marker \
                     (the daemon closed the connection early)",
                ))
            }
            Ok(_) => return Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
}

struct Walker<'a, 'b> {
    plan: &'a ExportPlan,
    pool: &'a BlockCompressor,
    uploads: &'b mut dyn BlobUploads,
    diff_ids: HashSet<&'a str>,
    legacy: LegacyLayers,
    /// Legacy directories whose `json` proved which layer they hold.
    identified: HashMap<String, String>,
    result: ExportResult,
    /// Size of the archive entry being read, for upload progress.
    entry_size: u64,
}

impl Walker<'_, '_> {
    fn entry(
        &mut self,
        kind: EntryKind,
        path: &str,
        size: u64,
        entry: &mut dyn Read,
    ) -> Result<(), ExportError> {
        self.entry_size = size;
        match kind {
            EntryKind::Blob(digest) | EntryKind::LegacyConfig(digest)
                if digest == self.plan.image.id =>
            {
                // Classic store: the image ID is the config digest. containerd
                // store: it is the index digest, needed as a document.
                let bytes = read_document(entry, path)?;
                self.result.documents.insert(digest, bytes.clone());
                self.result.config = Some(bytes);
            }
            EntryKind::Blob(digest) | EntryKind::NamedLayer(digest)
                if self.diff_ids.contains(digest.as_str()) =>
            {
                if self.plan.present.contains_key(&digest) {
                    self.result.skipped.insert(digest);
                } else {
                    self.compress(entry, Some(&digest), path)?;
                }
            }
            EntryKind::Blob(digest) => self.other_blob(digest, entry, path)?,
            EntryKind::LegacyJson(directory) => {
                let document = read_document(entry, path)?;
                match self.legacy.identify(&directory, &document) {
                    Some(diff_id) => {
                        tracing::debug!("{path} proves that {directory} holds layer {diff_id}");
                        self.identified.insert(directory, diff_id);
                    }
                    None => tracing::debug!(
                        "{path} does not say which layer {directory} holds: it will be hashed"
                    ),
                }
            }
            EntryKind::LegacyLayer(directory) => match self.identified.get(&directory).cloned() {
                Some(diff_id) => self.identified_layer(entry, diff_id, path)?,
                None => self.legacy_layer(entry, size, path)?,
            },
            EntryKind::LegacyConfig(_) | EntryKind::NamedLayer(_) | EntryKind::Ignored => {}
        }
        Ok(())
    }

    /// Whether everything the push needs has been read: each layer uploaded or
    /// in the registry, and the config read unless the registry has it.
    fn complete(&self) -> bool {
        (self.result.config.is_some() || !self.plan.need_config)
            && self.plan.image.diff_ids.iter().all(|diff_id| {
                self.plan.present.contains_key(diff_id) || self.result.layers.contains_key(diff_id)
            })
    }

    /// A legacy `layer.tar` whose directory proved which layer it holds: a
    /// layer the registry has (or that was uploaded already) is not even read.
    fn identified_layer(
        &mut self,
        entry: &mut dyn Read,
        diff_id: String,
        path: &str,
    ) -> Result<(), ExportError> {
        if self.plan.present.contains_key(&diff_id) {
            tracing::debug!("{path} is layer {diff_id}, which the registry has: not read");
            self.result.skipped.insert(diff_id);
            Ok(())
        } else if self.result.layers.contains_key(&diff_id) {
            Ok(())
        } else {
            self.compress(entry, Some(&diff_id), path)
        }
    }

    /// A legacy `layer.tar` does not say which layer it is. When its size is
    /// that of a layer the registry already has, hash it instead of compressing
    /// it; a wrong guess is recorded in `missed` for a second pass.
    fn legacy_layer(
        &mut self,
        entry: &mut dyn Read,
        size: u64,
        path: &str,
    ) -> Result<(), ExportError> {
        let may_be_present = self.plan.match_sizes
            && self.plan.present.iter().any(|(diff_id, present_size)| {
                *present_size == size && !self.result.skipped.contains(diff_id)
            });
        if !may_be_present {
            return self.compress(entry, None, path);
        }
        let (diff_id, _) = compress::hash_layer(entry).map_err(ExportError::Read)?;
        if self.plan.present.contains_key(&diff_id) {
            self.result.skipped.insert(diff_id);
        } else {
            self.result.missed.push(diff_id);
        }
        Ok(())
    }

    fn compress(
        &mut self,
        entry: &mut dyn Read,
        expected: Option<&str>,
        path: &str,
    ) -> Result<(), ExportError> {
        let label = expected.unwrap_or(path);
        let mut writer = self.uploads.open(label, self.entry_size);
        let layer = compress::compress_layer(self.pool, entry, |chunk| writer.write(chunk))?;
        if let Some(expected) = expected {
            if layer.diff_id != expected {
                return Err(ExportError::Corrupt(format!(
                    "{path} hashes to {} instead of {expected}",
                    layer.diff_id
                )));
            }
        }
        writer.finish(layer.digest.clone(), layer.size);
        self.result.layers.insert(
            layer.diff_id,
            UploadedLayer {
                digest: layer.digest,
                size: layer.size,
                uncompressed_size: layer.uncompressed_size,
            },
        );
        Ok(())
    }

    /// A blob that is neither the classic config nor an uncompressed layer:
    /// a JSON document, or a layer stored compressed (containerd store).
    fn other_blob(
        &mut self,
        digest: String,
        entry: &mut dyn Read,
        path: &str,
    ) -> Result<(), ExportError> {
        let mut first = Vec::with_capacity(BLOCK_SIZE);
        entry
            .take(BLOCK_SIZE as u64)
            .read_to_end(&mut first)
            .map_err(ExportError::Read)?;
        if first.first() == Some(&b'{') {
            let mut document = first;
            entry
                .take(MAX_DOCUMENT.saturating_sub(document.len() as u64) + 1)
                .read_to_end(&mut document)
                .map_err(ExportError::Read)?;
            if document.len() as u64 <= MAX_DOCUMENT {
                self.result.documents.insert(digest, document);
            }
            return Ok(());
        }
        if !is_compressed(&first) || !self.wanted(&digest) {
            return Ok(());
        }
        if self.uploads.has_blob(&digest) {
            self.result.passed_through.insert(digest, 0);
            return Ok(());
        }
        let mut reader = Cursor::new(first).chain(entry);
        let size = self.pass_through(&digest, &mut reader, path)?;
        self.result.passed_through.insert(digest, size);
        Ok(())
    }

    /// Whether a compressed blob belongs to the chosen platform, as far as the
    /// documents seen so far tell (unknown: upload it, to be safe).
    fn wanted(&self, digest: &str) -> bool {
        match target_manifest(self.plan, &self.result.documents) {
            Some((_, Document::Manifest { config, layers, .. })) => {
                config.digest == digest || layers.iter().any(|layer| layer.digest == digest)
            }
            _ => true,
        }
    }

    /// Uploads an already-compressed blob as it is, checking its digest.
    fn pass_through(
        &mut self,
        digest: &str,
        reader: &mut dyn Read,
        path: &str,
    ) -> Result<u64, ExportError> {
        let mut writer = self.uploads.open(digest, self.entry_size);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        loop {
            let mut block = Vec::with_capacity(BLOCK_SIZE);
            reader
                .take(BLOCK_SIZE as u64)
                .read_to_end(&mut block)
                .map_err(ExportError::Read)?;
            if block.is_empty() {
                break;
            }
            hasher.update(&block);
            size += block.len() as u64;
            writer.write(block)?;
        }
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != digest {
            return Err(ExportError::Corrupt(format!("{path} hashes to {actual}")));
        }
        writer.finish(actual, size);
        Ok(size)
    }
}

fn is_compressed(first: &[u8]) -> bool {
    first.starts_with(&[0x1f, 0x8b]) || first.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
}

fn read_document(entry: &mut dyn Read, path: &str) -> Result<Vec<u8>, ExportError> {
    let mut bytes = Vec::new();
    entry
        .take(MAX_DOCUMENT + 1)
        .read_to_end(&mut bytes)
        .map_err(ExportError::Read)?;
    if bytes.len() as u64 > MAX_DOCUMENT {
        return Err(ExportError::Corrupt(format!(
            "{path} is larger than {MAX_DOCUMENT} bytes"
        )));
    }
    Ok(bytes)
}

/// The manifest of the image (for the chosen platform) among `documents`,
/// starting from the descriptor the daemon reported.
pub fn target_manifest(
    plan: &ExportPlan,
    documents: &HashMap<String, Vec<u8>>,
) -> Option<(String, Document)> {
    let root = plan.image.descriptor.as_ref()?.digest.clone();
    let mut digest = root;
    // An index may point at another index (rare); two levels are plenty.
    for _ in 0..3 {
        let document = manifest::read_document(&digest, documents.get(&digest)?).ok()?;
        match document {
            Document::Index(entries) => {
                let platform = plan
                    .platform
                    .clone()
                    .unwrap_or_else(|| native_platform(&plan.image));
                digest = manifest::select_platform(&entries, &platform)
                    .ok()?
                    .digest
                    .clone();
            }
            Document::Manifest { .. } => return Some((digest, document)),
            Document::Other => return None,
        }
    }
    None
}

/// The platform the daemon reports for the image (its own, for multi-platform).
pub fn native_platform(image: &ImageInfo) -> manifest::Platform {
    manifest::Platform {
        os: image.os.clone(),
        architecture: image.architecture.clone(),
        variant: image.variant.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar of `files` as tar-rs writes it (two zero blocks at the end), and
    /// the offset where each entry's header starts.
    fn tar_of(files: &[(&str, usize)]) -> (Vec<u8>, Vec<usize>) {
        let mut builder = tar::Builder::new(Vec::new());
        let mut starts = Vec::new();
        for (name, size) in files {
            starts.push(builder.get_ref().len());
            let mut header = tar::Header::new_ustar();
            header.set_size(*size as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, name, &vec![7u8; *size][..])
                .unwrap();
        }
        (builder.into_inner().unwrap(), starts)
    }

    /// What `walk_entries` does around the walker: every entry, then the check.
    fn names_then_check(bytes: &[u8]) -> (Vec<String>, std::io::Result<()>) {
        let mut archive = tar::Archive::new(Cursor::new(bytes));
        let mut names = Vec::new();
        for entry in archive.entries_with_seek().unwrap() {
            let entry = entry.unwrap();
            names.push(entry.path().unwrap().to_string_lossy().into_owned());
        }
        (names, archive_was_whole(archive.into_inner()))
    }

    /// The first entry of `bytes` (3000 bytes long in the archive's header),
    /// read to its end through a `WholeEntry`.
    fn read_first_entry(bytes: &[u8]) -> (Vec<u8>, std::io::Result<usize>) {
        let mut archive = tar::Archive::new(Cursor::new(bytes));
        let entry = archive
            .entries_with_seek()
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let mut whole = WholeEntry::new(entry, 3000, "a/layer.tar");
        let mut read = Vec::new();
        let result = whole.read_to_end(&mut read);
        (read, result)
    }

    #[test]
    fn an_entry_cut_short_is_an_error_naming_it() {
        let (bytes, starts) = tar_of(&[("a/layer.tar", 3000), ("b.json", 5)]);
        let (read, result) = read_first_entry(&bytes[..starts[0] + 512 + 1000]);
        assert_eq!(read.len(), 1000);
        let error = result.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(
            error
                .to_string()
                .contains("1000 bytes into a/layer.tar of 3000"),
            "{error}"
        );

        let (read, result) = read_first_entry(&bytes);
        assert_eq!(result.unwrap(), 3000);
        assert_eq!(read, vec![7u8; 3000]);
    }

    #[test]
    fn a_whole_archive_passes_the_end_check() {
        let (bytes, _) = tar_of(&[("a/json", 10), ("a/layer.tar", 3000)]);
        let (names, check) = names_then_check(&bytes);
        assert_eq!(names, ["a/json", "a/layer.tar"]);
        check.unwrap();
    }

    #[test]
    fn an_archive_cut_between_entries_fails_the_end_check() {
        let (bytes, starts) = tar_of(&[("a/json", 10), ("a/layer.tar", 3000), ("b.json", 5)]);
        // Before the second entry, before the third, and after the last one
        // but before the two zero blocks.
        for (cut, entries_read) in [(starts[1], 1), (starts[2], 2), (bytes.len() - 1024, 3)] {
            let (names, check) = names_then_check(&bytes[..cut]);
            assert_eq!(names.len(), entries_read, "cut at {cut}");
            let error = check.unwrap_err();
            assert_eq!(
                error.kind(),
                std::io::ErrorKind::UnexpectedEof,
                "cut at {cut}"
            );
            assert!(error
                .to_string()
                .contains("before its end-of-archive marker"));
        }
    }

    #[test]
    fn classifies_every_layout_entry() {
        let hex = "a".repeat(64);
        assert!(
            matches!(classify(&format!("blobs/sha256/{hex}")), EntryKind::Blob(d) if d == format!("sha256:{hex}"))
        );
        assert!(matches!(
            classify(&format!("{hex}.json")),
            EntryKind::LegacyConfig(_)
        ));
        assert!(matches!(
            classify(&format!("{hex}.tar")),
            EntryKind::NamedLayer(_)
        ));
        assert!(matches!(
            classify(&format!("{hex}/layer.tar")),
            EntryKind::LegacyLayer(d) if d == hex
        ));
        assert!(matches!(
            classify(&format!("./{hex}/layer.tar")),
            EntryKind::LegacyLayer(d) if d == hex
        ));
        assert!(matches!(
            classify(&format!("{hex}/json")),
            EntryKind::LegacyJson(d) if d == hex
        ));
        for ignored in [
            "manifest.json",
            "index.json",
            "oci-layout",
            "repositories",
            "blobs/sha256/short",
            "short/layer.tar",
            &format!("{hex}/VERSION"),
        ] {
            assert!(matches!(classify(ignored), EntryKind::Ignored), "{ignored}");
        }
        assert!(matches!(
            classify(&format!("{}.json", "A".repeat(64))),
            EntryKind::Ignored
        ));
    }

    #[test]
    fn detects_compression_magic() {
        assert!(is_compressed(&[0x1f, 0x8b, 8, 0]));
        assert!(is_compressed(&[0x28, 0xb5, 0x2f, 0xfd, 0]));
        assert!(!is_compressed(b"ustar"));
        assert!(!is_compressed(&[]));
    }
}
