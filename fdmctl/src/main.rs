//! `fdmctl`: the installer's and inspector's command for fdmd (see the `fdmctl` library crate).

use clap::Parser;

/// The daemon's allocator: `fdmctl verify` reads records on one thread and checks them on every
/// core; with glibc about 8 % of its CPU went to malloc, free and consolidating arenas
/// (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    // `fdmctl plugin-host FILE`: the helper process `fdmctl plugin check` starts (hidden).
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() == 3 && args[1] == fdmd::plugins::isolate::HELPER_SUBCOMMAND {
        return fdmd::plugins::isolate::helper_main(Path::new(&args[2]));
    }
    let cli = fdmctl::cli::Cli::parse();
    match fdmctl::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fdmctl: {e:#}");
            ExitCode::from(2)
        }
    }
}
