//! Settings: built-in defaults, then an optional TOML file, then the environment.
//!
//! The environment names are the Python connector's, unchanged, so that an existing `.env` works as it is.
//! Every secret may also be given as `NAME_FILE` (Docker and Kubernetes secrets, systemd credentials).
//! Values are parsed once here into typed fields; nothing downstream sees a raw string.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::Serialize;

use crate::domain::GroupName;

/// One setting the binary reads: its environment name, its default, whether it is a secret, and what it is for.
///
/// This table is the single source of truth: the loader reads exactly these names, and a test checks that
/// `.env.example` documents every one of them.
pub struct SettingSpec {
    pub name: &'static str,
    pub default: Option<&'static str>,
    pub secret: bool,
    pub help: &'static str,
}

const fn spec(
    name: &'static str,
    default: Option<&'static str>,
    secret: bool,
    help: &'static str,
) -> SettingSpec {
    SettingSpec {
        name,
        default,
        secret,
        help,
    }
}

pub const SETTINGS: &[SettingSpec] = &[
    spec("AUTHENTIK_URL", None, false, "Authentik base URL, e.g. https://auth.example.com"),
    spec("AUTHENTIK_TOKEN", None, true, "Authentik API token with view_user and view_group"),
    spec("SOURCE", Some("authentik"), false, "where desired state comes from: authentik (its API, pushed by its webhooks) or scim (an identity provider's SCIM pushes to /scim/v2, kept in STATE_DIR)"),
    spec("SCIM_TOKEN", None, true, "with SOURCE=scim: the bearer token the identity provider sends to /scim/v2"),
    spec("OUTLINE_URL", None, false, "Outline base URL, e.g. https://docs.example.com"),
    spec("OUTLINE_TOKEN", None, true, "Outline API key with scopes groups:write and users:read, owned by an admin"),
    spec("OUTLINE_WEBHOOK_SECRET", None, true, "signing secret of the Outline webhook (ol_whs_...)"),
    spec("AUTHENTIK_WEBHOOK_TOKEN", None, true, "bearer token Authentik's transport sends; /webhooks/authentik answers 503 without it"),
    spec("AUTO_CREATE_GROUPS", Some("false"), false, "create missing Outline groups for managed Authentik groups"),
    spec("AUTHENTIK_GROUP_REGEXP", None, false, "only Authentik groups whose name matches are synced (case-insensitive, anchored at the start)"),
    spec("SYNC_GROUP_REGEX", None, false, "newer name of AUTHENTIK_GROUP_REGEXP"),
    spec("DEBUG", Some("false"), false, "debug logging"),
    spec("LISTEN_ADDR", Some("0.0.0.0:8430"), false, "address the HTTP server listens on"),
    spec("LOG_FORMAT", Some("text"), false, "text or json"),
    spec("OUTLINE_RATE_LIMIT_REQUESTS", Some("1000"), false, "Outline's RATE_LIMITER_REQUESTS"),
    spec("OUTLINE_RATE_LIMIT_WINDOW", Some("60"), false, "Outline's RATE_LIMITER_DURATION_WINDOW, in seconds"),
    spec("MEMBERSHIP", Some("direct"), false, "direct, or inherited to include members of child groups"),
    spec("RECONCILE_INTERVAL", Some("900"), false, "seconds between full reconcile passes; 0 turns them off"),
    spec("MAX_REMOVALS", Some("50"), false, "a pass that would remove more memberships removes none (mass-removal guard)"),
    spec("QUEUE_CAPACITY", Some("1024"), false, "distinct targets waiting or running, per sink, before webhooks get 503"),
    spec("WORKER_CONCURRENCY", Some("8"), false, "jobs that run at once, per lane (sign-in and bulk)"),
    spec("UPSTREAM_TIMEOUT", Some("10"), false, "timeout of one upstream HTTP call, in seconds"),
    spec("CACHE_TTL", Some("300"), false, "seconds an Authentik or Outline snapshot stays cached"),
    spec("HEADER_TIMEOUT", Some("5"), false, "seconds a client has to send its request headers (slow clients are dropped)"),
    spec("BODY_TIMEOUT", Some("10"), false, "seconds a client has to send a webhook body"),
    spec("SHUTDOWN_GRACE", Some("20"), false, "seconds running jobs get to finish after SIGTERM; keep it under Kubernetes' 30 s"),
    spec("ROLE_MAP", None, false, "Authentik groups that decide Outline roles, e.g. outline-admins=admin,outline-readers=viewer; unset leaves roles alone"),
    spec("ROLE_DEFAULT", Some("member"), false, "with ROLE_MAP: the role of people in none of the mapped groups, or keep"),
    spec("SUSPEND_DEACTIVATED", Some("false"), false, "suspend in Outline a user deactivated or deleted in Authentik, and activate them again when the bridge did it"),
    spec("MAX_SUSPENSIONS", Some("10"), false, "at most this many suspensions in any hour, pushes and passes together; the rest wait for reconcile --force (guard)"),
    spec("STATE_DIR", None, false, "directory of the bridge's store (bridge.db, SQLite): whom it suspended or held, the hour's suspensions and invite requests, the applied ROLE_MAP, the invitations Outline refused, the identity map that finds people deleted while the bridge was down, and SCIM's resources; unset keeps all but SCIM's in memory, forgotten at a restart"),
    spec("INVITE_MEMBERS", Some("false"), false, "invite members of managed groups who have no Outline account yet, then add them to their groups"),
    spec("INVITE_EMAIL", Some("false"), false, "with INVITE_MEMBERS: let Outline email the invitation (suppressEmail is sent otherwise)"),
    spec("OPENFGA_URL", None, false, "OpenFGA HTTP API base URL, e.g. http://openfga:8080; set it (with OPENFGA_STORE_ID) to keep OpenFGA's member tuples in step"),
    spec("OPENFGA_STORE_ID", None, false, "the OpenFGA store (a ULID) that holds the group tuples"),
    spec("OPENFGA_API_TOKEN", None, true, "OpenFGA preshared key or OIDC access token, sent as a bearer token; unset when OpenFGA runs without authentication"),
    spec("OPENFGA_AUTHORIZATION_MODEL_ID", None, false, "model the writes are checked against; unset means the store's latest model"),
    spec("OPENFGA_USER_TYPE", Some("user"), false, "OpenFGA type of a person"),
    spec("OPENFGA_GROUP_TYPE", Some("group"), false, "OpenFGA type of a group"),
    spec("OPENFGA_RELATION", Some("member"), false, "relation from a group to its members"),
    spec("OPENFGA_USER_ID", Some("username"), false, "Authentik field that names a person in OpenFGA: username, email or pk"),
    spec("OPENFGA_GROUP_ID", Some("uuid"), false, "Authentik field that names a group in OpenFGA: uuid (survives renames) or name"),
];

