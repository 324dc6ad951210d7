//! Deterministic in-memory `docker save` archives in the two layouts no local daemon here produces: Docker >= 25 classic store and the containerd image store.
//!
//! Docker >= 25 classic store (moby `image/tarexport/save.go`): the export is written to a temp
//! dir and tarred by a directory walk, so entries come in lexical order: `blobs/`, `blobs/sha256/`,
//! every blob by hex (uncompressed layers named by diffID, the config, the OCI manifest and one
//! legacy v1 JSON per layer), then `index.json`, `manifest.json`, `oci-layout`, `repositories`.
//! containerd store, Docker >= 29 default (containerd `core/images/archive/exporter.go`): records
//! sorted by name, gzip layers as stored in the content store, the image index blob, `index.json`
//! pointing at it, `manifest.json` for one platform (the daemon's own) and `oci-layout`.
//! JSON documents that Go writes from structs are written here with Go's field order.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_TAR_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const IN_TOTO: &str = "application/vnd.in-toto+json";

/// Creation time of every fixture image, so archives are byte-for-byte reproducible.
pub const CREATED: &str = "2024-01-01T00:00:00Z";
/// `CREATED` as a Unix time, used as the mtime of layer-tar entries.
const CREATED_UNIX: u64 = 1_704_067_200;
/// What Go's `encoding/json` writes for an empty `container.Config` (legacy v1 layer JSON).
const EMPTY_CONTAINER_CONFIG: &str = r#"{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null}"#;

/// One image layer as an uncompressed tar (its sha256 is the diffID).
#[derive(Clone, Debug)]
pub struct LayerInput {
    pub tar: Vec<u8>,
}

impl LayerInput {
    /// A layer holding `files` (path, contents); see [`layer_tar`].
    pub fn from_files(files: &[(&str, &[u8])]) -> LayerInput {
        LayerInput {
            tar: layer_tar(files),
        }
    }
}

/// A fixture in the Docker >= 25 classic-store layout.
#[derive(Clone, Debug)]
pub struct ImageFixture {
    pub config_json: Vec<u8>,
    /// `sha256:<hex>` of `config_json`; the classic store's image ID.
    pub config_digest: String,
    pub diff_ids: Vec<String>,
    /// The OCI image manifest blob inside the archive (`blobs/sha256/<hex>`, listed by `index.json`).
    pub manifest_json: Vec<u8>,
    pub manifest_digest: String,
    /// The `docker save` tar stream.
    pub archive: Vec<u8>,
    /// Body of `GET /images/{name}/json`.
    pub inspect: serde_json::Value,
    /// Layer blobs as this archive stores them, (digest, size). In this layout they are the
    /// uncompressed tars, so each digest equals its diffID; a pusher compresses them itself.
    pub compressed_layers: Vec<(String, u64)>,
}

/// One platform of a [`ContainerdFixture`].
#[derive(Clone, Debug)]
pub struct PlatformFixture {
    pub os: String,
    /// Architecture without variant (`arm` for input `arm/v7`).
    pub architecture: String,
    pub variant: Option<String>,
    pub config_json: Vec<u8>,
    pub config_digest: String,
    pub diff_ids: Vec<String>,
    pub manifest_json: Vec<u8>,
    pub manifest_digest: String,
    /// gzip layer blobs (digest, size), in manifest order.
    pub compressed_layers: Vec<(String, u64)>,
    /// False when the archive has only this platform's manifest entry in the index (pulled image).
    pub content_in_archive: bool,
}

/// A fixture in the containerd-store layout.
#[derive(Clone, Debug)]
pub struct ContainerdFixture {
    pub archive: Vec<u8>,
    pub inspect: serde_json::Value,
    /// The image target: the index blob, or the single manifest when `image_index` is false.
    pub target_json: Vec<u8>,
    /// `sha256:<hex>` of `target_json`; what the containerd store reports as the image `Id`.
    pub target_digest: String,
    pub target_media_type: String,
    pub platforms: Vec<PlatformFixture>,
    /// Index of the daemon's own platform in `platforms` (the one `manifest.json` and inspect describe).
    pub native: usize,
    /// The attestation manifest listed in the index, when asked for.
    pub attestation_manifest_digest: Option<String>,
}

impl ContainerdFixture {
    pub fn native_platform(&self) -> &PlatformFixture {
        &self.platforms[self.native]
    }
}

