//! JPEG decoding that reproduces Pillow's output bit for bit.
//!
//! Pillow decodes JPEG with libjpeg-turbo at its defaults: accurate integer IDCT (`JDCT_ISLOW`) and
//! "fancy" (triangle-filter) chroma upsampling, then Pillow's own `L`/`RGB`/`CMYK;I` unpacking. The
//! `image` crate's decoder (zune-jpeg) differs at each stage — stb_image's IDCT, upsampling rounded in
//! two steps, 14-bit colour conversion — by up to 6 levels on 4:2:0 photos, which survives CLIP's resize
//! as up to 4 levels. This module ports libjpeg-turbo's decompression path instead:
//!
//! - markers and entropy decoding: `jdmarker.c`, `jdhuff.c` (sequential Huffman), `jdphuff.c`
//!   (progressive Huffman), with libjpeg's handling of restart markers and of entropy data that runs
//!   into a marker (zero bits, then the rest of the segment left blank);
//! - pixels: [`pixels`] (`jidctint.c`, `jdsample.c`, `jdcolor.c`).
//!
//! Arithmetic coding, lossless and 12-bit JPEG are rejected as unsupported (Pillow's 8-bit libjpeg
//! build rejects 12-bit too). As in Pillow, a file whose data ends before the image is complete is an
//! error ("image file is truncated"), and so is a multi-scan file without its end-of-image marker. Unlike
//! Pillow, a scan whose data runs into a marker before the image is complete (libjpeg warns and leaves the
//! rest grey) is refused too, unless [`DecodeLimits::allow_incomplete`]: a few hundred bytes must not
//! become a 36-megapixel grey image.

mod pixels;
mod tables;

use super::format::ImageFormat;
use super::types::{DecodeLimits, RgbImage, check_dimensions};
use crate::{Error, Result};
use pixels::{Plane, YccTables};

/// Zig-zag position -> natural (row-major) position, with libjpeg's 16 extra entries that keep corrupt
/// run lengths inside the block.
const NATURAL_ORDER: [usize; 80] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21,
    28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54,
    47, 55, 62, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
];

/// Progressive files can have any number of scans, each a pass over the image; cap them so a file of
/// empty scans cannot keep a server busy (libjpeg-turbo's documentation suggests 500 for untrusted input).
const MAX_SCANS: usize = 1000;

pub(super) fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage> {
    Decoder::default().decode(bytes, limits)
}

fn corrupt(detail: impl Into<String>) -> Error {
    Error::Corrupt { format: ImageFormat::Jpeg, detail: detail.into() }
}

fn unsupported(detail: impl Into<String>) -> Error {
    Error::UnsupportedFormat { format: Some(ImageFormat::Jpeg), detail: detail.into() }
}

/// A Huffman table in the form `jpeg_make_d_derived_tbl` builds, plus a 9-bit lookahead table.
#[derive(Clone)]
struct Huffman {
    /// `maxcode[l]`: largest code of length `l` (-1 if none); `maxcode[17]` stops the search.
    maxcode: [i32; 18],
    /// `valoffset[l]`: index into `values` of the first code of length `l`, minus that code.
    valoffset: [i32; 17],
    values: Vec<u8>,
    /// For a 9-bit prefix: `(length << 8) | symbol` of the code it starts with, 0 when longer.
    lookup: Vec<u16>,
}

const LOOKAHEAD: u32 = 9;

