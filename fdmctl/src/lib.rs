//! fdmctl: the installer's and inspector's command for fdmd.
//!
//! [`cli`] holds the clap definitions of every subcommand (the manual page is generated from
//! them); each subcommand has a module of its own. Commands that talk to the running daemon go
//! through [`daemon_api`] (its admin API with the admin token); `verify`, `export`, `report
//! threshold` and the offline fallbacks of `status`, `tables` and `presence` read the journal
//! file read-only.

pub mod backoffice;
pub mod backup;
pub mod check_config;
pub mod cli;
mod daemon_api;
pub mod devices;
pub mod enrolment;
pub mod export;
pub mod plugin;
pub mod presence;
pub mod report;
pub mod status;
pub mod tables;
pub mod verify;
pub mod vsc;

use anyhow::{Context, bail};
use cli::{BackofficeAction, Cli, Command, DevicesCommand, VscAction};
use std::path::Path;
use std::process::ExitCode;

/// Runs one parsed command line; the exit code is the command's verdict.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Plugin { action } => plugin::plugin(action),
        Command::Status { daemon } => status::status(&daemon),
        Command::Tables { daemon, json } => tables::tables(&daemon, json),
        Command::Presence { daemon, date, json } => presence::presence(&daemon, date, json),
        Command::Register { daemon, action } => enrolment::enrolment(&daemon, "registers", action),
        Command::Station { daemon, action } => enrolment::enrolment(&daemon, "stations", action),
        Command::Backoffice { daemon, action } => match action {
            BackofficeAction::Status { json } => backoffice::status(&daemon, json),
        },
        Command::Vsc { daemon, action } => match action {
            VscAction::Pin => vsc::vsc_pin(&daemon),
            VscAction::Status => vsc::vsc_status(&daemon),
        },
        Command::CheckConfig { config } => check_config::run(config.as_deref()),
        Command::Verify {
            data_dir,
            keys,
            anchors,
            json,
            export_file,
        } => verify::run(verify::VerifyRequest {
            data_dir,
            keys,
            anchors,
            json,
            export_file,
        }),
        Command::Backup {
            data_dir,
            keys,
            file,
        } => backup::run(&data_dir, &file, keys),
        Command::Report { report } => report::run(report),
        Command::Devices { daemon, action } => {
            devices::devices(&daemon, action.unwrap_or(DevicesCommand::List))
        }
        Command::Export {
            data_dir,
            from_seq,
            to_seq,
            from_date,
            to_date,
            output,
        } => export::run(export::ExportRequest {
            data_dir,
            from_seq,
            to_seq,
            from_date,
            to_date,
            output,
        }),
    }
}

/// The journal of `data_dir`, opened read-only (refused when there is none).
pub(crate) fn open_journal(data_dir: &Path) -> anyhow::Result<rusqlite::Connection> {
    let file = fdmd::paths::journal_file(data_dir);
    if !file.exists() {
        bail!("no journal at {} (use --data-dir)", file.display());
    }
    fdmd::journal::query::open_read_only(&file)
        .with_context(|| format!("opening {}", file.display()))
}
