//! Build time, memory, recall@10 and single-thread query rate of every index on synthetic clustered
//! embeddings. Prints a markdown table.
//!
//! ```text
//! cargo bench -p lens-index --bench index -- --n 100000,1000000 --queries 1000
//! cargo bench -p lens-index --bench index -- --smoke          # N = 2000, 100 queries (CI)
//! ```
//!
//! Flags: `--n N[,N…]` (default 100000), `--queries Q` (1000), `--dim D` (512), `--centres C` (1000),
//! `--noise S` (1.0), `--ef E[,E…]` (HNSW ef_search values: 32,64,128), `--m M` (16),
//! `--ef-construction E` (100, the default), `--indexes exact,int8,hnsw` (all), `--seed S` (7), `--smoke`.
//!
//! Data: `C` centres drawn from N(0, I) and normalised; each point is `centre + S·N(0, I/D)`,
//! normalised (so the noise has norm ≈ S). Queries are further points from the same distribution, not
//! in the index. Within a cluster the noise is isotropic in all D dimensions, which makes the near
//! neighbours of a point almost equidistant: harder for HNSW and int8 than real CLIP embeddings,
//! whose intrinsic dimension is far lower.
//!
//! Memory is each index's own accounting (`memory_bytes`), not the process RSS. Query rates are one
//! thread, k = 10, no filter; the HNSW build uses every core. A second table times the HNSW snapshot:
//! saving the graph and loading it back (what a restart of `lens serve` does instead of a build); the
//! loaded graph must answer every query exactly as the saved one.

use std::time::Instant;

use lens_index::{ExactIndex, Hit, HnswIndex, HnswParams, Int8Index, VectorIndex};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

struct Args {
    ns: Vec<usize>,
    queries: usize,
    dim: usize,
    centres: usize,
    noise: f32,
    efs: Vec<usize>,
    m: usize,
    ef_construction: usize,
    indexes: Vec<String>,
    seed: u64,
}

fn list(s: &str) -> Vec<usize> {
    s.split(',').map(|x| x.trim().replace('_', "").parse().unwrap_or_else(|_| panic!("not a number: {x}"))).collect()
}