/// Variations of the containerd-store layout.
#[derive(Clone, Debug)]
pub struct ContainerdOptions {
    /// Target is an image index (buildx default, multi-platform, pulled indexes); false gives a
    /// single manifest target (`docker build --provenance=false` of one platform). Needs one platform when false.
    pub image_index: bool,
    /// Add a BuildKit provenance attestation manifest (platform unknown/unknown) for the native platform.
    pub attestation: bool,
    /// As after `docker pull` of a multi-platform image: other platforms' manifests, configs
    /// and layers are absent from the archive while the index still lists them.
    pub only_native_content: bool,
    /// Docker schema 2 media types (manifest list, rootfs.diff.tar.gzip) instead of OCI ones.
    pub docker_media_types: bool,
}

impl Default for ContainerdOptions {
    fn default() -> Self {
        ContainerdOptions {
            image_index: true,
            attestation: false,
            only_native_content: false,
            docker_media_types: false,
        }
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A layer tar of `files` (path, contents) with their parent directories, fixed mtime, root owner.
pub fn layer_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut written_directories: Vec<String> = Vec::new();
    for (path, contents) in files {
        for directory in parent_directories(path) {
            if !written_directories.contains(&directory) {
                append_layer_entry(
                    &mut builder,
                    &directory,
                    tar::EntryType::Directory,
                    0o755,
                    &[],
                );
                written_directories.push(directory);
            }
        }
        append_layer_entry(&mut builder, path, tar::EntryType::Regular, 0o644, contents);
    }
    builder
        .into_inner()
        .expect("writing a tar into a Vec cannot fail")
}

/// Reproducible incompressible bytes (xorshift64*), to make layers of a chosen compressed size.
pub fn pseudo_random_bytes(seed: u64, length: usize) -> Vec<u8> {
    let mut state = seed | 1;
    let mut bytes = Vec::with_capacity(length + 8);
    while bytes.len() < length {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        bytes.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    bytes.truncate(length);
    bytes
}

/// `a/b/c.txt` -> `["a/", "a/b/"]`.
fn parent_directories(path: &str) -> Vec<String> {
    let components: Vec<&str> = path.split('/').collect();
    (1..components.len())
        .map(|count| format!("{}/", components[..count].join("/")))
        .collect()
}

fn append_layer_entry(
    builder: &mut tar::Builder<Vec<u8>>,
    path: &str,
    kind: tar::EntryType,
    mode: u32,
    contents: &[u8],
) {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(CREATED_UNIX);
    header.set_size(contents.len() as u64);
    builder
        .append_data(&mut header, path, contents)
        .expect("fixture paths are valid tar paths");
}

/// The Docker >= 25 classic-store `docker save` of one image tagged `repo_tags` (empty: saved by ID).
pub fn docker25_classic(
    repo_tags: &[&str],
    layers: &[LayerInput],
    os: &str,
    arch: &str,
) -> ImageFixture {
    let platform = Platform::parse(os, arch);
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|layer| sha256_digest(&layer.tar))
        .collect();
    let config_json = image_config(&platform, &diff_ids);
    let config_digest = sha256_digest(&config_json);
    let layer_descriptors: Vec<Descriptor> = layers
        .iter()
        .zip(&diff_ids)
        .map(|(layer, diff_id)| Descriptor::new(OCI_LAYER_TAR, diff_id, layer.tar.len()))
        .collect();
    let config_descriptor = Descriptor::new(OCI_CONFIG, &config_digest, config_json.len());
    let manifest_json =
        image_manifest(OCI_MANIFEST, &config_descriptor, &layer_descriptors).into_bytes();
    let manifest_digest = sha256_digest(&manifest_json);
    let references: Vec<Reference> = repo_tags.iter().map(|tag| Reference::parse(tag)).collect();

    let mut blobs = BlobSet::default();
    for layer in layers {
        blobs.insert(layer.tar.clone());
    }
    blobs.insert(config_json.clone());
    blobs.insert(manifest_json.clone());
    for legacy_json in legacy_layer_jsons(&platform, &diff_ids) {
        blobs.insert(legacy_json);
    }
    let manifest_descriptor = Descriptor::new(OCI_MANIFEST, &manifest_digest, manifest_json.len());
    let top_files = [
        (
            "index.json",
            classic_index_json(&manifest_descriptor, &references),
        ),
        (
            "manifest.json",
            classic_manifest_json(&config_digest, &references, &layer_descriptors),
        ),
        ("oci-layout", br#"{"imageLayoutVersion": "1.0.0"}"#.to_vec()),
    ];
    let mut archive = ArchiveWriter::new(0o644, 0o644);
    archive.blobs(&blobs);
    for (name, contents) in &top_files {
        archive.file(name, contents);
    }
    if !references.is_empty() {
        archive.file(
            "repositories",
            &classic_repositories_json(&references, &diff_ids),
        );
    }
    let layer_bytes: u64 = layers.iter().map(|layer| layer.tar.len() as u64).sum();
    let inspect = classic_inspect(&platform, &config_digest, &diff_ids, repo_tags, layer_bytes);
    ImageFixture {
        compressed_layers: layer_descriptors
            .iter()
            .map(|layer| (layer.digest.clone(), layer.size as u64))
            .collect(),
        config_json,
        config_digest,
        diff_ids,
        manifest_json,
        manifest_digest,
        archive: archive.finish(),
        inspect,
    }
}

/// The containerd-store `docker save` of an OCI index over `platforms` (os, arch or arch/variant,
/// layers); `native` is the daemon's own platform. See [`containerd_store_with`] for variations.
pub fn containerd_store(
    repo_tags: &[&str],
    platforms: &[(&str, &str, Vec<LayerInput>)],
    native: usize,
) -> ContainerdFixture {
    containerd_store_with(repo_tags, platforms, native, &ContainerdOptions::default())
}

pub fn containerd_store_with(
    repo_tags: &[&str],
    platforms: &[(&str, &str, Vec<LayerInput>)],
    native: usize,
    options: &ContainerdOptions,
) -> ContainerdFixture {
    assert!(
        native < platforms.len(),
        "native platform index {native} out of range"
    );
    assert!(
        options.image_index || platforms.len() == 1,
        "a single-manifest target has exactly one platform"
    );
    let media = MediaTypes::choose(options.docker_media_types);
    let mut blobs = BlobSet::default();
    let mut built: Vec<PlatformFixture> = Vec::new();
    let mut index_entries: Vec<Descriptor> = Vec::new();
    for (position, (os, arch, layers)) in platforms.iter().enumerate() {
        let include_content = position == native || !options.only_native_content;
        let (fixture, entry) = containerd_platform(
            Platform::parse(os, arch),
            layers,
            &media,
            include_content,
            &mut blobs,
        );
        built.push(fixture);
        index_entries.push(entry);
    }
    let mut attestation_manifest_digest = None;
    if options.attestation {
        let entry = attestation_entry(&built[native], repo_tags, &mut blobs);
        attestation_manifest_digest = Some(entry.digest.clone());
        index_entries.push(entry);
    }
    let (target_media_type, target_json) = if options.image_index {
        (
            media.index.to_string(),
            image_index(media.index, &index_entries).into_bytes(),
        )
    } else {
        (
            media.manifest.to_string(),
            built[native].manifest_json.clone(),
        )
    };
    let target_digest = sha256_digest(&target_json);
    blobs.insert(target_json.clone());
    let target = Descriptor::new(&target_media_type, &target_digest, target_json.len());
    let references: Vec<Reference> = repo_tags.iter().map(|tag| Reference::parse(tag)).collect();
    let archive = containerd_archive(&blobs, &target, &references, &built[native]);
    let inspect = containerd_inspect(&built[native], &target, repo_tags);
    ContainerdFixture {
        archive,
        inspect,
        target_json,
        target_digest,
        target_media_type,
        platforms: built,
        native,
        attestation_manifest_digest,
    }
}

/// Builds one platform's blobs (into `blobs` when `include_content`) and its index entry.
fn containerd_platform(
    platform: Platform,
    layers: &[LayerInput],
    media: &MediaTypes,
    include_content: bool,
    blobs: &mut BlobSet,
) -> (PlatformFixture, Descriptor) {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|layer| sha256_digest(&layer.tar))
        .collect();
    let compressed: Vec<Vec<u8>> = layers.iter().map(|layer| gzip(&layer.tar)).collect();
    let layer_descriptors: Vec<Descriptor> = compressed
        .iter()
        .map(|blob| Descriptor::new(media.layer, &sha256_digest(blob), blob.len()))
        .collect();
    let config_json = image_config(&platform, &diff_ids);
    let config_digest = sha256_digest(&config_json);
    let config_descriptor = Descriptor::new(media.config, &config_digest, config_json.len());
    let manifest_json =
        image_manifest(media.manifest, &config_descriptor, &layer_descriptors).into_bytes();
    let manifest_digest = sha256_digest(&manifest_json);
    if include_content {
        compressed.into_iter().for_each(|blob| blobs.insert(blob));
        blobs.insert(config_json.clone());
        blobs.insert(manifest_json.clone());
    }
    let mut entry = Descriptor::new(media.manifest, &manifest_digest, manifest_json.len());
    entry.platform = Some(platform.clone());
    let fixture = PlatformFixture {
        os: platform.os,
        architecture: platform.architecture,
        variant: platform.variant,
        config_json,
        config_digest,
        diff_ids,
        manifest_json,
        manifest_digest,
        compressed_layers: layer_descriptors
            .iter()
            .map(|layer| (layer.digest.clone(), layer.size as u64))
            .collect(),
        content_in_archive: include_content,
    };
    (fixture, entry)
}

/// A BuildKit-style provenance attestation manifest for `subject`, stored in `blobs`.
fn attestation_entry(
    subject: &PlatformFixture,
    repo_tags: &[&str],
    blobs: &mut BlobSet,
) -> Descriptor {
    let name = repo_tags
        .first()
        .map(|tag| Reference::parse(tag).familiar_name())
        .unwrap_or_else(|| "image".into());
    let statement = serde_json::json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "subject": [{"name": format!("pkg:docker/{name}?platform={}%2F{}", subject.os, subject.architecture),
                     "digest": {"sha256": subject.manifest_digest.trim_start_matches("sha256:")}}],
        "predicate": {"builder": {"id": ""}, "buildType": "https://mobyproject.org/buildkit@v1", "metadata": {}},
    });
    let statement = statement.to_string().into_bytes();
    let statement_digest = sha256_digest(&statement);
    let config = serde_json::json!({"architecture": "unknown", "os": "unknown", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [statement_digest]}});
    let config = config.to_string().into_bytes();
    let mut layer = Descriptor::new(IN_TOTO, &statement_digest, statement.len());
    layer.annotations.insert(
        "in-toto.io/predicate-type".into(),
        "https://slsa.dev/provenance/v0.2".into(),
    );
    let config_descriptor = Descriptor::new(OCI_CONFIG, &sha256_digest(&config), config.len());
    let manifest = image_manifest(OCI_MANIFEST, &config_descriptor, &[layer]).into_bytes();
    let mut entry = Descriptor::new(OCI_MANIFEST, &sha256_digest(&manifest), manifest.len());
    entry.annotations.insert(
        "vnd.docker.reference.digest".into(),
        subject.manifest_digest.clone(),
    );
    entry.annotations.insert(
        "vnd.docker.reference.type".into(),
        "attestation-manifest".into(),
    );
    entry.platform = Some(Platform {
        os: "unknown".into(),
        architecture: "unknown".into(),
        variant: None,
    });
    blobs.insert(statement);
    blobs.insert(config);
    blobs.insert(manifest);
    entry
}

