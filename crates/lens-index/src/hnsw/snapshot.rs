//! The HNSW snapshot file: the graph as it is in memory (vectors, layers, links, ids and tombstones),
//! so that loading is reading, not rebuilding. With a checksum.
//!
//! Layout, all integers little-endian:
//!
//! ```text
//! magic            8 bytes  "LENSHNSW"
//! version          u32      2
//! dim              u32
//! max_nb_connection, ef_construction, ef_search, max_layer   4 × u64
//! meta length      u64, then that many bytes of UTF-8
//! slots            u64      S
//! entry point      u64      a slot, or u64::MAX when S = 0
//! nodes            S × (id u64, layer u8, tombstone u8)
//! vectors          S × dim × f32 (unit length)
//! layer-0 links    S × (2M + 1) × u32: a count, then the linked slots
//! upper links      for each slot with layer L > 0, in slot order: L × (M + 1) × u32
//! crc32            u32      CRC-32 (IEEE) of every byte before it
//! ```
//!
//! Version 1 (vectors only, the graph rebuilt on load) is refused; the server then rebuilds from its
//! catalog, as for any unreadable snapshot.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use super::graph::Shape;
use crate::IndexError;
use crate::kernels::dot_f32;
use crate::params::HnswParams;

const MAGIC: &[u8; 8] = b"LENSHNSW";
const VERSION: u32 = 2;
/// The snapshot's name inside the caller's directory.
pub(crate) const FILE_NAME: &str = "hnsw.snapshot";
const TMP_NAME: &str = "hnsw.snapshot.tmp";
/// Largest meta string accepted on load (the header is read before the checksum can vouch for it).
const MAX_META: u64 = 1 << 20;
const NO_ENTRY: u64 = u64::MAX;
/// Bytes per node record: id, layer, tombstone.
const NODE_BYTES: u64 = 10;

/// Everything a snapshot holds, borrowed for writing or owned after reading.
pub(crate) struct Parts<V, L, U> {
    pub(crate) dim: usize,
    pub(crate) params: HnswParams,
    pub(crate) entry: Option<u32>,
    pub(crate) ids: Vec<u64>,
    pub(crate) levels: Vec<u8>,
    pub(crate) dead: Vec<bool>,
    pub(crate) vectors: V,
    pub(crate) layer0: L,
    pub(crate) upper: U,
}

/// What [`read`] returns.
pub(crate) type Loaded = Parts<Vec<f32>, Vec<AtomicU32>, Vec<Box<[AtomicU32]>>>;
/// What [`write`] takes: a copy, so that an index behind a lock is held only while it is taken.
/// The upper links are flattened in slot order, as in the file.
pub(crate) type Saving = Parts<Vec<f32>, Vec<u32>, Vec<u32>>;

fn encode_header(dim: usize, params: &HnswParams, meta: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + meta.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(dim as u32).to_le_bytes());
    let p = params;
    for v in [p.max_nb_connection, p.ef_construction, p.ef_search, p.max_layer] {
        out.extend_from_slice(&(v as u64).to_le_bytes());
    }
    out.extend_from_slice(&(meta.len() as u64).to_le_bytes());
    out.extend_from_slice(meta.as_bytes());
    out
}

/// A `Write` that keeps a CRC-32 of what went through it.
struct Crc<W> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Crc<W> {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.crc.update(bytes);
        self.inner.write_all(bytes)
    }

    /// Writes 4-byte words, a megabyte at a time.
    fn put_words(&mut self, words: impl Iterator<Item = [u8; 4]>) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(1 << 20);
        for w in words {
            buf.extend_from_slice(&w);
            if buf.len() >= 1 << 20 {
                self.put(&buf)?;
                buf.clear();
            }
        }
        self.put(&buf)
    }
}

/// Writes `parts` and `meta` to `dir/hnsw.snapshot`, atomically replacing any previous one.
pub(crate) fn write(dir: &Path, parts: &Saving, meta: &str) -> Result<(), IndexError> {
    fs::create_dir_all(dir)?;
    let tmp = dir.join(TMP_NAME);
    let result = write_file(&tmp, parts, meta);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    fs::rename(&tmp, dir.join(FILE_NAME))?;
    sync_dir(dir)
}

