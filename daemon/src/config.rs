//! Configuration: built-in defaults, then `/etc/fdmd/fdmd.toml` (or `--config FILE`), then
//! `/etc/fdmd/conf.d/*.toml` in sorted order, then `FDMD_…` environment variables
//! (`FDMD_HTTP__LISTEN=0.0.0.0:8080`), then command-line flags. Every key is documented in
//! `configs/fdmd.toml`.

use crate::service::{Numbering, SeriesScope};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Exit code for a configuration that cannot be used (EX_CONFIG); the unit does not restart on it.
pub const EXIT_CONFIG: u8 = 78;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Configuration format version.
    pub version: u32,
    /// This module.
    pub fdm: FdmSection,
    /// The business printed on tickets.
    pub establishment: EstablishmentSection,
    /// Ticket numbering.
    pub numbering: NumberingSection,
    /// The journal file.
    pub journal: JournalSection,
    /// What signs records.
    pub signer: SignerSection,
    /// MQTT.
    pub mqtt: MqttSection,
    /// HTTP API.
    pub http: HttpSection,
    /// Lifecycle.
    pub daemon: DaemonSection,
    /// Protocol plugins (`docs/plugins.md`).
    pub plugins: PluginsSection,
    /// Restaurant workflows: staff, tickets, printers.
    pub restaurant: RestaurantSection,
    /// Copying the journal to a back office (`docs/backoffice.md`); off by default.
    pub backoffice: crate::replication::config::BackofficeSection,
    /// The GKS 2.0 FDM emulator (docs/gks2.md; off unless the section is present). Not
    /// certified: for development and tests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gks2_fdm: Option<Gks2FdmSection>,
}

/// `[gks2_fdm]`: fdmd serves the GKS 2.0 FDM API itself (ADR 0005).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Gks2FdmSection {
    /// Listen address of the emulator.
    pub listen: SocketAddr,
    /// Device id: the first segment of the path `/{device_id}/graphql`.
    pub device_id: String,
    /// The FDM id it answers in `fdmRef.fdmId`.
    pub fdm_id: String,
    /// File holding the shared secret of the request digest (never logged).
    pub secret_file: PathBuf,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Most simultaneous connections.
    pub max_connections: usize,
    /// A `Date` header further than this from the clock is refused, in seconds.
    pub max_date_skew_s: i64,
    /// A `posDateTime` further than this from the clock gets a warning, in seconds.
    pub clock_tolerance_s: i64,
    /// Events the emulated buffer holds (warning from 90 %, refusal at 100 %).
    pub buffer_capacity: u64,
    /// HTTPS: the emulator's certificate chain (PEM); with `tls_key_file`. Plain HTTP without.
    pub tls_cert_file: Option<PathBuf>,
    /// HTTPS: the certificate's private key (PEM).
    pub tls_key_file: Option<PathBuf>,
    /// mTLS: the CA whose client certificates the emulator requires (a POS without one is
    /// refused in the TLS handshake). Needs `tls_cert_file`.
    pub client_ca_file: Option<PathBuf>,
    /// For tests only (the emulator is not certified anyway): waits this long, at most 60 s,
    /// before signing each report (`signReport…`), so that a POS's behaviour while an FDM takes
    /// its time can be tested. 0 (the default): no wait.
    pub test_report_delay_ms: u64,
}

impl Default for Gks2FdmSection {
    fn default() -> Self {
        Gks2FdmSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            device_id: "fdmd-gks2-emulator".into(),
            fdm_id: "FDMDEMU0001".into(),
            secret_file: PathBuf::new(),
            max_body_bytes: 256 * 1024,
            max_connections: 32,
            max_date_skew_s: 300,
            clock_tolerance_s: 300,
            buffer_capacity: 100_000,
            tls_cert_file: None,
            tls_key_file: None,
            client_ca_file: None,
            test_report_delay_ms: 0,
        }
    }
}

/// `[restaurant]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestaurantSection {
    /// Refuse sales and pro formas of operators who have not clocked in (WORK IN).
    pub require_work_in: bool,
    /// Language of printed tickets: `fr`, `nl`, `de` or `en`.
    pub language: String,
    /// Characters per printed line (32, 42 or 48 on usual ESC/POS printers).
    pub ticket_width: usize,
    /// Attempts per print job before it is reported as failed.
    pub print_attempts: u32,
    /// Time for one attempt (connect and write), in milliseconds.
    pub print_timeout_ms: u64,
    /// Network ESC/POS printers (raw TCP, usually port 9100).
    pub printers: Vec<PrinterConfig>,
    /// Names printed for operators, by INSZ/BIS number (tickets never print the number).
    pub operator_names: std::collections::BTreeMap<String, String>,
}

/// `[[restaurant.printers]]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrinterConfig {
    /// What it prints: a station id (`kitchen`, `bar`…) or `receipts` (customer tickets).
    pub station: String,
    /// Its address, `IP:port`.
    pub address: SocketAddr,
}

impl Default for RestaurantSection {
    fn default() -> Self {
        RestaurantSection {
            require_work_in: false,
            language: "fr".into(),
            ticket_width: 42,
            print_attempts: 5,
            print_timeout_ms: 3_000,
            printers: Vec::new(),
            operator_names: std::collections::BTreeMap::new(),
        }
    }
}

/// `[fdm]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FdmSection {
    /// 11-character production number of this module.
    pub id: String,
    /// Where the journal, keys and credentials live.
    pub data_dir: PathBuf,
}

/// The sample establishment `--dev` prints when none is configured (the one in
/// `configs/dev.toml`).
pub const DEV_ESTABLISHMENT: [(&str, &str); 3] = [
    ("name", "fdmd development"),
    ("address", "Rue de l'Exemple 1, 1000 Bruxelles"),
    ("vat_number", "BE0000000000"),
];

/// `[establishment]`
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EstablishmentSection {
    /// Business name.
    pub name: String,
    /// Address.
    pub address: String,
    /// VAT number (BE and ten digits with their check: BE0123456749).
    pub vat_number: String,
}

