//! The scenario model: what a scenario file says, as Rust values.
//!
//! These types deserialize straight from TOML (unknown keys are rejected) and can
//! be built in code. Fields that refer to other parts of the scenario carry spans
//! so that [`crate::validate`] can point at them.

use crate::fault::{DiskSpec, FaultSpec, LinkSpec, NetworkSpec};
use crate::matrix::Guard;
use crate::state::{FieldEditSpec, StateSource};
use crate::template::Template;
use crate::values::{Dur, Pattern, ResultSpec, ValueTemplate};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use toml::Spanned;

fn positive_rate<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let rate = f64::deserialize(d)?;
    if rate.is_finite() && rate > 0.0 {
        Ok(Some(rate))
    } else {
        Err(serde::de::Error::custom(format!("invalid rate {rate}; expected operations per second above 0")))
    }
}

/// A seed: a non-negative integer, or the decimal text of one (TOML's
/// integers stop at i64, and seeds are u64).
fn seed_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct Seed;
    fn out_of_range<E: serde::de::Error>(seed: impl std::fmt::Display) -> E {
        E::custom(format!("invalid seed {seed}; expected a whole number from 0 to {}", u64::MAX))
    }
    impl serde::de::Visitor<'_> for Seed {
        type Value = u64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "a seed: a whole number from 0 to {}, as an integer or text", u64::MAX)
        }
        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<u64, E> {
            Ok(n)
        }
        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<u64, E> {
            u64::try_from(n).map_err(|_| out_of_range(n))
        }
        fn visit_u128<E: serde::de::Error>(self, n: u128) -> Result<u64, E> {
            u64::try_from(n).map_err(|_| out_of_range(n))
        }
        fn visit_i128<E: serde::de::Error>(self, n: i128) -> Result<u64, E> {
            u64::try_from(n).map_err(|_| out_of_range(n))
        }
        fn visit_str<E: serde::de::Error>(self, t: &str) -> Result<u64, E> {
            t.trim().parse().map_err(|_| out_of_range(format_args!("{t:?}")))
        }
    }
    d.deserialize_any(Seed).map(Some)
}

/// One test: services, actors, a client, a workload, faults and checks.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// Drives every random choice; drawn and printed when absent. Any u64:
    /// an integer, or a decimal string for seeds past TOML's i64 integers.
    #[serde(default, deserialize_with = "seed_value")]
    pub seed: Option<u64>,
    /// The directory relative program paths, build dirs and `{scenario.dir}`
    /// resolve against (default: the scenario file's directory; relative to it
    /// when relative). Pinned in a run directory's `scenario.toml` so a replay
    /// from there resolves paths like the original run.
    pub base_dir: Option<String>,
    /// How long the workload runs (default 10s when no `ops` limit is set).
    pub duration: Option<Dur>,
    /// Number of concurrent client workers (default 1).
    pub clients: Option<NonZeroUsize>,
    /// Stop after this many operations.
    pub ops: Option<NonZeroU64>,
    /// Overall operations per second across all workers.
    #[serde(default, deserialize_with = "positive_rate")]
    pub rate: Option<f64>,
    /// Labels a suite selects by (`--tags`); `extended` and `stress` keep a
    /// scenario out of a directory run unless asked for.
    #[serde(default)]
    pub tags: Vec<Spanned<String>>,
    /// Environment variables that must be set (by the shell or a profile)
    /// before the scenario may start.
    #[serde(default)]
    pub env_required: Vec<Spanned<String>>,
    /// Environment variables whose values are secrets: masked as `***` in
    /// every file of the run directory and every message shakedown prints.
    #[serde(default)]
    pub env_secret: Vec<Spanned<String>>,
    /// Dimensions the scenario runs over, once per combination (cell), e.g.
    /// `engine = ["memory", "sqlite"]`; `{matrix.engine}` in templates.
    #[serde(default)]
    pub matrix: BTreeMap<String, Vec<String>>,
    /// Run only in cells matching all of these, e.g. `{ engine = "sqlite" }`.
    pub only: Option<Guard>,
    /// Skip cells matching any of these.
    pub except: Option<Guard>,
    /// Versions: each `[version.CELL]` names the binaries (`{bin.NAME}`) of
    /// one cell of the implied `version` matrix dimension, so old and new
    /// builds run side by side and `upgrade` faults can swap them.
    #[serde(default)]
    pub version: BTreeMap<String, BTreeMap<String, Template>>,
    /// The cell this copy of the scenario runs in (set by [`Scenario::for_cell`]).
    #[serde(skip)]
    pub cell: BTreeMap<String, String>,
    /// Actions run once each, in order, after the workload ends and faults heal.
    #[serde(default)]
    pub finally: Vec<Spanned<String>>,
    #[serde(default)]
    pub build: Vec<BuildSpec>,
    #[serde(default)]
    pub service: BTreeMap<String, ServiceSpec>,
    #[serde(default)]
    pub actor: BTreeMap<String, ActorSpec>,
    pub client: Option<ClientSpec>,
    #[serde(default)]
    pub action: Vec<ActionSpec>,
    /// Proxy links clients or services connect through, so faults can act on them.
    #[serde(default)]
    pub link: BTreeMap<String, LinkSpec>,
    /// The Linux namespace tier: each service in its own network namespace.
    #[serde(default)]
    pub network: NetworkSpec,
    #[serde(default)]
    pub fault: Vec<FaultSpec>,
    #[serde(default)]
    pub check: Vec<CheckSpec>,
    /// A scripted sequence run instead of the random workload (a `workload`
    /// step runs that inside it).
    #[serde(default)]
    pub step: Vec<crate::step::StepSpec>,
    /// Source data generated from the seed before anything starts.
    #[serde(default)]
    pub dataset: BTreeMap<String, crate::resume::DatasetSpec>,
    /// A resume scenario: a job interrupted at many points and compared
    /// with its uninterrupted run, instead of a workload.
    pub resume: Option<crate::resume::ResumeSpec>,
}

