//! GIF: the first frame, composed as PIL composes it, through the palette, transparency onto white.
//!
//! PIL (Pillow 13.0.0, `GifImagePlugin`) opens a GIF in mode `P` with the first frame's palette (local,
//! else global; mode `L` when that palette is the identity grey ramp) and a canvas the size of the logical
//! screen, grown when the frame extends past it. The canvas starts as the frame's transparent index when
//! there is one, else index 0; the frame's indices are written into it unchanged (transparent ones
//! included). With a transparent index, `info["transparency"]` is set, so the processors' `convert_to_rgb`
//! converts to RGBA — `putpalettealpha(index, 0)` for `P`, `convert_transparent` on the grey value (which is
//! the index) for `L` — and composites onto white: every pixel holding that index, canvas around the frame
//! included, is white, the others show their palette colour (see `alpha.rs`). The `image` crate's GIF
//! decoder instead composes RGBA with transparent pixels zeroed, hence this module.

use std::io::Cursor;

use super::alpha::WHITE;
use super::format::ImageFormat;
use super::types::{DecodeLimits, RgbImage, check_gif_dimensions};
use crate::{Error, Result};

pub(super) fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage> {
    let corrupt = |e: gif::DecodingError| Error::Corrupt { format: ImageFormat::Gif, detail: e.to_string() };
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::Indexed);
    // One byte per pixel of the frame; the canvas is checked separately below.
    options.set_memory_limit(gif::MemoryLimit::Bytes(
        std::num::NonZeroU64::new(limits.max_pixels.max(1)).expect("at least one"),
    ));
    let mut decoder = options.read_info(Cursor::new(bytes)).map_err(corrupt)?;
    let (screen_w, screen_h) = (u32::from(decoder.width()), u32::from(decoder.height()));
    let global = decoder.global_palette().map(<[u8]>::to_vec);

    let frame = decoder
        .next_frame_info()
        .map_err(corrupt)?
        .ok_or_else(|| Error::Corrupt { format: ImageFormat::Gif, detail: "no image data".into() })?;
    let (left, top) = (u32::from(frame.left), u32::from(frame.top));
    let (frame_w, frame_h) = (u32::from(frame.width), u32::from(frame.height));
    let (width, height) = (screen_w.max(left + frame_w), screen_h.max(top + frame_h));
    check_gif_dimensions(width, height, limits)?;
    let transparent = frame.transparent;
    let local = frame.palette.clone();

    let mut indices = vec![0_u8; frame_w as usize * frame_h as usize];
    decoder.read_into_buffer(&mut indices).map_err(corrupt)?;

    let mut canvas = vec![transparent.unwrap_or(0); width as usize * height as usize];
    for (y, row) in indices.chunks_exact(frame_w.max(1) as usize).enumerate() {
        let start = (top as usize + y) * width as usize + left as usize;
        canvas[start..start + row.len()].copy_from_slice(row);
    }

    // The gif crate refuses frames with no palette at all; PIL would show them as greyscale.
    let palette = local.or(global).unwrap_or_default();
    let mut colours = [[0_u8; 3]; 256]; // entries past the end of a short palette are black in PIL
    for (entry, c) in colours.iter_mut().zip(palette.chunks_exact(3)) {
        *entry = [c[0], c[1], c[2]];
    }
    if let Some(t) = transparent {
        colours[usize::from(t)] = WHITE; // alpha 0, composited onto white
    }
    let data = canvas.iter().flat_map(|&i| colours[usize::from(i)]).collect();
    Ok(RgbImage { width, height, data })
}