/// `[numbering]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NumberingSection {
    /// `per_register`, `group` or `establishment`.
    pub scope: SeriesScope,
    /// Positions of a ticket number, 4–8.
    pub digits: u8,
    /// With `scope = "group"`: group name → its registers (`bar = ["till-1", "till-2"]`).
    pub groups: BTreeMap<String, Vec<String>>,
}

/// `[journal]`
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalSection {
    /// Largest journal size in MiB; 0 means no limit other than the disk.
    pub max_size_mib: u64,
}

/// Signer backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignerBackend {
    /// The development Ed25519 key file. Never a legal VAT Signing Card.
    #[default]
    Software,
    /// A VAT Signing Card in a PC/SC reader (`[signer.pcsc]`; docs/vsc.md).
    Pcsc,
    /// A GKS 2.0 FDM on the LAN signs each fiscal event (`[signer.gks2]`, docs/gks2.md §8);
    /// journal records are signed with the development key as with `software`.
    Gks2,
    /// A certified FDM v1 box on a serial port or over TCP signs each fiscal event
    /// (`[signer.fdm-v1]`, docs/fdm-v1-backend.md); journal records are signed with the
    /// development key as with `software`.
    #[serde(rename = "fdm-v1")]
    FdmV1,
}

/// `[signer]`
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignerSection {
    /// Backend.
    pub backend: SignerBackend,
    /// Key file of the software signer (default `DATA_DIR/dev-signer.key`).
    pub key_file: Option<PathBuf>,
    /// The VAT Signing Card in a PC/SC reader.
    pub pcsc: PcscSection,
    /// The GKS 2.0 FDM (with `backend = "gks2"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gks2: Option<Gks2SignerSection>,
    /// The FDM v1 box (with `backend = "fdm-v1"`).
    #[serde(rename = "fdm-v1", skip_serializing_if = "Option::is_none")]
    pub fdm_v1: Option<FdmV1SignerSection>,
}

/// What the four per-rate amounts of an FDM v1 `H` request carry (the reference leaves it
/// uncertain: docs/fdm-v1-backend.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateAmounts {
    /// The VAT per rate (recent certified drivers).
    #[default]
    Vat,
    /// The net taxable base per rate (older certified drivers).
    Base,
}

/// `[signer.fdm-v1]`: the FDM v1 box fdmd is the cash register of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FdmV1SignerSection {
    /// `host:port` of the box behind ser2net (raw TCP); or `device`.
    pub address: Option<String>,
    /// The serial device of the box (19200 8N1, set by fdmd); or `address`.
    pub device: Option<PathBuf>,
    /// fdmd's ECR production number (14 characters, reference §1.8).
    pub ecr_id: String,
    /// Deadline of each wait for the box's ACK or response, in milliseconds (reference: 3 s).
    pub timeout_ms: u64,
    /// Sends of one request per order, the resends with the retry counter raised (1–9).
    pub attempts: u32,
    /// Pause between two sends of a request, in milliseconds.
    pub retry_delay_ms: u64,
    /// What the per-rate amounts carry: `vat` (default) or `base`.
    pub rate_amounts: RateAmounts,
}

impl Default for FdmV1SignerSection {
    fn default() -> Self {
        FdmV1SignerSection {
            address: None,
            device: None,
            ecr_id: String::new(),
            timeout_ms: 3000,
            attempts: 3,
            retry_delay_ms: 1000,
            rate_amounts: RateAmounts::Vat,
        }
    }
}

impl FdmV1SignerSection {
    /// Where the box is (the device when both are given; validation refuses that).
    pub fn target(&self) -> Option<crate::fdm_v1::link::Target> {
        use crate::fdm_v1::link::Target;
        match (&self.device, &self.address) {
            (Some(d), _) => Some(Target::Serial(d.clone())),
            (None, Some(a)) => Some(Target::Tcp(a.clone())),
            (None, None) => None,
        }
    }
}

/// `[signer.gks2]`: the GKS 2.0 FDM fdmd is the POS system of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Gks2SignerSection {
    /// Address of the FDM (HTTPS when `ca_file` is set, plain HTTP otherwise).
    pub address: SocketAddr,
    /// HTTPS: the CA (PEM) that signed the FDM's certificate; only it is trusted.
    pub ca_file: Option<PathBuf>,
    /// HTTPS: the name the FDM's certificate is issued to (default: the address's IP).
    pub server_name: Option<String>,
    /// mTLS: fdmd's client certificate chain (PEM), with `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    /// mTLS: the client certificate's private key (PEM; a systemd credential).
    pub client_key_file: Option<PathBuf>,
    /// Its device id (the path `/{device_id}/graphql`).
    pub device_id: String,
    /// File holding the shared secret (a systemd credential; never logged).
    pub secret_file: PathBuf,
    /// The POS system's id (`posId`).
    pub pos_id: String,
    /// Establishment number (`estNo`).
    pub est_no: String,
    /// Booking period (`bookingPeriodId`, a UUID).
    pub booking_period_id: String,
    /// Deadline of one request, in milliseconds (one resend follows a timeout).
    pub timeout_ms: u64,
    /// Terminal id per register (default: the register id).
    pub terminal_ids: std::collections::BTreeMap<String, String>,
}

impl Default for Gks2SignerSection {
    fn default() -> Self {
        Gks2SignerSection {
            address: SocketAddr::from(([127, 0, 0, 1], 8443)),
            ca_file: None,
            server_name: None,
            client_cert_file: None,
            client_key_file: None,
            device_id: String::new(),
            secret_file: PathBuf::new(),
            pos_id: String::new(),
            est_no: String::new(),
            booking_period_id: "00000000-0000-0000-0000-000000000000".into(),
            timeout_ms: 30_000,
            terminal_ids: std::collections::BTreeMap::new(),
        }
    }
}