impl Huffman {
    fn new(counts: &[u8; 16], values: &[u8], is_dc: bool) -> Result<Self> {
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        if total > 256 || total > values.len() {
            return Err(corrupt("bad Huffman table"));
        }
        if is_dc && values[..total].iter().any(|&v| v > 15) {
            return Err(corrupt("bad DC Huffman table"));
        }
        let mut h = Self {
            maxcode: [-1; 18],
            valoffset: [0; 17],
            values: values[..total].to_vec(),
            lookup: vec![0; 1 << LOOKAHEAD],
        };
        let (mut code, mut p) = (0_i32, 0_i32);
        for l in 1..=16 {
            let n = i32::from(counts[l - 1]);
            if n > 0 {
                // Codes of one length must fit in that many bits and none may be all ones
                // (`jpeg_make_d_derived_tbl`).
                if code + n >= (1 << l) {
                    return Err(corrupt("bad Huffman table"));
                }
                h.valoffset[l] = p - code;
                for i in 0..n {
                    if l as u32 <= LOOKAHEAD {
                        let shift = LOOKAHEAD - l as u32;
                        let first = ((code + i) as usize) << shift;
                        let entry = (l as u16) << 8 | u16::from(h.values[(p + i) as usize]);
                        h.lookup[first..first + (1 << shift)].fill(entry);
                    }
                }
                p += n;
                code += n;
                h.maxcode[l] = code - 1;
            }
            code <<= 1;
        }
        h.maxcode[17] = 0xFFFFF;
        Ok(h)
    }
}

/// Entropy-coded data reader: libjpeg's bit buffer, with its marker and end-of-data behaviour.
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    /// Bits, most significant first.
    acc: u64,
    nbits: u32,
    /// How many of the top `nbits` came from real data (the rest are zeros stuffed after a stop).
    nreal: u32,
    stop: Option<Stop>,
    /// Bits were needed past a marker: libjpeg warns and blanks the rest of the segment.
    insufficient: bool,
    /// Bits were needed past the end of the file: the file is truncated.
    truncated: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    Marker,
    Eof,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8], pos: usize) -> Self {
        Self { data, pos, acc: 0, nbits: 0, nreal: 0, stop: None, insufficient: false, truncated: false }
    }

    fn fill(&mut self) {
        while self.nbits <= 56 {
            let mut byte = 0;
            if self.stop.is_none() {
                match self.data.get(self.pos) {
                    None => self.stop = Some(Stop::Eof),
                    Some(0xFF) => {
                        // Fill bytes (FF FF ...) may precede the stuffed zero or the marker code.
                        let mut next = self.pos + 1;
                        while self.data.get(next) == Some(&0xFF) {
                            next += 1;
                        }
                        match self.data.get(next) {
                            Some(0) => {
                                byte = 0xFF;
                                self.pos = next + 1;
                            }
                            Some(_) => self.stop = Some(Stop::Marker), // `pos` stays on the marker
                            None => self.stop = Some(Stop::Eof),
                        }
                    }
                    Some(&b) => {
                        byte = b;
                        self.pos += 1;
                    }
                }
                if self.stop.is_none() {
                    self.nreal += 8;
                }
            }
            self.acc |= u64::from(byte) << (56 - self.nbits);
            self.nbits += 8;
        }
    }

    #[inline]
    fn peek(&mut self, n: u32) -> u32 {
        if self.nbits < n {
            self.fill();
        }
        (self.acc >> (64 - n)) as u32
    }

    #[inline]
    fn consume(&mut self, n: u32) {
        if n > self.nreal {
            match self.stop {
                Some(Stop::Eof) => self.truncated = true,
                _ => self.insufficient = true,
            }
            self.nreal = 0;
        } else {
            self.nreal -= n;
        }
        self.acc <<= n;
        self.nbits -= n;
    }

    #[inline]
    fn bits(&mut self, n: u32) -> i32 {
        if n == 0 {
            return 0;
        }
        let v = self.peek(n);
        self.consume(n);
        v as i32
    }

    /// `HUFF_DECODE`: a symbol, or 0 for an invalid code (libjpeg warns and goes on the same way).
    #[inline]
    fn decode(&mut self, table: &Huffman) -> u8 {
        let look = self.peek(LOOKAHEAD) as usize;
        let entry = table.lookup[look];
        if entry != 0 {
            self.consume(u32::from(entry >> 8));
            return entry as u8;
        }
        let bits = self.peek(17);
        for l in LOOKAHEAD as usize + 1..=17 {
            let code = (bits >> (17 - l)) as i32;
            if code <= table.maxcode[l] {
                self.consume(l as u32);
                if l == 17 {
                    return 0;
                }
                let index = table.valoffset[l] + code;
                return table.values.get(index as usize).copied().unwrap_or(0);
            }
        }
        unreachable!("maxcode[17] accepts every 17-bit code")
    }

    /// `HUFF_EXTEND(RECEIVE(s), s)`: an `s`-bit magnitude category to a signed value.
    #[inline]
    fn receive_extend(&mut self, s: u8) -> i32 {
        let s = u32::from(s);
        let v = self.bits(s);
        if s > 0 && v < (1 << (s - 1)) { v + (-1 << s) + 1 } else { v }
    }

    /// Drops buffered bits and returns the offset of the next marker (skipping garbage like
    /// `next_marker`), or `None` at the end of the data.
    fn next_marker(&mut self) -> Option<usize> {
        self.acc = 0;
        self.nbits = 0;
        self.nreal = 0;
        self.stop = None;
        find_marker(self.data, self.pos)
    }
}

