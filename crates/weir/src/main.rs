//! The `weir` command: run, check, proxy and demo.

mod cli;
mod demo;
mod serve;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

/// jemalloc rather than the system allocator: see the workspace manifest.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => serve::run(args),
        Command::Check(args) => return serve::check(args),
        Command::Proxy(args) => serve::proxy(args),
        Command::Demo(args) => demo::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("weir: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