/// `[signer.pcsc]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PcscSection {
    /// Reader name pattern: `*` and `?` wildcards, or a part of the name.
    pub reader: String,
    /// APDU profile file (docs/vsc.md); default: the built-in `fdmd-test-1` profile.
    pub profile_file: Option<PathBuf>,
    /// File with the PIN for unattended starts (mode 0600), e.g. a systemd credential.
    pub pin_file: Option<PathBuf>,
}

impl Default for PcscSection {
    fn default() -> Self {
        PcscSection {
            reader: "*".into(),
            profile_file: None,
            pin_file: None,
        }
    }
}

/// Where the MQTT broker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MqttMode {
    /// fdmd runs its own broker (rumqttd).
    #[default]
    Embedded,
    /// fdmd connects to the establishment's broker (e.g. Mosquitto).
    External,
}

/// `[mqtt]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttSection {
    /// `embedded` or `external`.
    pub mode: MqttMode,
    /// Embedded broker listen address.
    pub listen: SocketAddr,
    /// Topic prefix.
    pub prefix: String,
    /// Largest accepted MQTT payload.
    pub max_payload_bytes: usize,
    /// Most client connections to the embedded broker.
    pub max_connections: usize,
    /// External broker.
    pub external: ExternalMqtt,
}

/// `[mqtt.external]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExternalMqtt {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Client id fdmd uses.
    pub client_id: String,
    /// User name.
    pub username: String,
    /// File holding the password (not the password itself).
    pub password_file: Option<PathBuf>,
    /// Connect with TLS.
    pub tls: bool,
    /// CA certificate(s) of the broker, PEM (required with `tls`).
    pub ca_file: Option<PathBuf>,
    /// Client certificate, PEM, for brokers that require one (with `key_file`).
    pub cert_file: Option<PathBuf>,
    /// Client private key, PEM (with `cert_file`).
    pub key_file: Option<PathBuf>,
}

/// `[http]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Listen address.
    pub listen: SocketAddr,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Most simultaneous connections.
    pub max_connections: usize,
    /// Time a request may take, in milliseconds.
    pub request_timeout_ms: u64,
}

/// `[daemon]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonSection {
    /// Grace time for in-flight orders at shutdown, in milliseconds.
    pub shutdown_grace_ms: u64,
    /// Development mode: anonymous MQTT allowed, a development register enrolled.
    pub dev: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            version: 1,
            fdm: FdmSection::default(),
            establishment: EstablishmentSection::default(),
            numbering: NumberingSection::default(),
            journal: JournalSection::default(),
            signer: SignerSection::default(),
            mqtt: MqttSection::default(),
            http: HttpSection::default(),
            daemon: DaemonSection::default(),
            restaurant: RestaurantSection::default(),
            plugins: PluginsSection::default(),
            backoffice: Default::default(),
            gks2_fdm: None,
        }
    }
}

impl Default for FdmSection {
    fn default() -> Self {
        FdmSection {
            id: "DEVFDMD0001".into(),
            data_dir: PathBuf::from(crate::paths::DEFAULT_DATA_DIR),
        }
    }
}

impl Default for NumberingSection {
    fn default() -> Self {
        let n = Numbering::default();
        NumberingSection {
            scope: n.scope,
            digits: n.digits,
            groups: BTreeMap::new(),
        }
    }
}

impl Default for MqttSection {
    fn default() -> Self {
        MqttSection {
            mode: MqttMode::Embedded,
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            prefix: "fdm/v1".into(),
            max_payload_bytes: 256 * 1024,
            max_connections: 64,
            external: ExternalMqtt::default(),
        }
    }
}

impl Default for ExternalMqtt {
    fn default() -> Self {
        ExternalMqtt {
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: "fdmd".into(),
            username: "fdmd".into(),
            password_file: None,
            tls: false,
            ca_file: None,
            cert_file: None,
            key_file: None,
        }
    }
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 256 * 1024,
            max_connections: 128,
            request_timeout_ms: 10_000,
        }
    }
}

impl Default for DaemonSection {
    fn default() -> Self {
        DaemonSection {
            shutdown_grace_ms: 5_000,
            dev: false,
        }
    }
}

/// `[plugins]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsSection {
    /// Directory the plugin files are loaded from.
    pub dir: PathBuf,
    /// Vendor Ed25519 public keys (64 hex characters) whose `NAME.so.sig` signatures are trusted.
    pub trusted_keys: Vec<String>,
    /// Load plugins without a signature (with a loud warning). Honoured only with `--dev`.
    pub allow_unsigned: bool,
    /// Longest a plugin call may take, in milliseconds.
    pub call_timeout_ms: u64,
    /// Largest MQTT payload handed to a plugin or published for one (`docs/plugins.md`).
    pub mqtt_max_payload_bytes: usize,
    /// The plugin instances to load (`[[plugins.instance]]`).
    pub instance: Vec<PluginInstanceConfig>,
}

impl Default for PluginsSection {
    fn default() -> Self {
        PluginsSection {
            dir: PathBuf::from(crate::paths::DEFAULT_PLUGIN_DIR),
            trusted_keys: Vec::new(),
            allow_unsigned: false,
            call_timeout_ms: 5_000,
            mqtt_max_payload_bytes: 64 * 1024,
            instance: Vec::new(),
        }
    }
}