/// Offset of the next `FF xx` marker (`xx` not 0 or FF) at or after `pos`.
fn find_marker(data: &[u8], mut pos: usize) -> Option<usize> {
    while pos + 1 < data.len() {
        if data[pos] == 0xFF && !matches!(data[pos + 1], 0x00 | 0xFF) {
            return Some(pos);
        }
        pos += 1;
    }
    None
}

#[derive(Clone, Default)]
struct Component {
    id: u8,
    h: usize,
    v: usize,
    quant_index: usize,
    /// The quantisation table, latched when the component's first scan starts (`latch_quant_tables`).
    quant: Option<[u16; 64]>,
    /// `downsampled_width` / `downsampled_height`: samples in this component.
    width: usize,
    height: usize,
    /// `width_in_blocks` / `height_in_blocks`: blocks holding real samples.
    blocks_w: usize,
    blocks_h: usize,
    /// Blocks per row of the coefficient store, padded to whole MCUs (dummy blocks included).
    stride: usize,
    coefs: Vec<[i16; 64]>,
}

#[derive(Default)]
struct Decoder {
    quant: [Option<[u16; 64]>; 4],
    dc_tables: [Option<Huffman>; 4],
    ac_tables: [Option<Huffman>; 4],
    restart_interval: usize,
    components: Vec<Component>,
    width: usize,
    height: usize,
    progressive: bool,
    max_h: usize,
    max_v: usize,
    mcus_x: usize,
    mcus_y: usize,
    saw_jfif: bool,
    adobe_transform: Option<u8>,
    eobrun: u32,
    /// A scan's data ran into a marker before its last MCU: libjpeg blanks the rest (a warning, which
    /// Pillow ignores); refused unless `DecodeLimits::allow_incomplete`.
    incomplete: bool,
}

/// One scan's header (`get_sos`).
struct Scan {
    /// Indices into `Decoder::components`, with their DC and AC table numbers.
    comps: Vec<(usize, usize, usize)>,
    ss: usize,
    se: usize,
    ah: u32,
    al: u32,
}

