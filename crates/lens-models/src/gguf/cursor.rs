//! A bounds-checked little-endian reader over a byte slice: every read names what it reads, so a short
//! file fails with [`Error::Truncated`] at the field that is missing, never with a slice panic.

use super::error::{Error, Result};

/// Position in a byte slice, advanced by each read.
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, pos: 0 }
    }

    /// Offset of the next read from the start of the slice.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left after the position.
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8]> {
        let available = self.remaining();
        if n > available as u64 {
            return Err(Error::Truncated { what, offset: self.pos as u64, needed: n, available: available as u64 });
        }
        let n = n as usize;
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64, what)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16> {
        self.array(what).map(u16::from_le_bytes)
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A count of items each at least `min_item_bytes` long: refused when above `limit` or when the rest
    /// of the file could not hold that many, so nothing is ever allocated for items that are not there.
    pub(crate) fn count(&mut self, what: &'static str, limit: u64, min_item_bytes: u64) -> Result<usize> {
        let n = self.u64(what)?;
        if n > limit {
            return Err(Error::Limit { what, value: n, limit });
        }
        let fits = self.remaining() as u64 / min_item_bytes.max(1);
        if n > fits {
            return Err(Error::Limit { what, value: n, limit: fits });
        }
        Ok(n as usize)
    }

    /// A GGUF string: u64 byte length, then UTF-8 bytes (no terminator).
    pub(crate) fn string(&mut self, what: &'static str, limit: u64) -> Result<String> {
        let len = self.u64(what)?;
        if len > limit {
            return Err(Error::Limit { what, value: len, limit });
        }
        let offset = self.pos as u64;
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| Error::InvalidUtf8 { what, offset })
    }
}