/// `[[plugins.instance]]`: one loaded plugin and the transports it serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginInstanceConfig {
    /// Instance name (unique; used in logs and status).
    pub name: String,
    /// File name of the plugin in `plugins.dir` (no directory part).
    pub file: String,
    /// The enrolled register this plugin's orders and events are registered as.
    pub register: String,
    /// Run the plugin in its own helper process (recommended for vendor code).
    pub isolate: bool,
    /// TCP address to listen on for the plugin's protocol.
    pub tcp_listen: Option<SocketAddr>,
    /// Serial device for the plugin's protocol (e.g. `/dev/ttyUSB0`).
    pub serial: Option<PathBuf>,
    /// Serial speed in baud (FDM v1: 19200, 8N1).
    pub serial_baud: u32,
    /// MQTT transport: hand the plugin what the register publishes under
    /// `PREFIX/registers/{register}/plugins/{name}/in[/…]`.
    pub mqtt: bool,
    /// Sub-topic under `…/out/` for the answers to MQTT inputs; by default the input's own
    /// sub-topic (`…/in/x` is answered on `…/out/x`).
    pub mqtt_reply: Option<String>,
    /// The plugin's own configuration, handed to it as JSON.
    pub config: serde_json::Value,
}

impl Default for PluginInstanceConfig {
    fn default() -> Self {
        PluginInstanceConfig {
            name: String::new(),
            file: String::new(),
            register: String::new(),
            isolate: true,
            tcp_listen: None,
            serial: None,
            serial_baud: 19_200,
            mqtt: false,
            mqtt_reply: None,
            config: serde_json::Value::Object(serde_json::Map::new()),
        }
    }
}

/// One configuration problem, with the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Key path, e.g. `http.listen`, or the file when the problem is a whole file.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    /// The problems.
    pub problems: Vec<ConfigProblem>,
}

impl ConfigError {
    fn one(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            problems: vec![ConfigProblem {
                key: key.into(),
                message: message.into(),
            }],
        }
    }
}

/// Where configuration comes from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Main file (`/etc/fdmd/fdmd.toml`, or `--config`); must exist when given explicitly.
    pub main_file: PathBuf,
    /// Whether the main file must exist.
    pub main_required: bool,
    /// Drop-in directory (`/etc/fdmd/conf.d`).
    pub conf_dir: Option<PathBuf>,
    /// Environment variables (name, value), normally `std::env::vars()`.
    pub env: Vec<(String, String)>,
}

impl Sources {
    /// The installed layout: `/etc/fdmd/fdmd.toml` and `/etc/fdmd/conf.d`, or an explicit file
    /// (whose directory's `conf.d` is then used).
    pub fn system(explicit: Option<&Path>) -> Self {
        let (main_file, main_required) = match explicit {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from("/etc/fdmd/fdmd.toml"), false),
        };
        let conf_dir = main_file.parent().map(|d| d.join("conf.d"));
        Sources {
            main_file,
            main_required,
            conf_dir,
            env: std::env::vars().collect(),
        }
    }
}

/// Loads the layered configuration and validates it. Every problem is reported with its key.
pub fn load(sources: &Sources, overrides: &[(&str, String)]) -> Result<Config, ConfigError> {
    let defaults = config::Config::try_from(&Config::default())
        .map_err(|e| ConfigError::one("(defaults)", e.to_string()))?;
    let mut builder = config::Config::builder().add_source(defaults);
    if sources.main_required && !sources.main_file.exists() {
        return Err(ConfigError::one(
            sources.main_file.display().to_string(),
            "file does not exist",
        ));
    }
    builder = builder.add_source(
        config::File::from(sources.main_file.as_path())
            .format(config::FileFormat::Toml)
            .required(false),
    );
    if let Some(dir) = &sources.conf_dir
        && let Ok(entries) = std::fs::read_dir(dir)
    {
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        for f in files {
            builder = builder.add_source(config::File::from(f).format(config::FileFormat::Toml));
        }
    }
    let env: config::Map<String, String> = sources
        .env
        .iter()
        .filter(|(k, _)| k.starts_with("FDMD_") && k.contains("__"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    builder = builder.add_source(
        config::Environment::with_prefix("FDMD")
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true)
            .source(Some(env)),
    );
    for (key, value) in overrides {
        builder = builder
            .set_override(*key, value.clone())
            .map_err(|e| ConfigError::one(*key, e.to_string()))?;
    }
    let merged = builder.build().map_err(|e| from_config_error(&e))?;
    let mut config: Config = merged
        .try_deserialize()
        .map_err(|e| from_config_error(&e))?;
    if config.daemon.dev {
        config.establishment.fill_dev_sample();
    }
    validate(&config)?;
    Ok(config)
}

fn from_config_error(e: &config::ConfigError) -> ConfigError {
    let text = e.to_string();
    // The config crate says "… for key `http.listen` in …"; lift the key out.
    let key = text
        .split("for key `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .map(str::to_owned);
    match key {
        Some(key) => ConfigError::one(key, text),
        None => ConfigError::one("(configuration)", text),
    }
}

impl EstablishmentSection {
    /// Development mode: the sample establishment for whatever is not configured.
    fn fill_dev_sample(&mut self) {
        for (key, value) in DEV_ESTABLISHMENT {
            let field = match key {
                "name" => &mut self.name,
                "address" => &mut self.address,
                _ => &mut self.vat_number,
            };
            if field.trim().is_empty() {
                *field = value.to_owned();
            }
        }
    }

    /// What is wrong with the establishment's identity, which every VAT ticket carries (FAQ:
    /// name, address and VAT number); checked outside development mode.
    fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (key, value) in [
            ("establishment.name", &self.name),
            ("establishment.address", &self.address),
            ("establishment.vat_number", &self.vat_number),
        ] {
            if value.trim().is_empty() {
                out.push((
                    key,
                    "is required outside --dev: every VAT ticket carries the establishment's name, address and VAT number".to_owned(),
                ));
            }
        }
        if !self.vat_number.trim().is_empty() && !is_belgian_vat_number(&self.vat_number) {
            out.push((
                "establishment.vat_number",
                format!(
                    "{:?} is not a Belgian VAT number (BE and 10 digits, the last two a check on the first eight: BE0123456749)",
                    self.vat_number
                ),
            ));
        }
        out
    }
}

/// `BE` and ten digits (spaces and dots allowed between them), starting with 0 or 1, whose last
/// two are 97 minus the first eight modulo 97 (the enterprise number's check).
pub fn is_belgian_vat_number(text: &str) -> bool {
    let compact: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '.')
        .collect();
    let Some(digits) = compact.strip_prefix("BE") else {
        return false;
    };
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    if !digits.starts_with(['0', '1']) {
        return false;
    }
    let (Ok(body), Ok(check)) = (digits[..8].parse::<u64>(), digits[8..].parse::<u64>()) else {
        return false;
    };
    97 - body % 97 == check
}