/// The table's default for `name`: the one place a default is written.
pub fn default_of(name: &str) -> Option<&'static str> {
    SETTINGS
        .iter()
        .find(|s| s.name == name)
        .and_then(|s| s.default)
}

/// Jobs at once per lane, and targets in the queue, at most. tokio's semaphore panics above 2^61 - 1
/// permits, and more than a few hundred concurrent jobs only wait at Outline's rate limiter (docs/src/upstream/outline.md
/// §4.1), so a larger value is a mistake worth a clear error.
pub const MAX_WORKER_CONCURRENCY: usize = 1024;
pub const MAX_QUEUE_CAPACITY: usize = 1_000_000;

/// A value that must never be printed: `Debug` and `Display` show a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Whether `presented` is this secret, compared in constant time. Both are hashed first, so the time does
    /// not tell the length either.
    pub fn matches(&self, presented: &str) -> bool {
        use sha2::{Digest, Sha256};
        use subtle::ConstantTimeEq;
        let a = Sha256::digest(presented.as_bytes());
        let b = Sha256::digest(self.0.as_bytes());
        bool::from(a.ct_eq(&b))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(**redacted**)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Which Authentik members count: only direct ones, or also members of child groups (docs/src/upstream/authentik.md §7.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MembershipMode {
    Direct,
    Inherited,
}

/// Everything needed to reach one upstream.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub url: String,
    pub token: Secret,
}

/// Where and how the OpenFGA sink writes (docs/src/upstream/openfga.md §2).
#[derive(Debug, Clone)]
pub struct OpenFgaSettings {
    pub url: String,
    pub store_id: String,
    pub token: Option<Secret>,
    pub model_id: Option<String>,
    pub naming: TupleNaming,
}

/// Outline's own limiter settings, copied across by the admin (docs/src/upstream/outline.md §4.1).
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub requests: u32,
    pub window: Duration,
}

/// Where desired state comes from (`SOURCE`): one source at a time, so that two never fight over a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// Authentik's API, read again at each of its webhooks.
    Authentik,
    /// The SCIM resources an identity provider pushes, kept in the store in `STATE_DIR`.
    Scim,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Authentik => "authentik",
            SourceKind::Scim => "scim",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub listen_addr: SocketAddr,
    pub source: SourceKind,
    /// `SCIM_TOKEN`: the bearer token `/scim/v2` requires.
    pub scim_token: Option<Secret>,
    pub authentik: Option<UpstreamSettings>,
    pub outline: Option<UpstreamSettings>,
    pub openfga: Option<OpenFgaSettings>,
    pub role_map: Option<RoleMap>,
    pub suspend_deactivated: bool,
    pub max_suspensions: usize,
    pub state_dir: Option<std::path::PathBuf>,
    pub invite_members: bool,
    pub invite_email: bool,
    pub outline_webhook_secret: Option<Secret>,
    pub authentik_webhook_token: Option<Secret>,
    pub auto_create_groups: bool,
    pub group_filter: Option<Regex>,
    pub debug: bool,
    pub log_format: LogFormat,
    pub outline_rate_limit: RateLimit,
    pub membership: MembershipMode,
    pub reconcile_interval: Option<Duration>,
    pub max_removals: usize,
    pub queue_capacity: usize,
    pub worker_concurrency: usize,
    pub upstream_timeout: Duration,
    pub cache_ttl: Duration,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub shutdown_grace: Duration,
    /// The halves of the URL and token pairs that are missing while the other half is set, so that every
    /// missing setting is named at once.
    pub unset_halves: Vec<&'static str>,
}

/// A setting that is missing or cannot be parsed. The message names the setting and never its value when it
/// is a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is required but not set")]
    Missing { name: &'static str },
    #[error("required but not set: {} (each is described in .env.example)", names.join(", "))]
    MissingAll { names: Vec<&'static str> },
    #[error("{name}: {reason}")]
    Invalid { name: String, reason: String },
    #[error("config file {path}: {reason}")]
    File { path: String, reason: String },
}

impl ConfigError {
    fn invalid(name: &str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            name: name.to_string(),
            reason: reason.into(),
        }
    }
}

/// Where values come from, so tests can pass a map instead of touching the process environment.
pub trait EnvSource {
    fn var(&self, name: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl EnvSource for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// The variables of a `.env` file, as the Python connector's users keep them (`cp .env.example .env`).
///
/// The file is read into a map and passed as a layer under the process environment, never copied into the
/// environment itself: real variables win, and nothing else in the process sees the file. Parsing is
/// dotenvy's, which follows the usual `KEY=value`, quoting and `#` comment rules.
pub struct DotEnv(BTreeMap<String, String>);

impl DotEnv {
    /// Reads `path`; a missing file is an empty layer, a malformed one an error naming the file.
    pub fn read(path: &Path) -> Result<DotEnv, ConfigError> {
        let file_error = |reason: String| ConfigError::File {
            path: path.display().to_string(),
            reason,
        };
        let entries = match dotenvy::from_path_iter(path) {
            Ok(entries) => entries,
            Err(dotenvy::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(DotEnv(BTreeMap::new()))
            }
            Err(e) => return Err(file_error(e.to_string())),
        };
        let mut vars = BTreeMap::new();
        for entry in entries {
            let (key, value) = entry.map_err(|e| match e {
                dotenvy::Error::LineParse(text, _) => {
                    let number = std::fs::read_to_string(path)
                        .ok()
                        .and_then(|all| all.lines().position(|l| l.contains(text.trim())))
                        .map(|n| format!("line {}", n + 1))
                        .unwrap_or_else(|| "a line".into());
                    file_error(format!(
                        "{number} cannot be read: {:?} — fix: write NAME=value, quoting a value that holds spaces or #",
                        text.trim()
                    ))
                }
                e => file_error(e.to_string()),
            })?;
            vars.insert(key, value);
        }
        Ok(DotEnv(vars))
    }
}

impl DotEnv {
    /// The names the file sets.
    pub fn names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }
}

impl EnvSource for DotEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

impl Settings {
    /// Loads the layers: defaults, then `file` (or `BRIDGE_CONFIG`) when given, then the environment.
    pub fn load(file: Option<&Path>, env: &dyn EnvSource) -> Result<Settings, ConfigError> {
        Self::load_layers(file, &[env])
    }