impl Decoder {
    fn decode(mut self, bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage> {
        if !bytes.starts_with(&[0xFF, 0xD8]) {
            return Err(corrupt("missing SOI marker"));
        }
        let mut pos = 2;
        let mut scans = 0;
        let mut complete_without_eoi = false;
        loop {
            let Some(at) = find_marker(bytes, pos) else {
                // Data ended without EOI: fine after a single-scan baseline image (Pillow has all its rows
                // by then), truncated otherwise (libjpeg must read to EOI before output starts).
                if complete_without_eoi {
                    break;
                }
                return Err(corrupt("truncated: image data ends before the end-of-image marker"));
            };
            let marker = bytes[at + 1];
            pos = at + 2;
            if matches!(marker, 0xD0..=0xD8 | 0x01) {
                continue; // standalone markers (stray RSTn are skipped by libjpeg too)
            }
            if marker == 0xD9 {
                break;
            }
            let len = usize::from(u16::from_be_bytes([
                *bytes.get(pos).ok_or_else(|| corrupt("truncated marker"))?,
                *bytes.get(pos + 1).ok_or_else(|| corrupt("truncated marker"))?,
            ]));
            let payload = bytes.get(pos + 2..pos + len.max(2)).ok_or_else(|| corrupt("truncated marker segment"))?;
            if len < 2 {
                return Err(corrupt("bad marker length"));
            }
            pos += len;
            match marker {
                0xC0..=0xC2 => self.read_frame(payload, marker == 0xC2, limits)?,
                0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                    return Err(unsupported(format!("JPEG process SOF{}", marker - 0xC0)));
                }
                0xC4 => self.read_dht(payload)?,
                0xDB => self.read_dqt(payload)?,
                0xDD => {
                    let ri = payload.get(..2).ok_or_else(|| corrupt("bad DRI"))?;
                    self.restart_interval = usize::from(u16::from_be_bytes([ri[0], ri[1]]));
                }
                0xE0 if payload.len() >= 14 && payload.starts_with(b"JFIF\0") => self.saw_jfif = true,
                0xEE if payload.len() >= 12 && payload.starts_with(b"Adobe") => {
                    self.adobe_transform = Some(payload[11])
                }
                0xDA => {
                    if self.components.is_empty() {
                        return Err(corrupt("scan before frame header"));
                    }
                    if scans == 0 {
                        self.install_standard_tables()?;
                    }
                    scans += 1;
                    if scans > MAX_SCANS {
                        return Err(unsupported(format!("more than {MAX_SCANS} scans")));
                    }
                    let scan = self.read_sos(payload)?;
                    let covers_all = scan.comps.len() == self.components.len();
                    let mut reader = BitReader::new(bytes, pos);
                    self.decode_scan(&scan, &mut reader)?;
                    if reader.truncated {
                        return Err(corrupt("truncated: image data ends inside a scan"));
                    }
                    complete_without_eoi = scans == 1 && !self.progressive && covers_all;
                    pos = reader.next_marker().unwrap_or(bytes.len());
                }
                _ => {} // APPn, COM, ...: nothing the pixels depend on
            }
        }
        if scans == 0 {
            return Err(corrupt("no image data"));
        }
        if self.incomplete && !limits.allow_incomplete {
            return Err(corrupt("truncated: the image data stops before the image is complete"));
        }
        self.output()
    }