/// What the daemon (and `check-config`) need beyond [`validate`]: outside development mode, the
/// establishment's name, address and VAT number, which every VAT ticket carries. Tools that only
/// read the configuration to reach the daemon (`fdmctl status`) do not need them.
pub fn require_establishment(c: &Config) -> Result<(), ConfigError> {
    if c.daemon.dev {
        return Ok(());
    }
    let problems: Vec<ConfigProblem> = c
        .establishment
        .problems()
        .into_iter()
        .map(|(key, message)| ConfigProblem {
            key: key.into(),
            message,
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError { problems })
    }
}

/// Checks values the types alone do not.
pub fn validate(c: &Config) -> Result<(), ConfigError> {
    let mut problems = Vec::new();
    let mut bad = |key: &str, message: String| {
        problems.push(ConfigProblem {
            key: key.into(),
            message,
        })
    };

    if c.version != 1 {
        bad(
            "version",
            format!(
                "version {} is not known; this fdmd reads version 1",
                c.version
            ),
        );
    }
    for (key, message) in crate::replication::config::problems(&c.backoffice) {
        bad(&key, message);
    }
    if !["fr", "nl", "de", "en"].contains(&c.restaurant.language.as_str()) {
        bad(
            "restaurant.language",
            format!("{:?} must be fr, nl, de or en", c.restaurant.language),
        );
    }
    if !(24..=64).contains(&c.restaurant.ticket_width) {
        bad(
            "restaurant.ticket_width",
            format!("{} must be 24 to 64 characters", c.restaurant.ticket_width),
        );
    }
    if !(1..=100).contains(&c.restaurant.print_attempts) {
        bad(
            "restaurant.print_attempts",
            format!("{} must be 1 to 100", c.restaurant.print_attempts),
        );
    }
    for (i, pr) in c.restaurant.printers.iter().enumerate() {
        if pr.station != "receipts" && !crate::fiscal::order::is_valid_id(&pr.station, 32) {
            bad(
                &format!("restaurant.printers[{i}].station"),
                "must be a station id or \"receipts\"".into(),
            );
        }
    }
    if c.fdm.id.len() != 11 || !c.fdm.id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        bad(
            "fdm.id",
            format!(
                "{:?} must be 11 letters or digits (AAA maker, BB model, NNNNNN serial)",
                c.fdm.id
            ),
        );
    }
    if !c.fdm.data_dir.is_absolute() && !c.daemon.dev {
        bad(
            "fdm.data_dir",
            format!("{} must be an absolute path", c.fdm.data_dir.display()),
        );
    }
    check_groups(&c.numbering, &mut |key, message| bad(key, message));
    if !(4..=8).contains(&c.numbering.digits) {
        bad(
            "numbering.digits",
            format!(
                "{} is outside 4..=8 (Royal Decree of 13 Dec 2022)",
                c.numbering.digits
            ),
        );
    }
    if c.mqtt.prefix.is_empty()
        || c.mqtt.prefix.starts_with('/')
        || c.mqtt.prefix.ends_with('/')
        || c.mqtt.prefix.contains(['#', '+'])
    {
        bad(
            "mqtt.prefix",
            format!(
                "{:?} must be a topic prefix without wildcards or leading/trailing '/'",
                c.mqtt.prefix
            ),
        );
    }
    if !(1024..=16 * 1024 * 1024).contains(&c.mqtt.max_payload_bytes) {
        bad(
            "mqtt.max_payload_bytes",
            "must be between 1024 and 16777216".into(),
        );
    }
    if !(1..=10_000).contains(&c.mqtt.max_connections) {
        bad("mqtt.max_connections", "must be between 1 and 10000".into());
    }
    if c.mqtt.external.tls && c.mqtt.external.ca_file.is_none() {
        bad(
            "mqtt.external.ca_file",
            "is required with tls = true".into(),
        );
    }
    if c.mqtt.external.cert_file.is_some() != c.mqtt.external.key_file.is_some() {
        bad(
            "mqtt.external.cert_file",
            "cert_file and key_file go together".into(),
        );
    }
    if c.mqtt.mode == MqttMode::External && c.mqtt.external.client_id.is_empty() {
        bad(
            "mqtt.external.client_id",
            "is required in external mode".into(),
        );
    }
    if c.mqtt.mode == MqttMode::External && c.mqtt.external.host.is_empty() {
        bad("mqtt.external.host", "is required in external mode".into());
    }
    if !(1024..=16 * 1024 * 1024).contains(&c.http.max_body_bytes) {
        bad(
            "http.max_body_bytes",
            "must be between 1024 and 16777216".into(),
        );
    }
    if c.http.max_connections == 0 {
        bad("http.max_connections", "must be at least 1".into());
    }
    if !(100..=600_000).contains(&c.http.request_timeout_ms) {
        bad(
            "http.request_timeout_ms",
            "must be between 100 and 600000".into(),
        );
    }
    if c.signer.backend == SignerBackend::Pcsc {
        if !cfg!(feature = "pcsc") {
            bad(
                "signer.backend",
                "\"pcsc\": this fdmd was built without the pcsc feature".into(),
            );
        }
        if let Some(file) = &c.signer.pcsc.profile_file
            && let Err(e) = crate::signer::profile::Profile::load(file)
        {
            bad("signer.pcsc.profile_file", e.to_string());
        }
    }
    if c.daemon.shutdown_grace_ms > 60_000 {
        bad(
            "daemon.shutdown_grace_ms",
            "must be at most 60000 (below the unit's TimeoutStopSec)".into(),
        );
    }
    if c.plugins.allow_unsigned && !c.daemon.dev {
        bad(
            "plugins.allow_unsigned",
            "is honoured only with --dev; outside it every plugin must be signed (remove the key)"
                .into(),
        );
    }
    validate_plugins(&c.plugins, &mut problems);
    if c.signer.backend == SignerBackend::Gks2 {
        match &c.signer.gks2 {
            None => problems.push(ConfigProblem {
                key: "signer.gks2".into(),
                message: "backend = \"gks2\" needs a [signer.gks2] section".into(),
            }),
            Some(g) => {
                for (key, empty) in [
                    ("device_id", g.device_id.is_empty()),
                    ("secret_file", g.secret_file.as_os_str().is_empty()),
                    ("pos_id", g.pos_id.is_empty()),
                    ("timeout_ms", !(100..=120_000).contains(&g.timeout_ms)),
                ] {
                    if empty {
                        problems.push(ConfigProblem {
                            key: format!("signer.gks2.{key}"),
                            message: "is required (timeout_ms: 100–120000)".into(),
                        });
                    }
                }
                if g.client_cert_file.is_some() != g.client_key_file.is_some() {
                    problems.push(ConfigProblem {
                        key: "signer.gks2.client_cert_file".into(),
                        message: "client_cert_file and client_key_file go together".into(),
                    });
                }
                if g.ca_file.is_none() && (g.client_cert_file.is_some() || g.server_name.is_some())
                {
                    problems.push(ConfigProblem {
                        key: "signer.gks2.ca_file".into(),
                        message: "a client certificate or server_name needs HTTPS: set ca_file (the CA of the FDM's certificate)".into(),
                    });
                }
            }
        }
    }
    if c.signer.backend == SignerBackend::FdmV1 {
        validate_fdm_v1(c.signer.fdm_v1.as_ref(), &mut problems);
    }
    if let Some(g) = &c.gks2_fdm {
        validate_gks2_fdm(g, &mut problems);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError { problems })
    }
}

