//! Wall-clock time in the browser: `performance.now()` of whatever global this runs in (a window or a
//! worker). `std::time::Instant` panics on wasm32-unknown-unknown.

use wasm_bindgen::JsCast;

use crate::report::Samples;

/// Milliseconds since the page or worker started, with the browser's timer resolution (5–100 µs).
pub fn now_ms() -> f64 {
    let performance =
        js_sys::Reflect::get(&js_sys::global(), &"performance".into()).expect("globalThis.performance is readable");
    performance.unchecked_into::<web_sys::Performance>().now()
}

/// Run `f` `warmup` times untimed, then `iters` times timed.
pub fn time<T>(warmup: usize, iters: usize, mut f: impl FnMut() -> T) -> Samples {
    for _ in 0..warmup {
        std::hint::black_box(f());
    }
    let mut samples = Samples::default();
    for _ in 0..iters {
        let start = now_ms();
        std::hint::black_box(f());
        samples.push(now_ms() - start);
    }
    samples
}

/// Time one call and return its result.
pub fn once<T>(f: impl FnOnce() -> T) -> (T, Samples) {
    let start = now_ms();
    let out = f();
    (out, Samples::one(now_ms() - start))
}