fn containerd_archive(
    blobs: &BlobSet,
    target: &Descriptor,
    references: &[Reference],
    native: &PlatformFixture,
) -> Vec<u8> {
    let mut archive = ArchiveWriter::new(0o444, 0o644);
    archive.blobs(blobs);
    archive.file("index.json", &containerd_index_json(target, references));
    archive.file(
        "manifest.json",
        &containerd_manifest_json(native, references),
    );
    archive.readonly_file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    archive.finish()
}

/// `index.json` of the containerd exporter: one entry per name, annotated with the full
/// reference and the tag; unnamed (export by ID) gives one entry without annotations.
fn containerd_index_json(target: &Descriptor, references: &[Reference]) -> Vec<u8> {
    let entries: Vec<Descriptor> = if references.is_empty() {
        vec![target.clone()]
    } else {
        references
            .iter()
            .map(|reference| target.with_name_annotations(reference))
            .collect()
    };
    image_index(OCI_INDEX, &entries).into_bytes()
}

/// `manifest.json` of the containerd exporter: json.Marshal (no newline), one platform only.
fn containerd_manifest_json(native: &PlatformFixture, references: &[Reference]) -> Vec<u8> {
    let layers: Vec<String> = native
        .compressed_layers
        .iter()
        .map(|(digest, _)| json_string(&blob_path(digest)))
        .collect();
    let entry = go_object(&[
        ("Config", json_string(&blob_path(&native.config_digest))),
        ("RepoTags", repo_tags_json(references)),
        ("Layers", format!("[{}]", layers.join(","))),
    ]);
    format!("[{entry}]").into_bytes()
}

