//! The HNSW snapshot file: what is needed to rebuild the index, with a checksum.
//!
//! Layout, all integers little-endian:
//!
//! ```text
//! magic            8 bytes  "LENSHNSW"
//! version          u32      1
//! dim              u32
//! max_nb_connection, ef_construction, ef_search, max_layer, capacity_hint   5 × u64
//! meta length      u64, then that many bytes of UTF-8
//! count            u64
//! count records    id u64, then dim × f32 (the normalised vector)
//! crc32            u32      CRC-32 (IEEE) of every byte before it
//! ```

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::IndexError;
use crate::kernels::dot_f32;
use crate::params::HnswParams;

const MAGIC: &[u8; 8] = b"LENSHNSW";
const VERSION: u32 = 1;
/// The snapshot's name inside the caller's directory.
pub(crate) const FILE_NAME: &str = "hnsw.snapshot";
const TMP_NAME: &str = "hnsw.snapshot.tmp";
/// Largest meta string accepted on load (the header is read before the checksum can vouch for it).
const MAX_META: u64 = 1 << 20;

#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub(crate) dim: usize,
    pub(crate) params: HnswParams,
    pub(crate) meta: String,
    pub(crate) count: u64,
}

impl Header {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.meta.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(self.dim as u32).to_le_bytes());
        let p = &self.params;
        for v in [p.max_nb_connection, p.ef_construction, p.ef_search, p.max_layer, p.capacity_hint] {
            out.extend_from_slice(&(v as u64).to_le_bytes());
        }
        out.extend_from_slice(&(self.meta.len() as u64).to_le_bytes());
        out.extend_from_slice(self.meta.as_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        out
    }

    fn record_len(&self) -> u64 {
        8 + 4 * self.dim as u64
    }
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
}

/// Writes `header` and `records` to `dir/hnsw.snapshot`, atomically replacing any previous one.
pub(crate) fn write(
    dir: &Path,
    header: &Header,
    records: impl Iterator<Item = (u64, Vec<f32>)>,
) -> Result<(), IndexError> {
    fs::create_dir_all(dir)?;
    let tmp = dir.join(TMP_NAME);
    let result = write_file(&tmp, header, records);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    fs::rename(&tmp, dir.join(FILE_NAME))?;
    sync_dir(dir)
}

fn write_file(path: &Path, header: &Header, records: impl Iterator<Item = (u64, Vec<f32>)>) -> Result<(), IndexError> {
    let file = File::create(path)?;
    let mut w = Crc { inner: BufWriter::with_capacity(1 << 20, file), crc: crc32fast::Hasher::new() };
    w.put(&header.encode())?;
    let mut written = 0u64;
    let mut buf = Vec::with_capacity(header.record_len() as usize);
    for (id, v) in records {
        buf.clear();
        buf.extend_from_slice(&id.to_le_bytes());
        for x in &v {
            buf.extend_from_slice(&x.to_le_bytes());
        }
        w.put(&buf)?;
        written += 1;
    }
    if written != header.count {
        return Err(IndexError::Snapshot(format!("{written} records written, header says {}", header.count)));
    }
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

/// Reads a snapshot: the header up front, then the records as an iterator of normalised vectors,
/// then [`Reader::finish`] checks the checksum.
pub(crate) struct Reader {
    path: PathBuf,
    inner: BufReader<File>,
    crc: crc32fast::Hasher,
    header: Header,
    left: u64,
    buf: Vec<u8>,
}

fn corrupt(path: &Path, what: impl std::fmt::Display) -> IndexError {
    IndexError::Snapshot(format!("{}: {what}", path.display()))
}

impl Reader {
    pub(crate) fn open(dir: &Path) -> Result<Self, IndexError> {
        let path = dir.join(FILE_NAME);
        let file = File::open(&path)?;
        let file_len = file.metadata()?.len();
        let mut r = Self {
            inner: BufReader::with_capacity(1 << 20, file),
            crc: crc32fast::Hasher::new(),
            header: Header { dim: 0, params: HnswParams::default(), meta: String::new(), count: 0 },
            left: 0,
            buf: Vec::new(),
            path,
        };
        let magic: [u8; 8] = r.array()?;
        if &magic != MAGIC {
            return Err(corrupt(&r.path, "not a Lens HNSW snapshot (bad magic)"));
        }
        let version = u32::from_le_bytes(r.array()?);
        if version != VERSION {
            return Err(corrupt(&r.path, format!("format version {version}, this build reads {VERSION}")));
        }
        let dim = u32::from_le_bytes(r.array()?) as usize;
        let mut p = [0usize; 5];
        for v in &mut p {
            *v = usize::try_from(r.u64()?).map_err(|_| corrupt(&r.path, "parameter out of range"))?;
        }
        let meta_len = r.u64()?;
        if meta_len > MAX_META {
            return Err(corrupt(&r.path, format!("meta of {meta_len} bytes")));
        }
        let meta = r.bytes(meta_len as usize)?;
        let meta = String::from_utf8(meta).map_err(|_| corrupt(&r.path, "meta is not UTF-8"))?;
        let count = r.u64()?;
        if dim == 0 {
            return Err(corrupt(&r.path, "dimension 0"));
        }
        let params = HnswParams {
            max_nb_connection: p[0],
            ef_construction: p[1],
            ef_search: p[2],
            max_layer: p[3],
            capacity_hint: p[4],
        };
        r.header = Header { dim, params, meta, count };
        // Check the length before anything expensive: a truncated file fails here.
        let header_len = r.header.encode().len() as u64;
        let expected = count.checked_mul(r.header.record_len()).and_then(|b| b.checked_add(header_len + 4));
        if expected != Some(file_len) {
            return Err(corrupt(
                &r.path,
                format!("{file_len} bytes, but {count} records of dimension {dim} need {expected:?}"),
            ));
        }
        r.left = count;
        Ok(r)
    }

    pub(crate) fn header(&self) -> &Header {
        &self.header
    }

    /// Checks that every record was read and the checksum matches.
    pub(crate) fn finish(mut self) -> Result<(), IndexError> {
        if self.left != 0 {
            return Err(corrupt(&self.path, format!("{} records not read", self.left)));
        }
        let computed = self.crc.clone().finalize();
        let mut stored = [0u8; 4];
        self.inner.read_exact(&mut stored).map_err(|e| self.io(e))?;
        if u32::from_le_bytes(stored) != computed {
            return Err(corrupt(&self.path, "checksum mismatch"));
        }
        Ok(())
    }

    fn io(&self, e: std::io::Error) -> IndexError {
        if e.kind() == std::io::ErrorKind::UnexpectedEof { corrupt(&self.path, "truncated") } else { IndexError::Io(e) }
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

    fn record(&mut self) -> Result<(u64, Vec<f32>), IndexError> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(self.header.record_len() as usize, 0);
        self.inner.read_exact(&mut buf).map_err(|e| self.io(e))?;
        self.crc.update(&buf);
        let id = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
        let v: Vec<f32> =
            buf[8..].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
        self.buf = buf;
        // The checksum is only known at the end, and hnsw_rs panics on NaN distances: refuse anything
        // that is not a unit vector before it reaches the graph.
        if !v.iter().all(|x| x.is_finite()) || (dot_f32(&v, &v) - 1.0).abs() > 1e-3 {
            return Err(corrupt(&self.path, format!("record for id {id} is not a finite unit vector")));
        }
        Ok((id, v))
    }
}

impl Iterator for Reader {
    type Item = Result<(u64, Vec<f32>), IndexError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        Some(self.record())
    }
}