fn write_file(path: &Path, p: &Saving, meta: &str) -> Result<(), IndexError> {
    let file = File::create(path)?;
    let mut w = Crc { inner: BufWriter::with_capacity(1 << 20, file), crc: crc32fast::Hasher::new() };
    w.put(&encode_header(p.dim, &p.params, meta))?;
    w.put(&(p.ids.len() as u64).to_le_bytes())?;
    w.put(&p.entry.map_or(NO_ENTRY, u64::from).to_le_bytes())?;
    let mut nodes = Vec::with_capacity(p.ids.len() * NODE_BYTES as usize);
    for ((id, level), dead) in p.ids.iter().zip(&p.levels).zip(&p.dead) {
        nodes.extend_from_slice(&id.to_le_bytes());
        nodes.push(*level);
        nodes.push(u8::from(*dead));
    }
    w.put(&nodes)?;
    w.put_words(p.vectors.iter().map(|x| x.to_le_bytes()))?;
    w.put_words(p.layer0.iter().map(|x| x.to_le_bytes()))?;
    w.put_words(p.upper.iter().map(|x| x.to_le_bytes()))?;
    let crc = w.crc.finalize();
    w.inner.write_all(&crc.to_le_bytes())?;
    let file = w.inner.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(())
}

/// Makes the rename durable (on Unix a directory can be opened and synced; elsewhere it is skipped).
fn sync_dir(dir: &Path) -> Result<(), IndexError> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn corrupt(path: &Path, what: impl std::fmt::Display) -> IndexError {
    IndexError::Snapshot(format!("{}: {what}", path.display()))
}

/// Reads the snapshot in `dir`: the checksum is verified over the whole file, then every array is
/// checked (layers, entry point, link counts and targets, unit vectors, unique live ids), so that a
/// graph built from the parts cannot index out of bounds. Returns the parts and the meta string.
pub(crate) fn read(dir: &Path) -> Result<(Loaded, String), IndexError> {
    let path = dir.join(FILE_NAME);
    let file = File::open(&path)?;
    let file_len = file.metadata()?.len();
    let mut r = Reader { inner: BufReader::with_capacity(1 << 20, file), crc: crc32fast::Hasher::new(), path };
    let magic: [u8; 8] = r.array()?;
    if &magic != MAGIC {
        return Err(r.corrupt("not a Lens HNSW snapshot (bad magic)"));
    }
    let version = u32::from_le_bytes(r.array()?);
    if version != VERSION {
        return Err(r.corrupt(format!("format version {version}, this build reads {VERSION}")));
    }
    let dim = u32::from_le_bytes(r.array()?) as usize;
    let mut p = [0usize; 4];
    for v in &mut p {
        *v = usize::try_from(r.u64()?).map_err(|_| r.corrupt("parameter out of range"))?;
    }
    let meta_len = r.u64()?;
    if meta_len > MAX_META {
        return Err(r.corrupt(format!("meta of {meta_len} bytes")));
    }
    let meta = String::from_utf8(r.bytes(meta_len as usize)?).map_err(|_| r.corrupt("meta is not UTF-8"))?;
    if dim == 0 {
        return Err(r.corrupt("dimension 0"));
    }
    let params = HnswParams { max_nb_connection: p[0], ef_construction: p[1], ef_search: p[2], max_layer: p[3] };
    if params.clone().sanitized() != params {
        return Err(r.corrupt(format!("parameters out of range: {params:?}")));
    }
    let shape = Shape::of(dim, &params);
    let slots = r.u64()?;
    let entry = r.u64()?;
    let header_len = encode_header(dim, &params, &meta).len() as u64 + 16;
    // Everything up to the upper links has a size known now: check it before allocating.
    let fixed = slots
        .checked_mul(NODE_BYTES + 4 * dim as u64 + 4 * (shape.m0 as u64 + 1))
        .and_then(|b| b.checked_add(header_len + 4))
        .filter(|&b| b <= file_len && slots < u64::from(u32::MAX))
        .ok_or_else(|| r.corrupt(format!("{file_len} bytes cannot hold {slots} slots of dimension {dim}")))?;
    let slots = slots as usize;
    let nodes = r.bytes(slots * NODE_BYTES as usize)?;
    let mut ids = Vec::with_capacity(slots);
    let mut levels = Vec::with_capacity(slots);
    let mut dead = Vec::with_capacity(slots);
    for n in nodes.chunks_exact(NODE_BYTES as usize) {
        ids.push(u64::from_le_bytes(n[..8].try_into().expect("8 bytes")));
        levels.push(n[8]);
        dead.push(n[9] != 0);
    }
    if let Some(l) = levels.iter().find(|&&l| usize::from(l) > shape.top_layer) {
        return Err(r.corrupt(format!("a node on layer {l}, above the top layer {}", shape.top_layer)));
    }
    let upper_words: u64 = levels.iter().map(|&l| u64::from(l) * (shape.m as u64 + 1)).sum();
    if fixed + 4 * upper_words != file_len {
        return Err(r.corrupt(format!("{file_len} bytes, but the graph needs {}", fixed + 4 * upper_words)));
    }
    let vectors: Vec<f32> = r.words(slots * dim)?.into_iter().map(f32::from_bits).collect();
    let layer0: Vec<AtomicU32> = r.words(slots * (shape.m0 + 1))?.into_iter().map(AtomicU32::new).collect();
    let mut upper = Vec::with_capacity(slots);
    for &l in &levels {
        let words = r.words(usize::from(l) * (shape.m + 1))?;
        upper.push(words.into_iter().map(AtomicU32::new).collect::<Box<[AtomicU32]>>());
    }
    r.finish()?;

    let entry = match (slots, entry) {
        (0, NO_ENTRY) => None,
        (_, e) if e < slots as u64 && levels[e as usize] == levels.iter().copied().max().unwrap_or(0) => Some(e as u32),
        _ => return Err(r.corrupt(format!("entry point {entry} is not a top node of {slots} slots"))),
    };
    for (s, v) in vectors.chunks_exact(dim).enumerate() {
        if !v.iter().all(|x| x.is_finite()) || (dot_f32(v, v) - 1.0).abs() > 1e-3 {
            return Err(r.corrupt(format!("slot {s} (id {}) is not a finite unit vector", ids[s])));
        }
    }
    let check_links = |slot: usize, layer: usize, words: &[AtomicU32]| -> Result<(), IndexError> {
        let count = words[0].load(Relaxed) as usize;
        if count >= words.len() {
            return Err(r.corrupt(format!("slot {slot} has {count} links on layer {layer}")));
        }
        for w in &words[1..=count] {
            let to = w.load(Relaxed) as usize;
            if to >= slots || to == slot || usize::from(levels[to]) < layer {
                return Err(r.corrupt(format!("slot {slot} links to {to} on layer {layer}")));
            }
        }
        Ok(())
    };
    for (slot, words) in layer0.chunks_exact(shape.m0 + 1).enumerate() {
        check_links(slot, 0, words)?;
    }
    for (slot, u) in upper.iter().enumerate() {
        for (layer, words) in u.chunks_exact(shape.m + 1).enumerate() {
            check_links(slot, layer + 1, words)?;
        }
    }
    let mut live = std::collections::HashSet::with_capacity(slots);
    if let Some(id) = ids.iter().zip(&dead).find(|(id, dead)| !**dead && !live.insert(**id)).map(|(id, _)| id) {
        return Err(r.corrupt(format!("id {id} is live in two slots")));
    }
    Ok((Parts { dim, params, entry, ids, levels, dead, vectors, layer0, upper }, meta))
}