fn containerd_inspect(
    native: &PlatformFixture,
    target: &Descriptor,
    repo_tags: &[&str],
) -> serde_json::Value {
    let config: serde_json::Value =
        serde_json::from_slice(&native.config_json).expect("fixture config is JSON");
    let familiar_tags: Vec<String> = repo_tags
        .iter()
        .map(|tag| Reference::parse(tag).familiar())
        .collect();
    let repo_digests: Vec<String> = repo_tags
        .iter()
        .map(|tag| {
            format!(
                "{}@{}",
                Reference::parse(tag).familiar_name(),
                target.digest
            )
        })
        .collect();
    let layer_bytes: u64 = native.compressed_layers.iter().map(|(_, size)| size).sum();
    // The containerd store sums the packed sizes of target, platform manifest, config and layers.
    let size = target.size as u64
        + native.manifest_json.len() as u64
        + native.config_json.len() as u64
        + layer_bytes;
    let mut inspect = common_inspect(&config, &native.diff_ids, &familiar_tags, size);
    inspect["Id"] = serde_json::json!(target.digest);
    inspect["RepoDigests"] = serde_json::json!(repo_digests);
    inspect["GraphDriver"] = serde_json::json!({"Data": null, "Name": "overlayfs"});
    inspect["Descriptor"] = serde_json::json!({"mediaType": target.media_type, "digest": target.digest, "size": target.size});
    inspect
}