/// What the running daemon would refuse in the files the configuration names, checked with
/// the very functions it uses: every plugin instance ([`crate::plugins::checks::refusals`]:
/// directory and file owner and mode, no symlink, signature) and the card's PIN file
/// ([`crate::signer::card::check_pin_file`]). `fdmd check-config` reports these besides
/// [`validate`]'s problems (exit 78). The daemon itself runs without a refused plugin, and
/// without a refused PIN file (the PIN is then given with `fdmctl vsc pin`).
pub fn check_files(c: &Config) -> Result<(), ConfigError> {
    let mut problems: Vec<ConfigProblem> =
        crate::plugins::checks::refusals(&c.plugins, c.daemon.dev)
            .into_iter()
            .map(|(key, message)| ConfigProblem { key, message })
            .collect();
    if c.signer.backend == SignerBackend::Pcsc
        && let Some(file) = &c.signer.pcsc.pin_file
        && let Err(e) = crate::signer::card::check_pin_file(file)
    {
        problems.push(ConfigProblem {
            key: "signer.pcsc.pin_file".into(),
            message: format!("{}: {e}", file.display()),
        });
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError { problems })
    }
}

/// `[numbering.groups]`: only with `scope = "group"`, at least one group, names and registers
/// valid ids, each register in one group at most.
fn check_groups(n: &NumberingSection, bad: &mut dyn FnMut(&str, String)) {
    match (n.scope, n.groups.is_empty()) {
        (SeriesScope::Group, true) => bad(
            "numbering.groups",
            "scope = \"group\" needs at least one group (bar = [\"till-1\", \"till-2\"])".into(),
        ),
        (SeriesScope::Group, false) => {}
        (_, true) => return,
        (_, false) => bad(
            "numbering.groups",
            "groups are only used with scope = \"group\"".into(),
        ),
    }
    let mut seen = BTreeSet::new();
    for (group, registers) in &n.groups {
        if !crate::fiscal::order::is_valid_id(group, 32) {
            bad(
                "numbering.groups",
                format!("group name {group:?} must be 1-32 characters of A-Z a-z 0-9 . _ : -"),
            );
        }
        if registers.is_empty() {
            bad(
                "numbering.groups",
                format!("group {group:?} has no register"),
            );
        }
        for r in registers {
            if !crate::fiscal::order::is_valid_id(r, 32) {
                bad(
                    "numbering.groups",
                    format!("register {r:?} of group {group:?} is not a valid register id"),
                );
            } else if !seen.insert(r.as_str()) {
                bad(
                    "numbering.groups",
                    format!("register {r:?} is in more than one group"),
                );
            }
        }
    }
}

fn validate_fdm_v1(section: Option<&FdmV1SignerSection>, problems: &mut Vec<ConfigProblem>) {
    let mut bad = |key: &str, message: &str| {
        problems.push(ConfigProblem {
            key: format!("signer.fdm-v1{key}"),
            message: message.into(),
        })
    };
    let Some(f) = section else {
        bad("", "backend = \"fdm-v1\" needs a [signer.fdm-v1] section");
        return;
    };
    if f.address.is_some() == f.device.is_some() {
        bad(
            ".address",
            "set exactly one of address (host:port, ser2net) and device (a serial device)",
        );
    }
    if f.ecr_id.len() != 14 || !f.ecr_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        bad(
            ".ecr_id",
            "is required: fdmd's ECR production number, 14 letters or digits (reference §1.8)",
        );
    }
    if !(100..=60_000).contains(&f.timeout_ms) {
        bad(".timeout_ms", "must be 100–60000");
    }
    if !(1..=9).contains(&f.attempts) {
        bad(".attempts", "must be 1–9 (the retry counter is one digit)");
    }
    if f.retry_delay_ms > 60_000 {
        bad(".retry_delay_ms", "must be at most 60000");
    }
}

