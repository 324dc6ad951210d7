//! The local layer cache: for each registry, which compressed blob holds which
//! layer (diffID), and in which repositories it was seen. Our gzip output never
//! equals anyone else's, so without this a push could not know a layer is
//! already there without exporting and compressing it again.
//!
//! The cache only ever saves time: every entry is checked with a HEAD request
//! before it is trusted, and an unreadable file is ignored with a warning.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedLayer {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    pub uncompressed_size: u64,
    /// Repositories of this registry known to hold the blob.
    pub repositories: BTreeSet<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    layers: BTreeMap<String, CachedLayer>,
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
            Ok(bytes) => match serde_json::from_slice::<CacheFile>(&bytes) {
                Ok(file) if file.version == FORMAT_VERSION => (file, None),
                Ok(_) => (CacheFile::default(), None),
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

    pub fn lookup(&self, diff_id: &str) -> Option<&CachedLayer> {
        self.file.layers.get(diff_id)
    }

    /// Records that `repository` holds the compressed blob of `diff_id`.
    pub fn record(&mut self, diff_id: &str, mut layer: CachedLayer, repository: &str) {
        if let Some(existing) = self.file.layers.get(diff_id) {
            if existing.digest == layer.digest {
                layer
                    .repositories
                    .extend(existing.repositories.iter().cloned());
            }
        }
        layer.repositories.insert(repository.to_owned());
        self.file.layers.insert(diff_id.to_owned(), layer);
    }

    /// Forgets that `repository` holds `diff_id` (a HEAD said it does not).
    pub fn forget(&mut self, diff_id: &str, repository: &str) {
        if let Some(layer) = self.file.layers.get_mut(diff_id) {
            layer.repositories.remove(repository);
        }
    }

    /// Writes the cache atomically (temporary file, then rename), so a crash
    /// never leaves half a file.
    pub fn save(&mut self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        self.file.version = FORMAT_VERSION;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let temporary = path.with_extension(format!("json.{}.tmp", std::process::id()));
        let bytes = serde_json::to_vec_pretty(&self.file).map_err(std::io::Error::other)?;
        std::fs::write(&temporary, bytes)?;
        std::fs::rename(&temporary, path)
    }
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

    fn layer(digest: &str) -> CachedLayer {
        CachedLayer {
            digest: digest.to_owned(),
            size: 10,
            media_type: "application/vnd.docker.image.rootfs.diff.tar.gzip".to_owned(),
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
            .lookup("sha256:d1")
            .unwrap()
            .repositories
            .iter()
            .cloned()
            .collect();
        assert_eq!(repositories, ["team/a", "team/b"]);
        cache.record("sha256:d1", layer("sha256:c2"), "team/c");
        let entry = cache.lookup("sha256:d1").unwrap();
        assert_eq!(entry.digest, "sha256:c2");
        assert_eq!(
            entry.repositories.len(),
            1,
            "a new blob starts a new repository set"
        );
        cache.forget("sha256:d1", "team/c");
        assert!(cache.lookup("sha256:d1").unwrap().repositories.is_empty());
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