    /// SOF0 / SOF1 / SOF2 (`get_sof` and `initial_setup`).
    fn read_frame(&mut self, p: &[u8], progressive: bool, limits: &DecodeLimits) -> Result<()> {
        if !self.components.is_empty() {
            return Err(corrupt("more than one frame header"));
        }
        if p.len() < 6 {
            return Err(corrupt("truncated frame header"));
        }
        if p[0] != 8 {
            return Err(unsupported(format!("{}-bit samples", p[0])));
        }
        let height = usize::from(u16::from_be_bytes([p[1], p[2]]));
        let width = usize::from(u16::from_be_bytes([p[3], p[4]]));
        let n = usize::from(p[5]);
        if height == 0 {
            return Err(unsupported("height defined by a DNL marker"));
        }
        check_dimensions(width as u32, height as u32, limits)?;
        if !matches!(n, 1 | 3 | 4) {
            return Err(unsupported(format!("{n} components")));
        }
        if p.len() < 6 + 3 * n {
            return Err(corrupt("truncated frame header"));
        }
        for c in p[6..6 + 3 * n].chunks_exact(3) {
            let (h, v) = (usize::from(c[1] >> 4), usize::from(c[1] & 15));
            if !(1..=4).contains(&h) || !(1..=4).contains(&v) || c[2] > 3 {
                return Err(corrupt("bad sampling factors or table number"));
            }
            self.components.push(Component { id: c[0], h, v, quant_index: usize::from(c[2]), ..Default::default() });
        }
        self.width = width;
        self.height = height;
        self.progressive = progressive;
        self.max_h = self.components.iter().map(|c| c.h).max().unwrap_or(1);
        self.max_v = self.components.iter().map(|c| c.v).max().unwrap_or(1);
        self.mcus_x = width.div_ceil(8 * self.max_h);
        self.mcus_y = height.div_ceil(8 * self.max_v);
        for c in &mut self.components {
            c.width = (width * c.h).div_ceil(self.max_h);
            c.height = (height * c.v).div_ceil(self.max_v);
            c.blocks_w = c.width.div_ceil(8);
            c.blocks_h = c.height.div_ceil(8);
            c.stride = self.mcus_x * c.h;
            let blocks = c.stride * self.mcus_y * c.v;
            let mut coefs = Vec::new();
            coefs.try_reserve_exact(blocks).map_err(|_| corrupt("out of memory for coefficients"))?;
            coefs.resize(blocks, [0; 64]);
            c.coefs = coefs;
        }
        Ok(())
    }

    /// DHT (`get_dht`).
    fn read_dht(&mut self, mut p: &[u8]) -> Result<()> {
        while !p.is_empty() {
            if p.len() < 17 {
                return Err(corrupt("truncated Huffman table"));
            }
            let (class, index) = (p[0] >> 4, usize::from(p[0] & 15));
            let counts: [u8; 16] = p[1..17].try_into().expect("16 bytes");
            let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
            let values = p.get(17..17 + total).ok_or_else(|| corrupt("truncated Huffman table"))?;
            if index > 3 || class > 1 {
                return Err(corrupt("bad Huffman table number"));
            }
            let table = Huffman::new(&counts, values, class == 0)?;
            let slots = if class == 0 { &mut self.dc_tables } else { &mut self.ac_tables };
            slots[index] = Some(table);
            p = &p[17 + total..];
        }
        Ok(())
    }

    /// DQT (`get_dqt`): values arrive in zig-zag order and are stored in natural order.
    fn read_dqt(&mut self, mut p: &[u8]) -> Result<()> {
        while !p.is_empty() {
            let (precision, index) = (p[0] >> 4, usize::from(p[0] & 15));
            if index > 3 {
                return Err(corrupt("bad quantisation table number"));
            }
            let size = if precision == 0 { 64 } else { 128 };
            let raw = p.get(1..1 + size).ok_or_else(|| corrupt("truncated quantisation table"))?;
            let mut table = [0_u16; 64];
            for k in 0..64 {
                table[NATURAL_ORDER[k]] =
                    if precision == 0 { u16::from(raw[k]) } else { u16::from_be_bytes([raw[2 * k], raw[2 * k + 1]]) };
            }
            self.quant[index] = Some(table);
            p = &p[1 + size..];
        }
        Ok(())
    }

    /// `std_huff_tables`: empty slots 0 and 1 get the standard tables when decompression starts.
    fn install_standard_tables(&mut self) -> Result<()> {
        for (class, slot, counts, values) in tables::STANDARD {
            let tables = if class == 0 { &mut self.dc_tables } else { &mut self.ac_tables };
            if tables[slot].is_none() {
                tables[slot] = Some(Huffman::new(&counts, values, class == 0)?);
            }
        }
        Ok(())
    }