    /// Like [`Settings::load`], with several environment layers, lowest priority first: the CLI passes the
    /// working directory's `.env`, then the process environment. Each setting comes from the highest layer
    /// that names it as `NAME` or `NAME_FILE`, so a real `OUTLINE_TOKEN_FILE` beats an `OUTLINE_TOKEN` in
    /// `.env` instead of clashing with it.
    pub fn load_layers(
        file: Option<&Path>,
        envs: &[&dyn EnvSource],
    ) -> Result<Settings, ConfigError> {
        let file = file.map(Path::to_path_buf).or_else(|| {
            envs.iter()
                .rev()
                .find_map(|env| env.var("BRIDGE_CONFIG").filter(|p| !p.is_empty()))
                .map(PathBuf::from)
        });
        let mut values: BTreeMap<&'static str, String> = BTreeMap::new();
        if let Some(path) = file {
            for (name, value) in read_toml_layer(&path)? {
                values.insert(name, value);
            }
        }
        for env in envs {
            for s in SETTINGS {
                if let Some(v) = read_env_value(*env, s)? {
                    values.insert(s.name, v);
                }
            }
        }
        Self::from_values(&values)
    }

    fn from_values(values: &BTreeMap<&'static str, String>) -> Result<Settings, ConfigError> {
        // An empty value counts as unset, and an unset one takes the table's default.
        let get = |name: &'static str| {
            values
                .get(name)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .or_else(|| default_of(name))
        };
        // For settings the table gives a default, so only a table without one can make this fail.
        let with_default = |name: &'static str| get(name).ok_or(ConfigError::Missing { name });
        let secret = |name: &'static str| get(name).map(Secret::new);
        let url = |name: &'static str| get(name).map(|v| parse_url(name, v)).transpose();

        // Every half-set pair is named at once, not one per run.
        let mut missing = Vec::new();
        let mut pair = |url_name: &'static str, token_name: &'static str| {
            let u = get(url_name).is_some();
            let t = get(token_name).is_some();
            if u && !t {
                missing.push(token_name);
            }
            if t && !u {
                missing.push(url_name);
            }
        };
        pair("AUTHENTIK_URL", "AUTHENTIK_TOKEN");
        pair("OUTLINE_URL", "OUTLINE_TOKEN");
        let authentik = match (url("AUTHENTIK_URL")?, secret("AUTHENTIK_TOKEN")) {
            (Some(url), Some(token)) => Some(UpstreamSettings { url, token }),
            _ => None,
        };
        let outline = match (url("OUTLINE_URL")?, secret("OUTLINE_TOKEN")) {
            (Some(url), Some(token)) => Some(UpstreamSettings { url, token }),
            _ => None,
        };
        let regex_source = get("SYNC_GROUP_REGEX")
            .map(|v| ("SYNC_GROUP_REGEX", v))
            .or_else(|| get("AUTHENTIK_GROUP_REGEXP").map(|v| ("AUTHENTIK_GROUP_REGEXP", v)));
        let group_filter = regex_source
            .map(|(name, pattern)| {
                compile_group_filter(pattern).map_err(|e| ConfigError::invalid(name, e))
            })
            .transpose()?;

