//! Checkpoints from a HuggingFace hub (or any server with its layout): `lens models pull`, and `--model
//! org/name` wherever a model is named.
//!
//! The hub's layout: `GET {endpoint}/api/models/{repo}/revision/{rev}?blobs=true` lists the files of a
//! revision with their git blob ids and, for LFS files, sha256 and size; `GET
//! {endpoint}/{repo}/resolve/{commit}/{file}` serves a file (LFS files by redirect to a CDN). Each file
//! is written to `{file}.part`, resumed with a `Range` request after an interruption, verified against
//! the listed sha256 (LFS) or git blob id (others), and only then renamed into place: a directory never
//! holds a file that did not check out.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use reqwest::header::{AUTHORIZATION, RANGE};
use serde::{Deserialize, Serialize};
use sha1::Digest as _;

/// Attempts per file; each retry resumes where the last one stopped.
const ATTEMPTS: usize = 4;
/// The API listing is small; a bigger one is not a hub.
const MAX_LISTING_BYTES: u64 = 16 << 20;

/// One file of the revision as the hub lists it.
#[derive(Debug, Deserialize)]
struct Sibling {
    rfilename: String,
    #[serde(default, rename = "blobId")]
    blob_id: Option<String>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    lfs: Option<Lfs>,
}

#[derive(Debug, Deserialize)]
struct Lfs {
    sha256: String,
    size: u64,
}

#[derive(Debug, Deserialize)]
struct RevisionInfo {
    sha: String,
    siblings: Vec<Sibling>,
}

/// What was pulled, written beside the files as `lens-manifest.json`.
#[derive(Debug, Serialize)]
struct Manifest<'a> {
    repo_id: &'a str,
    revision: &'a str,
    commit: &'a str,
    files: Vec<ManifestFile>,
}

#[derive(Debug, Serialize)]
struct ManifestFile {
    name: String,
    size: u64,
    sha256: String,
}

/// Files a model directory needs besides its weights; the first is required.
const METADATA_FILES: &[&str] = &[
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "preprocessor_config.json",
    "generation_config.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    // Chat models: the template (transformers 5 writes it apart), and LLaVA's processor settings and tokens.
    "chat_template.jinja",
    "chat_template.json",
    "processor_config.json",
    "added_tokens.json",
];

/// `model` as the commands and `lens serve` take it: a directory or file that exists is used as it is; a
/// hub repository id (`org/name`) is pulled once into [`default_dir`] and reused from there on later
/// runs (offline too). `flag` names the setting in errors.
pub fn resolve_model(model: &Path, flag: &str) -> Result<PathBuf> {
    if model.exists() {
        return Ok(model.to_path_buf());
    }
    let repo = model.to_str().filter(|r| !r.starts_with('.') && !r.starts_with('/') && validate_repo_id(r).is_ok());
    let Some(repo) = repo else {
        bail!("{flag} {}: no such directory (nor a hub repository id like `org/name`)", model.display());
    };
    let dir = default_dir(repo)?;
    let manifest = fs::read(dir.join("lens-manifest.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    if manifest.is_some_and(|m| m["repo_id"] == repo) {
        tracing::info!(repo, dir = %dir.display(), "model already pulled");
        return Ok(dir);
    }
    tracing::info!(repo, dir = %dir.display(), "pulling the model from the hub");
    pull(repo, "main", Some(&dir))
}

/// Downloads revision `revision` of `repo_id` into `dir` (default [`default_dir`]) and returns the directory.
pub fn pull(repo_id: &str, revision: &str, dir: Option<&Path>) -> Result<PathBuf> {
    pull_files(repo_id, revision, dir, None)
}

/// Downloads one file of `repo_id` (a llama.cpp `.gguf` checkpoint: one file is the whole model, and GGUF
/// repositories hold many quantizations of it) into `dir` and returns the file's path.
pub fn pull_file(repo_id: &str, revision: &str, dir: Option<&Path>, file: &str) -> Result<PathBuf> {
    if !file.ends_with(".gguf") || file.contains("..") || file.starts_with('/') || file.contains('\\') {
        bail!("--file takes the name of a .gguf file in the repository, not `{file}`");
    }
    Ok(pull_files(repo_id, revision, dir, Some(file))?.join(file))
}

fn pull_files(repo_id: &str, revision: &str, dir: Option<&Path>, only: Option<&str>) -> Result<PathBuf> {
    validate_repo_id(repo_id)?;
    if revision.is_empty() || revision.contains("..") || revision.starts_with('/') {
        bail!("invalid revision `{revision}`");
    }
    let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
    let endpoint = endpoint.trim_end_matches('/');
    let token = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty());
    let dir = match dir {
        Some(dir) => dir.to_path_buf(),
        None => default_dir(repo_id)?,
    };
    let client = Client::builder()
        .connect_timeout(Duration::from_secs(30))
        // Blocking reqwest applies this to each read of the body, not the whole transfer: a stalled
        // connection fails after a minute, a slow large download does not.
        .timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::limited(10))
        .user_agent(concat!("lens/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let auth = |req: reqwest::blocking::RequestBuilder| match &token {
        Some(t) => req.header(AUTHORIZATION, format!("Bearer {t}")),
        None => req,
    };

    let url = format!("{endpoint}/api/models/{repo_id}/revision/{revision}?blobs=true");
    let response = auth(client.get(&url)).send().with_context(|| format!("cannot reach {endpoint}"))?;
    let response = check_status(response, repo_id, revision)?;
    let mut body = Vec::new();
    response.take(MAX_LISTING_BYTES).read_to_end(&mut body)?;
    let info: RevisionInfo = serde_json::from_slice(&body).with_context(|| format!("unexpected answer from {url}"))?;
    if info.sha.len() < 7 || !info.sha.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("the hub answered an invalid commit id `{}`", info.sha);
    }

    let wanted = match only {
        Some(name) => vec![
            info.siblings
                .iter()
                .find(|s| s.rfilename == name)
                .with_context(|| format!("`{repo_id}` at `{revision}` has no file `{name}`"))?,
        ],
        None => select_files(&info.siblings)?,
    };
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut manifest = Manifest { repo_id, revision, commit: &info.sha, files: vec![] };
    for sibling in wanted {
        let url = format!("{endpoint}/{repo_id}/resolve/{}/{}", info.sha, sibling.rfilename);
        let sha256 = fetch_file(&client, &auth, &url, &dir, sibling)?;
        let size = fs::metadata(dir.join(&sibling.rfilename))?.len();
        manifest.files.push(ManifestFile { name: sibling.rfilename.clone(), size, sha256 });
    }
    fs::write(dir.join("lens-manifest.json"), serde_json::to_vec_pretty(&manifest)?)?;
    Ok(dir)
}

