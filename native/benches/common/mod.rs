//! What the model benchmarks share: their command line and their timing rule.

use std::time::Instant;

/// `[--smoke] [--iters N] [--reference FILE] [--checkpoint DIR]`.
pub struct Options {
    /// A tiny config, timed once: CI proves the bench works without spending minutes on it.
    pub smoke: bool,
    pub iters: usize,
    /// The JSON a `models/bench_*reference.py` script printed (PyTorch on the same machine).
    pub reference: Option<serde_json::Value>,
    /// A checkpoint directory the bench loads (the LLaMA bench: the one its reference script wrote).
    #[allow(dead_code)] // each bench uses a different part
    pub checkpoint: Option<std::path::PathBuf>,
}

pub fn options(default_iters: usize) -> Options {
    let mut args = std::env::args().skip(1);
    let mut o = Options { smoke: false, iters: default_iters, reference: None, checkpoint: None };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--smoke" => o.smoke = true,
            "--iters" => o.iters = args.next().and_then(|n| n.parse().ok()).expect("--iters N"),
            "--reference" => {
                let path = args.next().expect("--reference FILE");
                let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                o.reference = Some(serde_json::from_str(&text).expect("reference JSON"));
            }
            "--checkpoint" => o.checkpoint = Some(args.next().expect("--checkpoint DIR").into()),
            "--bench" => {} // passed by `cargo bench`
            other => panic!("unknown argument {other}"),
        }
    }
    if o.smoke {
        o.iters = 1;
    }
    o
}

impl Options {
    /// The reference's value under `key`; none in a smoke run (a tiny model has no reference).
    pub fn reference(&self, key: &str) -> Option<f64> {
        if self.smoke {
            return None;
        }
        self.reference.as_ref().and_then(|j| j.get(key)).and_then(|v| v.as_f64())
    }
}

/// Threads this machine offers, for the table's caption.
pub fn threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Seconds per call of `f`, after one warm-up call, best of `iters`.
pub fn time(iters: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..iters)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Whether the CUDA driver library can be loaded: a build with the `cuda` feature runs its rows only
/// then (without it, cudarc panics on first use). `ldconfig -p` lists the system's libraries;
/// `LD_LIBRARY_PATH` adds others.
#[allow(dead_code)] // each bench uses a different part
pub fn cuda_driver_present() -> bool {
    let in_ldconfig = std::process::Command::new("ldconfig")
        .arg("-p")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("libcuda.so"));
    let in_path = std::env::var_os("LD_LIBRARY_PATH").is_some_and(|dirs| {
        std::env::split_paths(&dirs).any(|d| d.join("libcuda.so.1").exists() || d.join("libcuda.so").exists())
    });
    in_ldconfig || in_path
}