        let listen_addr = with_default("LISTEN_ADDR")?;
        let listen_addr = listen_addr.parse().map_err(|_| {
            ConfigError::invalid(
                "LISTEN_ADDR",
                format!("{listen_addr:?} is not an IP address and port — fix: e.g. 0.0.0.0:8430 (all interfaces) or 127.0.0.1:8430 (this machine only)"),
            )
        })?;
        let log_format = match with_default("LOG_FORMAT")?.to_ascii_lowercase().as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::invalid(
                    "LOG_FORMAT",
                    format!("expected text or json, got {other}"),
                ))
            }
        };
        let membership = match with_default("MEMBERSHIP")?.to_ascii_lowercase().as_str() {
            "direct" => MembershipMode::Direct,
            "inherited" => MembershipMode::Inherited,
            other => {
                return Err(ConfigError::invalid(
                    "MEMBERSHIP",
                    format!("expected direct or inherited, got {other}"),
                ))
            }
        };
        let seconds = |name: &'static str| with_default(name).and_then(|v| parse_seconds(name, v));
        let positive_seconds = |name: &'static str| {
            seconds(name).and_then(|d| {
                if d.is_zero() {
                    Err(ConfigError::invalid(name, "must be more than 0 seconds"))
                } else {
                    Ok(d)
                }
            })
        };
        let requests: u32 = parse_number(
            "OUTLINE_RATE_LIMIT_REQUESTS",
            with_default("OUTLINE_RATE_LIMIT_REQUESTS")?,
        )?;
        if requests == 0 {
            return Err(ConfigError::invalid(
                "OUTLINE_RATE_LIMIT_REQUESTS",
                "must be at least 1",
            ));
        }
        let window = positive_seconds("OUTLINE_RATE_LIMIT_WINDOW")?;
        let reconcile = seconds("RECONCILE_INTERVAL")?;
        let queue_capacity: usize =
            parse_number("QUEUE_CAPACITY", with_default("QUEUE_CAPACITY")?)?;
        let worker_concurrency: usize =
            parse_number("WORKER_CONCURRENCY", with_default("WORKER_CONCURRENCY")?)?;
        if queue_capacity == 0 || worker_concurrency == 0 {
            let name = if queue_capacity == 0 {
                "QUEUE_CAPACITY"
            } else {
                "WORKER_CONCURRENCY"
            };
            return Err(ConfigError::invalid(name, "must be at least 1"));
        }
        if worker_concurrency > MAX_WORKER_CONCURRENCY {
            return Err(ConfigError::invalid(
                "WORKER_CONCURRENCY",
                format!("must be at most {MAX_WORKER_CONCURRENCY}"),
            ));
        }
        if queue_capacity > MAX_QUEUE_CAPACITY {
            return Err(ConfigError::invalid(
                "QUEUE_CAPACITY",
                format!("must be at most {MAX_QUEUE_CAPACITY}"),
            ));
        }
        let upstream_timeout = positive_seconds("UPSTREAM_TIMEOUT")?;

        let openfga = openfga_settings(&get)?;
        let source = match with_default("SOURCE")?.to_ascii_lowercase().as_str() {
            "authentik" => SourceKind::Authentik,
            "scim" => SourceKind::Scim,
            other => {
                return Err(ConfigError::invalid(
                    "SOURCE",
                    format!("expected authentik or scim, got {other}"),
                ))
            }
        };
        let scim_token = secret("SCIM_TOKEN");
        // Two sources would fight over every group: each would undo the other's changes.
        match source {
            SourceKind::Authentik if scim_token.is_some() => {
                return Err(ConfigError::invalid("SCIM_TOKEN", "is set but SOURCE is authentik, so /scim/v2 would store changes nothing reads — fix: set SOURCE=scim to take desired state from SCIM, or unset SCIM_TOKEN"));
            }
            SourceKind::Scim if get("AUTHENTIK_WEBHOOK_TOKEN").is_some() => {
                return Err(ConfigError::invalid("AUTHENTIK_WEBHOOK_TOKEN", "is set but SOURCE is scim: Authentik's webhooks would re-read its API and undo what SCIM pushed — fix: unset AUTHENTIK_WEBHOOK_TOKEN (and remove the blueprint's transport), or set SOURCE=authentik"));
            }
            _ => {}
        }
        let role_map = get("ROLE_MAP")
            .map(|map| {
                RoleMap::parse(map, with_default("ROLE_DEFAULT")?)
                    .map_err(|reason| ConfigError::invalid("ROLE_MAP", reason))
            })
            .transpose()?;

        Ok(Settings {
            listen_addr,
            source,
            scim_token,
            authentik,
            outline,
            openfga,
            role_map,
            suspend_deactivated: parse_bool("SUSPEND_DEACTIVATED", get("SUSPEND_DEACTIVATED"))?,
            max_suspensions: parse_number("MAX_SUSPENSIONS", with_default("MAX_SUSPENSIONS")?)?,
            state_dir: get("STATE_DIR").map(std::path::PathBuf::from),
            invite_members: parse_bool("INVITE_MEMBERS", get("INVITE_MEMBERS"))?,
            invite_email: parse_bool("INVITE_EMAIL", get("INVITE_EMAIL"))?,
            outline_webhook_secret: secret("OUTLINE_WEBHOOK_SECRET"),
            authentik_webhook_token: secret("AUTHENTIK_WEBHOOK_TOKEN"),
            auto_create_groups: parse_bool("AUTO_CREATE_GROUPS", get("AUTO_CREATE_GROUPS"))?,
            group_filter,
            debug: parse_bool("DEBUG", get("DEBUG"))?,
            log_format,
            outline_rate_limit: RateLimit { requests, window },
            membership,
            reconcile_interval: (!reconcile.is_zero()).then_some(reconcile),
            max_removals: parse_number("MAX_REMOVALS", with_default("MAX_REMOVALS")?)?,
            queue_capacity,
            worker_concurrency,
            upstream_timeout,
            cache_ttl: seconds("CACHE_TTL")?,
            header_timeout: positive_seconds("HEADER_TIMEOUT")?,
            body_timeout: positive_seconds("BODY_TIMEOUT")?,
            shutdown_grace: seconds("SHUTDOWN_GRACE")?,
            unset_halves: missing,
        })
    }

    /// The settings `serve` and `reconcile` cannot run without, checked in one place so that the error names
    /// every one missing: the source (Authentik's API, or SCIM's token and `STATE_DIR`), and at least one sink
    /// (Outline, OpenFGA or both).
    pub fn require_upstreams(&self) -> Result<(), ConfigError> {
        let mut missing = Vec::new();
        let mut need = |url: &'static str, token: &'static str| {
            let halves: Vec<&'static str> = self
                .unset_halves
                .iter()
                .copied()
                .filter(|h| *h == url || *h == token)
                .collect();
            if halves.is_empty() {
                missing.extend([url, token]);
            } else {
                missing.extend(halves);
            }
        };
        match self.source {
            SourceKind::Authentik if self.authentik.is_none() => {
                need("AUTHENTIK_URL", "AUTHENTIK_TOKEN")
            }
            SourceKind::Authentik => {}
            SourceKind::Scim => {}
        }
        if self.outline.is_none() && self.openfga.is_none() {
            need("OUTLINE_URL", "OUTLINE_TOKEN");
        }
        if self.source == SourceKind::Scim {
            if self.scim_token.is_none() {
                missing.push("SCIM_TOKEN");
            }
            // The SCIM resources live only in the store; without it a restart would forget every person.
            if self.state_dir.is_none() {
                missing.push("STATE_DIR");
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::MissingAll { names: missing })
        }
    }

    /// What `serve` needs: the upstreams, and with Outline (set, or implied by no sink at all) the secret of
    /// its sign-in webhook, all named at once.
    pub fn missing_for_serve(&self) -> Vec<&'static str> {
        let mut missing = match self.require_upstreams() {
            Err(ConfigError::MissingAll { names }) => names,
            _ => Vec::new(),
        };
        let outline_wanted = self.outline.is_some() || self.openfga.is_none();
        if outline_wanted && self.outline_webhook_secret.is_none() {
            missing.push("OUTLINE_WEBHOOK_SECRET");
        }
        missing
    }

    /// Variables that look like the bridge's (one of its prefixes) but are not settings: a misspelt setting
    /// is otherwise silently ignored, and `AUTHENTIK_GROUP_REGEX` for `AUTHENTIK_GROUP_REGEXP` manages every
    /// group. Each comes with the closest real setting. Authentik's own variables (`AUTHENTIK_POSTGRESQL__…`)
    /// may share an environment with the bridge, so this warns and never stops it.
    pub fn unknown_variables<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        const PREFIXES: &[&str] = &[
            "AUTHENTIK_",
            "OUTLINE_",
            "OPENFGA_",
            "ROLE_",
            "INVITE_",
            "SUSPEND_",
            "MAX_",
            "RECONCILE_",
            "STATE_",
            "SYNC_",
            "QUEUE_",
            "WORKER_",
            "UPSTREAM_",
            "CACHE_",
            "HEADER_",
            "BODY_",
            "SHUTDOWN_",
            "LISTEN_",
            "AUTO_CREATE",
            "MEMBERSHIP",
            "BRIDGE_",
            "SCIM_",
        ];
        let known = |name: &str| {
            name == "BRIDGE_CONFIG"
                || SETTINGS.iter().any(|s| {
                    s.name == name || (s.secret && name.strip_suffix("_FILE") == Some(s.name))
                })
        };
        let mut unknown: Vec<String> = names
            .into_iter()
            .filter(|n| PREFIXES.iter().any(|p| n.starts_with(p)) && !known(n))
            // Authentik's own settings use double underscores for nesting; they are not typos of ours.
            .filter(|n| !n.contains("__"))
            .map(|n| {
                if n == "AUTHENTIK_BRIDGE_URL" {
                    return format!("{n} is read by Authentik, not by the bridge: set it in Authentik's server and worker, where the blueprint is applied");
                }
                let closest = SETTINGS
                    .iter()
                    .map(|s| (strsim::levenshtein(n, s.name), s.name))
                    .min()
                    .filter(|(d, _)| *d <= 4);
                match closest {
                    Some((_, name)) => format!("{n} is not a setting; did you mean {name}?"),
                    None => format!("{n} is not a setting (see .env.example)"),
                }
            })
            .collect();
        unknown.sort();
        unknown.dedup();
        unknown
    }

    /// Settings for tests and the demo: everything at its default, with the given upstreams and secrets.
    pub fn for_upstreams(authentik: UpstreamSettings, outline: UpstreamSettings) -> Settings {
        let mut settings = Self::from_values(&BTreeMap::new())
            .unwrap_or_else(|_| unreachable!("the defaults parse"));
        settings.authentik = Some(authentik);
        settings.outline = Some(outline);
        settings
    }
}

