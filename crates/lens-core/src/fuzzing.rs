//! Entry points for fuzzing: each takes arbitrary bytes and runs one decoder or parser as the server, the
//! edge and the browser run it, with limits small enough for millions of runs, and checks what must hold
//! of any answer. A finding is a panic (a failed check included), a hang or an allocation past the
//! limits. The libFuzzer targets in `fuzz/` call these, and so do the corpus replay tests, which run the
//! committed corpora and random mutations of them ([`mutations`]) in every test run.

use crate::api;
use crate::documents::{DocumentFormat, chunk_text, parse_documents};
use crate::image::{DecodeLimits, decode_image, probe_image};
use crate::limits::{check_query_text, clean_tags};
use crate::metadata::image_metadata;
use crate::ranking::{SearchOptions, check_hybrid_weight};
use crate::rng::SplitMix64 as Rng;

/// Runs `run` on `count` random mutations of `inputs` (a corpus), seeded by `seed`: libFuzzer's simpler
/// mutations (flip, set, insert and remove bytes, splice two inputs), without its coverage guidance. The
/// first input that panics is returned, to add to the corpus and reproduce with the fuzz target.
pub fn mutations(inputs: &[Vec<u8>], count: usize, seed: u64, run: fn(&[u8])) -> Result<(), Vec<u8>> {
    if inputs.is_empty() {
        return Ok(());
    }
    let mut rng = Rng::new(seed);
    let pick = |rng: &mut Rng| &inputs[(rng.next_u64() % inputs.len() as u64) as usize];
    for _ in 0..count {
        let (a, b) = (pick(&mut rng), pick(&mut rng));
        let mutated = mutate(&mut rng, a, b);
        if std::panic::catch_unwind(|| run(&mutated)).is_err() {
            return Err(mutated);
        }
    }
    Ok(())
}

fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    let below = |rng: &mut Rng, n: usize| (rng.next_u64() % n.max(1) as u64) as usize;
    for _ in 0..1 + rng.next_u64() % 4 {
        match rng.next_u64() % 5 {
            0 if !out.is_empty() => {
                let i = below(rng, out.len());
                out[i] ^= 1 << (rng.next_u64() % 8);
            }
            1 if !out.is_empty() => {
                let i = below(rng, out.len());
                out[i] = [0, 0xFF, 0x7F, 0x80, rng.next_u64() as u8][below(rng, 5)];
            }
            2 => {
                let i = below(rng, out.len() + 1);
                out.insert(i, rng.next_u64() as u8);
            }
            3 if !out.is_empty() => {
                let i = below(rng, out.len());
                let n = below(rng, 16);
                out.drain(i..(i + n).min(out.len()));
            }
            _ => {
                let (cut, from) = (below(rng, out.len() + 1), below(rng, other.len() + 1));
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
        }
    }
    out
}

/// The limits every decoding here runs under: 4 megapixels, 4096 a side, 1 MiB of input.
pub fn limits() -> DecodeLimits {
    DecodeLimits {
        max_bytes: 1 << 20,
        max_pixels: 1 << 22,
        max_dimension: 4096,
        allow_incomplete: false,
        max_gif_pixels: 1 << 22,
    }
}

/// JPEG, PNG, GIF and WebP through `probe_image` and `decode_image`, truncated JPEGs refused or (for inputs
/// of odd length) accepted: a decoded image has the size its buffer says, within the limits.
pub fn image(data: &[u8]) {
    let limits = DecodeLimits { allow_incomplete: data.len() % 2 == 1, ..limits() };
    let probed = probe_image(data, &limits);
    let decoded = decode_image(data, &limits);
    match (probed, decoded) {
        (Err(_), Ok(_)) => panic!("decoded an image whose header was refused"),
        (Ok(info), Ok(image)) => {
            assert_eq!(image.data.len(), image.width as usize * image.height as usize * 3);
            assert!(u64::from(image.width) * u64::from(image.height) <= limits.max_pixels);
            assert!(image.width.max(image.height) <= limits.max_dimension);
            // A GIF's canvas grows past its screen when the first frame lies outside it.
            let (width, height) = info.oriented_dimensions();
            if info.format != crate::image::ImageFormat::Gif {
                assert_eq!((image.width, image.height), (width, height));
            }
        }
        _ => {}
    }
}

/// Format, upright size, orientation and EXIF tags from the headers.
pub fn exif(data: &[u8]) {
    if let Ok(metadata) = image_metadata(data, &limits()) {
        serde_json::to_string(&metadata).expect("metadata serializes");
    }
}

/// The API's JSON bodies, the first byte choosing which, parsed and validated.
pub fn request_json(data: &[u8]) {
    let Some((&which, json)) = data.split_first() else { return };
    match which % 6 {
        0 => {
            if let Ok(r) = serde_json::from_slice::<api::SearchRequest>(json) {
                let _ = SearchOptions::new(r.k, r.threshold, r.tag, 1000);
                let _ = check_hybrid_weight(r.hybrid_weight, r.text.is_some());
                if let Some(text) = r.text {
                    let _ = check_query_text(&text, 2000);
                }
            }
        }
        1 => {
            let _ = serde_json::from_slice::<api::EmbeddingsRequest>(json);
        }
        2 => {
            let _ = serde_json::from_slice::<api::ChatCompletionRequest>(json);
        }
        3 => {
            if let Ok(r) = serde_json::from_slice::<api::UrlIngest>(json) {
                let _ = clean_tags(r.tags);
            }
            let _ = serde_json::from_slice::<api::IngestJobRequest>(json);
        }
        4 => {
            let _ = serde_json::from_slice::<api::CaptionRequest>(json);
            let _ = serde_json::from_slice::<api::AnalyzeRequest>(json);
        }
        _ => {
            // What the edge's sync reads from the origin.
            let _ = serde_json::from_slice::<api::SyncPage>(json);
        }
    }
}

/// Knowledge-base uploads (JSON, JSON Lines, CSV, the first byte choosing), then chunked.
pub fn documents(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else { return };
    let format = [DocumentFormat::Json, DocumentFormat::JsonLines, DocumentFormat::Csv][usize::from(which % 3)];
    if let Ok(documents) = parse_documents(body, format) {
        for document in documents.iter().take(8) {
            let chunks = chunk_text(&document.text, 1 + usize::from(which % 64), usize::from(which / 64));
            assert!(chunks.iter().all(|c| !c.is_empty()), "empty chunk");
        }
    }
}
