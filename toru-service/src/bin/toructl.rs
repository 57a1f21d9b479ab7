//! `toructl`: the sysadmin's command line for torud. Everything lives in
//! [`toru_service::cli`]; this only hands over the exit code.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    toru_service::cli::main()
}