/// The OpenFGA sink is on when `OPENFGA_URL` is set; then the store is required and the naming settings are
/// checked against OpenFGA's identifier rules (docs/src/upstream/openfga.md §2.1, §5).
fn openfga_settings<'a>(
    get: &dyn Fn(&'static str) -> Option<&'a str>,
) -> Result<Option<OpenFgaSettings>, ConfigError> {
    let Some(url) = get("OPENFGA_URL") else {
        if get("OPENFGA_STORE_ID").is_some() {
            return Err(ConfigError::Missing {
                name: "OPENFGA_URL",
            });
        }
        return Ok(None);
    };
    let url = parse_url("OPENFGA_URL", url)?;
    let ulid = |name: &'static str, v: &str| {
        let ok = v.len() == 26
            && v.chars()
                .all(|c| c.is_ascii_digit() || (c.is_ascii_uppercase() && !"ILOU".contains(c)));
        if ok {
            Ok(v.to_string())
        } else {
            Err(ConfigError::invalid(
                name,
                "must be a ULID of 26 characters, as OpenFGA shows it (e.g. 01HVMMBCMGZNT3SED4Z17ECXCA)",
            ))
        }
    };
    let store_id = ulid(
        "OPENFGA_STORE_ID",
        get("OPENFGA_STORE_ID").ok_or(ConfigError::Missing {
            name: "OPENFGA_STORE_ID",
        })?,
    )?;
    let model_id = get("OPENFGA_AUTHORIZATION_MODEL_ID")
        .map(|v| ulid("OPENFGA_AUTHORIZATION_MODEL_ID", v))
        .transpose()?;
    let name = |setting: &'static str, max: usize| -> Result<String, ConfigError> {
        let v = get(setting).ok_or(ConfigError::Missing { name: setting })?;
        if TupleNaming::valid_name(v, max) {
            Ok(v.to_string())
        } else {
            Err(ConfigError::invalid(
                setting,
                format!(
                    "OpenFGA refuses it: 1 to {max} characters, without ':', '#', '@' or spaces"
                ),
            ))
        }
    };
    let user_id = match get("OPENFGA_USER_ID")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("username") => UserIdForm::Username,
        Some("email") => UserIdForm::Email,
        Some("pk") => UserIdForm::Pk,
        _ => {
            return Err(ConfigError::invalid(
                "OPENFGA_USER_ID",
                "must be username, email or pk",
            ))
        }
    };
    let group_id = match get("OPENFGA_GROUP_ID")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("uuid") => GroupIdForm::Uuid,
        Some("name") => GroupIdForm::Name,
        _ => {
            return Err(ConfigError::invalid(
                "OPENFGA_GROUP_ID",
                "must be uuid or name",
            ))
        }
    };
    Ok(Some(OpenFgaSettings {
        url,
        store_id,
        token: get("OPENFGA_API_TOKEN").map(Secret::new),
        model_id,
        naming: TupleNaming {
            user_type: name("OPENFGA_USER_TYPE", 254)?,
            group_type: name("OPENFGA_GROUP_TYPE", 254)?,
            relation: name("OPENFGA_RELATION", 50)?,
            user_id,
            group_id,
        },
    }))
}