struct Reader {
    path: PathBuf,
    inner: BufReader<File>,
    crc: crc32fast::Hasher,
}

impl Reader {
    fn corrupt(&self, what: impl std::fmt::Display) -> IndexError {
        corrupt(&self.path, what)
    }

    fn io(&self, e: std::io::Error) -> IndexError {
        if e.kind() == std::io::ErrorKind::UnexpectedEof { self.corrupt("truncated") } else { IndexError::Io(e) }
    }

    fn bytes(&mut self, n: usize) -> Result<Vec<u8>, IndexError> {
        let mut b = vec![0u8; n];
        self.inner.read_exact(&mut b).map_err(|e| self.io(e))?;
        self.crc.update(&b);
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], IndexError> {
        let mut b = [0u8; N];
        self.inner.read_exact(&mut b).map_err(|e| self.io(e))?;
        self.crc.update(&b);
        Ok(b)
    }

    fn u64(&mut self) -> Result<u64, IndexError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// `n` little-endian 4-byte words, read a megabyte at a time.
    fn words(&mut self, n: usize) -> Result<Vec<u32>, IndexError> {
        let mut out = Vec::with_capacity(n);
        let mut buf = vec![0u8; (1 << 20).min(4 * n)];
        while out.len() < n {
            let take = (n - out.len()).min(buf.len() / 4);
            let chunk = &mut buf[..4 * take];
            self.inner.read_exact(chunk).map_err(|e| self.io(e))?;
            self.crc.update(chunk);
            out.extend(chunk.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes"))));
        }
        Ok(out)
    }

    /// Checks the checksum and that nothing follows it.
    fn finish(&mut self) -> Result<(), IndexError> {
        let computed = self.crc.clone().finalize();
        let mut stored = [0u8; 4];
        self.inner.read_exact(&mut stored).map_err(|e| self.io(e))?;
        if u32::from_le_bytes(stored) != computed {
            return Err(self.corrupt("checksum mismatch"));
        }
        Ok(())
    }
}
