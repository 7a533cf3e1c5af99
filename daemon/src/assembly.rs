//! Assembling the daemon's core, the one way `main`, the tests and the benchmarks do it:
//! configuration → signer → journal → access store → status → registrar → [`App`] (whose
//! restaurant state is read from the journal on a thread of its own: [`AppBuilder::restaurant_wait`]).
//!
//! Every order then takes the same path, [`App::handle_order`] (enrolment check, validation,
//! restaurant rules, numbering, signing, journal, receipt and ticket after the commit), whether it
//! came over HTTP, MQTT, a plugin, a test or a benchmark. [`BlockingApp`] gives that path to
//! callers outside an async runtime (load generators, crash and disk tests, benchmarks).

use crate::access::{AccessError, AccessStore, ClientKind};
use crate::app::App;
use crate::config::{Config, SignerBackend};
use crate::fiscal::PrecomputedEvent;
use crate::journal::{Journal, JournalConfig, OpenError};
use crate::service::{Numbering, Receipt, Registrar};
use crate::signer::{Signer, SoftwareSigner};
use crate::status::Status;
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;

/// Why the core could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum AssemblyError {
    /// The configured signer could not be opened.
    #[error("opening the signer: {0:#}")]
    Signer(anyhow::Error),
    /// The journal could not be opened.
    #[error(transparent)]
    Journal(#[from] OpenError),
    /// The access store (enrolled registers and stations) could not be opened.
    #[error("opening the access store: {0}")]
    Access(#[from] AccessError),
    /// No runtime for a [`BlockingApp`].
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
}

/// Builds an [`App`] from a configuration; tests may hand it their own signer or journal.
pub struct AppBuilder {
    config: Arc<Config>,
    signer: Option<Arc<dyn Signer>>,
    journal: Option<Journal>,
    restaurant_wait: Duration,
}

impl AppBuilder {
    /// Everything from `config`: the signer it selects, the journal in its data directory.
    pub fn new(config: impl Into<Arc<Config>>) -> Self {
        AppBuilder {
            config: config.into(),
            signer: None,
            journal: None,
            restaurant_wait: Duration::MAX,
        }
    }

    /// Waits at most `limit` in [`AppBuilder::build`] for the restaurant state to be read from
    /// the journal; a longer read goes on in the background while the App serves (orders wait
    /// for it). By default `build` waits until the state is read.
    pub fn restaurant_wait(mut self, limit: Duration) -> Self {
        self.restaurant_wait = limit;
        self
    }

    /// Signs with `signer` instead of the configured one (a journal given with
    /// [`AppBuilder::journal`] keeps its own).
    pub fn signer(mut self, signer: Arc<dyn Signer>) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Uses a journal opened by the caller (with its own limits, clock or signer); the App signs
    /// with the journal's signer.
    pub fn journal(mut self, journal: Journal) -> Self {
        self.signer = Some(journal.signer());
        self.journal = Some(journal);
        self
    }

    /// An App on a journal the caller opened, with the default configuration in the journal's
    /// directory and `numbering`: what load generators, tests and benchmarks register through.
    pub fn for_journal(
        journal: Journal,
        numbering: Numbering,
    ) -> Result<BlockingApp, AssemblyError> {
        let mut config = Config::default();
        if let Some(dir) = journal.path().parent() {
            config.fdm.data_dir = dir.to_path_buf();
        }
        config.numbering.scope = numbering.scope;
        config.numbering.digits = numbering.digits;
        for (register, group) in numbering.groups {
            config
                .numbering
                .groups
                .entry(group)
                .or_default()
                .push(register);
        }
        AppBuilder::new(config).journal(journal).build_blocking()
    }

    /// The journal configuration the daemon uses for `config`.
    pub fn journal_config(config: &Config) -> JournalConfig {
        let mut journal_config = JournalConfig::new(
            crate::paths::journal_file(&config.fdm.data_dir),
            config.fdm.id.clone(),
        );
        if config.journal.max_size_mib > 0 {
            journal_config.max_bytes = Some(config.journal.max_size_mib * 1024 * 1024);
        }
        journal_config
    }

    /// Opens what is missing and assembles the App (the restaurant state is read from the
    /// journal here).
    pub fn build(self) -> Result<Arc<App>, AssemblyError> {
        let config = self.config;
        let signer = match self.signer {
            Some(s) => s,
            None => open_signer(&config).map_err(AssemblyError::Signer)?,
        };
        let journal = match self.journal {
            Some(j) => j,
            None => Journal::open(Self::journal_config(&config), signer.clone())?,
        };
        let access = Arc::new(AccessStore::open(&config.fdm.data_dir)?);
        let status = Arc::new(Status::new(signer.clone(), journal.stats_handle()));
        let mut registrar = Registrar::new(journal, config.numbering());
        if let (SignerBackend::Gks2, Some(section)) = (config.signer.backend, &config.signer.gks2) {
            let backend = crate::gks2::backend::Backend::open(
                section,
                &config.establishment.vat_number,
                &config.restaurant.language,
                &config.fdm.data_dir,
            )
            .map_err(AssemblyError::Signer)?;
            let backend = Arc::new(backend);
            let health = backend.clone();
            status.add_problem_source(Box::new(move || health.problems()));
            registrar = registrar.with_gks2(backend);
        }
        if let (SignerBackend::FdmV1, Some(section)) =
            (config.signer.backend, &config.signer.fdm_v1)
        {
            let backend = crate::fdm_v1::backend::Backend::open(section, &config.fdm.data_dir)
                .map_err(AssemblyError::Signer)?;
            let backend = Arc::new(backend);
            let health = backend.clone();
            status.add_problem_source(Box::new(move || health.problems()));
            // An `S` at start, then every 30 s while the box is listed down, so the status
            // shows a box that is off before any order and clears once it answers.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let prober = Arc::downgrade(&backend);
                runtime.spawn(async move {
                    let mut first = true;
                    loop {
                        let Some(backend) = prober.upgrade() else {
                            break;
                        };
                        if first || backend.is_down() {
                            backend.probe().await;
                        }
                        first = false;
                        drop(backend);
                        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                    }
                });
            }
            registrar = registrar.with_fdm_v1(backend);
        }
        Ok(App::new(
            config,
            registrar,
            access,
            signer,
            status,
            self.restaurant_wait,
        ))
    }

    /// The App with a runtime of its own, for callers outside an async runtime.
    pub fn build_blocking(self) -> Result<BlockingApp, AssemblyError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fdmd-app")
            .enable_all()
            .build()
            .map_err(AssemblyError::Runtime)?;
        let app = {
            let _entered = runtime.enter();
            self.build()?
        };
        Ok(BlockingApp {
            runtime: Arc::new(runtime),
            app,
        })
    }
}

