//! `emission-auction`: parses the command line, sets up logging, and hands over to the library.
//!
//! Exit status: 0 on success, also when the reader of standard output has gone away
//! (`... | head -1`), which ends a command quietly; 1 with `error: ...` on standard error when a
//! command fails; 2 for a command line clap refuses.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;
use emission_auction::cli::{self, Cli, Top};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // Not `Cli::parse`, which exits the process from inside clap: help, version and usage
    // errors are printed here, and a closed pipe while printing them is not an error.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let default_level = match cli.command {
        Top::Serve(_) => "info",
        _ => "warn",
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)))
        .with_writer(std::io::stderr);
    match cli.log_format {
        cli::LogFormat::Human => logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        cli::LogFormat::Json => logs.json().init(),
    }

    match cli.command {
        Top::Principal(command) => return report(cli::principal(command)),
        Top::Journal(command) => return report(cli::journal(command)),
        Top::Report(args) => return report(cli::report(args)),
        Top::Receipt(command) => return report(cli::receipt(command)),
        _ => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async move {
        match cli.command {
            Top::Serve(args) => report(serve(args).await),
            Top::Demo(args) => report(cli::demo::run(args).await),
            Top::Auction(args) => report(cli::auction(args).await),
            Top::Bid(args) => report(cli::bid(args).await),
            Top::Settlement(args) => report(cli::settlement(args).await),
            Top::Loadgen(args) => report(cli::loadgen::main(args).await),
            Top::Enterprise(args) => report(cli::enterprise::run(args).await),
            Top::Principal(_) | Top::Journal(_) | Top::Report(_) | Top::Receipt(_) => unreachable!("handled above"),
        }
    })
}

async fn serve(args: cli::ServeCommand) -> Result<(), Box<dyn std::error::Error>> {
    use tokio::signal::unix::{SignalKind, signal};

    // Installed first, so that a signal during start-up (a long journal replay) does not take
    // the default action (SIGHUP would end the process).
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let config = args.config()?;
    let parts = emission_auction::server::assemble(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    eprintln!(
        "emission-auction listening on {} ({}; data in {})",
        listener.local_addr()?,
        if config.tls.is_some() { "TLS" } else { "plain text" },
        config.data_dir.display()
    );
    // SIGHUP reloads the principals file; SIGTERM and SIGINT both stop gracefully: no new
    // connections, calls in flight finish, auction tasks stop, then the journal closes.
    let principals = std::sync::Arc::clone(&parts.principals);
    let shutdown = async move {
        loop {
            tokio::select! {
                _ = hangup.recv() => {
                    let principals = std::sync::Arc::clone(&principals);
                    let _ = tokio::task::spawn_blocking(move || principals.reload_logged("SIGHUP")).await;
                }
                _ = terminate.recv() => {
                    tracing::info!("SIGTERM: draining and stopping");
                    break;
                }
                _ = interrupt.recv() => {
                    tracing::info!("SIGINT: draining and stopping");
                    break;
                }
            }
        }
    };
    match config.board_listen {
        Some(addr) => {
            let board =
                tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            eprintln!("results board on http://{} (report at /report, metrics at /metrics)", board.local_addr()?);
            emission_auction::server::run_with_board(parts, listener, board, shutdown).await?;
        }
        None => emission_auction::server::run(parts, listener, shutdown).await?,
    }
    Ok(())
}

fn report<E: Into<Box<dyn std::error::Error>>>(result: Result<(), E>) -> ExitCode {
    let Err(e) = result.map_err(Into::into) else { return ExitCode::SUCCESS };
    if cli::render::stdout_closed(e.as_ref()) {
        return ExitCode::SUCCESS;
    }
    // Standard error may be a closed pipe too: nothing more can be said then.
    let _ = writeln!(std::io::stderr(), "error: {e}");
    ExitCode::FAILURE
}
