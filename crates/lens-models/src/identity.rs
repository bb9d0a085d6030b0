//! Which weights a model is: the identity `lens serve` reports in `/v1/models`, stores embeddings
//! under, and writes into the artifacts `lens models quantize` makes — so a browser or an edge
//! running the artifact can tell whether its vectors compare with the server's.

/// A model's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelIdentity {
    /// `repo@commit` when pulled from a hub with `lens models pull`, else the directory name and the
    /// first 16 hex characters of a SHA-256 over the weight files (`name@sha256:…`).
    pub id: String,
    /// The repository or directory name.
    pub name: String,
    /// The commit, when pulled.
    pub revision: Option<String>,
}

/// The identity of the checkpoint in `dir` whose weight files are `weights` (`(file name, bytes)`):
/// from `lens-manifest.json` when the directory was pulled, else the directory's name (or `fallback`)
/// and a hash of the weights.
#[cfg(not(target_arch = "wasm32"))]
pub fn identify(dir: &std::path::Path, weights: &[(String, Vec<u8>)], fallback: &str) -> ModelIdentity {
    use sha2::{Digest, Sha256};

    let manifest: Option<serde_json::Value> =
        std::fs::read(dir.join("lens-manifest.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    if let Some(m) = manifest
        && let (Some(repo), Some(commit)) = (m["repo_id"].as_str(), m["commit"].as_str())
    {
        return ModelIdentity { id: format!("{repo}@{commit}"), name: repo.to_string(), revision: Some(commit.into()) };
    }
    let mut hash = Sha256::new();
    for (name, bytes) in weights {
        hash.update(name.as_bytes());
        hash.update(bytes);
    }
    let name = directory_name(dir).unwrap_or_else(|| fallback.into());
    let digest = lens_core::ids::hex_lower(&hash.finalize());
    ModelIdentity { id: format!("{name}@sha256:{}", &digest[..16]), name, revision: None }
}

/// [`identify`] for weights on disk (`(name, path)` of each file), hashed as they are read rather than held
/// in memory: a chat model's checkpoint may be larger than the memory left beside it. The same bytes give
/// the same id as [`identify`].
#[cfg(not(target_arch = "wasm32"))]
pub fn identify_files(
    dir: &std::path::Path,
    files: &[(String, std::path::PathBuf)],
    fallback: &str,
) -> std::io::Result<ModelIdentity> {
    use std::io::Read;

    use sha2::{Digest, Sha256};

    let pulled = identify(dir, &[], fallback);
    if pulled.revision.is_some() {
        return Ok(pulled);
    }
    let mut hash = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    for (name, path) in files {
        hash.update(name.as_bytes());
        let mut file = std::fs::File::open(path)?;
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hash.update(&buffer[..n]);
        }
    }
    let digest = lens_core::ids::hex_lower(&hash.finalize());
    Ok(ModelIdentity { id: format!("{}@sha256:{}", pulled.name, &digest[..16]), name: pulled.name, revision: None })
}

/// The last component of `dir` once resolved (`.` becomes the current directory's name).
#[cfg(not(target_arch = "wasm32"))]
pub fn directory_name(dir: &std::path::Path) -> Option<String> {
    dir.canonicalize().ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
}