/// An [`App`] driven from plain threads: each call blocks its thread until the answer, and calls
/// from several threads run at once. Cheap to clone (clones share the App and its runtime).
#[derive(Clone)]
pub struct BlockingApp {
    runtime: Arc<tokio::runtime::Runtime>,
    app: Arc<App>,
}

impl BlockingApp {
    /// [`App::handle_order`], blocking.
    pub fn handle_order(&self, register: &str, bytes: &[u8]) -> Receipt {
        self.runtime
            .block_on(self.app.handle_order(register, bytes))
    }

    /// [`App::handle_precomputed`], blocking.
    pub fn handle_precomputed(&self, event: &PrecomputedEvent) -> Receipt {
        self.runtime.block_on(self.app.handle_precomputed(event))
    }

    /// Enrols a register (in the access store only, as an installer's `fdmctl register add`
    /// would before the journal record); nothing is journaled. Refused ids are reported.
    pub fn enrol_register(&self, id: &str) -> Result<(), AccessError> {
        if self.app.access.active_register(id) {
            return Ok(());
        }
        let now = self.app.now();
        match self.app.access.enrol(ClientKind::Register, id, &now) {
            // Enrolled meanwhile by another thread: just as good.
            Ok(_) | Err(AccessError::Exists { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// For load generators and tests that make up register ids: enrols `register` if it is not
    /// enrolled yet (nothing journaled), then [`BlockingApp::handle_order`].
    pub fn handle_order_enrolling(&self, register: &str, bytes: &[u8]) -> Receipt {
        if let Err(e) = self.enrol_register(register) {
            return Receipt::refused(
                crate::service::sniff_request_id(bytes),
                "register",
                &format!("register {register} could not be enrolled: {e}"),
            );
        }
        self.handle_order(register, bytes)
    }

    /// The App.
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// The journal.
    pub fn journal(&self) -> &Journal {
        self.app.registrar.journal()
    }

    /// The runtime the App runs on.
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }
}

/// The signer the configuration selects.
pub fn open_signer(config: &Config) -> anyhow::Result<Arc<dyn Signer>> {
    match config.signer.backend {
        SignerBackend::Software => {
            let path = config.key_file();
            let signer = SoftwareSigner::open_or_create(&path)?;
            tracing::warn!(
                "signing with the DEVELOPMENT software key {} ({}): this is not a VAT Signing Card and makes no legal ticket",
                path.display(),
                signer.identity().map(|i| i.id).unwrap_or_default()
            );
            Ok(Arc::new(signer))
        }
        #[cfg(feature = "pcsc")]
        SignerBackend::Pcsc => {
            use crate::signer::pcsc::{PcscSettings, PcscSigner};
            let pcsc = &config.signer.pcsc;
            let profile = match &pcsc.profile_file {
                Some(file) => crate::signer::profile::Profile::load(file)?,
                None => crate::signer::profile::Profile::builtin(),
            };
            tracing::info!(
                "signing with the card in the PC/SC reader matching {:?} (APDU profile {})",
                pcsc.reader,
                profile.name
            );
            let signer = PcscSigner::start(PcscSettings {
                reader: pcsc.reader.clone(),
                profile,
                pin_file: pcsc.pin_file.clone(),
            })
            .context("starting the PC/SC monitor")?;
            Ok(Arc::new(signer))
        }
        #[cfg(not(feature = "pcsc"))]
        SignerBackend::Pcsc => anyhow::bail!("this fdmd was built without the pcsc feature"),
        // The GKS 2.0 FDM signs each fiscal event before it is journaled (the registrar's
        // backend); the journal's own records are signed with the development key.
        SignerBackend::Gks2 | SignerBackend::FdmV1 => {
            let path = config.key_file();
            let signer = SoftwareSigner::open_or_create(&path)?;
            tracing::warn!(
                "journal records signed with the DEVELOPMENT software key {} ({}); fiscal events by the {} FDM",
                path.display(),
                signer.identity().map(|i| i.id).unwrap_or_default(),
                if config.signer.backend == SignerBackend::Gks2 {
                    "GKS 2.0"
                } else {
                    "FDM v1"
                }
            );
            Ok(Arc::new(signer))
        }
    }
}
