//! The local layer cache: for each registry, which compressed blob holds which
//! layer (diffID) in which compression, and in which repositories it was seen.
//! A diffID has one entry per layer media type (gzip, zstd), so a push only
//! reuses blobs of its own compression. Our compressed output never equals
//! anyone else's, so without this a push could not know a layer is
//! already there without exporting and compressing it again.
//!
//! It also remembers the manifest last pushed for each image ID and repository,
//! so an unchanged image is pushed again with a manifest HEAD (and at most a
//! PUT of the same bytes) instead of a HEAD per blob.
//!
//! The cache only ever saves time: every entry is checked with a HEAD request
//! before it is trusted, and an unreadable file is ignored with a warning.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// 2: one entry per media type under each diffID (1 had one entry per diffID).
const FORMAT_VERSION: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedLayer {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    pub uncompressed_size: u64,
    /// Repositories of this registry known to hold the blob.
    pub repositories: BTreeSet<String>,
}

/// The manifest last pushed for an image to one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedManifest {
    pub digest: String,
    pub media_type: String,
    /// The manifest document byte for byte (JSON, hence UTF-8).
    pub manifest: String,
    /// The push settings that shaped the manifest (e.g. "gzip"): an entry
    /// only answers a push with the same variant.
    pub variant: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    /// diffID -> layer media type -> the blob.
    layers: BTreeMap<String, BTreeMap<String, CachedLayer>>,
    /// Image ID -> repository -> the manifest last pushed there.
    #[serde(default)]
    images: BTreeMap<String, BTreeMap<String, CachedManifest>>,
}

/// The cache of one registry.
#[derive(Debug)]
pub struct LayerCache {
    path: Option<PathBuf>,
    file: CacheFile,
}

impl LayerCache {
    /// A cache that remembers nothing and writes nothing (`--no-cache`).
    pub fn disabled() -> LayerCache {
        LayerCache {
            path: None,
            file: CacheFile::default(),
        }
    }

    /// Opens the cache file for `registry` under `directory`. A missing file is
    /// an empty cache; a corrupt one is replaced, and the warning says so.
    pub fn open(directory: &Path, registry: &str) -> (LayerCache, Option<String>) {
        let path = directory.join(format!("{}.json", file_stem(registry)));
        let (file, warning) = match std::fs::read(&path) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                (CacheFile::default(), None)
            }
            Err(error) => (
                CacheFile::default(),
                Some(format!(
                    "ignoring the layer cache {}: {error}",
                    path.display()
                )),
            ),
            Ok(bytes) => match decode(&bytes) {
                Ok(file) => (file, None),
                Err(error) => (
                    CacheFile::default(),
                    Some(format!(
                        "ignoring the corrupt layer cache {} ({error}); it will be rewritten",
                        path.display()
                    )),
                ),
            },
        };
        (
            LayerCache {
                path: Some(path),
                file,
            },
            warning,
        )
    }

    /// The cache file, for messages; `None` when the cache is disabled.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The blob of `diff_id` compressed as `media_type`.
    pub fn lookup(&self, diff_id: &str, media_type: &str) -> Option<&CachedLayer> {
        self.file.layers.get(diff_id)?.get(media_type)
    }

    /// Records that `repository` holds the compressed blob of `diff_id`, under
    /// the blob's media type; entries of other media types stay.
    pub fn record(&mut self, diff_id: &str, mut layer: CachedLayer, repository: &str) {
        let entries = self.file.layers.entry(diff_id.to_owned()).or_default();
        if let Some(existing) = entries.get(&layer.media_type) {
            if existing.digest == layer.digest {
                layer
                    .repositories
                    .extend(existing.repositories.iter().cloned());
            }
        }
        layer.repositories.insert(repository.to_owned());
        entries.insert(layer.media_type.clone(), layer);
    }

    /// Forgets that `repository` holds the `media_type` blob of `diff_id` (a
    /// HEAD said it does not).
    pub fn forget(&mut self, diff_id: &str, media_type: &str, repository: &str) {
        if let Some(layer) = self
            .file
            .layers
            .get_mut(diff_id)
            .and_then(|entries| entries.get_mut(media_type))
        {
            layer.repositories.remove(repository);
        }
    }

    /// The manifest last pushed for `image_id` to `repository`, when it was
    /// pushed with the same `variant`.
    pub fn manifest(
        &self,
        image_id: &str,
        repository: &str,
        variant: &str,
    ) -> Option<&CachedManifest> {
        self.file
            .images
            .get(image_id)?
            .get(repository)
            .filter(|entry| entry.variant == variant)
    }

    /// Records the manifest just pushed for `image_id` to `repository`.
    pub fn record_manifest(&mut self, image_id: &str, repository: &str, entry: CachedManifest) {
        self.file
            .images
            .entry(image_id.to_owned())
            .or_default()
            .insert(repository.to_owned(), entry);
    }

    /// Drops the manifest entry of `image_id` in `repository` (it is corrupt).
    pub fn forget_manifest(&mut self, image_id: &str, repository: &str) {
        if let Some(repositories) = self.file.images.get_mut(image_id) {
            repositories.remove(repository);
            if repositories.is_empty() {
                self.file.images.remove(image_id);
            }
        }
    }

    /// Writes the cache atomically (temporary file, then rename), so a crash
    /// never leaves half a file.
    pub fn save(&mut self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let temporary = path.with_extension(format!("json.{}.tmp", std::process::id()));
        let bytes = encode(&mut self.file)?;
        std::fs::write(&temporary, bytes)?;
        std::fs::rename(&temporary, path)
    }
}

