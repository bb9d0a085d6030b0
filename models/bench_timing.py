"""The timing rule of the reference bench scripts (bench_reference.py, bench_blip_reference.py,
bench_llama_reference.py), the rule of the Rust benches they are compared with: one warm-up call, then
`iters` timed calls."""

import time


def timed(iters: int, fn) -> list[float]:
    """Seconds of each timed call of `fn`, after one warm-up call."""
    fn()  # warm-up
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times