/// A command run once before any service starts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildSpec {
    pub command: Vec<Template>,
    /// Working directory; relative paths are relative to the scenario file.
    pub dir: Option<Template>,
    #[serde(default)]
    pub env: BTreeMap<String, Template>,
    /// Default 10 minutes.
    pub timeout: Option<Dur>,
}

/// A process of the system under test.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub command: Vec<Template>,
    #[serde(default)]
    pub env: BTreeMap<String, Template>,
    /// Working directory (default: the service's own directory in the run).
    pub dir: Option<Template>,
    /// Extra named ports; `port` is always allocated.
    #[serde(default)]
    pub ports: Vec<String>,
    pub ready: Option<ReadySpec>,
    #[serde(default)]
    pub stop: StopSpec,
    /// A size-limited tmpfs at a path of the service, for disk-full faults.
    pub disk: Option<DiskSpec>,
    /// How its output lines are read for log checks: `json`, `logfmt` or
    /// `plain` (default); `log_regex` instead names groups (`level`, `msg`, ...).
    pub log_format: Option<LogFormatName>,
    pub log_regex: Option<Pattern>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormatName {
    Json,
    Logfmt,
    Plain,
}

/// A log entry to look for: every given part must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogMatchSpec {
    /// The service (or `driver-ACTOR`) that printed it.
    pub source: Option<Spanned<String>>,
    /// A pattern searched in the message.
    #[serde(rename = "match")]
    pub matches: Option<Pattern>,
    /// The entry's level, e.g. "error".
    pub level: Option<String>,
    /// Fields that must have exactly these values.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

/// How to tell a service is ready: exactly one of `tcp`, `http`, `log`, `exec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadySpec {
    /// A port (`"{port}"`) or `host:port` to connect to.
    pub tcp: Option<Template>,
    /// A URL that must answer with `status` (default: any 2xx).
    pub http: Option<Template>,
    pub status: Option<u16>,
    /// A line of the service's output must match.
    pub log: Option<Pattern>,
    /// A command that must exit 0.
    pub exec: Option<Vec<Template>>,
    /// Default 30s.
    pub timeout: Option<Dur>,
    /// Delay between probe attempts (default 50ms).
    pub interval: Option<Dur>,
}

/// How a service is stopped: `signal`, then SIGKILL after `grace`. The
/// profile's `drain` and `shutdown` reach the service's command as
/// `{stop.drain}` and `{stop.shutdown}`, so its own close timings follow.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopSpec {
    /// TERM (default), INT, QUIT, HUP or KILL.
    pub signal: Option<Spanned<String>>,
    /// Default: the larger of 2s and drain + shutdown + 1s.
    pub grace: Option<Dur>,
    /// `fast` (default: drain 200ms, shutdown 100ms, for tests) or
    /// `production` (drain 8s, shutdown 2s).
    pub profile: Option<StopProfile>,
    /// Overrides the profile's drain time.
    pub drain: Option<Dur>,
    /// Overrides the profile's shutdown time.
    pub shutdown: Option<Dur>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StopProfile {
    #[default]
    Fast,
    Production,
}

