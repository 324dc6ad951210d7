//! Which layer a legacy `docker save` directory holds, without reading it.
//!
//! Docker < 25 writes each layer as `<v1 id>/layer.tar`, and the v1 ID is not
//! the layer's diffID: it is the SHA-256 of a small JSON document that names
//! the layer's chain ID (moby's `image/v1.CreateID`). Every directory carries
//! that document, minus two edits, as `<v1 id>/json`, and the archive lists
//! `json` before `layer.tar`. Rebuilding the document for each chain ID of the
//! image and hashing it tells which layer the directory holds: a match is a
//! proof (the hash commits to the chain ID), so an unchanged layer can be
//! skipped unread and a changed one is known before its first byte.
//!
//! What CreateID hashes: the directory's v1 image with `id` removed, `parent`
//! as a full `sha256:` digest, `layer_id` added, top-level keys sorted (Go
//! sorts map keys bytewise) and values kept byte for byte. The `os` field is
//! set after hashing for every layer but the top one, so both variants are
//! tried. When nothing matches (another daemon, another format) the caller
//! falls back to hashing the layer.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// The chain IDs of an image's layers, to recognise its v1 directories.
#[derive(Debug, Clone)]
pub struct LegacyLayers {
    /// (chain ID, diffID) from the bottom layer up.
    chains: Vec<(String, String)>,
}

impl LegacyLayers {
    pub fn new(diff_ids: &[String]) -> LegacyLayers {
        let mut chains: Vec<(String, String)> = Vec::with_capacity(diff_ids.len());
        for diff_id in diff_ids {
            let chain = match chains.last() {
                None => diff_id.clone(),
                Some((below, _)) => {
                    let digest = Sha256::digest(format!("{below} {diff_id}").as_bytes());
                    format!("sha256:{}", hex::encode(digest))
                }
            };
            chains.push((chain, diff_id.clone()));
        }
        LegacyLayers { chains }
    }

    /// The diffID held by the directory `v1_id` (64 hex digits), whose `json`
    /// file is `document`; `None` when the document proves nothing.
    pub fn identify(&self, v1_id: &str, document: &[u8]) -> Option<String> {
        let fields: BTreeMap<String, &RawValue> = serde_json::from_slice(document).ok()?;
        let parent = match fields.get("parent") {
            Some(raw) => Some(serde_json::from_str::<String>(raw.get()).ok()?),
            None => None,
        };
        for keep_os in [false, true] {
            if !keep_os && !fields.contains_key("os") {
                continue;
            }
            for (chain, diff_id) in &self.chains {
                let rebuilt = create_id_document(&fields, parent.as_deref(), chain, keep_os);
                if hex::encode(Sha256::digest(rebuilt.as_bytes())) == v1_id {
                    return Some(diff_id.clone());
                }
            }
        }
        None
    }
}

/// The document moby's CreateID hashes for a layer with chain ID `chain`.
fn create_id_document(
    fields: &BTreeMap<String, &RawValue>,
    parent: Option<&str>,
    chain: &str,
    keep_os: bool,
) -> String {
    let mut document: BTreeMap<&str, String> = fields
        .iter()
        .filter(|(key, _)| key.as_str() != "id" && (keep_os || key.as_str() != "os"))
        .map(|(key, value)| (key.as_str(), value.get().to_owned()))
        .collect();
    if let Some(parent) = parent {
        document.insert("parent", json_string(&format!("sha256:{parent}")));
    }
    document.insert("layer_id", json_string(chain));
    let mut text = String::from("{");
    for (index, (key, value)) in document.iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        text.push_str(&json_string(key));
        text.push(':');
        text.push_str(value);
    }
    text.push('}');
    text
}

