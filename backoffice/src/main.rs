//! `fdmd-backoffice`: `migrate`, `enrol`, `add-key`, `unflag` and `serve`.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use fdmd_backoffice::{Error, db, enrol, http, migrate};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "fdmd-backoffice",
    version,
    about = "Back office of fdmd: verified copies of establishments' journals in PostgreSQL"
)]
struct Cli {
    /// PostgreSQL connection string, e.g. "host=/run/postgresql dbname=fdmd user=fdmd".
    #[arg(
        long,
        global = true,
        default_value = "host=/run/postgresql dbname=fdmd_backoffice"
    )]
    db: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Applies the schema migrations not applied yet (safe to run again).
    Migrate,
    /// Enrols an establishment and prints its credential (shown once).
    Enrol {
        /// Id of the establishment in URLs (lower-case letters, digits, '.', '_', '-').
        #[arg(long)]
        id: String,
        /// Its name.
        #[arg(long)]
        name: String,
        /// Its VAT number.
        #[arg(long)]
        vat_number: String,
        /// A signer public key (64 hex; the box's `GET /v1/signer`), repeatable.
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
    },
    /// Adds a signer key to an establishment (a replaced signing card).
    AddKey {
        /// Id of the establishment.
        #[arg(long)]
        id: String,
        /// The public key, 64 hex.
        #[arg(long)]
        key: String,
    },
    /// Clears an establishment's flag (its refused segments stay kept as evidence).
    Unflag {
        /// Id of the establishment.
        #[arg(long)]
        id: String,
    },
    /// Serves the HTTP API.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
        /// File holding the admin token of the read API (one line).
        #[arg(long)]
        admin_token_file: PathBuf,
        /// An establishment with no new record for this many seconds is reported silent.
        #[arg(long, default_value_t = 24 * 3600)]
        silent_after_secs: u64,
        /// Largest segment accepted, in bytes.
        #[arg(long, default_value_t = 64 * 1024 * 1024)]
        max_body_bytes: usize,
        /// Database connections at most.
        #[arg(long, default_value_t = db::DEFAULT_POOL_SIZE)]
        pool_size: usize,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fdmd-backoffice: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fdmd-backoffice: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Migrate => {
            let pool = db::pool(&cli.db, 1)?;
            let mut client = pool.get().await?;
            let applied = migrate::run(&mut client).await?;
            let current = migrate::current(&client).await?;
            if applied.is_empty() {
                println!("schema is up to date (version {current})");
            } else {
                println!("applied migrations {applied:?}; schema version {current}");
            }
        }
        Command::Enrol {
            id,
            name,
            vat_number,
            keys,
        } => {
            let keys = keys
                .iter()
                .map(|k| enrol::parse_key(k))
                .collect::<Result<Vec<_>, _>>()?;
            let pool = db::pool(&cli.db, 1)?;
            let mut client = pool.get().await?;
            let secret = enrol::enrol(
                &mut client,
                &enrol::Enrolment {
                    id: id.clone(),
                    name,
                    vat_number,
                    keys,
                },
            )
            .await?;
            println!("establishment {id} enrolled; its credential (shown only now):");
            println!("{secret}");
        }
        Command::AddKey { id, key } => {
            let key = enrol::parse_key(&key)?;
            let pool = db::pool(&cli.db, 1)?;
            let client = pool.get().await?;
            enrol::add_key(&**client, &id, &key).await?;
            println!("key added to establishment {id}");
        }
        Command::Unflag { id } => {
            let pool = db::pool(&cli.db, 1)?;
            let client = pool.get().await?;
            if enrol::unflag(&**client, &id).await? {
                println!("establishment {id}: flag cleared (the refused segments stay kept)");
            } else {
                println!("establishment {id} was not flagged");
            }
        }
        Command::Serve {
            listen,
            admin_token_file,
            silent_after_secs,
            max_body_bytes,
            pool_size,
        } => {
            let token = std::fs::read_to_string(&admin_token_file).map_err(|e| {
                Error::invalid(
                    "admin-token-file",
                    format!("{}: {e}", admin_token_file.display()),
                )
            })?;
            let token = token.trim();
            if token.len() < 16 {
                return Err(Error::invalid(
                    "admin-token-file",
                    "the admin token must have at least 16 characters",
                ));
            }
            let mut config = http::ServerConfig::new(token);
            config.silent_after = Duration::from_secs(silent_after_secs);
            config.max_body_bytes = max_body_bytes;
            let pool = db::pool(&cli.db, pool_size)?;
            {
                let client = pool.get().await?;
                let version = migrate::current(&client).await?;
                let latest = migrate::MIGRATIONS.last().map_or(0, |m| m.version);
                if version < latest {
                    return Err(Error::invalid(
                        "database",
                        format!(
                            "schema version {version}, {latest} needed: run `fdmd-backoffice migrate`"
                        ),
                    ));
                }
            }
            let (listener, local) = http::bind(listen).await?;
            // Tests and scripts read this line to learn the port.
            println!("listening on {local}");
            let state = Arc::new(http::State {
                pool,
                metrics: Default::default(),
                config,
            });
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            http::serve(listener, state, async move {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            })
            .await?;
        }
    }
    Ok(())
}