impl StopSpec {
    /// How long the service drains in-flight work before it shuts down.
    pub fn drain(&self) -> std::time::Duration {
        self.drain.map(|d| d.0).unwrap_or(match self.profile.unwrap_or_default() {
            StopProfile::Fast => std::time::Duration::from_millis(200),
            StopProfile::Production => std::time::Duration::from_secs(8),
        })
    }

    /// How long the service's final shutdown may take after draining.
    pub fn shutdown(&self) -> std::time::Duration {
        self.shutdown.map(|d| d.0).unwrap_or(match self.profile.unwrap_or_default() {
            StopProfile::Fast => std::time::Duration::from_millis(100),
            StopProfile::Production => std::time::Duration::from_secs(2),
        })
    }

    /// How long shakedown waits after the stop signal before SIGKILL.
    pub fn grace(&self) -> std::time::Duration {
        let profile = self.drain() + self.shutdown() + std::time::Duration::from_secs(1);
        self.grace.map(|d| d.0).unwrap_or(profile.max(std::time::Duration::from_secs(2)))
    }
}

/// A client identity with its own home directory and environment.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActorSpec {
    #[serde(default)]
    pub env: BTreeMap<String, Template>,
}

/// Required in `[client]`; `Exec` is only the default for code that builds a `ClientSpec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClientKind {
    /// A command per operation.
    #[default]
    Exec,
    /// A long-running process per actor speaking JSON lines.
    Driver,
    /// HTTP requests.
    Http,
}

/// How operations reach the system.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    pub kind: ClientKind,
    /// http: the base URL requests are relative to.
    pub base: Option<Spanned<Template>>,
    /// driver: the command started once per actor.
    pub command: Option<Spanned<Vec<Template>>>,
    /// Environment for exec commands and drivers (besides the actor's).
    #[serde(default)]
    pub env: BTreeMap<String, Template>,
    /// Per-operation timeout; a timed-out operation is `info` (default 5s).
    pub timeout: Option<Dur>,
    /// http: resend a request (same body and headers, so the same idempotency
    /// key) on these statuses or a broken connection; the op's outcome is the
    /// last attempt's.
    pub retry: Option<RetrySpec>,
}

/// `[client.retry]`: how the http client retries, as a real client library would.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Attempts in all, the first included (default 3).
    pub attempts: Option<NonZeroU32>,
    /// Statuses that are retried (default 429 and 503).
    pub on: Option<Vec<u16>>,
    /// Also retry when the connection breaks or the reply never comes
    /// (default true): the request may have taken effect.
    pub on_error: Option<bool>,
    /// Wait between attempts, doubled each time (default 20ms); a
    /// `Retry-After` header in seconds overrides it, capped at 2s.
    pub backoff: Option<Dur>,
}

/// One kind of operation of the workload.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSpec {
    /// The operation's function name in the history (`add`, `read`, ...).
    pub f: String,
    /// Matrix guards: the action exists only in matching cells.
    pub only: Option<Guard>,
    pub except: Option<Guard>,
    /// Unique label (default: `f`).
    pub name: Option<String>,
    /// Relative weight in the random mix (default 1; 0 = only in `finally`).
    pub weight: Option<u32>,
    /// The operation's value, recorded in the history and available as `{value}`.
    pub value: Option<Spanned<ValueTemplate>>,
    /// http: the request to send.
    pub request: Option<Spanned<RequestSpec>>,
    /// exec: the command to run.
    pub command: Option<Spanned<Vec<Template>>>,
    /// exec: text fed to the command's stdin.
    pub stdin: Option<Template>,
    /// When the reply means success (default: 2xx status or exit 0).
    pub ok: Option<OutcomeSpec>,
    /// When the reply is an expected refusal: the op definitely did not happen.
    pub fail: Option<OutcomeSpec>,
    /// Where the completion value comes from, e.g. `"body:int"`, `"stdout:json:/id"`.
    pub result: Option<Spanned<ResultSpec>>,
    /// Add the completion value of an ok op to this pool.
    pub capture: Option<String>,
    /// Pick `{target}` from this pool; with an empty pool the op is skipped.
    pub target: Option<Spanned<String>>,
    /// Remove the target from its pool when the op is ok (a delete).
    #[serde(default)]
    pub remove: bool,
    /// Overrides the client's timeout.
    pub timeout: Option<Dur>,
}