pub fn validate_repo_id(repo: &str) -> Result<()> {
    let ok = repo.split('/').count() <= 2
        && !repo.is_empty()
        && repo.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        });
    if !ok {
        bail!("invalid repository id `{repo}` (expected `name` or `org/name`)");
    }
    Ok(())
}

pub fn default_dir(repo: &str) -> Result<PathBuf> {
    let home = match std::env::var_os("LENS_HOME") {
        Some(h) => PathBuf::from(h),
        None => {
            let home = std::env::var_os("HOME").context("neither LENS_HOME nor HOME is set; pass --dir")?;
            PathBuf::from(home).join(".cache").join("lens")
        }
    };
    Ok(home.join("models").join(repo.replace('/', "--")))
}

fn check_status(response: Response, repo: &str, revision: &str) -> Result<Response> {
    match response.status() {
        s if s.is_success() => Ok(response),
        StatusCode::NOT_FOUND => bail!("repository `{repo}` or revision `{revision}` not found"),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            bail!("access to `{repo}` denied ({}); set HF_TOKEN for gated or private repositories", response.status())
        }
        s => bail!("the hub answered {s} for {}", response.url()),
    }
}

/// The metadata files present, and the safetensors weights (one file, or an index and its shards).
fn select_files(siblings: &[Sibling]) -> Result<Vec<&Sibling>> {
    let find = |name: &str| siblings.iter().find(|s| s.rfilename == name);
    if find(METADATA_FILES[0]).is_none() {
        bail!("the repository has no config.json: not a model checkpoint");
    }
    let mut files: Vec<&Sibling> = METADATA_FILES.iter().filter_map(|n| find(n)).collect();
    if let Some(single) = find("model.safetensors") {
        files.push(single);
    } else if let Some(index) = find("model.safetensors.index.json") {
        files.push(index);
        files.extend(
            siblings.iter().filter(|s| s.rfilename.starts_with("model-") && s.rfilename.ends_with(".safetensors")),
        );
    } else {
        bail!(
            "the repository has no model.safetensors (PyTorch .bin weights are not read: convert them to safetensors)"
        );
    }
    for f in &files {
        if f.rfilename.contains("..") || f.rfilename.starts_with('/') || f.rfilename.contains('\\') {
            bail!("refusing file name `{}`", f.rfilename);
        }
    }
    Ok(files)
}