fn validate_gks2_fdm(g: &Gks2FdmSection, problems: &mut Vec<ConfigProblem>) {
    let mut bad = |key: &str, message: &str| {
        problems.push(ConfigProblem {
            key: format!("gks2_fdm.{key}"),
            message: message.into(),
        })
    };
    let id_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if !id_ok(&g.device_id) {
        bad("device_id", "must be 1–64 letters, digits, '-' or '_'");
    }
    if !id_ok(&g.fdm_id) {
        bad("fdm_id", "must be 1–64 letters, digits, '-' or '_'");
    }
    if g.secret_file.as_os_str().is_empty() {
        bad(
            "secret_file",
            "is required (a file holding the shared secret)",
        );
    }
    if !(1024..=16 * 1024 * 1024).contains(&g.max_body_bytes) {
        bad("max_body_bytes", "must be between 1024 and 16777216");
    }
    if !(1..=1024).contains(&g.max_connections) {
        bad("max_connections", "must be between 1 and 1024");
    }
    if !(1..=86_400).contains(&g.max_date_skew_s) {
        bad("max_date_skew_s", "must be between 1 and 86400");
    }
    if !(1..=86_400).contains(&g.clock_tolerance_s) {
        bad("clock_tolerance_s", "must be between 1 and 86400");
    }
    if g.buffer_capacity == 0 {
        bad("buffer_capacity", "must be at least 1");
    }
    if g.tls_cert_file.is_some() != g.tls_key_file.is_some() {
        bad(
            "tls_cert_file",
            "tls_cert_file and tls_key_file go together",
        );
    }
    if g.client_ca_file.is_some() && g.tls_cert_file.is_none() {
        bad(
            "client_ca_file",
            "client certificates need HTTPS: set tls_cert_file and tls_key_file",
        );
    }
}