impl ActionSpec {
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.f)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    /// Default GET.
    pub method: Option<String>,
    pub path: Template,
    #[serde(default)]
    pub headers: BTreeMap<String, Template>,
    pub body: Option<Template>,
}

/// A reply classification: all given conditions must hold.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeSpec {
    /// http: accepted status codes.
    #[serde(default)]
    pub status: Vec<u16>,
    /// exec: accepted exit codes.
    #[serde(default)]
    pub exit: Vec<i32>,
    /// A pattern the reply (body or stdout+stderr) must match.
    #[serde(rename = "match")]
    pub matches: Option<Pattern>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckKind {
    /// Counts by action and result; unknown when an action never succeeded.
    Stats,
    /// No operation got a reply outside its ok and fail mappings.
    Unexpected,
    /// Every acknowledged add appears in the final read.
    Set,
    /// The history is linearizable against `model`.
    Linearizable,
    /// Jepsen's set-full: lost, stale and never-read elements, with latencies.
    SetFull,
    /// Every acknowledged enqueue is dequeued exactly once (or at least once).
    TotalQueue,
    /// Generated ids never repeat.
    UniqueIds,
    /// Reads lie between acknowledged and attempted increments.
    Counter,
    /// Balances always sum to `total`, none negative.
    Bank,
    /// Reads never go backwards.
    Monotonic,
    /// Each actor reads its own acknowledged writes.
    ReadYourWrites,
    /// Log entries appear in the order of `steps`, across services.
    LogSequence,
    /// Consecutive matching entries are `min` to `max` apart (a poll floor).
    LogSpacing,
    /// No entry matches (panics, say).
    LogAbsent,
    /// The `state` of every actor in `actors` is equal, `ignore`d columns
    /// and keys aside; the differences are listed.
    Converge,
    /// Counts (the last column of each row, keyed by the others) are equal across actors.
    EventCounts,
    /// `rounds` more runs of the `round` actions change no actor's state.
    Idempotent,
    /// A column (`field`) strictly increases per actor; gaps allowed.
    Sequence,
    /// In each actor's events, a create precedes every other op on the same entity.
    CausalOrder,
    /// Each actor's final state holds every entity it created (its `pool` captures).
    OwnWrites,
    /// Declared `edits` of different fields all survive in every actor's state.
    FieldMerge,
    /// A query's rows equal `rows`, or there are none (`empty = true`).
    Sql,
    /// Services' peak RSS and CPU time (sampled from /proc) within `max_rss`
    /// and `max_cpu`; one `service`, or all.
    Resources,
}

