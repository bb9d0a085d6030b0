//! Fixtures and helpers every API test uses: fixture paths, synthetic images, and a small static
//! HTTP server for URL ingest.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn fixture_model() -> PathBuf {
    root().join("models/fixtures/clip-tiny-quickgelu")
}

/// The tiny sentence embedder (random MiniLM-shaped BERT in sentence-transformers' layout).
pub fn text_model() -> PathBuf {
    root().join("models/fixtures/minilm-tiny")
}

/// The knowledge-base corpus: the Python Language Reference's topics, one JSON Lines document each.
pub fn corpus() -> Vec<u8> {
    std::fs::read(root().join("models/fixtures/corpus/python-reference.jsonl")).unwrap()
}

pub fn image_path(name: &str) -> PathBuf {
    root().join("models/fixtures/images").join(name)
}

pub fn image_bytes(name: &str) -> Vec<u8> {
    std::fs::read(image_path(name)).unwrap()
}

/// A fixture photo as a `data:` URL (PNG or JPEG by its name).
pub fn data_url(name: &str) -> String {
    use base64::Engine;
    let mime = if name.ends_with(".png") { "image/png" } else { "image/jpeg" };
    format!("data:{mime};base64,{}", base64::engine::general_purpose::STANDARD.encode(image_bytes(name)))
}
/// The tiny LLaVA checkpoint `llava-tiny/default-old` as a model directory: its tokenizer assembled as the
/// LLaVA tests assemble it (llama-tiny's `tokenizer.json` plus LLaVA's added tokens), its chat template.
pub fn llava_dir() -> tempfile::TempDir {
    let fixtures = root().join("models/fixtures");
    let dir = tempfile::tempdir().unwrap();
    let copy = |from: PathBuf, name: &str| std::fs::copy(from, dir.path().join(name)).unwrap();
    for name in ["config.json", "model.safetensors", "processor_config.json", "preprocessor_config.json"] {
        copy(fixtures.join("llava-tiny/default-old").join(name), name);
    }
    for name in ["tokenizer_config.json", "chat_template.jinja"] {
        copy(fixtures.join("llava-tiny").join(name), name);
    }
    let read = |path: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(fixtures.join(path)).unwrap()).unwrap()
    };
    let mut tokenizer = read("llama-tiny/tokenizer.json");
    let added = read("llava-tiny/added_tokens.json");
    tokenizer["added_tokens"].as_array_mut().unwrap().extend(added.as_array().unwrap().iter().cloned());
    std::fs::write(dir.path().join("tokenizer.json"), serde_json::to_vec(&tokenizer).unwrap()).unwrap();
    dir
}

/// Every file under `dir` (recursively), by name; none when `dir` does not exist.
pub fn collect_files(dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.path().is_dir() {
            collect_files(&entry.path(), out);
        } else {
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
}

/// A static HTTP/1.1 server on 127.0.0.1 for URL ingest:
/// - `/img/NAME`: a fixture image with its content type
/// - `/redirect/N/NAME`: N redirects, then the image
/// - `/to?URL`: a redirect to URL
/// - `/big`: declares 1 GiB
/// - `/slow`: sleeps 30 s before answering
/// - anything else: 404
pub struct FileServer {
    pub base: String,
}

impl FileServer {
    pub fn start() -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let _ = handle(stream);
                });
            }
        });
        FileServer { base }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

fn handle(mut stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let respond =
        |stream: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]| -> std::io::Result<()> {
            let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            if !headers.iter().any(|(k, _)| *k == "Content-Length") {
                head.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
            head.push_str("\r\n");
            stream.write_all(head.as_bytes())?;
            stream.write_all(body)
        };
    if let Some(name) = path.strip_prefix("/img/") {
        match std::fs::read(image_path(name)) {
            Ok(bytes) => respond(&mut stream, "200 OK", &[("Content-Type", "application/octet-stream".into())], &bytes),
            Err(_) => respond(&mut stream, "404 Not Found", &[], b"no such image"),
        }
    } else if let Some(rest) = path.strip_prefix("/redirect/") {
        let (n, name) = rest.split_once('/').unwrap();
        let n: u32 = n.parse().unwrap();
        let location = if n == 0 { format!("/img/{name}") } else { format!("/redirect/{}/{name}", n - 1) };
        respond(&mut stream, "302 Found", &[("Location", location)], b"")
    } else if let Some(target) = path.strip_prefix("/to?") {
        respond(&mut stream, "302 Found", &[("Location", target.to_string())], b"")
    } else if path == "/big" {
        respond(&mut stream, "200 OK", &[("Content-Length", (1u64 << 30).to_string())], b"")
    } else if path == "/slow" {
        std::thread::sleep(Duration::from_secs(30));
        respond(&mut stream, "200 OK", &[], b"late")
    } else {
        respond(&mut stream, "404 Not Found", &[], b"not found")
    }
}

/// A distinct small PNG for each `seed`.
pub fn synthetic_png(seed: u32) -> Vec<u8> {
    synthetic_png_sized(seed, 40)
}

/// A distinct `side`x`side` PNG for each `seed`.
pub fn synthetic_png_sized(seed: u32, side: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(side, side, |x, y| {
        let v = seed.wrapping_mul(2654435761).wrapping_add(x * 7 + y * 13);
        image::Rgb([(v & 0xff) as u8, ((v >> 8) & 0xff) as u8, ((v >> 16) as u8) ^ (x as u8 * 5)])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}