/// The classic store reports no `Descriptor` ("only set if the daemon provides a multi-platform
/// image store", moby api/types/image/image_inspect.go) and no RepoDigests for local builds.
fn classic_inspect(
    platform: &Platform,
    config_digest: &str,
    diff_ids: &[String],
    repo_tags: &[&str],
    size: u64,
) -> serde_json::Value {
    let config = serde_json::json!({"architecture": platform.architecture, "os": platform.os,
        "config": container_config(), "created": CREATED});
    let familiar_tags: Vec<String> = repo_tags
        .iter()
        .map(|tag| Reference::parse(tag).familiar())
        .collect();
    let mut inspect = common_inspect(&config, diff_ids, &familiar_tags, size);
    inspect["Id"] = serde_json::json!(config_digest);
    inspect["RepoDigests"] = serde_json::json!([]);
    inspect["GraphDriver"] = serde_json::json!({"Data": {"MergedDir": "/var/lib/docker/overlay2/fixture/merged"}, "Name": "overlay2"});
    if let Some(variant) = &platform.variant {
        inspect["Variant"] = serde_json::json!(variant);
    }
    inspect
}

fn common_inspect(
    config: &serde_json::Value,
    diff_ids: &[String],
    familiar_tags: &[String],
    size: u64,
) -> serde_json::Value {
    let mut inspect = serde_json::json!({
        "RepoTags": familiar_tags,
        "Parent": "",
        "Comment": "",
        "Created": config["created"],
        "DockerVersion": "",
        "Author": "",
        "Config": config["config"],
        "Architecture": config["architecture"],
        "Os": config["os"],
        "Size": size,
        "RootFS": {"Type": "layers", "Layers": diff_ids},
        "Metadata": {"LastTagTime": CREATED},
    });
    if let Some(variant) = config.get("variant") {
        inspect["Variant"] = variant.clone();
    }
    inspect
}

fn container_config() -> serde_json::Value {
    serde_json::json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["/bin/sh"],
        "WorkingDir": "/",
    })
}