impl CheckKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Stats => "stats",
            CheckKind::Unexpected => "unexpected",
            CheckKind::Set => "set",
            CheckKind::Linearizable => "linearizable",
            CheckKind::SetFull => "set-full",
            CheckKind::TotalQueue => "total-queue",
            CheckKind::UniqueIds => "unique-ids",
            CheckKind::Counter => "counter",
            CheckKind::Bank => "bank",
            CheckKind::Monotonic => "monotonic",
            CheckKind::ReadYourWrites => "read-your-writes",
            CheckKind::LogSequence => "log-sequence",
            CheckKind::LogSpacing => "log-spacing",
            CheckKind::LogAbsent => "log-absent",
            CheckKind::Converge => "converge",
            CheckKind::EventCounts => "event-counts",
            CheckKind::Idempotent => "idempotent",
            CheckKind::Sequence => "sequence",
            CheckKind::CausalOrder => "causal-order",
            CheckKind::OwnWrites => "own-writes",
            CheckKind::FieldMerge => "field-merge",
            CheckKind::Sql => "sql",
            CheckKind::Resources => "resources",
        }
    }

    /// The optional keys of `[[check]]` this kind reads, besides `kind` and `name`.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            CheckKind::Stats | CheckKind::Unexpected => &[],
            CheckKind::Set | CheckKind::SetFull | CheckKind::Counter => &["add", "read"],
            CheckKind::Linearizable => &["model", "timeout"],
            CheckKind::TotalQueue => &["enqueue", "dequeue", "drain", "mode"],
            CheckKind::UniqueIds => &["generate"],
            CheckKind::Bank => &["read", "total", "negative_allowed"],
            CheckKind::Monotonic => &["read", "key", "value"],
            CheckKind::ReadYourWrites => &["write", "read", "key", "value"],
            CheckKind::LogSequence => &["steps"],
            CheckKind::LogSpacing => &["entry", "min", "max"],
            CheckKind::LogAbsent => &["entry"],
            CheckKind::Converge => &["state", "actors", "ignore", "entity", "shared_only"],
            CheckKind::EventCounts => &["state", "actors"],
            CheckKind::Idempotent => &["state", "actors", "ignore", "entity", "rounds", "round"],
            CheckKind::Sequence => &["state", "actors", "field"],
            CheckKind::CausalOrder => &["state", "actors", "entity", "op", "order", "creates"],
            CheckKind::OwnWrites => &["state", "actors", "entity", "pool", "created"],
            CheckKind::FieldMerge => &["state", "actors", "entity", "edits", "edit_log"],
            CheckKind::Sql => &["state", "actors", "rows", "empty"],
            CheckKind::Resources => &["service", "max_rss", "max_cpu"],
        }
    }

    /// Whether the kind reads state snapshots (and so needs `state`).
    pub fn reads_state(self) -> bool {
        matches!(
            self,
            CheckKind::Converge
                | CheckKind::EventCounts
                | CheckKind::Idempotent
                | CheckKind::Sequence
                | CheckKind::CausalOrder
                | CheckKind::OwnWrites
                | CheckKind::FieldMerge
                | CheckKind::Sql
        )
    }
}

/// One `[[check]]`. Which keys apply depends on `kind` (see [`CheckKind::keys`]);
/// f names default to the check's usual ones (`add`, `read`, `enqueue`, ...).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    pub kind: CheckKind,
    /// Matrix guards: the check runs only in matching cells.
    pub only: Option<Guard>,
    pub except: Option<Guard>,
    /// Default: the kind.
    pub name: Option<String>,
    pub add: Option<Spanned<String>>,
    pub read: Option<Spanned<String>>,
    pub write: Option<Spanned<String>>,
    pub enqueue: Option<Spanned<String>>,
    pub dequeue: Option<Spanned<String>>,
    pub drain: Option<Spanned<String>>,
    pub generate: Option<Spanned<String>>,
    /// linearizable: register, cas-register, kv, mutex, set, fifo-queue, unordered-queue, counter.
    pub model: Option<Spanned<String>>,
    /// linearizable: search budget; past it the verdict is unknown (default 60s).
    pub timeout: Option<Dur>,
    /// total-queue: "at-most-once" (default) or "at-least-once" (redelivery allowed).
    pub mode: Option<Spanned<String>>,
    /// bank: the conserved sum of all balances.
    pub total: Option<Spanned<i64>>,
    /// bank: whether balances may go below zero (default false).
    pub negative_allowed: Option<Spanned<bool>>,
    /// monotonic, read-your-writes: a JSON pointer to the key in ops' invoked
    /// values (e.g. "/key"); one register when absent.
    pub key: Option<Spanned<String>>,
    /// monotonic, read-your-writes: a JSON pointer to the value in writes'
    /// invoked values and reads' results (e.g. "/value"); the whole value when absent.
    pub value: Option<Spanned<String>>,
    /// Any kind: the verdict is unknown, not valid, unless at least this many
    /// operations completed ok while a fault was active (the vacuity guard).
    pub during_faults: Option<u64>,
    /// log-sequence: the entries that must appear, in this order.
    pub steps: Option<Spanned<Vec<LogMatchSpec>>>,
    /// log-spacing, log-absent: the entries looked at.
    pub entry: Option<Spanned<LogMatchSpec>>,
    /// log-spacing: the least and most time between consecutive entries.
    pub min: Option<Dur>,
    pub max: Option<Dur>,
    /// State checks: where each actor's state is read from.
    pub state: Option<Spanned<StateSource>>,
    /// State checks: whose state (default: every actor when `state` names
    /// `{actor.*}`, else one state owned by no actor, shown as `-`).
    pub actors: Option<Spanned<Vec<String>>>,
    /// converge, idempotent: columns (rows) or object keys (JSON, at any depth) left out.
    pub ignore: Option<Spanned<Vec<String>>>,
    /// The column (rows) or object key (JSON array elements) naming the
    /// entity a row is about (default: the first column, or `id`).
    pub entity: Option<Spanned<String>>,
    /// converge: compare only the entities every state holds (an action log
    /// of which each actor holds a subset); default false.
    pub shared_only: Option<Spanned<bool>>,
    /// idempotent: how many more rounds (default 3).
    pub rounds: Option<Spanned<u32>>,
    /// idempotent: the actions (labels) one round runs, in order, e.g. `["sync"]`.
    pub round: Option<Spanned<Vec<String>>>,
    /// sequence: the column or JSON key that must strictly increase.
    pub field: Option<Spanned<String>>,
    /// causal-order: the column or key holding the operation (`create`, `update`, ...).
    pub op: Option<Spanned<String>>,
    /// causal-order: the column or key events are ordered by (default: row order).
    pub order: Option<Spanned<String>>,
    /// causal-order: the op values that create an entity (default `["create"]`).
    pub creates: Option<Spanned<Vec<String>>>,
    /// own-writes: the pool whose captures (by actor) are the entities each actor created.
    pub pool: Option<Spanned<String>>,
    /// own-writes: instead of a pool, where each actor's created entities
    /// are read from (the first column of each row, or the records' entities).
    pub created: Option<Spanned<StateSource>>,
    /// field-merge: the edits that must all survive.
    pub edits: Option<Spanned<Vec<FieldEditSpec>>>,
    /// field-merge: where each actor's own edits are read from, with the
    /// final state: records with `entity`, `field` and `value`.
    pub edit_log: Option<Spanned<StateSource>>,
    /// sql: the rows the query must return, in order.
    pub rows: Option<Spanned<Vec<Vec<serde_json::Value>>>>,
    /// sql: the query must return no rows.
    pub empty: Option<Spanned<bool>>,
    /// resources: the service whose use is limited (default: every service).
    pub service: Option<Spanned<String>>,
    /// resources: the most resident memory a service may peak at ("200MiB").
    pub max_rss: Option<Spanned<crate::fault::ByteSize>>,
    /// resources: the most CPU time (user + system) a service may use.
    pub max_cpu: Option<Dur>,
}

