//! Command-line entry points.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::render_cmd::{self, Format};

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "Gatehouse: a cluster's network stack from three objects"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print every child object the operator would create for the given inputs, with no cluster.
    Render {
        /// Files or directories of YAML/JSON documents (ClusterNetwork, ExposedApp,
        /// EgressPolicy, Namespace, Service); `-` reads stdin. Repeatable.
        #[arg(short = 'f', long = "filename", required = true)]
        paths: Vec<PathBuf>,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value = "yaml")]
        output: Format,
    },
    /// Print the three CRDs as YAML.
    Crd,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", crate::crd::crds_yaml());
            ExitCode::SUCCESS
        }
        Command::Render { paths, output } => {
            let out = render_cmd::render_paths(&paths);
            for note in &out.notes {
                eprintln!("note: {note}");
            }
            if !out.errors.is_empty() {
                for e in &out.errors {
                    eprintln!("error: {e}");
                }
                return ExitCode::FAILURE;
            }
            print!("{}", render_cmd::format(&out.children, output));
            ExitCode::SUCCESS
        }
    }
}