fn parse_args() -> Args {
    let mut a = Args {
        ns: vec![100_000],
        queries: 1000,
        dim: 512,
        centres: 1000,
        noise: 1.0,
        efs: vec![32, 64, 128],
        m: 16,
        ef_construction: 100,
        indexes: vec!["exact".into(), "int8".into(), "hnsw".into()],
        seed: 7,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--n" => a.ns = list(&value()),
            "--queries" => a.queries = list(&value())[0],
            "--dim" => a.dim = list(&value())[0],
            "--centres" => a.centres = list(&value())[0],
            "--noise" => a.noise = value().parse().expect("--noise"),
            "--ef" => a.efs = list(&value()),
            "--m" => a.m = list(&value())[0],
            "--ef-construction" => a.ef_construction = list(&value())[0],
            "--indexes" => a.indexes = value().split(',').map(str::to_owned).collect(),
            "--seed" => a.seed = value().parse().expect("--seed"),
            "--smoke" => {
                a.ns = vec![2000];
                a.queries = 100;
            }
            // `cargo bench` passes `--bench`; anything else unknown is a mistake.
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn gaussian(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
}

/// `n` points, flat row-major, around the given centres.
fn points(rng: &mut StdRng, centres: &[Vec<f32>], n: usize, noise: f32) -> Vec<f32> {
    let dim = centres[0].len();
    let sigma = noise / (dim as f32).sqrt();
    let mut out = Vec::with_capacity(n * dim);
    let mut row = vec![0.0f32; dim];
    for _ in 0..n {
        let c = &centres[rng.random_range(0..centres.len())];
        for (r, &x) in row.iter_mut().zip(c) {
            *r = x + sigma * gaussian(rng);
        }
        normalize(&mut row);
        out.extend_from_slice(&row);
    }
    out
}

struct Snapshot {
    n: usize,
    megabytes: f64,
    save_s: f64,
    load_s: f64,
}

struct Row {
    index: String,
    n: usize,
    build_s: f64,
    memory_mb: f64,
    recall: f64,
    qps: f64,
    params: String,
}

/// Runs every query single-threaded: (hits per query, queries per second).
fn run_queries(index: &dyn VectorIndex, queries: &[f32], dim: usize) -> (Vec<Vec<u64>>, f64) {
    let start = Instant::now();
    let hits: Vec<Vec<Hit>> = queries.chunks_exact(dim).map(|q| index.search(q, 10, None).unwrap()).collect();
    let qps = hits.len() as f64 / start.elapsed().as_secs_f64();
    (hits.into_iter().map(|h| h.into_iter().map(|h| h.id).collect()).collect(), qps)
}

fn recall(truth: &[Vec<u64>], got: &[Vec<u64>]) -> f64 {
    let found: usize = truth.iter().zip(got).map(|(t, g)| g.iter().filter(|id| t.contains(id)).count()).sum();
    found as f64 / truth.iter().map(Vec::len).sum::<usize>() as f64
}

/// `(id, row)` of flat row-major data, ids 0, 1, 2, ….
fn rows_of(data: &[f32], dim: usize) -> impl Iterator<Item = (u64, &[f32])> {
    data.chunks_exact(dim).enumerate().map(|(i, v)| (i as u64, v))
}

fn mb(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    let args = parse_args();
    let want = |name: &str| args.indexes.iter().any(|i| i == name);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    eprintln!(
        "dim {} centres {} noise {} queries {} seed {} ({threads} threads for the HNSW build)",
        args.dim, args.centres, args.noise, args.queries, args.seed
    );
    let mut rows = Vec::new();
    let mut snapshots = Vec::new();
    for &n in &args.ns {
        let t = Instant::now();
        let mut rng = StdRng::seed_from_u64(args.seed);
        let centres: Vec<Vec<f32>> = (0..args.centres)
            .map(|_| {
                let mut c: Vec<f32> = (0..args.dim).map(|_| gaussian(&mut rng)).collect();
                normalize(&mut c);
                c
            })
            .collect();
        let data = points(&mut rng, &centres, n, args.noise);
        let queries = points(&mut rng, &centres, args.queries, args.noise);
        eprintln!("N {n}: data generated in {:.1} s", t.elapsed().as_secs_f64());

        // Ground truth (and the exact index's own row).
        let t = Instant::now();
        let mut exact = ExactIndex::new(args.dim);
        for (id, v) in rows_of(&data, args.dim) {
            exact.insert(id, v).unwrap();
        }
        let build_s = t.elapsed().as_secs_f64();
        let (truth, qps) = run_queries(&exact, &queries, args.dim);
        if want("exact") {
            let memory_mb = mb(exact.memory_bytes());
            rows.push(Row { index: "exact f32".into(), n, build_s, memory_mb, recall: 1.0, qps, params: "-".into() });
            eprintln!("N {n}: exact done");
        }
        drop(exact);

        if want("int8") {
            let t = Instant::now();
            let mut int8 = Int8Index::new(args.dim);
            for (id, v) in rows_of(&data, args.dim) {
                int8.insert(id, v).unwrap();
            }
            let build_s = t.elapsed().as_secs_f64();
            let (got, qps) = run_queries(&int8, &queries, args.dim);
            let memory_mb = mb(int8.memory_bytes());
            rows.push(Row {
                index: "int8".into(),
                n,
                build_s,
                memory_mb,
                recall: recall(&truth, &got),
                qps,
                params: "-".into(),
            });
            eprintln!("N {n}: int8 done");
        }

        if want("hnsw") {
            let params = HnswParams {
                max_nb_connection: args.m,
                ef_construction: args.ef_construction,
                ..HnswParams::default()
            };
            let t = Instant::now();
            let items = rows_of(&data, args.dim).map(|(id, v)| (id, v.to_vec()));
            let mut hnsw = HnswIndex::rebuild(args.dim, params, items).unwrap();
            let build_s = t.elapsed().as_secs_f64();
            eprintln!("N {n}: hnsw built in {build_s:.1} s");
            let memory_mb = mb(hnsw.memory_bytes());
            for &ef in &args.efs {
                hnsw.set_ef_search(ef);
                let (got, qps) = run_queries(&hnsw, &queries, args.dim);
                rows.push(Row {
                    index: "hnsw".into(),
                    n,
                    build_s,
                    memory_mb,
                    recall: recall(&truth, &got),
                    qps,
                    params: format!("M {}, ef_construction {}, ef_search {ef}", args.m, args.ef_construction),
                });
            }
            let dir = std::env::temp_dir().join(format!("lens-index-bench-{}", std::process::id()));
            let t = Instant::now();
            hnsw.save(&dir, "bench").unwrap();
            let save_s = t.elapsed().as_secs_f64();
            let megabytes = mb(std::fs::metadata(dir.join("hnsw.snapshot")).unwrap().len() as usize);
            let t = Instant::now();
            let (loaded, _) = HnswIndex::load(&dir).unwrap();
            let load_s = t.elapsed().as_secs_f64();
            std::fs::remove_dir_all(&dir).unwrap();
            let (before, _) = run_queries(&hnsw, &queries, args.dim);
            let (after, _) = run_queries(&loaded, &queries, args.dim);
            assert!(before == after, "the loaded graph answers differently");
            snapshots.push(Snapshot { n, megabytes, save_s, load_s });
        }
    }

    println!("| index | N | build s | memory MB | recall@10 vs exact | queries/s (1 thread) | params |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    for r in rows {
        println!(
            "| {} | {} | {:.1} | {:.0} | {:.3} | {:.0} | {} |",
            r.index, r.n, r.build_s, r.memory_mb, r.recall, r.qps, r.params
        );
    }
    if !snapshots.is_empty() {
        println!();
        println!("| HNSW snapshot | N | file MB | save s | load s (graph read, not rebuilt) |");
        println!("|---|---:|---:|---:|---:|");
        for s in snapshots {
            println!("| hnsw | {} | {:.0} | {:.2} | {:.2} |", s.n, s.megabytes, s.save_s, s.load_s);
        }
    }
}