    /// SOS (`get_sos`), with the parameter checks of `start_pass_phuff_decoder`.
    fn read_sos(&mut self, p: &[u8]) -> Result<Scan> {
        let n = usize::from(*p.first().ok_or_else(|| corrupt("truncated scan header"))?);
        if n == 0 || n > 4 || p.len() < 1 + 2 * n + 3 {
            return Err(corrupt("bad scan header"));
        }
        let mut comps = Vec::with_capacity(n);
        for c in p[1..1 + 2 * n].chunks_exact(2) {
            let index = self
                .components
                .iter()
                .position(|comp| comp.id == c[0])
                .ok_or_else(|| corrupt("scan names an unknown component"))?;
            let (dc, ac) = (usize::from(c[1] >> 4), usize::from(c[1] & 15));
            if dc > 3 || ac > 3 {
                return Err(corrupt("bad Huffman table number"));
            }
            comps.push((index, dc, ac));
        }
        let tail = &p[1 + 2 * n..];
        let scan = Scan {
            comps,
            ss: usize::from(tail[0]),
            se: usize::from(tail[1]),
            ah: u32::from(tail[2] >> 4),
            al: u32::from(tail[2] & 15),
        };
        if self.progressive {
            let dc = scan.ss == 0;
            let bad = if dc { scan.se != 0 } else { scan.se < scan.ss || scan.se > 63 || scan.comps.len() != 1 };
            if bad || (scan.ah != 0 && scan.al != scan.ah - 1) || scan.al > 13 {
                return Err(corrupt("bad progressive scan parameters"));
            }
        }
        let blocks_in_mcu: usize = scan.comps.iter().map(|&(i, ..)| self.components[i].h * self.components[i].v).sum();
        if scan.comps.len() > 1 && blocks_in_mcu > 10 {
            return Err(corrupt("too many blocks in an MCU"));
        }
        for &(index, dc, ac) in &scan.comps {
            let comp = &mut self.components[index];
            if comp.quant.is_none() {
                comp.quant = Some(self.quant[comp.quant_index].ok_or_else(|| corrupt("missing quantisation table"))?);
            }
            let needs_dc = !self.progressive || (scan.ss == 0 && scan.ah == 0);
            let needs_ac = !self.progressive || scan.ss > 0;
            if needs_dc && self.dc_tables[dc].is_none() || needs_ac && self.ac_tables[ac].is_none() {
                return Err(corrupt("missing Huffman table"));
            }
        }
        Ok(scan)
    }

    /// Decodes one scan's entropy-coded data into the coefficient store.
    fn decode_scan(&mut self, scan: &Scan, r: &mut BitReader<'_>) -> Result<()> {
        let interleaved = scan.comps.len() > 1;
        let (mcus_x, mcus_y) = if interleaved {
            (self.mcus_x, self.mcus_y)
        } else {
            let c = &self.components[scan.comps[0].0];
            (c.blocks_w, c.blocks_h)
        };
        let mut dc_pred = [0_i32; 4];
        self.eobrun = 0;
        let mut restarts_to_go = self.restart_interval;
        for mcu in 0..mcus_x * mcus_y {
            if self.restart_interval > 0 {
                if restarts_to_go == 0 {
                    self.restart(r)?;
                    dc_pred = [0; 4];
                    restarts_to_go = self.restart_interval;
                }
                restarts_to_go -= 1;
            }
            if r.insufficient {
                continue; // out of data in this segment: leave the MCU blank, as libjpeg does
            }
            let (mx, my) = (mcu % mcus_x, mcu / mcus_x);
            for (slot, &(ci, dc, ac)) in scan.comps.iter().enumerate() {
                let (h, v, stride) = {
                    let c = &self.components[ci];
                    if interleaved { (c.h, c.v, c.stride) } else { (1, 1, c.stride) }
                };
                for by in 0..v {
                    for bx in 0..h {
                        let block = (my * v + by) * stride + mx * h + bx;
                        self.decode_block(scan, ci, block, dc, ac, &mut dc_pred[slot], r);
                    }
                }
            }
        }
        self.incomplete |= r.insufficient;
        Ok(())
    }

