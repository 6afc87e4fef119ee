//! `lockctl` for the tests (the same code as lock-runtime's `lockctl` binary,
//! which cargo builds only for its own package's tests).

fn main() -> std::process::ExitCode {
    lock_runtime::cli::main()
}