/// Reads `NAME`, or for secrets `NAME_FILE`; a file's trailing newline is dropped, as `echo secret > file` adds
/// one. Setting both is an error, since silently preferring one hides a mistake.
fn read_env_value(env: &dyn EnvSource, spec: &SettingSpec) -> Result<Option<String>, ConfigError> {
    let direct = env.var(spec.name).filter(|v| !v.is_empty());
    let file_name = format!("{}_FILE", spec.name);
    let from_file = env.var(&file_name).filter(|v| !v.is_empty());
    match (direct, from_file) {
        (Some(_), Some(_)) => Err(ConfigError::invalid(
            spec.name,
            format!("set either {} or {file_name}, not both", spec.name),
        )),
        (Some(v), None) => Ok(Some(v)),
        (None, Some(path)) => read_secret_file(&file_name, Path::new(&path)).map(Some),
        (None, None) => Ok(None),
    }
}

fn read_secret_file(name: &str, path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::invalid(name, format!("cannot read {}: {e}", path.display())))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

/// The TOML layer takes the same names in lower case (`outline_url = "..."`), and `<name>_file` for secrets.
fn read_toml_layer(path: &Path) -> Result<Vec<(&'static str, String)>, ConfigError> {
    let display = path.display().to_string();
    let layer = config::Config::builder()
        .add_source(
            config::File::from(path)
                .format(config::FileFormat::Toml)
                .required(true),
        )
        .build()
        .map_err(|e| ConfigError::File {
            path: display.clone(),
            reason: e.to_string(),
        })?;
    let table = layer.cache.into_table().map_err(|e| ConfigError::File {
        path: display.clone(),
        reason: e.to_string(),
    })?;
    let mut out = Vec::new();
    for (key, value) in table {
        let upper = key.to_ascii_uppercase();
        let (spec, is_file) = match SETTINGS.iter().find(|s| s.name == upper) {
            Some(s) => (s, false),
            None => match upper
                .strip_suffix("_FILE")
                .and_then(|n| SETTINGS.iter().find(|s| s.name == n))
            {
                Some(s) => (s, true),
                None => {
                    return Err(ConfigError::File {
                        path: display,
                        reason: format!("unknown setting `{key}`"),
                    })
                }
            },
        };
        let text = value.into_string().map_err(|e| ConfigError::File {
            path: display.clone(),
            reason: format!("{key}: {e}"),
        })?;
        let text = if is_file {
            read_secret_file(&upper, Path::new(&text))?
        } else {
            text
        };
        out.push((spec.name, text));
    }
    Ok(out)
}

/// The Python connector's users write `True`/`False`; `1`/`0`, `yes`/`no` and `on`/`off` are accepted too.
pub fn parse_bool(name: &str, value: Option<&str>) -> Result<bool, ConfigError> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None => Ok(false),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some("false" | "0" | "no" | "off") => Ok(false),
        Some(other) => Err(ConfigError::invalid(
            name,
            format!("expected True or False, got {other}"),
        )),
    }
}

fn parse_number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ConfigError> {
    value
        .parse()
        .map_err(|_| ConfigError::invalid(name, format!("expected a whole number, got {value}")))
}

/// Seconds, as a number (`60`, `0.5`) or with a unit (`15m`, `1h`, `30s`, `250ms`).
pub fn parse_seconds(name: &str, v: &str) -> Result<Duration, ConfigError> {
    let bad = || {
        ConfigError::invalid(
            name,
            format!("expected seconds such as 60, 15m or 1h, got {v}"),
        )
    };
    let (number, scale) = if let Some(n) = v.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = v.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (v, 1.0)
    };
    let seconds: f64 = number.trim().parse().map_err(|_| bad())?;
    if !seconds.is_finite() || seconds < 0.0 || seconds * scale > 1e9 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(seconds * scale))
}

/// Trailing slashes are dropped so that paths can be appended; only http and https are accepted.
fn parse_url(name: &str, value: &str) -> Result<String, ConfigError> {
    let parsed = reqwest::Url::parse(value).map_err(|e| match e {
        url_error
            if url_error
                .to_string()
                .contains("relative URL without a base") =>
        {
            ConfigError::invalid(
                name,
                format!("{value:?} has no scheme — fix: add http:// or https://"),
            )
        }
        e => ConfigError::invalid(name, format!("not a valid URL ({e})")),
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(ConfigError::invalid(
            name,
            "expected an http:// or https:// URL",
        ));
    }
    // The base URL is wanted, but the API's own root is a common paste: it is accepted as the base.
    let base = value.trim_end_matches('/');
    let base = base.strip_suffix("/api/v3").unwrap_or(base);
    let base = if name.starts_with("OUTLINE") {
        base.strip_suffix("/api").unwrap_or(base)
    } else {
        base
    };
    Ok(base.trim_end_matches('/').to_string())
}

/// The Python connector compiles the pattern with `re.IGNORECASE` and uses `re.match`, which anchors at the
/// start but not at the end; the same semantics here keep existing patterns meaning what they meant.
pub fn compile_group_filter(pattern: &str) -> Result<Regex, String> {
    Regex::new(&format!("(?i)^(?:{pattern})"))
        .map_err(|e| format!("not a valid regular expression: {e}"))
}

// The value types of the sinks' own settings. Their behaviour is each sink's (`impl` blocks in
// `sinks/outline/account_plan.rs` and `sinks/openfga/tuples.rs`); only their shape is here, so that reading
// the settings needs nothing above this file.

/// Outline's roles, lowest first, so the highest a person's groups give is the maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutlineRole {
    Guest,
    Viewer,
    Member,
    Admin,
}

/// What people in none of the mapped groups get (`ROLE_DEFAULT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleDefault {
    Keep,
    Role(OutlineRole),
}

/// `ROLE_MAP="outline-admins=admin,outline-readers=viewer"`: Authentik group names (compared without case)
/// and the Outline role each gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleMap {
    pub groups: Vec<(GroupName, OutlineRole)>,
    pub default: RoleDefault,
}