    /// `process_restart`: expects the next RSTn marker, resets predictions and the bit buffer.
    fn restart(&mut self, r: &mut BitReader<'_>) -> Result<()> {
        let at = r.next_marker().ok_or_else(|| corrupt("truncated: missing restart marker"))?;
        if !(0xD0..=0xD7).contains(&r.data[at + 1]) {
            // libjpeg would try to resynchronise; a misplaced marker is as good as corrupt here.
            return Err(corrupt("expected a restart marker"));
        }
        r.pos = at + 2;
        self.incomplete |= r.insufficient;
        r.insufficient = false;
        self.eobrun = 0;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn decode_block(
        &mut self,
        scan: &Scan,
        ci: usize,
        block: usize,
        dc: usize,
        ac: usize,
        pred: &mut i32,
        r: &mut BitReader<'_>,
    ) {
        let Some(coefs) = self.components[ci].coefs.get_mut(block) else { return };
        let dc_table = self.dc_tables[dc].as_ref();
        let ac_table = self.ac_tables[ac].as_ref();
        if !self.progressive {
            // decode_mcu_slow (jdhuff.c)
            let dc_table = dc_table.expect("checked in read_sos");
            let s = r.decode(dc_table);
            let diff = if s != 0 { r.receive_extend(s) } else { 0 };
            *pred = pred.wrapping_add(diff);
            coefs[0] = *pred as i16;
            let ac_table = ac_table.expect("checked in read_sos");
            let mut k = 1;
            while k < 64 {
                let rs = r.decode(ac_table);
                let (run, size) = (usize::from(rs >> 4), rs & 15);
                if size != 0 {
                    k += run;
                    coefs[NATURAL_ORDER[k]] = r.receive_extend(size) as i16;
                } else if run == 15 {
                    k += 15;
                } else {
                    break;
                }
                k += 1;
            }
            return;
        }
        let (ss, se, ah, al) = (scan.ss, scan.se, scan.ah, scan.al);
        if ss == 0 {
            if ah == 0 {
                // decode_mcu_DC_first
                let s = r.decode(dc_table.expect("checked in read_sos"));
                let diff = if s != 0 { r.receive_extend(s) } else { 0 };
                *pred = pred.wrapping_add(diff);
                coefs[0] = (*pred << al) as i16;
            } else if r.bits(1) != 0 {
                // decode_mcu_DC_refine
                coefs[0] |= (1 << al) as i16;
            }
            return;
        }
        let ac_table = ac_table.expect("checked in read_sos");
        if ah == 0 {
            // decode_mcu_AC_first
            if self.eobrun > 0 {
                self.eobrun -= 1;
                return;
            }
            let mut k = ss;
            while k <= se {
                let rs = r.decode(ac_table);
                let (run, size) = (u32::from(rs >> 4), rs & 15);
                if size != 0 {
                    k += run as usize;
                    coefs[NATURAL_ORDER[k]] = (r.receive_extend(size) << al) as i16;
                } else if run == 15 {
                    k += 15;
                } else {
                    self.eobrun = 1 << run;
                    if run != 0 {
                        self.eobrun += r.bits(run) as u32;
                    }
                    self.eobrun -= 1;
                    break;
                }
                k += 1;
            }
            return;
        }
        // decode_mcu_AC_refine
        let (p1, m1) = (1_i16 << al, (-1_i16) << al);
        let mut k = ss;
        if self.eobrun == 0 {
            while k <= se {
                let rs = r.decode(ac_table);
                let (mut run, size) = (i32::from(rs >> 4), rs & 15);
                let mut value = 0;
                if size != 0 {
                    // size must be 1 (libjpeg warns otherwise and reads one bit anyway)
                    value = if r.bits(1) != 0 { p1 } else { m1 };
                } else if run != 15 {
                    self.eobrun = 1 << run;
                    if run != 0 {
                        self.eobrun += r.bits(run as u32) as u32;
                    }
                    break;
                }
                // Skip `run` zero coefficients, refining the non-zero ones passed on the way.
                while k <= se {
                    let c = &mut coefs[NATURAL_ORDER[k]];
                    if *c != 0 {
                        if r.bits(1) != 0 && (*c & p1) == 0 {
                            *c = if *c >= 0 { c.wrapping_add(p1) } else { c.wrapping_add(m1) };
                        }
                    } else {
                        run -= 1;
                        if run < 0 {
                            break;
                        }
                    }
                    k += 1;
                }
                if value != 0 {
                    coefs[NATURAL_ORDER[k]] = value;
                }
                k += 1;
            }
        }
        if self.eobrun > 0 {
            // The rest of the band is in an end-of-band run: only refinement bits for non-zeros.
            while k <= se {
                let c = &mut coefs[NATURAL_ORDER[k]];
                if *c != 0 && r.bits(1) != 0 && (*c & p1) == 0 {
                    *c = if *c >= 0 { c.wrapping_add(p1) } else { c.wrapping_add(m1) };
                }
                k += 1;
            }
            self.eobrun -= 1;
        }
    }

    /// IDCT, upsampling and colour conversion of the whole image (`jdcoefct.c` through `jdcolor.c`),
    /// then Pillow's conversion to RGB.
    fn output(self) -> Result<RgbImage> {
        let (width, height) = (self.width, self.height);
        if self.components.iter().any(|c| self.max_h % c.h != 0 || self.max_v % c.v != 0) {
            return Err(unsupported("fractional sampling factors")); // JERR_FRACT_SAMPLE_NOTIMPL
        }
        let mut full = Vec::with_capacity(self.components.len());
        for c in &self.components {
            let quant = c.quant.ok_or_else(|| corrupt("a component never appears in a scan"))?;
            let stride = c.blocks_w * 8;
            let mut plane = Plane { data: vec![0; stride * c.blocks_h * 8], stride, width: c.width, height: c.height };
            for by in 0..c.blocks_h {
                for bx in 0..c.blocks_w {
                    let at = by * 8 * stride + bx * 8;
                    pixels::idct_islow(&c.coefs[by * c.stride + bx], &quant, &mut plane.data[at..], stride);
                }
            }
            full.push(pixels::upsample(&plane, self.max_h / c.h, self.max_v / c.v, width, height));
        }
        let n = width * height;
        let mut data = Vec::with_capacity(n * 3);
        match full.as_slice() {
            [grey] => data.extend(grey.iter().flat_map(|&v| [v, v, v])),
            [a, b, c] => {
                if self.rgb_colour_space() {
                    data.extend((0..n).flat_map(|i| [a[i], b[i], c[i]]));
                } else {
                    let t = YccTables::new();
                    data.extend((0..n).flat_map(|i| t.rgb(a[i], b[i], c[i])));
                }
            }
            [a, b, c, k] => {
                let ycck = matches!(self.adobe_transform, Some(t) if t != 0);
                let t = YccTables::new();
                data.extend((0..n).flat_map(|i| {
                    let [c0, c1, c2] = if ycck { t.cmy(a[i], b[i], c[i]) } else { [a[i], b[i], c[i]] };
                    pixels::pil_cmyk_to_rgb([c0, c1, c2, k[i]])
                }));
            }
            _ => unreachable!("1, 3 or 4 components"),
        }
        Ok(RgbImage { width: width as u32, height: height as u32, data })
    }

    /// `default_decompress_parms` for three components: JFIF means YCbCr; an Adobe marker's transform
    /// decides (0 = RGB); otherwise component ids 'R', 'G', 'B' mean RGB.
    fn rgb_colour_space(&self) -> bool {
        if self.saw_jfif {
            return false;
        }
        if let Some(transform) = self.adobe_transform {
            return transform == 0;
        }
        let ids: Vec<u8> = self.components.iter().map(|c| c.id).collect();
        ids == b"RGB"
    }
}
