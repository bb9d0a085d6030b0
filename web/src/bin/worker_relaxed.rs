//! The worker (`worker.rs`) built with the `relaxed-simd` feature: int8 products on
//! `i16x8.relaxed_dot_i8x16_i7x16_s`. A module holding those instructions does not even load where
//! the engine lacks them (Safari, older browsers), so the page checks first and otherwise starts
//! `lens-web-worker`.

#[path = "worker.rs"]
mod worker;

fn main() {
    worker::main();
}