impl CheckSpec {
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(self.kind.as_str())
    }

    /// idempotent: the action labels one round runs (default `["sync"]`).
    pub fn round_labels(&self) -> Vec<String> {
        self.round.as_ref().map_or_else(|| vec!["sync".to_string()], |r| r.get_ref().clone())
    }

    /// idempotent: how many more rounds run (default 3).
    pub fn n_rounds(&self) -> u32 {
        self.rounds.as_ref().map_or(3, |r| *r.get_ref())
    }

    /// The f-name keys that are set, with their key names.
    pub fn f_names(&self) -> Vec<(&'static str, &Spanned<String>)> {
        let all = [
            ("add", &self.add),
            ("read", &self.read),
            ("write", &self.write),
            ("enqueue", &self.enqueue),
            ("dequeue", &self.dequeue),
            ("drain", &self.drain),
            ("generate", &self.generate),
        ];
        all.into_iter().filter_map(|(k, v)| v.as_ref().map(|v| (k, v))).collect()
    }

    /// Keys that are set, with their spans, for checking they fit the kind.
    pub fn set_keys(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        let mut keys: Vec<(&'static str, std::ops::Range<usize>)> =
            self.f_names().into_iter().map(|(k, v)| (k, v.span())).collect();
        keys.extend(self.model.as_ref().map(|m| ("model", m.span())));
        keys.extend(self.mode.as_ref().map(|m| ("mode", m.span())));
        keys.extend(self.total.as_ref().map(|t| ("total", t.span())));
        keys.extend(self.negative_allowed.as_ref().map(|t| ("negative_allowed", t.span())));
        keys.extend(self.key.as_ref().map(|k| ("key", k.span())));
        keys.extend(self.value.as_ref().map(|v| ("value", v.span())));
        keys.extend(self.timeout.map(|_| ("timeout", 0..0)));
        keys.extend(self.steps.as_ref().map(|s| ("steps", s.span())));
        keys.extend(self.entry.as_ref().map(|e| ("entry", e.span())));
        keys.extend(self.min.map(|_| ("min", 0..0)));
        keys.extend(self.max.map(|_| ("max", 0..0)));
        keys.extend(self.state.as_ref().map(|v| ("state", v.span())));
        keys.extend(self.actors.as_ref().map(|v| ("actors", v.span())));
        keys.extend(self.ignore.as_ref().map(|v| ("ignore", v.span())));
        keys.extend(self.entity.as_ref().map(|v| ("entity", v.span())));
        keys.extend(self.shared_only.as_ref().map(|v| ("shared_only", v.span())));
        keys.extend(self.rounds.as_ref().map(|v| ("rounds", v.span())));
        keys.extend(self.round.as_ref().map(|v| ("round", v.span())));
        keys.extend(self.field.as_ref().map(|v| ("field", v.span())));
        keys.extend(self.op.as_ref().map(|v| ("op", v.span())));
        keys.extend(self.order.as_ref().map(|v| ("order", v.span())));
        keys.extend(self.creates.as_ref().map(|v| ("creates", v.span())));
        keys.extend(self.pool.as_ref().map(|v| ("pool", v.span())));
        keys.extend(self.created.as_ref().map(|v| ("created", v.span())));
        keys.extend(self.edits.as_ref().map(|v| ("edits", v.span())));
        keys.extend(self.edit_log.as_ref().map(|v| ("edit_log", v.span())));
        keys.extend(self.rows.as_ref().map(|v| ("rows", v.span())));
        keys.extend(self.empty.as_ref().map(|v| ("empty", v.span())));
        keys.extend(self.service.as_ref().map(|v| ("service", v.span())));
        keys.extend(self.max_rss.as_ref().map(|v| ("max_rss", v.span())));
        keys.extend(self.max_cpu.map(|_| ("max_cpu", 0..0)));
        keys
    }
}

