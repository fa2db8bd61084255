//! `emission-auction`: parses the command line, sets up logging, and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use emission_auction::cli::{self, Cli, Top};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Top::Serve(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    match cli.command {
        Top::Principal(command) => return report(cli::principal_add(command)),
        Top::Journal(command) => return report(cli::journal(command)),
        _ => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async move {
        match cli.command {
            Top::Serve(args) => report(serve(args).await),
            Top::Demo => report(cli::demo::run().await),
            Top::Auction(args) => report(cli::auction(args).await),
            Top::Bid(args) => report(cli::bid(args).await),
            Top::Settlement(args) => report(cli::settlement(args).await),
            Top::Principal(_) | Top::Journal(_) => unreachable!("handled above"),
        }
    })
}

async fn serve(args: cli::ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let config = args.config()?;
    let parts = emission_auction::server::assemble(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    eprintln!("emission-auction listening on {} (data in {})", listener.local_addr()?, config.data_dir.display());
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("ctrl-c: draining and stopping");
    };
    emission_auction::server::run(parts, listener, shutdown).await?;
    Ok(())
}

fn report<E: std::fmt::Display>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
