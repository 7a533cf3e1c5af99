//! `fdmd`: the daemon. See `fdmd --help`.

use clap::{Parser, Subcommand};
use fdmd::config::{self, Config, EXIT_CONFIG, Sources};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: orders are parsed on the runtime's worker threads and
/// their records freed on the journal writer's; with glibc about a fifth of the CPU an order
/// cost went to malloc, free and consolidating arenas (see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "fdmd",
    version,
    about = "On-premise Belgian fiscal data module host (GKS/SCE). Not a certified FDM."
)]
struct Cli {
    /// Main configuration file (default /etc/fdmd/fdmd.toml; with --dev none unless given).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Development mode: embedded broker and HTTP on 127.0.0.1, data in ./fdmd-data, the
    /// development signer, one development register enrolled.
    #[arg(long, global = true)]
    dev: bool,
    /// Data directory (journal, keys, credentials).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Embedded MQTT broker listen address.
    #[arg(long, global = true)]
    mqtt_listen: Option<SocketAddr>,
    /// HTTP API listen address.
    #[arg(long, global = true)]
    http_listen: Option<SocketAddr>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Check the configuration and report every problem with its key; exit 78 if it is bad.
    CheckConfig,
}

fn load_config(cli: &Cli) -> Result<Config, config::ConfigError> {
    let mut sources = Sources::system(cli.config.as_deref());
    if cli.dev && cli.config.is_none() {
        sources.main_file = PathBuf::from("/nonexistent/fdmd.toml");
        sources.conf_dir = None;
    }
    let mut overrides: Vec<(&str, String)> = Vec::new();
    if cli.dev {
        overrides.push(("daemon.dev", "true".into()));
        if cli.data_dir.is_none() {
            overrides.push(("fdm.data_dir", "fdmd-data".into()));
        }
    }
    if let Some(d) = &cli.data_dir {
        overrides.push(("fdm.data_dir", d.display().to_string()));
    }
    if let Some(a) = cli.mqtt_listen {
        overrides.push(("mqtt.listen", a.to_string()));
    }
    if let Some(a) = cli.http_listen {
        overrides.push(("http.listen", a.to_string()));
    }
    config::load(&sources, &overrides).and_then(|c| config::require_establishment(&c).map(|()| c))
}

fn main() -> ExitCode {
    // `fdmd plugin-host FILE`: the isolated plugin helper the daemon starts itself (hidden; it
    // reads no configuration and talks only over the socket on its standard input).
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() == 3 && args[1] == fdmd::plugins::isolate::HELPER_SUBCOMMAND {
        fdmd::systemd::init_logging();
        if let Some(warning) = zone_warning() {
            tracing::warn!("{warning}");
        }
        return fdmd::plugins::isolate::helper_main(std::path::Path::new(&args[2]));
    }
    let cli = Cli::parse();
    let config = match load_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fdmd: the configuration is not valid:");
            for p in &e.problems {
                eprintln!("  {p}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => {
            if let Some(warning) = zone_warning() {
                eprintln!("fdmd: warning: {warning}");
            }
            if let Err(e) = config::check_files(&config) {
                eprintln!("fdmd: the configuration is not valid:");
                for p in &e.problems {
                    eprintln!("  {p}");
                }
                return ExitCode::from(EXIT_CONFIG);
            }
            println!(
                "configuration OK: fdm {} data {} MQTT {:?} {} HTTP {}",
                config.fdm.id,
                config.fdm.data_dir.display(),
                config.mqtt.mode,
                config.mqtt.listen,
                config.http.listen
            );
            ExitCode::SUCCESS
        }
        Command::Run => run(config),
    }
}

/// The installer's warning when the box is not on Belgian time (`fdmd::timezone`).
fn zone_warning() -> Option<String> {
    fdmd::timezone::zone_warning(fdmd::timezone::local_zone_name().as_deref())
}

fn run(config: Config) -> ExitCode {
    fdmd::systemd::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fdmd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let running = fdmd::daemon::start(config).await?;
        if let Some(c) = &running.dev_credentials {
            print_dev_credentials(c, &running);
        }
        running.serve_until_signal().await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("fdmd: {e:#}");
            eprintln!("fdmd: {e:#}");
            if e.downcast_ref::<fdmd::datadir_lock::LockError>()
                .is_some_and(|l| matches!(l, fdmd::datadir_lock::LockError::Held { .. }))
            {
                ExitCode::from(fdmd::datadir_lock::EXIT_LOCKED)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn print_dev_credentials(c: &fdmd::access::Credentials, running: &fdmd::daemon::Running) {
    let data_dir = running.app.config.fdm.data_dir.display();
    println!(
        "fdmd development mode — NOT a certified FDM; the development key is not a VAT Signing Card."
    );
    println!("  register:      {}", c.id);
    println!(
        "  MQTT:          user {} password {}",
        c.mqtt_username, c.mqtt_password
    );
    println!(
        "  HTTP:          http://{} token {}",
        running.http.local_addr(),
        c.http_token
    );
    println!(
        "  credentials:   {data_dir}/dev-credentials.json; admin token: {data_dir}/admin.token"
    );
}