impl Scenario {
    /// The variables the scenario's templates read as `{env.NAME}`.
    pub fn env_refs(&self) -> std::collections::BTreeSet<String> {
        crate::validate::env_refs(self)
    }

    /// Whether the scenario carries `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t.get_ref() == tag)
    }
}

#[cfg(test)]
mod tests {
    const BASE: &str = r#"
name = "t"
tags = ["smoke", "extended"]
env_required = ["DB_URL"]
[service.kv]
command = ["kv", "{env.KV_BIN}"]
env = { TOKEN = "{env.TOKEN}" }
[client]
kind = "http"
base = "http://{env.HOST}:{service.kv.port}"
[[action]]
f = "get"
request = { path = "/{env.PREFIX}/x" }
"#;

    #[test]
    fn seeds_are_any_u64_as_integers_or_text() {
        let seed = |text: &str| crate::parse(&format!("name = \"s\"\n{text}\n"), "s.toml").map(|s| s.seed);
        assert_eq!(seed("seed = 7").unwrap(), Some(7));
        assert_eq!(seed("seed = \"18446744073709551615\"").unwrap(), Some(u64::MAX));
        assert_eq!(seed("").unwrap(), None);
        assert!(seed("seed = -1").is_err());
        let err = seed("seed = \"x\"").unwrap_err().to_string();
        assert!(err.contains("s.toml:2:8") && err.contains("invalid seed \"x\""), "{err}");
        let err = seed("seed = 99999999999999999999").unwrap_err().to_string();
        assert!(err.contains("invalid seed 99999999999999999999; expected a whole number"), "{err}");
    }

    #[test]
    fn env_refs_collect_every_template_and_tags_are_kept() {
        let s = crate::parse(BASE, "t.toml").unwrap();
        let refs: Vec<String> = s.env_refs().into_iter().collect();
        assert_eq!(refs, ["HOST", "KV_BIN", "PREFIX", "TOKEN"]);
        assert!(s.has_tag("extended") && !s.has_tag("stress"));
        assert_eq!(s.env_required[0].get_ref(), "DB_URL");
    }

    #[test]
    fn bad_tags_and_variable_names_are_located() {
        let text = BASE.replace("\"DB_URL\"", "\"1DB\"").replace("\"smoke\"", "\"no spaces\"");
        let err = crate::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(err.contains("t.toml:4:17: `env_required` names `1DB`, which is not a variable name"), "{err}");
        assert!(err.contains("t.toml:3:9: tag `no spaces` is not a name"), "{err}");
    }
}
