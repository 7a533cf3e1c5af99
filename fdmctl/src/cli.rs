//! The command line: every subcommand and option of `fdmctl`, as clap definitions. The manual page
//! and the shell completions can be generated from [`Cli`] (it implements `clap::CommandFactory`).

use clap::{Parser, Subcommand};
use fdmd::paths;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "fdmctl",
    version,
    about = "Control and verify an fdmd fiscal data module host"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Where the running daemon is and how to reach its admin API.
#[derive(clap::Args, Clone)]
pub struct DaemonArgs {
    /// Configuration file of the daemon (default /etc/fdmd/fdmd.toml and conf.d).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Data directory (holds admin.token); default from the configuration.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Address of the daemon's HTTP API; default from the configuration.
    #[arg(long, global = true)]
    pub http: Option<std::net::SocketAddr>,
}

#[derive(Subcommand)]
pub enum Enrolment {
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
pub enum PluginAction {
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
pub enum VscAction {
    /// Give the card its PIN: asked on the terminal without echo, or read from standard input
    /// when that is not a terminal. Exits 0 when accepted, 1 when refused (wrong PIN: 204 with
    /// the tries left; blocked: 203).
    Pin,
    /// Show the card's state: reader, VSC id, PIN, errors. Exits 0 when it signs, 1 otherwise.
    Status,
}

#[derive(Subcommand)]
pub enum BackofficeAction {
    /// How far behind the back office's copy is: the last record it acknowledged, the
    /// journal's last record, the records and time not copied yet, the last error. Exits 0
    /// when the copy is on and working, 1 when the last attempt failed or sending stopped on a
    /// refusal, 2 when [backoffice] is off, 3 when fdmd is not answering (then the cursor file
    /// and the journal are read instead).
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum ReportCommand {
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
    /// excluding VAT: the 10 % rule and the 25,000 EUR rule. Reads the journal file.
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
pub struct ReportOpts {
    #[command(flatten)]
    pub daemon: DaemonArgs,
    /// The register whose series the report closes (when each register has its own series).
    #[arg(long)]
    pub register: Option<String>,
    /// Print the signed report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum DevicesCommand {
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
pub enum Command {
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
    /// The copy of the journal in the back office (fdmd-backoffice, docs/backoffice.md).
    Backoffice {
        #[command(flatten)]
        daemon: DaemonArgs,
        #[command(subcommand)]
        action: BackofficeAction,
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
        /// keys the journal's own journal_open and signer_change records declare are used, and
        /// the report says so. The keys an export slice's header alone lists must be given here
        /// (or its records anchored with --anchor), or the verification fails.
        #[arg(long = "key", value_name = "HEX")]
        keys: Vec<String>,
        /// A record's hash known from outside the journal, as SEQ:HASH (a receipt's journal_seq
        /// and signed_digest); repeat for several. Fails when the records do not reach SEQ, start
        /// after it, or hold another hash there. An anchor also covers the records before it.
        #[arg(long = "anchor", value_name = "SEQ:HASH")]
        anchors: Vec<String>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
        /// An export file to verify instead of the data directory's journal.
        export_file: Option<PathBuf>,
    },
    /// Copy the live journal safely (SQLite online backup) to FILE, as one self-contained file,
    /// and verify the copy. Never overwrites FILE.
    Backup {
        /// Data directory holding journal.sqlite.
        #[arg(long, default_value = paths::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// A trusted signer public key (64 hex characters) to verify the copy with; repeatable.
        #[arg(long = "key", value_name = "HEX")]
        keys: Vec<String>,
        /// The backup file to create.
        file: PathBuf,
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
