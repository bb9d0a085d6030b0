//! Timing samples and the markdown table the benchmark prints.

/// Milliseconds per repetition of one measured operation.
#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<f64>);

impl Samples {
    pub fn one(ms: f64) -> Self {
        Samples(vec![ms])
    }

    pub fn push(&mut self, ms: f64) {
        self.0.push(ms);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every sample divided by `n` (a batch of `n` timed together → ms per item).
    pub fn per_item(mut self, n: usize) -> Self {
        self.0.iter_mut().for_each(|s| *s /= n as f64);
        self
    }

    /// Sample-by-sample sum with `other` (two timed stages of the same runs).
    pub fn plus(&self, other: &Samples) -> Samples {
        assert_eq!(self.len(), other.len(), "stages of the same runs have as many samples");
        Samples(self.0.iter().zip(&other.0).map(|(a, b)| a + b).collect())
    }

    fn sorted(&self) -> Vec<f64> {
        let mut s = self.0.clone();
        s.sort_by(f64::total_cmp);
        s
    }

    /// The middle sample (the mean of the two middle ones for an even count).
    pub fn median(&self) -> f64 {
        let s = self.sorted();
        match s.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => s[n / 2],
            n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
        }
    }

    /// The nearest-rank 90th percentile.
    pub fn p90(&self) -> f64 {
        let s = self.sorted();
        if s.is_empty() {
            return f64::NAN;
        }
        let rank = (0.9 * s.len() as f64).ceil() as usize;
        s[rank.clamp(1, s.len()) - 1]
    }

    pub fn min(&self) -> f64 {
        self.0.iter().copied().fold(f64::INFINITY, f64::min)
    }
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was measured, e.g. `text query, batch 1`.
    pub what: String,
    /// Which engine or index: `int8`, `fp32`, `f32 exact`, ...
    pub engine: String,
    pub samples: Samples,
    /// The median of the row this one is compared with (same operation, fp32 model or f32 index).
    pub baseline_ms: Option<f64>,
    /// The target, ms (median at or under it).
    pub target_ms: Option<f64>,
}

impl Row {
    pub fn new(what: impl Into<String>, engine: impl Into<String>, samples: Samples) -> Self {
        Row { what: what.into(), engine: engine.into(), samples, baseline_ms: None, target_ms: None }
    }

    pub fn target(mut self, ms: f64) -> Self {
        self.target_ms = Some(ms);
        self
    }

    pub fn versus(mut self, baseline: &Row) -> Self {
        self.baseline_ms = Some(baseline.samples.median());
        self
    }
}

/// Put each `engine` row next to the `baseline` row measuring the same thing (same `what`), engine row
/// first, and give it that row's median to divide by. Rows keep the order in which their `what` first
/// appeared.
pub fn pair_up(rows: Vec<Row>, engine: &str, baseline: &str) -> Vec<Row> {
    let mut order: Vec<String> = Vec::new();
    for r in &rows {
        if !order.contains(&r.what) {
            order.push(r.what.clone());
        }
    }
    let rank = |r: &Row| {
        let group = order.iter().position(|w| *w == r.what).expect("every what is in the order");
        (group, r.engine != engine)
    };
    let medians: Vec<(String, f64)> =
        rows.iter().filter(|r| r.engine == baseline).map(|r| (r.what.clone(), r.samples.median())).collect();
    let mut rows: Vec<Row> = rows
        .into_iter()
        .map(|mut r| {
            if r.engine == engine {
                r.baseline_ms = medians.iter().find(|(w, _)| *w == r.what).map(|(_, m)| *m);
            }
            r
        })
        .collect();
    rows.sort_by_key(rank);
    rows
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// The rows as a markdown table: median, p90 and min ms, iterations, the ratio to the baseline row,
/// the target and whether the median meets it.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| measured | engine | median ms | p90 ms | min ms | iters | ÷ baseline | target ms | met? |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let median = r.samples.median();
        let ratio = r.baseline_ms.map_or("–".into(), |b| format!("{:.2}", median / b));
        let (target, met) = match r.target_ms {
            Some(t) => {
                (format!("≤ {t}"), if median <= t { "yes".to_string() } else { format!("no ({:.1}×)", median / t) })
            }
            None => ("–".into(), "–".into()),
        };
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.what,
            r.engine,
            ms(median),
            ms(r.samples.p90()),
            ms(r.samples.min()),
            r.samples.len(),
            ratio,
            target,
            met
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn median_and_p90() {
        let s = Samples(vec![5.0, 1.0, 3.0, 2.0, 4.0, 6.0, 7.0, 8.0, 9.0, 10.0]);
        assert_eq!(s.median(), 5.5);
        assert_eq!(s.p90(), 9.0);
        assert_eq!(s.min(), 1.0);
        assert_eq!(Samples::one(3.0).p90(), 3.0);
    }

    #[test]
    fn pairs_engine_rows_with_their_baseline() {
        let rows = vec![
            Row::new("load", "fp32", Samples::one(10.0)),
            Row::new("text", "fp32", Samples::one(8.0)),
            Row::new("decode", "lens-core", Samples::one(1.0)),
            Row::new("text", "int8", Samples::one(2.0)),
            Row::new("load", "int8", Samples::one(5.0)),
        ];
        let rows = pair_up(rows, "int8", "fp32");
        let order: Vec<(&str, &str)> = rows.iter().map(|r| (r.what.as_str(), r.engine.as_str())).collect();
        assert_eq!(
            order,
            [("load", "int8"), ("load", "fp32"), ("text", "int8"), ("text", "fp32"), ("decode", "lens-core")]
        );
        assert_eq!(rows[0].baseline_ms, Some(10.0));
        assert_eq!(rows[2].baseline_ms, Some(8.0));
        assert_eq!(rows[1].baseline_ms, None);
    }
}