/// A cache file's contents; one of another format version is an empty cache.
/// The version is read first: an older file's layers have another shape.
fn decode(bytes: &[u8]) -> serde_json::Result<CacheFile> {
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    if serde_json::from_slice::<Version>(bytes)?.version != FORMAT_VERSION {
        return Ok(CacheFile::default());
    }
    serde_json::from_slice(bytes)
}

fn encode(file: &mut CacheFile) -> std::io::Result<Vec<u8>> {
    file.version = FORMAT_VERSION;
    serde_json::to_vec_pretty(file).map_err(std::io::Error::other)
}

/// The XDG cache directory of this program: `$XDG_CACHE_HOME/idpbuilder-push`,
/// else `~/.cache/idpbuilder-push`.
pub fn default_directory(xdg_cache_home: Option<&str>, home: Option<&Path>) -> Option<PathBuf> {
    let base = match xdg_cache_home.filter(|value| Path::new(value).is_absolute()) {
        Some(value) => PathBuf::from(value),
        None => home?.join(".cache"),
    };
    Some(base.join("idpbuilder-push"))
}

/// `127.0.0.1:5000` -> `127.0.0.1_5000`: a file name on every platform.
fn file_stem(registry: &str) -> String {
    registry
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

    fn layer(digest: &str) -> CachedLayer {
        compressed(digest, GZIP)
    }

    fn compressed(digest: &str, media_type: &str) -> CachedLayer {
        CachedLayer {
            digest: digest.to_owned(),
            size: 10,
            media_type: media_type.to_owned(),
            uncompressed_size: 20,
            repositories: BTreeSet::new(),
        }
    }

    #[test]
    fn records_merge_repositories_of_the_same_blob() {
        let mut cache = LayerCache::disabled();
        cache.record("sha256:d1", layer("sha256:c1"), "team/a");
        cache.record("sha256:d1", layer("sha256:c1"), "team/b");
        let repositories: Vec<_> = cache
            .lookup("sha256:d1", GZIP)
            .unwrap()
            .repositories
            .iter()
            .cloned()
            .collect();
        assert_eq!(repositories, ["team/a", "team/b"]);
        cache.record("sha256:d1", layer("sha256:c2"), "team/c");
        let entry = cache.lookup("sha256:d1", GZIP).unwrap();
        assert_eq!(entry.digest, "sha256:c2");
        assert_eq!(
            entry.repositories.len(),
            1,
            "a new blob starts a new repository set"
        );
        cache.forget("sha256:d1", GZIP, "team/c");
        assert!(cache
            .lookup("sha256:d1", GZIP)
            .unwrap()
            .repositories
            .is_empty());
    }

    #[test]
    fn each_compression_of_a_layer_has_its_own_entry() {
        let mut cache = LayerCache::disabled();
        cache.record("sha256:d1", compressed("sha256:g", GZIP), "team/a");
        assert_eq!(cache.lookup("sha256:d1", ZSTD), None);
        cache.record("sha256:d1", compressed("sha256:z", ZSTD), "team/a");
        assert_eq!(cache.lookup("sha256:d1", GZIP).unwrap().digest, "sha256:g");
        assert_eq!(cache.lookup("sha256:d1", ZSTD).unwrap().digest, "sha256:z");
        cache.forget("sha256:d1", ZSTD, "team/a");
        assert!(cache
            .lookup("sha256:d1", ZSTD)
            .unwrap()
            .repositories
            .is_empty());
        assert_eq!(
            cache.lookup("sha256:d1", GZIP).unwrap().repositories.len(),
            1,
            "forgetting one compression keeps the other"
        );
    }

    #[test]
    fn files_round_trip_and_an_older_version_is_an_empty_cache() {
        let mut cache = LayerCache::disabled();
        cache.record("sha256:d1", compressed("sha256:g", GZIP), "team/a");
        cache.record("sha256:d1", compressed("sha256:z", ZSTD), "team/a");
        cache.file.version = FORMAT_VERSION;
        let bytes = serde_json::to_vec(&cache.file).unwrap();
        let file = decode(&bytes).unwrap();
        assert_eq!(file.layers["sha256:d1"][ZSTD].digest, "sha256:z");
        assert_eq!(file.layers["sha256:d1"][GZIP].digest, "sha256:g");
        let version_1 = serde_json::json!({
            "version": 1,
            "layers": {"sha256:d1": compressed("sha256:old", GZIP)}
        });
        let file = decode(&serde_json::to_vec(&version_1).unwrap()).unwrap();
        assert!(
            file.layers.is_empty(),
            "an older format is dropped, not corrupt"
        );
        assert!(decode(b"{ not json").is_err());
    }

    fn manifest(digest: &str, variant: &str) -> CachedManifest {
        CachedManifest {
            digest: digest.to_owned(),
            media_type: "application/vnd.docker.distribution.manifest.v2+json".to_owned(),
            manifest: "{\"schemaVersion\":2}".to_owned(),
            variant: variant.to_owned(),
        }
    }

    #[test]
    fn images_survive_an_encode_decode_round_trip() {
        let mut cache = LayerCache::disabled();
        cache.record("sha256:d1", layer("sha256:c1"), "team/a");
        cache.record_manifest("sha256:i1", "team/a", manifest("sha256:m1", "gzip"));
        cache.record_manifest("sha256:i1", "team/b", manifest("sha256:m2", "gzip"));
        let bytes = encode(&mut cache.file).unwrap();
        let cache = LayerCache {
            path: None,
            file: decode(&bytes).unwrap(),
        };
        assert_eq!(
            cache.manifest("sha256:i1", "team/a", "gzip"),
            Some(&manifest("sha256:m1", "gzip"))
        );
        assert_eq!(
            cache
                .manifest("sha256:i1", "team/b", "gzip")
                .unwrap()
                .digest,
            "sha256:m2"
        );
        assert_eq!(cache.lookup("sha256:d1", GZIP).unwrap().digest, "sha256:c1");
        assert_eq!(cache.manifest("sha256:i1", "team/c", "gzip"), None);
        assert_eq!(
            cache.manifest("sha256:i1", "team/a", "zstd"),
            None,
            "another variant is another manifest"
        );
    }

    #[test]
    fn files_without_images_still_load() {
        let old = br#"{"version":2,"layers":{"sha256:d1":{
            "application/vnd.docker.image.rootfs.diff.tar.gzip":{"digest":"sha256:c1","size":10,
            "media_type":"application/vnd.docker.image.rootfs.diff.tar.gzip",
            "uncompressed_size":20,"repositories":["team/a"]}}}}"#;
        let mut cache = LayerCache {
            path: None,
            file: decode(old).unwrap(),
        };
        assert_eq!(cache.lookup("sha256:d1", GZIP).unwrap().digest, "sha256:c1");
        assert_eq!(cache.manifest("sha256:i1", "team/a", "gzip"), None);
        cache.record_manifest("sha256:i1", "team/a", manifest("sha256:m1", "gzip"));
        cache.forget_manifest("sha256:i1", "team/a");
        let text = String::from_utf8(encode(&mut cache.file).unwrap()).unwrap();
        assert!(text.contains("\"images\": {}"), "{text}");
    }

    #[test]
    fn files_of_another_version_are_empty() {
        let file = decode(br#"{"version":99,"layers":{},"images":{}}"#).unwrap();
        assert!(file.layers.is_empty() && file.images.is_empty());
        assert!(decode(b"{ not json").is_err());
    }

    #[test]
    fn default_directory_follows_xdg() {
        assert_eq!(
            default_directory(Some("/x/cache"), Some(Path::new("/home/u"))),
            Some(PathBuf::from("/x/cache/idpbuilder-push"))
        );
        assert_eq!(
            default_directory(Some("relative"), Some(Path::new("/home/u"))),
            Some(PathBuf::from("/home/u/.cache/idpbuilder-push"))
        );
        assert_eq!(default_directory(None, None), None);
    }

    #[test]
    fn file_stems_are_safe() {
        assert_eq!(file_stem("127.0.0.1:5000"), "127.0.0.1_5000");
        assert_eq!(
            file_stem("gitea.cnoe.localtest.me:8443"),
            "gitea.cnoe.localtest.me_8443"
        );
        assert_eq!(file_stem("../../etc"), ".._.._etc");
    }
}
