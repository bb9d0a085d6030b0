//! `lens`: the command line. Everything lives in the library (`lens::cli`); this is the entry point.

fn main() -> std::process::ExitCode {
    lens::cli::main()
}