fn validate_plugins(p: &PluginsSection, problems: &mut Vec<ConfigProblem>) {
    let mut bad = |key: String, message: String| problems.push(ConfigProblem { key, message });
    if !(10..=600_000).contains(&p.call_timeout_ms) {
        bad(
            "plugins.call_timeout_ms".into(),
            "must be between 10 and 600000".into(),
        );
    }
    if !(1..=1024 * 1024).contains(&p.mqtt_max_payload_bytes) {
        bad(
            "plugins.mqtt_max_payload_bytes".into(),
            "must be between 1 and 1048576".into(),
        );
    }
    for (i, key) in p.trusted_keys.iter().enumerate() {
        if key.len() != 64 || hex::decode(key).is_err() {
            bad(
                format!("plugins.trusted_keys[{i}]"),
                "must be an Ed25519 public key, 64 hex characters".into(),
            );
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, inst) in p.instance.iter().enumerate() {
        let key = |k: &str| format!("plugins.instance[{i}].{k}");
        if !crate::fiscal::order::is_valid_id(&inst.name, 32) || !names.insert(&inst.name) {
            bad(
                key("name"),
                format!("{:?} must be a unique id of 1-32 characters", inst.name),
            );
        }
        if inst.file.is_empty() || inst.file.contains('/') || inst.file.starts_with('.') {
            bad(
                key("file"),
                format!("{:?} must be a file name in plugins.dir", inst.file),
            );
        }
        if !crate::fiscal::order::is_valid_id(&inst.register, 32) {
            bad(
                key("register"),
                "must name the register the plugin registers as".into(),
            );
        }
        if !inst.config.is_object() {
            bad(key("config"), "must be a table".into());
        }
        if !(300..=4_000_000).contains(&inst.serial_baud) {
            bad(key("serial_baud"), "must be between 300 and 4000000".into());
        }
        if let Some(reply) = &inst.mqtt_reply
            && !crate::mqtt::topics::is_plain_subtopic(reply)
        {
            bad(
                key("mqtt_reply"),
                format!(
                    "{reply:?} must be a sub-topic: 1-128 bytes, levels separated by /, none empty, no + # or leading $"
                ),
            );
        }
    }
}

impl Config {
    /// The numbering rules.
    pub fn numbering(&self) -> Numbering {
        Numbering {
            scope: self.numbering.scope,
            digits: self.numbering.digits,
            groups: self
                .numbering
                .groups
                .iter()
                .flat_map(|(group, registers)| registers.iter().map(|r| (r.clone(), group.clone())))
                .collect(),
        }
    }

    /// The software signer's key file.
    pub fn key_file(&self) -> PathBuf {
        self.signer
            .key_file
            .clone()
            .unwrap_or_else(|| crate::paths::dev_signer_key(&self.fdm.data_dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(dir: &Path, env: &[(&str, &str)]) -> Sources {
        Sources {
            main_file: dir.join("fdmd.toml"),
            main_required: false,
            conf_dir: Some(dir.join("conf.d")),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// An establishment, which every configuration outside development mode needs.
    const ESTABLISHMENT: &str = "[establishment]\nname = \"Chez Nous\"\naddress = \"Grote Markt 1, 1000 Brussel\"\nvat_number = \"BE0123456749\"\n";

    #[test]
    fn defaults_are_valid_with_an_establishment_or_in_dev_mode() {
        let mut c = Config::default();
        validate(&c).unwrap();
        let e = require_establishment(&c).unwrap_err();
        assert!(
            e.problems
                .iter()
                .all(|p| p.key.starts_with("establishment.")),
            "{e}"
        );
        c.establishment = EstablishmentSection {
            name: "Chez Nous".into(),
            address: "Grote Markt 1, 1000 Brussel".into(),
            vat_number: "BE0123456749".into(),
        };
        require_establishment(&c).unwrap();
        let mut dev = Config::default();
        dev.daemon.dev = true;
        require_establishment(&dev).unwrap();
    }

    #[test]
    fn the_fdm_v1_signer_reads_its_section_and_refuses_what_it_cannot_use() {
        let dir = tempfile::tempdir().unwrap();
        let write = |section: &str| {
            std::fs::write(
                dir.path().join("fdmd.toml"),
                format!("{ESTABLISHMENT}[signer]\nbackend = \"fdm-v1\"\n{section}"),
            )
            .unwrap();
        };
        write(
            "[signer.fdm-v1]\naddress = \"127.0.0.1:4001\"\necr_id = \"CFDM0010000001\"\nrate_amounts = \"base\"\n",
        );
        let c = load(&sources(dir.path(), &[]), &[]).unwrap();
        assert_eq!(c.signer.backend, SignerBackend::FdmV1);
        let f = c.signer.fdm_v1.unwrap();
        assert_eq!(f.rate_amounts, RateAmounts::Base);
        assert_eq!((f.timeout_ms, f.attempts), (3000, 3));
        assert_eq!(
            f.target(),
            Some(crate::fdm_v1::link::Target::Tcp("127.0.0.1:4001".into()))
        );
        write("");
        let e = load(&sources(dir.path(), &[]), &[]).unwrap_err();
        assert!(e.to_string().contains("signer.fdm-v1"), "{e}");
        write(
            "[signer.fdm-v1]\naddress = \"127.0.0.1:4001\"\ndevice = \"/dev/ttyUSB0\"\necr_id = \"short\"\nattempts = 10\n",
        );
        let e = load(&sources(dir.path(), &[]), &[]).unwrap_err();
        let keys: Vec<&str> = e.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "signer.fdm-v1.address",
                "signer.fdm-v1.ecr_id",
                "signer.fdm-v1.attempts"
            ],
            "{e}"
        );
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("fdmd.toml"),
            format!(
                "[http]\nlisten = \"127.0.0.1:9000\"\n[numbering]\ndigits = 8\n{ESTABLISHMENT}"
            ),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("conf.d")).unwrap();
        std::fs::write(
            dir.path().join("conf.d/20-b.toml"),
            "[numbering]\ndigits = 5\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("conf.d/10-a.toml"),
            "[numbering]\ndigits = 7\n[establishment]\nname = \"Chez Nous\"\n",
        )
        .unwrap();
        let c = load(
            &sources(dir.path(), &[("FDMD_MQTT__PREFIX", "resto/fdm")]),
            &[("fdm.id", "ABC01000001".into())],
        )
        .unwrap();
        assert_eq!(c.http.listen.port(), 9000);
        assert_eq!(
            c.numbering.digits, 5,
            "conf.d files apply in sorted order, after the main file"
        );
        assert_eq!(c.establishment.name, "Chez Nous");
        assert_eq!(c.mqtt.prefix, "resto/fdm");
        assert_eq!(c.fdm.id, "ABC01000001");
    }

    #[test]
    fn errors_name_their_keys() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("fdmd.toml"),
            format!("[numbering]\ndigits = 12\n[fdm]\nid = \"x\"\n{ESTABLISHMENT}"),
        )
        .unwrap();
        let e = load(&sources(dir.path(), &[]), &[]).unwrap_err();
        let keys: Vec<_> = e.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["fdm.id", "numbering.digits"]);
        std::fs::write(
            dir.path().join("fdmd.toml"),
            "[http]\nlisten = \"nowhere\"\n",
        )
        .unwrap();
        let e = load(&sources(dir.path(), &[]), &[]).unwrap_err();
        assert_eq!(e.problems[0].key, "http.listen", "{e}");
        std::fs::write(
            dir.path().join("fdmd.toml"),
            "[http]\nlistn = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        let e = load(&sources(dir.path(), &[]), &[]).unwrap_err();
        assert!(e.to_string().contains("listn"), "{e}");
    }

    #[test]
    fn an_explicit_file_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sources(dir.path(), &[]);
        s.main_required = true;
        assert!(load(&s, &[]).is_err());
    }

    #[test]
    fn shipped_configs_are_valid_once_the_establishment_is_filled_in() {
        let shipped = |file: &str| Sources {
            main_file: Path::new(env!("CARGO_MANIFEST_DIR")).join(file),
            main_required: true,
            conf_dir: None,
            env: vec![],
        };
        load(&shipped("../configs/dev.toml"), &[]).unwrap();
        // The package's file leaves the establishment to the installer: refused until given.
        let e = load(&shipped("../configs/fdmd.toml"), &[])
            .and_then(|c| require_establishment(&c))
            .unwrap_err();
        let keys: Vec<&str> = e.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "establishment.name",
                "establishment.address",
                "establishment.vat_number"
            ],
            "{e}"
        );
        let filled = [
            ("establishment.name", "Chez Nous".to_owned()),
            (
                "establishment.address",
                "Grote Markt 1, 1000 Brussel".into(),
            ),
            ("establishment.vat_number", "BE0123456749".into()),
        ];
        let c = load(&shipped("../configs/fdmd.toml"), &filled).unwrap();
        require_establishment(&c).unwrap();
    }

    #[test]
    fn dev_mode_prints_the_sample_establishment_of_dev_toml() {
        let dir = tempfile::tempdir().unwrap();
        let c = load(&sources(dir.path(), &[]), &[("daemon.dev", "true".into())]).unwrap();
        let dev_toml = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/dev.toml"),
        )
        .unwrap();
        for (key, value) in DEV_ESTABLISHMENT {
            assert!(
                dev_toml.contains(&format!("\n{key} = {value:?}\n")),
                "configs/dev.toml lacks {key} = {value:?}"
            );
        }
        assert_eq!(c.establishment.name, "fdmd development");
        assert_eq!(c.establishment.vat_number, "BE0000000000");
    }

    #[test]
    fn belgian_vat_numbers_carry_their_check() {
        assert!(is_belgian_vat_number("BE0123456749"));
        assert!(is_belgian_vat_number("BE 0123.456.749"));
        assert!(!is_belgian_vat_number("BE0123456789"));
        assert!(!is_belgian_vat_number("0123456749"));
        assert!(!is_belgian_vat_number("BE2123456749"));
        assert!(!is_belgian_vat_number("BE012345674"));
    }
}