/// Download one file (resuming a `.part`), verify it, move it into place; returns its sha256.
fn fetch_file(
    client: &Client,
    auth: &dyn Fn(reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder,
    url: &str,
    dir: &Path,
    sibling: &Sibling,
) -> Result<String> {
    let dest = dir.join(&sibling.rfilename);
    let expected_size = sibling.lfs.as_ref().map(|l| l.size).or(sibling.size);
    if dest.is_file() && verify(&dest, sibling).is_ok() {
        eprintln!("{}: up to date", sibling.rfilename);
        return sha256_file(&dest);
    }
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)?;
    }
    let part = PathBuf::from(format!("{}.part", dest.display()));
    let bar = ProgressBar::new(expected_size.unwrap_or(0));
    bar.set_style(
        ProgressStyle::with_template("{msg:30!} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}")
            .expect("static template"),
    );
    bar.set_message(sibling.rfilename.clone());
    let mut last_error = None;
    for _ in 0..ATTEMPTS {
        match download_into(client, auth, url, &part, expected_size, &bar) {
            Ok(()) => {
                last_error = None;
                break;
            }
            Err(e) => last_error = Some(e),
        }
    }
    bar.finish_and_clear();
    if let Some(e) = last_error {
        return Err(e.context(format!("download of {} failed after {ATTEMPTS} attempts", sibling.rfilename)));
    }
    if let Err(e) = verify(&part, sibling) {
        let _ = fs::remove_file(&part);
        return Err(e.context(format!("{} is corrupt; the partial file was removed", sibling.rfilename)));
    }
    fs::rename(&part, &dest)?;
    eprintln!("{}: downloaded", sibling.rfilename);
    sha256_file(&dest)
}

/// Append the rest of the file to `part`, asking for the missing byte range.
fn download_into(
    client: &Client,
    auth: &dyn Fn(reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder,
    url: &str,
    part: &Path,
    expected_size: Option<u64>,
    bar: &ProgressBar,
) -> Result<()> {
    let have = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    if expected_size.is_some_and(|size| have >= size) {
        return Ok(()); // complete; verification decides whether it is right
    }
    let mut request = auth(client.get(url));
    if have > 0 {
        request = request.header(RANGE, format!("bytes={have}-"));
    }
    let response = request.send().with_context(|| format!("cannot fetch {url}"))?;
    let (mut file, start) = match response.status() {
        StatusCode::PARTIAL_CONTENT => (OpenOptions::new().append(true).open(part)?, have),
        s if s.is_success() => (File::create(part)?, 0), // server ignored the range: start over
        StatusCode::RANGE_NOT_SATISFIABLE => {
            fs::remove_file(part)?;
            bail!("server refused to resume; starting over");
        }
        s => bail!("{url} answered {s}"),
    };
    bar.set_position(start);
    let limit = expected_size.map(|s| s - start).unwrap_or(u64::MAX);
    let mut reader = response.take(limit);
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buffer).context("connection lost")?;
        if n == 0 {
            break;
        }
        file.write_all(&buffer[..n])?;
        bar.inc(n as u64);
    }
    file.sync_all()?;
    let got = fs::metadata(part)?.len();
    if let Some(size) = expected_size
        && got < size
    {
        bail!("connection closed after {got} of {size} bytes");
    }
    Ok(())
}

/// Check size and checksum against the listing: sha256 for LFS files, the git blob id otherwise.
fn verify(path: &Path, sibling: &Sibling) -> Result<()> {
    let len = fs::metadata(path)?.len();
    if let Some(lfs) = &sibling.lfs {
        if len != lfs.size {
            bail!("size {len} differs from the listed {}", lfs.size);
        }
        let sha = sha256_file(path)?;
        if !sha.eq_ignore_ascii_case(&lfs.sha256) {
            bail!("sha256 {sha} differs from the listed {}", lfs.sha256);
        }
    } else if let Some(blob_id) = &sibling.blob_id {
        let oid = git_blob_id(path)?;
        if !oid.eq_ignore_ascii_case(blob_id) {
            bail!("git blob id {oid} differs from the listed {blob_id}");
        }
    } else if let Some(size) = sibling.size
        && size != len
    {
        bail!("size {len} differs from the listed {size}");
    }
    Ok(())
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut File::open(path)?, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// Git's object id of a file's content: sha1 of `blob {len}\0{content}`.
fn git_blob_id(path: &Path) -> Result<String> {
    let len = fs::metadata(path)?.len();
    let mut hasher = sha1::Sha1::new();
    hasher.update(format!("blob {len}\0").as_bytes());
    std::io::copy(&mut File::open(path)?, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}
