//! `lockctl`: see and free locks from a shell. `lockctl --help` says how.

fn main() -> std::process::ExitCode {
    lock_runtime::cli::main()
}