/// An image config as BuildKit writes it (keys sorted, which serde_json's map also does).
fn image_config(platform: &Platform, diff_ids: &[String]) -> Vec<u8> {
    let history: Vec<serde_json::Value> = (0..diff_ids.len())
        .map(|position| serde_json::json!({"created": CREATED, "created_by": format!("COPY layer-{position} / # buildkit"),
            "comment": "buildkit.dockerfile.v0"}))
        .collect();
    let mut config = serde_json::json!({
        "architecture": platform.architecture,
        "config": container_config(),
        "created": CREATED,
        "history": history,
        "os": platform.os,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    if let Some(variant) = &platform.variant {
        config["variant"] = serde_json::json!(variant);
    }
    config.to_string().into_bytes()
}

/// Legacy v1 layer JSONs the classic exporter still writes as unreferenced blobs (one per
/// layer). Approximations: their content only matters in that a reader must skip them.
fn legacy_layer_jsons(platform: &Platform, diff_ids: &[String]) -> Vec<Vec<u8>> {
    let mut parent: Option<String> = None;
    let mut documents = Vec::new();
    for (position, diff_id) in diff_ids.iter().enumerate() {
        let v1_id = hex::encode(Sha256::digest(format!("{diff_id} {parent:?}")));
        let parent_field = parent
            .as_ref()
            .map(|id| format!(r#","parent":"{id}""#))
            .unwrap_or_default();
        let created = if position + 1 == diff_ids.len() {
            CREATED
        } else {
            "1970-01-01T00:00:00Z"
        };
        let document = format!(
            r#"{{"id":"{v1_id}"{parent_field},"created":"{created}","container_config":{EMPTY_CONTAINER_CONFIG},"os":"{}"}}"#,
            platform.os
        );
        documents.push(document.into_bytes());
        parent = Some(v1_id);
    }
    documents
}

/// `index.json` of the classic exporter: the manifest once per tag, with name annotations.
fn classic_index_json(manifest: &Descriptor, references: &[Reference]) -> Vec<u8> {
    let entries: Vec<Descriptor> = if references.is_empty() {
        vec![manifest.clone()]
    } else {
        references
            .iter()
            .map(|reference| manifest.with_name_annotations(reference))
            .collect()
    };
    image_index(OCI_INDEX, &entries).into_bytes()
}

/// `manifest.json` of the classic exporter (json.Encoder: trailing newline, LayerSources per layer).
fn classic_manifest_json(
    config_digest: &str,
    references: &[Reference],
    layers: &[Descriptor],
) -> Vec<u8> {
    let paths: Vec<String> = layers
        .iter()
        .map(|layer| json_string(&blob_path(&layer.digest)))
        .collect();
    let sources: BTreeMap<&str, String> = layers
        .iter()
        .map(|layer| {
            // distribution.Descriptor field order: mediaType, size, digest.
            let source = go_object(&[
                ("mediaType", json_string(&layer.media_type)),
                ("size", layer.size.to_string()),
                ("digest", json_string(&layer.digest)),
            ]);
            (layer.digest.as_str(), source)
        })
        .collect();
    let sources: Vec<String> = sources
        .iter()
        .map(|(diff_id, source)| format!("{}:{source}", json_string(diff_id)))
        .collect();
    let entry = go_object(&[
        ("Config", json_string(&blob_path(config_digest))),
        ("RepoTags", repo_tags_json(references)),
        ("Layers", format!("[{}]", paths.join(","))),
        ("LayerSources", format!("{{{}}}", sources.join(","))),
    ]);
    format!("[{entry}]\n").into_bytes()
}

/// `repositories`: familiar name -> tag -> hex of the top layer's diffID (as moby v25+ writes it).
fn classic_repositories_json(references: &[Reference], diff_ids: &[String]) -> Vec<u8> {
    let top_layer = diff_ids
        .last()
        .map(|diff_id| diff_id.trim_start_matches("sha256:"))
        .unwrap_or_default();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for reference in references {
        repositories
            .entry(reference.familiar_name())
            .or_default()
            .insert(reference.tag.clone(), top_layer.to_string());
    }
    let mut bytes = serde_json::to_vec(&repositories).expect("string maps serialize");
    bytes.push(b'\n');
    bytes
}

/// Go nil slice marshals as null: an archive saved by ID has `"RepoTags":null`.
fn repo_tags_json(references: &[Reference]) -> String {
    if references.is_empty() {
        return "null".into();
    }
    let tags: Vec<String> = references
        .iter()
        .map(|reference| json_string(&reference.familiar()))
        .collect();
    format!("[{}]", tags.join(","))
}

/// An image manifest (OCI or Docker schema 2, both carry `mediaType`).
fn image_manifest(media_type: &str, config: &Descriptor, layers: &[Descriptor]) -> String {
    let layers: Vec<String> = layers.iter().map(Descriptor::to_go_json).collect();
    go_object(&[
        ("schemaVersion", "2".to_string()),
        ("mediaType", json_string(media_type)),
        ("config", config.to_go_json()),
        ("layers", format!("[{}]", layers.join(","))),
    ])
}

fn image_index(media_type: &str, manifests: &[Descriptor]) -> String {
    let manifests: Vec<String> = manifests.iter().map(Descriptor::to_go_json).collect();
    go_object(&[
        ("schemaVersion", "2".to_string()),
        ("mediaType", json_string(media_type)),
        ("manifests", format!("[{}]", manifests.join(","))),
    ])
}

fn blob_path(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder
        .write_all(bytes)
        .expect("gzip into a Vec cannot fail");
    encoder.finish().expect("gzip into a Vec cannot fail")
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).expect("strings serialize")
}

/// A JSON object with fields in the given order (Go struct order); values are JSON already.
fn go_object(fields: &[(&str, String)]) -> String {
    let members: Vec<String> = fields
        .iter()
        .map(|(key, value)| format!("{}:{value}", json_string(key)))
        .collect();
    format!("{{{}}}", members.join(","))
}

/// Media types of one family (OCI or Docker schema 2).
struct MediaTypes {
    manifest: &'static str,
    index: &'static str,
    config: &'static str,
    layer: &'static str,
}

impl MediaTypes {
    fn choose(docker: bool) -> MediaTypes {
        if docker {
            MediaTypes {
                manifest: DOCKER_MANIFEST,
                index: DOCKER_MANIFEST_LIST,
                config: DOCKER_CONFIG,
                layer: DOCKER_LAYER_TAR_GZIP,
            }
        } else {
            MediaTypes {
                manifest: OCI_MANIFEST,
                index: OCI_INDEX,
                config: OCI_CONFIG,
                layer: OCI_LAYER_TAR_GZIP,
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Platform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

impl Platform {
    /// `("linux", "arm/v7")` -> architecture `arm`, variant `v7`.
    fn parse(os: &str, arch: &str) -> Platform {
        let (architecture, variant) = match arch.split_once('/') {
            Some((architecture, variant)) => (architecture, Some(variant.to_string())),
            None => (arch, None),
        };
        Platform {
            os: os.into(),
            architecture: architecture.into(),
            variant,
        }
    }

    /// ocispec.Platform field order: architecture, os, (os.version, os.features), variant.
    fn to_go_json(&self) -> String {
        let mut fields = vec![
            ("architecture", json_string(&self.architecture)),
            ("os", json_string(&self.os)),
        ];
        if let Some(variant) = &self.variant {
            fields.push(("variant", json_string(variant)));
        }
        go_object(&fields)
    }
}

/// An OCI descriptor; annotations are a Go map, so they marshal with sorted keys.
#[derive(Clone, Debug)]
struct Descriptor {
    media_type: String,
    digest: String,
    size: usize,
    annotations: BTreeMap<String, String>,
    platform: Option<Platform>,
}

impl Descriptor {
    fn new(media_type: &str, digest: &str, size: usize) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest: digest.into(),
            size,
            annotations: BTreeMap::new(),
            platform: None,
        }
    }

    /// The `index.json` entry naming an image: containerd's full name and the OCI ref name (tag).
    fn with_name_annotations(&self, reference: &Reference) -> Descriptor {
        let mut named = self.clone();
        named
            .annotations
            .insert("io.containerd.image.name".into(), reference.full());
        named.annotations.insert(
            "org.opencontainers.image.ref.name".into(),
            reference.tag.clone(),
        );
        named
    }

    /// ocispec.Descriptor field order: mediaType, digest, size, (urls), annotations, (data), platform.
    fn to_go_json(&self) -> String {
        let mut fields = vec![
            ("mediaType", json_string(&self.media_type)),
            ("digest", json_string(&self.digest)),
            ("size", self.size.to_string()),
        ];
        if !self.annotations.is_empty() {
            fields.push((
                "annotations",
                serde_json::to_string(&self.annotations).expect("string maps serialize"),
            ));
        }
        if let Some(platform) = &self.platform {
            fields.push(("platform", platform.to_go_json()));
        }
        go_object(&fields)
    }
}

/// A tagged image reference split the way Docker normalises it.
#[derive(Clone, Debug)]
struct Reference {
    domain: String,
    path: String,
    tag: String,
}

impl Reference {
    /// `myapp` -> docker.io / library/myapp / latest; `localhost:5000/a/b:v1` -> as written.
    fn parse(reference: &str) -> Reference {
        let (first, remainder) = reference.split_once('/').unwrap_or(("", reference));
        let has_domain = !first.is_empty()
            && (first.contains('.') || first.contains(':') || first == "localhost");
        let (domain, path_and_tag) = match (has_domain, first.is_empty()) {
            (true, _) => (first.to_string(), remainder.to_string()),
            (false, true) => ("docker.io".to_string(), format!("library/{remainder}")),
            (false, false) => ("docker.io".to_string(), reference.to_string()),
        };
        let last_component_start = path_and_tag.rfind('/').map_or(0, |slash| slash + 1);
        match path_and_tag[last_component_start..].rfind(':') {
            Some(colon) => {
                let split_at = last_component_start + colon;
                Reference {
                    domain,
                    path: path_and_tag[..split_at].into(),
                    tag: path_and_tag[split_at + 1..].into(),
                }
            }
            None => Reference {
                domain,
                path: path_and_tag,
                tag: "latest".into(),
            },
        }
    }

    fn full(&self) -> String {
        format!("{}/{}:{}", self.domain, self.path, self.tag)
    }

    /// Docker's short form of the name: no `docker.io/`, no `library/`.
    fn familiar_name(&self) -> String {
        if self.domain != "docker.io" {
            return format!("{}/{}", self.domain, self.path);
        }
        match self.path.strip_prefix("library/") {
            Some(short) if !short.contains('/') => short.to_string(),
            _ => self.path.clone(),
        }
    }

    fn familiar(&self) -> String {
        format!("{}:{}", self.familiar_name(), self.tag)
    }
}

/// Blobs keyed by digest hex, so the archive lists each once and in name order.
#[derive(Default)]
struct BlobSet {
    by_hex: BTreeMap<String, Vec<u8>>,
}

impl BlobSet {
    fn insert(&mut self, blob: Vec<u8>) {
        self.by_hex.insert(hex::encode(Sha256::digest(&blob)), blob);
    }
}

/// Writes the archive: directory entries first, then entries in the order given.
struct ArchiveWriter {
    builder: tar::Builder<Vec<u8>>,
    blob_mode: u32,
    file_mode: u32,
}

impl ArchiveWriter {
    fn new(blob_mode: u32, file_mode: u32) -> ArchiveWriter {
        ArchiveWriter {
            builder: tar::Builder::new(Vec::new()),
            blob_mode,
            file_mode,
        }
    }

    fn blobs(&mut self, blobs: &BlobSet) {
        self.entry("blobs/", tar::EntryType::Directory, 0o755, &[]);
        self.entry("blobs/sha256/", tar::EntryType::Directory, 0o755, &[]);
        for (hex_digest, blob) in &blobs.by_hex {
            self.entry(
                &format!("blobs/sha256/{hex_digest}"),
                tar::EntryType::Regular,
                self.blob_mode,
                blob,
            );
        }
    }

    fn file(&mut self, name: &str, contents: &[u8]) {
        self.entry(name, tar::EntryType::Regular, self.file_mode, contents);
    }

    fn readonly_file(&mut self, name: &str, contents: &[u8]) {
        self.entry(name, tar::EntryType::Regular, 0o444, contents);
    }

    fn entry(&mut self, name: &str, kind: tar::EntryType, mode: u32, contents: &[u8]) {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        // Both exporters write epoch (classic) or zero (containerd) times for most entries.
        header.set_mtime(0);
        header.set_size(contents.len() as u64);
        self.builder
            .append_data(&mut header, name, contents)
            .expect("archive paths fit a ustar header");
    }

    fn finish(self) -> Vec<u8> {
        self.builder
            .into_inner()
            .expect("writing a tar into a Vec cannot fail")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_like_docker() {
        let short = Reference::parse("myapp");
        assert_eq!(
            (short.full(), short.familiar()),
            (
                "docker.io/library/myapp:latest".into(),
                "myapp:latest".into()
            )
        );
        let registry = Reference::parse("localhost:5000/team/app:v1");
        assert_eq!(
            (registry.full(), registry.familiar()),
            (
                "localhost:5000/team/app:v1".into(),
                "localhost:5000/team/app:v1".into()
            )
        );
        let hub_user = Reference::parse("docker.io/me/app:2");
        assert_eq!(hub_user.familiar(), "me/app:2");
    }

    #[test]
    fn parent_directories_are_listed_outermost_first() {
        assert_eq!(
            parent_directories("a/b/c.txt"),
            vec!["a/".to_string(), "a/b/".to_string()]
        );
        assert!(parent_directories("top.txt").is_empty());
    }
}