/// Which Authentik field names a person in OpenFGA (`OPENFGA_USER_ID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserIdForm {
    Username,
    Email,
    Pk,
}

/// Which Authentik field names a group in OpenFGA (`OPENFGA_GROUP_ID`). The uuid survives renames; the name is
/// for people who write grants such as `group:team-red#member` by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupIdForm {
    Name,
    Uuid,
}

/// The naming settings, checked at start-up (type names and the relation follow docs/src/upstream/openfga.md §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TupleNaming {
    pub user_type: String,
    pub group_type: String,
    pub relation: String,
    pub user_id: UserIdForm,
    pub group_id: GroupIdForm,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("AUTHENTIK_URL", "https://auth.example.com/"),
            ("AUTHENTIK_TOKEN", "ak-token"),
            ("OUTLINE_URL", "https://docs.example.com"),
            ("OUTLINE_TOKEN", "ol_api_x"),
            ("OUTLINE_WEBHOOK_SECRET", "ol_whs_x"),
        ]
    }

    #[test]
    fn scim_needs_its_token_and_state_dir_and_never_a_second_source() {
        let outline = [
            ("OUTLINE_URL", "https://docs.example.com"),
            ("OUTLINE_TOKEN", "ol"),
            ("SOURCE", "SCIM"),
        ];
        let s = Settings::load(None, &env(&outline)).expect("loads");
        assert_eq!(s.source, SourceKind::Scim);
        let err = s.require_upstreams().expect_err("incomplete").to_string();
        assert!(
            err.contains("SCIM_TOKEN")
                && err.contains("STATE_DIR")
                && !err.contains("AUTHENTIK_URL"),
            "names what SCIM needs, not Authentik's API: {err}"
        );
        let mut full = outline.to_vec();
        full.extend([
            ("SCIM_TOKEN", "t"),
            ("STATE_DIR", "/var/lib/authentik-bridge"),
        ]);
        Settings::load(None, &env(&full))
            .expect("loads")
            .require_upstreams()
            .expect("enough for SCIM");

        let mut fight = full.clone();
        fight.push(("AUTHENTIK_WEBHOOK_TOKEN", "w"));
        let err = Settings::load(None, &env(&fight))
            .expect_err("two sources")
            .to_string();
        assert!(
            err.contains("AUTHENTIK_WEBHOOK_TOKEN") && err.contains("fix:"),
            "{err}"
        );
        let mut stray = base();
        stray.push(("SCIM_TOKEN", "t"));
        let err = Settings::load(None, &env(&stray))
            .expect_err("SCIM token, Authentik source")
            .to_string();
        assert!(err.contains("SOURCE=scim"), "{err}");
        let mut typo = base();
        typo.push(("SOURCE", "okta"));
        assert!(Settings::load(None, &env(&typo)).is_err());
    }

    #[test]
    fn openfga_alone_is_a_sink_and_its_settings_are_checked() {
        let fga = [
            ("AUTHENTIK_URL", "https://auth.example.com/"),
            ("AUTHENTIK_TOKEN", "ak-token"),
            ("OPENFGA_URL", "http://openfga:8080"),
            ("OPENFGA_STORE_ID", "01HVMMBCMGZNT3SED4Z17ECXCA"),
        ];
        let s = Settings::load(None, &env(&fga)).expect("loads");
        assert!(s.outline.is_none());
        s.require_upstreams().expect("OpenFGA alone is enough");
        let o = s.openfga.expect("on");
        assert_eq!(o.naming.user_id, UserIdForm::Username);
        assert_eq!(o.naming.group_id, GroupIdForm::Uuid);
        assert_eq!(
            (o.naming.user_type.as_str(), o.naming.relation.as_str()),
            ("user", "member")
        );
        assert!(o.token.is_none() && o.model_id.is_none());

        let neither = Settings::load(None, &env(&fga[..2])).expect("loads");
        assert!(neither.require_upstreams().is_err(), "no sink at all");
        for (name, bad) in [
            ("OPENFGA_STORE_ID", "not-a-ulid"),
            ("OPENFGA_USER_ID", "uuid"),
            ("OPENFGA_GROUP_ID", "slug"),
            ("OPENFGA_RELATION", "member of"),
            ("OPENFGA_GROUP_TYPE", "team#x"),
            ("OPENFGA_AUTHORIZATION_MODEL_ID", "latest"),
        ] {
            let mut e = fga.to_vec();
            e.retain(|(k, _)| *k != name);
            e.push((name, bad));
            let err = Settings::load(None, &env(&e)).expect_err(name).to_string();
            assert!(err.starts_with(name), "{err}");
        }
        let store_only = [fga[0], fga[1], fga[3]];
        let err = Settings::load(None, &env(&store_only)).expect_err("no URL");
        assert!(err.to_string().contains("OPENFGA_URL"));
    }

    #[test]
    fn defaults_match_the_python_connector() {
        let s = Settings::load(None, &env(&base())).expect("loads");
        assert_eq!(s.listen_addr.port(), 8430);
        assert!(!s.auto_create_groups);
        assert!(s.group_filter.is_none());
        assert_eq!(
            s.authentik.as_ref().map(|a| a.url.as_str()),
            Some("https://auth.example.com")
        );
        assert_eq!(s.reconcile_interval, Some(Duration::from_secs(900)));
        assert_eq!(s.outline_rate_limit.requests, 1000);
    }

    #[test]
    fn booleans_accept_the_connector_spellings() {
        for (text, expected) in [
            ("True", true),
            ("False", false),
            ("true", true),
            ("0", false),
            ("1", true),
        ] {
            assert_eq!(
                parse_bool("X", Some(text)).expect("parses"),
                expected,
                "{text}"
            );
        }
        assert!(parse_bool("AUTO_CREATE_GROUPS", Some("maybe")).is_err());
    }

    #[test]
    fn regex_is_case_insensitive_and_anchored_at_the_start_only() {
        let re = compile_group_filter("outline-").expect("compiles");
        assert!(re.is_match("Outline-Docs"));
        assert!(!re.is_match("my-outline-docs"));
    }

    #[test]
    fn newer_regex_name_is_accepted() {
        let mut e = base();
        e.push(("SYNC_GROUP_REGEX", "^wiki"));
        let s = Settings::load(None, &env(&e)).expect("loads");
        assert!(s.group_filter.expect("set").is_match("wiki-editors"));
    }

    #[test]
    fn secrets_can_come_from_files() {
        let dir = std::env::temp_dir().join(format!("bridge-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let path = dir.join("token");
        std::fs::write(&path, "from-file\n").expect("write");
        let mut e: Vec<(&str, &str)> = base()
            .into_iter()
            .filter(|(k, _)| *k != "OUTLINE_TOKEN")
            .collect();
        let p = path.to_string_lossy().to_string();
        e.push(("OUTLINE_TOKEN_FILE", &p));
        let s = Settings::load(None, &env(&e)).expect("loads");
        assert_eq!(s.outline.expect("set").token.expose(), "from-file");
    }

    #[test]
    fn errors_name_the_setting_and_hide_secret_values() {
        let mut e = base();
        e.push(("LISTEN_ADDR", "nope"));
        let err = Settings::load(None, &env(&e))
            .expect_err("bad addr")
            .to_string();
        assert!(err.starts_with("LISTEN_ADDR"), "{err}");

        let e: Vec<_> = base()
            .into_iter()
            .filter(|(k, _)| *k != "OUTLINE_TOKEN")
            .collect();
        let half = Settings::load(None, &env(&e)).expect("a half-set pair loads");
        let err = half.require_upstreams().expect_err("missing").to_string();
        assert_eq!(
            err,
            "required but not set: OUTLINE_TOKEN (each is described in .env.example)"
        );

        let s = Settings::load(None, &env(&base())).expect("loads");
        assert!(!format!("{s:?}").contains("ak-token"));
    }

    #[test]
    fn toml_layer_sits_between_defaults_and_env() {
        let dir = std::env::temp_dir().join(format!("bridge-toml-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let path = dir.join("bridge.toml");
        std::fs::write(&path, "max_removals = \"7\"\nqueue_capacity = \"9\"\n").expect("write");
        let mut e = base();
        e.push(("QUEUE_CAPACITY", "11"));
        let s = Settings::load(Some(&path), &env(&e)).expect("loads");
        assert_eq!(s.max_removals, 7);
        assert_eq!(s.queue_capacity, 11);
    }

    #[test]
    fn the_environment_wins_over_dot_env_and_file_twins_still_work() {
        let dir = std::env::temp_dir().join(format!("bridge-dotenv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let token_file = dir.join("token");
        std::fs::write(&token_file, "token-from-file\n").expect("write");
        let dotenv_path = dir.join(".env");
        std::fs::write(
            &dotenv_path,
            "# the connector's file\nAUTHENTIK_URL=https://auth.example.com\nAUTHENTIK_TOKEN=ak-from-dotenv\n\
             OUTLINE_URL=https://docs.example.com\nOUTLINE_TOKEN=ol-from-dotenv\n\
             MAX_REMOVALS=\"7\"\nAUTO_CREATE_GROUPS=True\n",
        )
        .expect("write");
        let dotenv = DotEnv::read(&dotenv_path).expect("parses");
        let p = token_file.to_string_lossy().to_string();
        let process = env(&[("MAX_REMOVALS", "9"), ("OUTLINE_TOKEN_FILE", &p)]);
        let s = Settings::load_layers(None, &[&dotenv, &process]).expect("loads");
        assert_eq!(s.max_removals, 9, "the environment wins");
        assert!(s.auto_create_groups, ".env alone is read");
        assert_eq!(s.authentik.expect("set").token.expose(), "ak-from-dotenv");
        assert_eq!(
            s.outline.expect("set").token.expose(),
            "token-from-file",
            "a real NAME_FILE beats NAME in .env"
        );
        let missing = DotEnv::read(&dir.join("absent")).expect("a missing .env is empty");
        assert!(missing.var("OUTLINE_URL").is_none());
        std::fs::write(dir.join("bad"), "NOT A LINE\n").expect("write");
        assert!(DotEnv::read(&dir.join("bad")).is_err());
    }

    #[test]
    fn every_default_comes_from_the_table() {
        let s = Settings::load(None, &env(&base())).expect("loads");
        let secs =
            |name| parse_seconds(name, default_of(name).expect("has a default")).expect("parses");
        assert_eq!(s.cache_ttl, secs("CACHE_TTL"));
        assert_eq!(s.upstream_timeout, secs("UPSTREAM_TIMEOUT"));
        assert_eq!(s.body_timeout, secs("BODY_TIMEOUT"));
        assert_eq!(s.header_timeout, secs("HEADER_TIMEOUT"));
        assert_eq!(s.shutdown_grace, secs("SHUTDOWN_GRACE"));
        assert_eq!(
            s.outline_rate_limit.window,
            secs("OUTLINE_RATE_LIMIT_WINDOW")
        );
        assert_eq!(s.reconcile_interval, Some(secs("RECONCILE_INTERVAL")));
        let num = |name| {
            default_of(name)
                .expect("has a default")
                .parse::<usize>()
                .expect("parses")
        };
        assert_eq!(s.max_removals, num("MAX_REMOVALS"));
        assert_eq!(s.queue_capacity, num("QUEUE_CAPACITY"));
        assert_eq!(s.worker_concurrency, num("WORKER_CONCURRENCY"));
        assert_eq!(
            s.outline_rate_limit.requests as usize,
            num("OUTLINE_RATE_LIMIT_REQUESTS")
        );
        assert_eq!(
            s.listen_addr.to_string(),
            default_of("LISTEN_ADDR").expect("has a default")
        );
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(
            parse_seconds("X", "15m").expect("ok"),
            Duration::from_secs(900)
        );
        assert_eq!(
            parse_seconds("X", "0.5").expect("ok"),
            Duration::from_millis(500)
        );
        assert!(parse_seconds("X", "-1").is_err());
    }
}