fn json_string(value: &str) -> String {
    serde_json::to_string(value).expect("a string always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    // Recorded from `docker save` of a three-layer image on dockerd 20.10.24:
    // the directory names and `json` files, and the image's diffIDs.
    const DIFF_IDS: [&str; 3] = [
        "sha256:b17c100267002455a38da163e73e1c6dd4ff768a631b9fafa36608e39121b16c",
        "sha256:d1f0f57383608158ada081090d6b203c85f7840e45e149c9ddbeeef78681cab8",
        "sha256:ba8a7cf32a8a8bac96083857e3b679eb9fee7cf25522f8fed87a20ae20c6e0a9",
    ];
    const EMPTY_CONTAINER_CONFIG: &str = r#"{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null}"#;
    const BOTTOM: &str = "21541298b3f86e8ece06950dcbf94899f00f7d0dbc590fb38777df977ccac8d7";
    const MIDDLE: &str = "47005528a297b4867f9053fd7eb01907ddcced18ed0b038c2bead1d9b93ec9f1";
    const TOP: &str = "788574c0df11163b6a60a9e7a31817e0933d40877f4f831db4edabaec154e8f6";

    fn lower_json(id: &str, parent: Option<&str>) -> String {
        let parent = parent
            .map(|parent| format!(r#""parent":"{parent}","#))
            .unwrap_or_default();
        format!(
            r#"{{"id":"{id}",{parent}"created":"1970-01-01T00:00:00Z","container_config":{EMPTY_CONTAINER_CONFIG},"os":"linux"}}"#
        )
    }

    fn top_json() -> String {
        let config = r#"{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":null,"Image":"sha256:b1229f161fa62611bde85ce019a5b567de1035e8fa464696f272bf912affb5aa","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null}"#;
        let container_config = r##"{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/bin/sh","-c","#(nop) COPY dir:a922d6a9ee77df66df2f20e3296debc577e5922092346f7c4b25c8d533b39359 in /app "],"Image":"sha256:b1229f161fa62611bde85ce019a5b567de1035e8fa464696f272bf912affb5aa","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null}"##;
        format!(
            r#"{{"id":"{TOP}","parent":"{MIDDLE}","created":"2026-11-29T21:23:13.083140865Z","container_config":{container_config},"docker_version":"20.10.24+dfsg1","config":{config},"architecture":"amd64","os":"linux"}}"#
        )
    }

    fn layers() -> LegacyLayers {
        LegacyLayers::new(&DIFF_IDS.map(str::to_owned))
    }

    #[test]
    fn identifies_every_directory_of_a_docker_20_export() {
        let layers = layers();
        assert_eq!(
            layers.identify(BOTTOM, lower_json(BOTTOM, None).as_bytes()),
            Some(DIFF_IDS[0].to_owned())
        );
        assert_eq!(
            layers.identify(MIDDLE, lower_json(MIDDLE, Some(BOTTOM)).as_bytes()),
            Some(DIFF_IDS[1].to_owned())
        );
        assert_eq!(
            layers.identify(TOP, top_json().as_bytes()),
            Some(DIFF_IDS[2].to_owned())
        );
    }

    #[test]
    fn proves_nothing_for_other_layers_or_edited_documents() {
        // The same directory in an image whose lower layers differ.
        let other = LegacyLayers::new(&[DIFF_IDS[1].to_owned(), DIFF_IDS[0].to_owned()]);
        assert_eq!(
            other.identify(BOTTOM, lower_json(BOTTOM, None).as_bytes()),
            None
        );
        // A document that does not hash to its directory's name.
        let edited = lower_json(MIDDLE, Some(BOTTOM)).replace("1970", "1971");
        assert_eq!(layers().identify(MIDDLE, edited.as_bytes()), None);
        // Under another directory name.
        assert_eq!(
            layers().identify(TOP, lower_json(BOTTOM, None).as_bytes()),
            None
        );
        for garbage in [&b""[..], b"[]", b"{\"parent\":3}", b"not json"] {
            assert_eq!(layers().identify(BOTTOM, garbage), None);
        }
    }

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let layers = layers();
        assert_eq!(layers.chains[0].0, DIFF_IDS[0]);
        let expected = Sha256::digest(format!("{} {}", DIFF_IDS[0], DIFF_IDS[1]).as_bytes());
        assert_eq!(
            layers.chains[1].0,
            format!("sha256:{}", hex::encode(expected))
        );
        assert_eq!(layers.chains[2].1, DIFF_IDS[2]);
    }
}
