//! `fdmctl`: the installer's and inspector's command for fdmd.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use fdmd::journal::export::{ExportError, verify_database, verify_export, write_export};
use fdmd::journal::store;
use fdmd::journal::verify::VerifySummary;
use fdmd::paths;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "fdmctl",
    version,
    about = "Control and verify an fdmd fiscal data module host"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the running daemon is and how to reach its admin API.
#[derive(clap::Args, Clone)]
struct DaemonArgs {
    /// Configuration file of the daemon (default /etc/fdmd/fdmd.toml and conf.d).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data directory (holds admin.token); default from the configuration.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Address of the daemon's HTTP API; default from the configuration.
    #[arg(long, global = true)]
    http: Option<std::net::SocketAddr>,
}

#[derive(Subcommand)]
enum Enrolment {
    /// Enrol and print the new credentials (shown once).
    Add {
        /// Id (1-32 of A-Z a-z 0-9 . _ -).
        id: String,
        /// Print the credentials as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List enrolments.
    List,
    /// Revoke: the credentials stop working at once; the journal keeps the history.
    Revoke {
        /// Id.
        id: String,
    },
}

#[derive(Subcommand)]
enum PluginAction {
    /// Load a plugin in a helper process and run the conformance scenario (docs/plugins.md).
    /// Exits 1 if a step fails.
    Check {
        /// The plugin file (.so).
        file: PathBuf,
        /// The plugin's configuration, as JSON.
        #[arg(long, default_value = "{}")]
        config_json: String,
        /// A trusted vendor key (64 hex); repeat for several. Without one the signature is
        /// reported but not required.
        #[arg(long = "trusted-key", value_name = "HEX")]
        trusted_keys: Vec<String>,
        /// A file whose bytes are sent on a connection of their own; the answers are printed.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Longest a call may take, in milliseconds.
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
    },
    /// Sign a plugin file with a vendor key: writes FILE.sig (Ed25519 over the file's bytes).
    Sign {
        /// The vendor's secret key file (64 hex characters, from `fdmctl plugin keygen`).
        #[arg(long)]
        key: PathBuf,
        /// The plugin file.
        file: PathBuf,
    },
    /// Create a vendor signing key (mode 0600) and print its public key for plugins.trusted_keys.
    Keygen {
        /// Where to write the secret key.
        key: PathBuf,
    },
}

#[derive(Subcommand)]
enum VscAction {
    /// Give the card its PIN: asked on the terminal without echo, or read from standard input
    /// when that is not a terminal. Exits 0 when accepted, 1 when refused (wrong PIN: 204 with
    /// the tries left; blocked: 203).
    Pin,
    /// Show the card's state: reader, VSC id, PIN, errors. Exits 0 when it signs, 1 otherwise.
    Status,
}

#[derive(Subcommand)]
enum ReportCommand {
    /// X report: the figures since the last Z report, without closing the period.
    X {
        #[command(flatten)]
        opts: ReportOpts,
    },
    /// Z report: closes the daily period (refused while tables are open, or operators are
    /// clocked in unless --override-reason is given; the override is recorded).
    Z {
        #[command(flatten)]
        opts: ReportOpts,
        /// Close although operators are still clocked in; recorded in the report.
        #[arg(long)]
        override_reason: Option<String>,
    },
    /// Yearly threshold report: meals consumed on site against total horeca turnover,
    /// excluding VAT (10 % rule), and the 25,000 EUR indication. Reads the journal file.
    Threshold {
        /// The year (the rule is computed each January on the previous year).
        #[arg(long)]
        year: i32,
        /// Data directory holding journal.sqlite.
        #[arg(long, default_value = paths::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct ReportOpts {
    #[command(flatten)]
    daemon: DaemonArgs,
    /// The register whose series the report closes (when each register has its own series).
    #[arg(long)]
    register: Option<String>,
    /// Print the signed report as JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum DevicesCommand {
    /// What to enter in the registration application: FDM and register production numbers,
    /// the card's VSC id, links and deactivations (the default).
    List,
    /// Every journaled change of one device.
    History {
        /// register, station or card.
        kind: String,
        /// Register or station id, or VSC id.
        id: String,
    },
    /// Link an enrolled register, under its 14-character production number, to this FDM.
    Link {
        /// Register id.
        id: String,
        /// Production number, e.g. BODO0010000001.
        production_number: String,
    },
    /// Deactivate a register: its orders are refused from now on.
    Deactivate {
        /// Register id.
        id: String,
        /// defect, stolen, sold, stopped, replaced or other.
        #[arg(long)]
        reason: String,
        /// Free text (required with --reason other).
        #[arg(long)]
        note: Option<String>,
    },
    /// Record that the signing card (VSC) is replaced by another.
    ReplaceCard {
        /// The new card's VSC id.
        new_vsc_id: String,
        /// defect, stolen, sold, stopped, replaced or other.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Check, sign and create keys for plugins (docs/plugins.md).
    Plugin {
        #[command(subcommand)]
        action: PluginAction,
    },
    /// Show the daemon's status (or, when it is down, what the journal file says).
    Status {
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// List the open tables and checks (pro formas without their final ticket yet). Reads the journal
    /// directly when the daemon is not answering.
    Tables {
        #[command(flatten)]
        daemon: DaemonArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The daily presence list (WORK IN / WORK OUT per operator) and who is clocked in.
    Presence {
        #[command(flatten)]
        daemon: DaemonArgs,
        /// Date, YYYY-MM-DD (default today).
        #[arg(long)]
        date: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Enrol, list or revoke registers (cash registers, handhelds).
    Register {
        #[command(flatten)]
        daemon: DaemonArgs,
        #[command(subcommand)]
        action: Enrolment,
    },
    /// Enrol, list or revoke stations (kitchen and bar printers or screens).
    Station {
        #[command(flatten)]
        daemon: DaemonArgs,
        #[command(subcommand)]
        action: Enrolment,
    },
    /// The VAT Signing Card: give its PIN, show its state.
    Vsc {
        #[command(flatten)]
        daemon: DaemonArgs,
        #[command(subcommand)]
        action: VscAction,
    },
    /// Check a configuration and report every problem with its key; exit 78 if it is bad.
    CheckConfig {
        /// Configuration file (default /etc/fdmd/fdmd.toml and conf.d).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Verify a journal (the data directory's, or an export file): every hash, link, signature
    /// and counter. Exits 1 and names the first bad record if anything is wrong.
    Verify {
        /// Data directory holding journal.sqlite.
        #[arg(long, default_value = paths::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// A trusted signer public key (64 hex characters); repeat for several. Without one, the
        /// keys the journal declares are used, and the report says so.
        #[arg(long = "key", value_name = "HEX")]
        keys: Vec<String>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
        /// An export file to verify instead of the data directory's journal.
        export_file: Option<PathBuf>,
    },
    /// X, Z and threshold reports.
    Report {
        #[command(subcommand)]
        report: ReportCommand,
    },
    /// The device registry (registers, FDM, card) and its changes.
    Devices {
        #[command(flatten)]
        daemon: DaemonArgs,
        #[command(subcommand)]
        action: Option<DevicesCommand>,
    },
    /// Export records as JSON lines (docs/journal-format.md), to a file or standard output.
    Export {
        /// Data directory holding journal.sqlite.
        #[arg(long, default_value = paths::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// First record to export.
        #[arg(long, default_value_t = 1)]
        from_seq: u64,
        /// Last record to export (default: the last one).
        #[arg(long)]
        to_seq: Option<u64>,
        /// Export the records of these FDM dates instead (YYYY-MM-DD, with --to-date).
        #[arg(long, requires = "to_date", conflicts_with_all = ["from_seq", "to_seq"])]
        from_date: Option<String>,
        /// Last FDM date of the period (YYYY-MM-DD).
        #[arg(long, requires = "from_date")]
        to_date: Option<String>,
        /// Output file (default: standard output).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    // `fdmctl plugin-host FILE`: the helper process `fdmctl plugin check` starts (hidden).
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() == 3 && args[1] == fdmd::plugins::isolate::HELPER_SUBCOMMAND {
        return fdmd::plugins::isolate::helper_main(Path::new(&args[2]));
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fdmctl: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Plugin { action } => plugin(action),
        Command::Status { daemon } => admin::status(&daemon),
        Command::Tables { daemon, json } => admin::tables(&daemon, json),
        Command::Presence { daemon, date, json } => admin::presence(&daemon, date, json),
        Command::Register { daemon, action } => admin::enrolment(&daemon, "registers", action),
        Command::Station { daemon, action } => admin::enrolment(&daemon, "stations", action),
        Command::Vsc { daemon, action } => match action {
            VscAction::Pin => admin::vsc_pin(&daemon),
            VscAction::Status => admin::vsc_status(&daemon),
        },
        Command::CheckConfig { config } => {
            let sources = fdmd::config::Sources::system(config.as_deref());
            match fdmd::config::load(&sources, &[]) {
                Ok(c) => {
                    println!(
                        "configuration OK: fdm {} data {} HTTP {} MQTT {:?} {}",
                        c.fdm.id,
                        c.fdm.data_dir.display(),
                        c.http.listen,
                        c.mqtt.mode,
                        c.mqtt.listen
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("configuration is not valid:");
                    for p in &e.problems {
                        println!("  {p}");
                    }
                    Ok(ExitCode::from(fdmd::config::EXIT_CONFIG))
                }
            }
        }
        Command::Verify {
            data_dir,
            keys,
            json,
            export_file,
        } => {
            let keys = keys
                .iter()
                .map(|k| parse_key(k))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let result = match &export_file {
                Some(file) => {
                    let f = std::fs::File::open(file)
                        .with_context(|| format!("opening {}", file.display()))?;
                    verify_export(BufReader::new(f), keys).map(|(_, s)| s)
                }
                None => {
                    let conn = open_journal(&data_dir)?;
                    verify_database(&conn, keys)
                }
            };
            let source = export_file
                .as_ref()
                .map_or_else(|| paths::journal_file(&data_dir), Clone::clone);
            report_verification(&source, result, json)
        }
        Command::Report { report } => reports::run(report),
        Command::Devices { daemon, action } => {
            admin::devices(&daemon, action.unwrap_or(DevicesCommand::List))
        }
        Command::Export {
            data_dir,
            mut from_seq,
            mut to_seq,
            from_date,
            to_date,
            output,
        } => {
            let conn = open_journal(&data_dir)?;
            if let (Some(from), Some(to)) = (&from_date, &to_date) {
                match fdmd::reports::period::seq_range_of_dates(&conn, from, to)? {
                    Some((a, b)) => {
                        from_seq = a;
                        to_seq = Some(b);
                    }
                    None => bail!("the journal has no records dated {from} to {to}"),
                }
            }
            let now = fdmd::journal::format_time(chrono::Local::now().fixed_offset());
            let header = match &output {
                Some(path) => {
                    let file = std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    let mut out = BufWriter::new(file);
                    let header =
                        write_export(&conn, from_seq, to_seq.unwrap_or(u64::MAX), &now, &mut out)?;
                    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                    header
                }
                None => {
                    let stdout = std::io::stdout();
                    let mut out = BufWriter::new(stdout.lock());
                    let header =
                        write_export(&conn, from_seq, to_seq.unwrap_or(u64::MAX), &now, &mut out)?;
                    out.flush()?;
                    header
                }
            };
            eprintln!(
                "exported records {}..={}",
                header.first_seq, header.last_seq
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

mod admin {
    //! Commands that talk to the running daemon's admin API.

    use super::{DaemonArgs, Enrolment};
    use anyhow::{Context, bail};
    use fdmd::client::{ClientError, request};
    use hyper::{Method, StatusCode};
    use serde_json::Value;
    use std::net::SocketAddr;
    use std::process::ExitCode;
    use std::time::Duration;

    struct Target {
        addr: SocketAddr,
        data_dir: std::path::PathBuf,
    }

    fn target(args: &DaemonArgs) -> anyhow::Result<Target> {
        let sources = fdmd::config::Sources::system(args.config.as_deref());
        let config =
            fdmd::config::load(&sources, &[]).context("reading the daemon's configuration")?;
        let mut addr = args.http.unwrap_or(config.http.listen);
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let data_dir = args.data_dir.clone().unwrap_or(config.fdm.data_dir);
        Ok(Target { addr, data_dir })
    }

    fn call(
        t: &Target,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Result<(StatusCode, Value), ClientError>> {
        let token = fdmd::access::read_admin_token(&t.data_dir).with_context(|| {
            format!(
                "reading {}/admin.token (run as root or the fdmd user, or give --data-dir)",
                t.data_dir.display()
            )
        })?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let body = body.map(|b| serde_json::to_vec(&b)).transpose()?;
        let answer = rt.block_on(request(
            t.addr,
            method,
            path,
            Some(&token),
            body,
            Duration::from_secs(10),
        ));
        Ok(answer.map(|(status, bytes)| {
            (
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            )
        }))
    }

    fn expect_ok(answer: Result<(StatusCode, Value), ClientError>) -> anyhow::Result<Value> {
        let (status, body) = answer?;
        if !status.is_success() {
            bail!(
                "fdmd answered {status}: {}",
                body.get("message").and_then(Value::as_str).unwrap_or("")
            );
        }
        Ok(body)
    }

    pub fn status(args: &DaemonArgs) -> anyhow::Result<ExitCode> {
        let t = target(args)?;
        match call(&t, Method::GET, "/v1/status", None)? {
            Ok((_, body)) => {
                println!("{}", serde_json::to_string_pretty(&body)?);
                let ready = body.get("status").and_then(Value::as_str) == Some("ready");
                Ok(if ready {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                })
            }
            Err(e) => {
                println!("fdmd is not answering ({e})");
                let file = fdmd::paths::journal_file(&t.data_dir);
                if let Ok(conn) = fdmd::journal::store::open_read_only(&file) {
                    let heads = fdmd::journal::store::load_heads(&conn)?;
                    println!(
                        "journal {}: {} records, {} fiscal events (read-only; run `fdmctl verify` to check it)",
                        file.display(),
                        heads.last_seq,
                        heads.total_counter
                    );
                }
                Ok(ExitCode::from(3))
            }
        }
    }

    /// The daemon's restaurant state, or (when it is not answering) the state folded from its
    /// journal read-only.
    fn restaurant_offline(t: &Target) -> anyhow::Result<fdmd::restaurant::Restaurant> {
        let file = fdmd::paths::journal_file(&t.data_dir);
        fdmd::restaurant::Restaurant::rebuild(&file, false)
            .with_context(|| format!("reading {}", file.display()))
    }

    pub fn tables(args: &DaemonArgs, json: bool) -> anyhow::Result<ExitCode> {
        let t = target(args)?;
        let tables = match call(&t, Method::GET, "/v1/tables", None) {
            Ok(Ok(answer)) => expect_ok(Ok(answer))?,
            _ => {
                eprintln!("fdmd is not answering: tables as the journal records them");
                restaurant_offline(&t)?.open_tables().to_json()
            }
        };
        if json {
            println!("{}", serde_json::to_string_pretty(&tables)?);
            return Ok(ExitCode::SUCCESS);
        }
        let list = tables.as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            println!("no open table or check");
        }
        for table in list {
            let f = |k: &str| match table.get(k) {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => String::new(),
            };
            let (what, name) = match table.get("check").and_then(Value::as_str) {
                Some(c) => ("check", c.to_owned()),
                None => ("table", f("table")),
            };
            println!(
                "{what} {:<8} total {:>9}  lines {:>3}  pro formas {:>2}  since {}  operator {}",
                name,
                f("total"),
                f("lines"),
                table
                    .get("pro_formas")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len),
                f("opened_at"),
                f("operator")
            );
        }
        Ok(ExitCode::SUCCESS)
    }

    pub fn presence(
        args: &DaemonArgs,
        date: Option<String>,
        json: bool,
    ) -> anyhow::Result<ExitCode> {
        let t = target(args)?;
        let date = date.unwrap_or_else(|| chrono::Local::now().format("%Y-%m-%d").to_string());
        let doc = match call(
            &t,
            Method::GET,
            &format!("/v1/staff/presence?date={date}"),
            None,
        ) {
            Ok(Ok(answer)) => expect_ok(Ok(answer))?,
            _ => {
                eprintln!("fdmd is not answering: presence as the journal records it");
                let shifts = restaurant_offline(&t)?
                    .shifts_on(&date)
                    .map_err(|e| anyhow::anyhow!(e))?;
                serde_json::json!({
                    "date": date,
                    "shifts": shifts.iter().map(|s| s.to_json()).collect::<Vec<_>>(),
                })
            }
        };
        if json {
            println!("{}", serde_json::to_string_pretty(&doc)?);
            return Ok(ExitCode::SUCCESS);
        }
        println!("presence on {date}");
        for s in doc
            .get("shifts")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
        {
            let f = |k: &str| {
                s.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("(at work)")
                    .to_owned()
            };
            println!("{}  in {}  out {}", f("operator"), f("start"), f("end"));
        }
        Ok(ExitCode::SUCCESS)
    }

    /// Reads the PIN without echo on a terminal, or a line from standard input.
    fn read_pin() -> anyhow::Result<String> {
        use std::io::{BufRead, IsTerminal, Read};
        let stdin = std::io::stdin();
        let mut line = String::new();
        if stdin.is_terminal() {
            eprint!("PIN of the VAT Signing Card: ");
            let stty = |arg: &str| {
                std::process::Command::new("stty")
                    .arg(arg)
                    .stdin(std::process::Stdio::inherit())
                    .status()
            };
            let hidden = stty("-echo").is_ok_and(|s| s.success());
            if !hidden {
                bail!(
                    "cannot switch off the terminal's echo (stty); pipe the PIN on standard input instead"
                );
            }
            let read = stdin.lock().read_line(&mut line);
            let _ = stty("echo");
            eprintln!();
            read?;
        } else {
            stdin.lock().take(64).read_line(&mut line)?;
        }
        Ok(line)
    }

    pub fn vsc_pin(args: &DaemonArgs) -> anyhow::Result<ExitCode> {
        let t = target(args)?;
        let pin = read_pin()?;
        let answer = call(
            &t,
            Method::POST,
            "/v1/admin/signer/pin",
            Some(serde_json::json!({"pin": pin.trim()})),
        )?;
        drop(pin);
        let (status, body) = answer?;
        let code = body.get("code").and_then(Value::as_u64).unwrap_or(0);
        let message = body.get("message").and_then(Value::as_str).unwrap_or("");
        if status.is_success() {
            println!("PIN accepted: the card signs");
            return Ok(ExitCode::SUCCESS);
        }
        println!("refused ({code}): {message}");
        Ok(ExitCode::from(1))
    }

    pub fn vsc_status(args: &DaemonArgs) -> anyhow::Result<ExitCode> {
        let t = target(args)?;
        let (_, body) = call(&t, Method::GET, "/v1/status", None)?
            .map_err(|e| anyhow::anyhow!("fdmd is not answering ({e})"))?;
        let s = &body["signer"];
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            Value::Null => "-".into(),
            other => other.to_string(),
        };
        let state = text(&s["state"]["state"]);
        println!("state:      {state}");
        if let Some(n) = s["state"].get("tries_left").filter(|v| !v.is_null()) {
            println!("PIN tries:  {n} left");
        }
        for (label, key) in [
            ("backend:", "backend"),
            ("reader:", "reader"),
            ("VSC id:", "card_id"),
            ("profile:", "profile"),
            ("detail:", "detail"),
            ("signatures:", "signatures"),
            ("sign ms:", "sign_ms_avg"),
        ] {
            if let Some(v) = s.get(key) {
                println!("{label:<11} {}", text(v));
            }
        }
        if let Some(code) = s.get("code") {
            println!("code:       {} {}", text(code), text(&s["error"]));
        }
        let hint = match state.as_str() {
            "ready" => "",
            "pin_required" => "give the PIN: fdmctl vsc pin",
            "absent" => "insert the card, check the reader's cable and that pcscd runs",
            "blocked" => "the card is blocked: it must be unblocked by its issuer",
            _ => "this card cannot be used with the configured APDU profile",
        };
        if !hint.is_empty() {
            println!("next:       {hint}");
        }
        Ok(if state == "ready" {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    }

    pub fn report(
        kind: &str,
        opts: &super::ReportOpts,
        override_reason: Option<String>,
    ) -> anyhow::Result<ExitCode> {
        let t = target(&opts.daemon)?;
        let body = serde_json::json!({
            "kind": kind,
            "register": opts.register,
            "override_reason": override_reason,
        });
        let (status, answer) = call(&t, Method::POST, "/v1/admin/reports", Some(body))??;
        if !status.is_success() {
            println!(
                "report refused ({status}): {}",
                answer.get("message").and_then(Value::as_str).unwrap_or("")
            );
            return Ok(ExitCode::from(1));
        }
        if opts.json {
            println!("{}", serde_json::to_string_pretty(&answer)?);
        } else {
            print!("{}", fdmd::reports::text::render(&answer));
        }
        Ok(ExitCode::SUCCESS)
    }

    pub fn devices(args: &DaemonArgs, action: super::DevicesCommand) -> anyhow::Result<ExitCode> {
        use super::DevicesCommand as D;
        let t = target(args)?;
        match action {
            D::List => {
                let r = expect_ok(call(&t, Method::GET, "/v1/admin/devices", None)?)?;
                let s = |p: &str| {
                    r.pointer(p)
                        .and_then(Value::as_str)
                        .unwrap_or("-")
                        .to_owned()
                };
                println!("For the registration application (FPS Finance):");
                println!(
                    "  FDM production number: {}{}",
                    s("/fdm/production_number"),
                    if r.pointer("/fdm/production_number_valid")
                        .and_then(Value::as_bool)
                        == Some(true)
                    {
                        ""
                    } else {
                        "  (not a production number: AAA+BB+NNNNNN; fdmd is not certified)"
                    }
                );
                println!("  VSC id of the card:    {}", s("/card/vsc_id"));
                println!(
                    "  {:<10} {:<20} {:<12} {:<16} linked FDM / reason",
                    "kind", "id", "status", "production no."
                );
                for d in r
                    .get("devices")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let f = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
                    let extra = match d.pointer("/deactivation/reason").and_then(Value::as_str) {
                        Some(reason) => format!("deactivated: {reason}"),
                        None => f("linked_fdm"),
                    };
                    println!(
                        "  {:<10} {:<20} {:<12} {:<16} {extra}",
                        f("kind"),
                        f("id"),
                        f("status"),
                        f("production_number")
                    );
                }
            }
            D::History { kind, id } => {
                let h = expect_ok(call(
                    &t,
                    Method::GET,
                    &format!("/v1/admin/devices/{kind}/{id}/history"),
                    None,
                )?)?;
                for e in h.as_array().into_iter().flatten() {
                    println!(
                        "#{:<8} {} {:<16} {}",
                        e.get("seq").and_then(Value::as_u64).unwrap_or(0),
                        e.get("time").and_then(Value::as_str).unwrap_or(""),
                        e.get("action").and_then(Value::as_str).unwrap_or(""),
                        e.get("details").map(Value::to_string).unwrap_or_default()
                    );
                }
            }
            D::Link {
                id,
                production_number,
            } => {
                let r = expect_ok(call(
                    &t,
                    Method::POST,
                    &format!("/v1/admin/devices/registers/{id}/link"),
                    Some(serde_json::json!({"production_number": production_number})),
                )?)?;
                println!(
                    "linked register {id} ({production_number}) to FDM {} (journal record {})",
                    r.get("fdm_id").and_then(Value::as_str).unwrap_or(""),
                    r.get("journal_seq").and_then(Value::as_u64).unwrap_or(0)
                );
            }
            D::Deactivate { id, reason, note } => {
                let r = expect_ok(call(
                    &t,
                    Method::POST,
                    &format!("/v1/admin/devices/registers/{id}/deactivate"),
                    Some(serde_json::json!({"reason": reason, "note": note})),
                )?)?;
                println!(
                    "deactivated register {id} ({reason}); journal record {}",
                    r.get("journal_seq").and_then(Value::as_u64).unwrap_or(0)
                );
            }
            D::ReplaceCard { new_vsc_id, reason } => {
                let r = expect_ok(call(
                    &t,
                    Method::POST,
                    "/v1/admin/devices/card/replace",
                    Some(serde_json::json!({"new_vsc_id": new_vsc_id, "reason": reason})),
                )?)?;
                println!(
                    "card {} replaced by {new_vsc_id} ({reason}); journal record {}",
                    r.get("old_vsc_id").and_then(Value::as_str).unwrap_or(""),
                    r.get("journal_seq").and_then(Value::as_u64).unwrap_or(0)
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    pub fn enrolment(args: &DaemonArgs, what: &str, action: Enrolment) -> anyhow::Result<ExitCode> {
        let t = target(args)?;
        match action {
            Enrolment::Add { id, json } => {
                let creds = expect_ok(call(
                    &t,
                    Method::POST,
                    &format!("/v1/admin/{what}"),
                    Some(serde_json::json!({"id": id})),
                )?)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&creds)?);
                } else {
                    let f = |k: &str| {
                        creds
                            .get(k)
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned()
                    };
                    println!(
                        "enrolled {} (shown once; store them in the device now)",
                        f("id")
                    );
                    println!("  MQTT username: {}", f("mqtt_username"));
                    println!("  MQTT password: {}", f("mqtt_password"));
                    println!("  HTTP token:    {}", f("http_token"));
                }
            }
            Enrolment::List => {
                let list = expect_ok(call(&t, Method::GET, &format!("/v1/admin/{what}"), None)?)?;
                for e in list.as_array().into_iter().flatten() {
                    let active = e.get("active").and_then(Value::as_bool).unwrap_or(false);
                    println!(
                        "{:<32} {:<8} enrolled {}{}",
                        e.get("id").and_then(Value::as_str).unwrap_or(""),
                        if active { "active" } else { "revoked" },
                        e.get("enrolled_at").and_then(Value::as_str).unwrap_or(""),
                        e.get("revoked_at")
                            .and_then(Value::as_str)
                            .map(|r| format!(", revoked {r}"))
                            .unwrap_or_default()
                    );
                }
            }
            Enrolment::Revoke { id } => {
                expect_ok(call(
                    &t,
                    Method::DELETE,
                    &format!("/v1/admin/{what}/{id}"),
                    None,
                )?)?;
                println!("revoked {id}");
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

mod reports {
    //! `fdmctl report …`.

    use super::{ReportCommand, open_journal};
    use std::process::ExitCode;

    pub fn run(cmd: ReportCommand) -> anyhow::Result<ExitCode> {
        match cmd {
            ReportCommand::X { opts } => super::admin::report("x", &opts, None),
            ReportCommand::Z {
                opts,
                override_reason,
            } => super::admin::report("z", &opts, override_reason),
            ReportCommand::Threshold {
                year,
                data_dir,
                json,
            } => {
                let conn = open_journal(&data_dir)?;
                let report = fdmd::reports::threshold::year_sums(&conn, year)?.report(year);
                if json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    print_threshold(&report);
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    }

    fn print_threshold(r: &serde_json::Value) {
        let s = |k: &str| {
            r.get(k)
                .map(|v| v.to_string().trim_matches('"').to_owned())
                .unwrap_or_default()
        };
        println!(
            "Threshold report {} ({} NS/NR tickets), amounts excluding VAT",
            s("year"),
            s("tickets")
        );
        if let Some(c) = r.get("excluding_vat").and_then(|v| v.as_object()) {
            for (k, v) in c {
                println!("  {k:<16} {:>14}", v.as_str().unwrap_or(""));
            }
        }
        println!("  meals on site            {:>14}", s("meals_on_site"));
        println!(
            "  total horeca turnover    {:>14}",
            s("total_horeca_turnover")
        );
        println!(
            "  meal share               {:>13}%",
            s("meal_share_percent")
        );
        println!("  10 % rule met:           {}", s("ten_percent_rule_met"));
        println!(
            "  meals above 25,000 EUR:  {}",
            s("meal_turnover_above_25000")
        );
        if s("without_lines_vat_included") != "0.00" {
            println!(
                "  events without lines (VAT incl., not classified): {}",
                s("without_lines_vat_included")
            );
        }
        println!("  note: {}", s("note"));
    }
}

fn open_journal(data_dir: &Path) -> anyhow::Result<rusqlite::Connection> {
    let file = paths::journal_file(data_dir);
    if !file.exists() {
        bail!("no journal at {} (use --data-dir)", file.display());
    }
    store::open_read_only(&file).with_context(|| format!("opening {}", file.display()))
}

fn parse_key(text: &str) -> anyhow::Result<Vec<u8>> {
    let bytes = hex::decode(text.trim()).with_context(|| format!("key {text:?} is not hex"))?;
    if bytes.len() != 32 {
        bail!(
            "key {text:?} is {} bytes; an Ed25519 public key is 32",
            bytes.len()
        );
    }
    Ok(bytes)
}

fn report_verification(
    source: &Path,
    result: Result<VerifySummary, ExportError>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    match result {
        Ok(s) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!("OK: {} verifies", source.display());
                match (s.first_seq, s.last_seq) {
                    (Some(first), Some(last)) => println!(
                        "  {} records ({first}..={last}), {} fiscal events, last hash {}",
                        s.records,
                        s.fiscal_events,
                        s.last_hash.as_deref().unwrap_or("-")
                    ),
                    _ => println!("  the journal is empty"),
                }
                for signer in &s.signers {
                    println!(
                        "  signer {} ({}) key {}",
                        signer.id, signer.algorithm, signer.public_key
                    );
                }
                if !s.keys_trusted && s.records > 0 {
                    println!(
                        "  note: keys were taken from the journal itself; compare them with the card (GET /v1/signer) or pass --key"
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(ExportError::Verify(e)) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "first_bad_record": e.seq, "problem": e.problem})
                );
            } else {
                println!("FAILED: {} does not verify", source.display());
                println!("  first bad record: {e}");
            }
            Ok(ExitCode::from(1))
        }
        Err(ExportError::Format { line, problem }) => {
            println!(
                "FAILED: {} is not a valid export: line {line}: {problem}",
                source.display()
            );
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}

fn read_seed(path: &Path) -> anyhow::Result<[u8; 32]> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    hex::decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .with_context(|| format!("{} must hold 64 hex characters", path.display()))
}

fn plugin(action: PluginAction) -> anyhow::Result<ExitCode> {
    use fdmd::plugins::{checks, conformance};
    match action {
        PluginAction::Check {
            file,
            config_json,
            trusted_keys,
            input,
            timeout_ms,
        } => {
            let config: serde_json::Value =
                serde_json::from_str(&config_json).context("--config-json is not JSON")?;
            let input = match input {
                Some(p) => {
                    Some(std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?)
                }
                None => None,
            };
            let exe = std::env::current_exe().context("finding fdmctl itself")?;
            let ok = conformance::run(&conformance::CheckOptions {
                file: &file,
                config,
                trusted_keys,
                input,
                helper_exe: &exe,
                timeout: std::time::Duration::from_millis(timeout_ms.clamp(10, 600_000)),
                owner_uid: 0,
            });
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        PluginAction::Sign { key, file } => {
            let seed = read_seed(&key)?;
            let sig = checks::sign_file(&file, &seed)?;
            let out = checks::signature_path(&file);
            std::fs::write(&out, sig).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "{} signed by {}",
                file.display(),
                checks::public_key_hex(&seed)
            );
            Ok(ExitCode::SUCCESS)
        }
        PluginAction::Keygen { key } => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            if key.exists() {
                bail!("{} exists; not overwriting a key", key.display());
            }
            fdmd::access::write_private_atomically(
                &key,
                format!("{}\n", hex::encode(seed)).as_bytes(),
            )
            .with_context(|| format!("writing {}", key.display()))?;
            println!("{}", checks::public_key_hex(&seed));
            Ok(ExitCode::SUCCESS)
        }
    }
}
