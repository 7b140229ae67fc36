"""The command contract between the engine and every process that commands it.

One module that the engine (``app.engine.control``, which registers a handler per command), the
panel and ``appliance ctl`` (both through ``app.ctl.EngineClient``) import. A command is a
:class:`Spec`: its name, its argument struct, its result type, whether it changes something
(journalled with actor and peer) or only reads (never journalled), and whether it is slow (it
answers ``{"job": id}`` at once and ``job.status`` polls it).

The wire stays newline-delimited JSON (see ``app.engine.control``); what crosses it is checked on
both sides: the engine converts ``args`` into the command's struct (a wrong or unknown field is a
clear error reply, nothing runs), and the client converts ``result`` into the result type, so a key
renamed on one side is a type error in mypy or a failing contract test, never an empty card.

Prices and money are :class:`~decimal.Decimal` (strings on the wire); timestamps are integer
nanoseconds (``ts_*_ns``) or milliseconds (``ts_*_ms``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic, Literal, TypeVar

import msgspec


class Args(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every command's arguments: unknown fields are refused, not ignored."""


class Result(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every structured result."""


A = TypeVar("A", bound=Args)
R = TypeVar("R")


@dataclass(frozen=True)
class Spec(Generic[A, R]):
    """One command. ``changes``: journalled; ``slow``: answers with a job."""

    name: str
    args: type[A]
    result: type[R]
    doc: str
    changes: bool
    slow: bool = False

    def arg_fields(self) -> dict[str, str]:
        """Argument name -> its type and default, for ``help``."""
        info = msgspec.inspect.type_info(self.args)
        assert isinstance(info, msgspec.inspect.StructType)
        out: dict[str, str] = {}
        for f in info.fields:
            kind = _type_name(f.type)
            out[f.name] = kind if f.required else f"{kind} = {f.default!r}"
        return out


def _type_name(t: msgspec.inspect.Type) -> str:
    if isinstance(t, msgspec.inspect.UnionType):
        return " | ".join(_type_name(x) for x in t.types)
    if isinstance(t, msgspec.inspect.LiteralType):
        return " | ".join(repr(v) for v in t.values)
    if isinstance(t, msgspec.inspect.ListType):
        return f"list[{_type_name(t.item_type)}]"
    if isinstance(t, msgspec.inspect.StructType):
        return t.cls.__name__
    return type(t).__name__.removesuffix("Type").lower()


# -- shared pieces ---------------------------------------------------------------------------------


class NoArgs(Args, frozen=True):
    pass


class EngineStateResult(Result, frozen=True):
    state: Literal["running", "paused", "halted"]


class Alarm(Result, frozen=True):
    id: int
    ts_ns: int
    kind: str
    message: str


class JobStarted(Result, frozen=True):
    """A slow command's immediate answer."""

    job: str


class JobArgs(Args, frozen=True):
    job: str


class JobState(Result, frozen=True):
    id: str
    kind: str
    state: Literal["running", "done", "failed"]
    ts_started_ns: int
    ts_ended_ns: int | None = None
    # The command's own result type once done (``EngineClient.wait`` converts it).
    result: Any = None
    error: str = ""


class CommandHelp(Result, frozen=True):
    name: str
    doc: str
    changes: bool
    slow: bool
    args: dict[str, str]


# -- status and health ----------------------------------------------------------------------------


class LatencyUs(Result, frozen=True):
    """Frame received -> decision made, in microseconds, over the last ``n`` messages."""

    p50: float = 0.0
    p99: float = 0.0
    max: float = 0.0
    n: int = 0


class LastSignal(Result, frozen=True):
    ts_ms: int
    prob: float
    direction: str
    confidence: float
    action: str


class ModelBrief(Result, frozen=True):
    sha256: str
    model_version: str


class TraderStatus(Result, frozen=True):
    model: ModelBrief | None
    decisions: int
    long_signals: int
    short_signals: int
    orders: int
    rejected: int
    skipped: dict[str, int]
    last: dict[str, LastSignal]
    atr_1m: dict[str, float | None]


class ShadowSide(Result, frozen=True):
    """One model's sandboxed paper account in a shadow run."""

    sha256: str
    model_version: str
    equity: Decimal
    pnl: Decimal
    fees: Decimal
    orders: int
    trades: int
    decisions: int


class ShadowRun(Result, frozen=True):
    running: bool
    run_id: int | None = None
    active: ShadowSide | None = None
    shadow: ShadowSide | None = None
    # Bars both models decided on in this run, and on how many they made the same call (long,
    # short or no signal); ``signalled``: bars where at least one of them signalled.
    compared: int = 0
    agreed: int = 0
    signalled: int = 0
    signalled_agreed: int = 0


class AgreementPoint(Result, frozen=True):
    """Active and shadow over one span of the shadow run (``ts_ns``: its start)."""

    ts_ns: int
    compared: int
    agreed: int


class Breaker(Result, frozen=True):
    code: str
    message: str


class RecorderStatus(Result, frozen=True):
    recording: bool
    stop_reason: str
    frames: int
    rows: int
    batches: int
    dropped_records: int
    file: str


class TaskBrief(Result, frozen=True):
    running: bool
    crashes: int


class KeysInfo(Result, frozen=True):
    """What may be shown about the API keys: never the keys."""

    present: bool
    ts_saved_ns: int = 0
    mode: str = ""


class Discrepancy(Result, frozen=True):
    kind: str
    symbol: str
    detail: str


class ReconcileReport(Result, frozen=True):
    ok: bool
    policy: str
    ts_ns: int
    discrepancies: list[Discrepancy] = []
    recovered_fills: int = 0
    recovered_income: int = 0
    queried_orders: int = 0
    unknown_orders: int = 0
    positions: dict[str, str] = {}
    wallet: str = "0"


class LiveStatus(Result, frozen=True):
    mode: Literal["paper", "live"]
    persisted_mode: str
    keys: KeysInfo
    discrepancies: list[Discrepancy]
    last_reconcile: ReconcileReport | None = None
    # Only while a live session is open.
    halted: bool | None = None
    halt_reason: str = ""
    orders_sent: int = 0
    resolved_by_query: int = 0
    clock_offset_ms: int | None = None
    used_weight: int = 0
    weight_limit: int = 0
    blocked_until_ms: int = 0
    stream_connects: int = 0
    stream_connected: bool = False


class Blocker(Result, frozen=True):
    """One reason new entries cannot go now (``app.engine.halts``); exits are never blocked."""

    code: str  # paused, kill_switch, drawdown, daily_loss, cooldown, live_halted, clock_offset,
    # margin_ratio, db_write, stale_feed, warming
    message: str
    symbol: str = ""
    ts_since_ns: int = 0
    # Time until it ends by itself, when it does (a cooldown, the UTC day); None: until cleared.
    seconds_left: float | None = None


class SymbolRules(Result, frozen=True):
    """A symbol's grid on the exchange: prices are multiples of ``tick_size``, quantities of
    ``step_size`` (what the panel rounds its figures to)."""

    tick_size: Decimal
    step_size: Decimal


class Status(Result, frozen=True):
    """``status``: what the engine is doing, for ``ctl``, the dashboard and the Mode page."""

    mode: Literal["paper", "live"]
    state: Literal["running", "paused", "halted"]
    halt_reason: str
    # Can it open a position now? If not, ``blockers`` says why (all of them, each with its reason).
    trading: bool
    blockers: list[Blocker]
    equity: Decimal
    realized: Decimal
    unrealized: Decimal
    fees: Decimal
    funding: Decimal
    positions: dict[str, Decimal]
    # Maintenance margin over equity (Binance liquidates at 1; 0 when flat).
    margin_ratio: Decimal
    open_orders: int | None
    live: LiveStatus
    trader: TraderStatus
    shadow: ShadowRun
    latency_us: LatencyUs
    breakers: list[Breaker]
    pid: int
    uptime_s: float
    symbols: list[str]
    exchange: str
    messages: int
    recorder: RecorderStatus
    tasks: dict[str, TaskBrief]
    alarms: list[Alarm]
    # The traded symbols' exchange rules (upper case; empty until exchangeInfo has answered).
    rules: dict[str, SymbolRules] = {}


class StreamHealth(Result, frozen=True):
    messages: int
    malformed: int
    gaps: int
    resyncs: int
    ts_last_event_ms: int
    ts_last_recv_ns: int
    age_s: float | None
    lag_ms: float
    lag_ms_ewma: float | None


class BookHealth(Result, frozen=True):
    synced: bool
    last_update_id: int
    ts_event_ms: int
    levels: list[int]
    buffered: int
    snapshots: int


class TaskHealth(Result, frozen=True):
    running: bool
    starts: int
    crashes: int
    last_error: str


class Health(Result, frozen=True):
    connected: bool
    connects: int
    reconnects: int
    disconnects: dict[str, int]
    last_disconnect_reason: str
    ts_connected_ns: int
    malformed: int
    malformed_unattributed: int
    streams: dict[str, StreamHealth]
    books: dict[str, BookHealth]
    tasks: dict[str, TaskHealth]
    recorder_alive: bool


# -- engine actions -------------------------------------------------------------------------------


class KillArgs(Args, frozen=True):
    reason: str = "kill switch"


class KillResult(Result, frozen=True):
    state: Literal["running", "paused", "halted"]
    reason: str
    flatten_orders: int
    # False when the kill switch could not be saved (it holds in memory until a restart).
    persisted: bool = True
    warning: str = ""


class BackupDone(Result, frozen=True):
    backup: str
    bytes: int
    sha256: str


class JournalArgs(Args, frozen=True):
    limit: int = 20


class JournalEntry(Result, frozen=True):
    id: int
    ts_ns: int
    actor: str
    cmd: str
    args: Any
    ok: bool
    result: Any


# -- settings -------------------------------------------------------------------------------------


class RiskLimits(Args, frozen=True):
    """The risk limits an operator may change at run time; None leaves a limit as it is.

    Bounds are checked by the engine with the configuration's own rules (``app.config``).
    """

    risk_per_trade: Decimal | None = None
    kelly_fraction: Decimal | None = None
    max_position_notional: Decimal | None = None
    max_leverage: Decimal | None = None
    max_daily_loss: Decimal | None = None
    max_drawdown: Decimal | None = None
    losing_streak: int | None = None
    cooldown_minutes: int | None = None


class SettingsSetArgs(Args, frozen=True):
    risk: RiskLimits | None = None
    symbols: list[str] | None = None


class SettingValue(Result, frozen=True):
    """One setting: its value as text, where it comes from, and its bounds."""

    key: str
    value: str
    source: Literal["default", "toml", "env", "saved", "cli"]
    kind: Literal["decimal", "int", "symbols"]
    low: str = ""
    high: str = ""
    # False when a CLI flag sets it: the flag wins over a saved value until it is removed.
    editable: bool = True


class SettingsView(Result, frozen=True):
    settings: list[SettingValue]
    # Symbols the active model's contract allows (empty: any).
    model_symbols: list[str]


class SettingChange(Result, frozen=True):
    key: str
    old: str
    new: str


class SettingsChanged(Result, frozen=True):
    changed: list[SettingChange]
    settings: SettingsView
    # A symbol change takes effect through an engine restart (feeds, books and features are
    # rebuilt and warmed for the new symbols); the engine exits and its supervisor starts it.
    restarting: bool


# -- live mode ------------------------------------------------------------------------------------


class PreflightCheck(Result, frozen=True):
    name: str
    ok: bool
    detail: str


class Preflight(Result, frozen=True):
    ok: bool
    checks: list[PreflightCheck]
    phrase: str
    ts_ns: int


ExitPolicy = Literal["keep", "cancel", "flatten"]


class ModeSetArgs(Args, frozen=True):
    mode: Literal["paper", "live"]
    confirm: str = ""
    # Leaving live: keep what is open, cancel the orders, or also flatten the positions.
    policy: ExitPolicy = "keep"


class ModeChanged(Result, frozen=True):
    mode: Literal["paper", "live"]
    changed: bool = True
    # Going live: the venue trades only once reconciliation passes.
    halted: bool = False
    halt_reason: str = ""
    reconcile: ReconcileReport | None = None
    # Going back to paper.
    policy: str = ""
    cancelled: int = 0
    flatten_orders: int = 0


class KeysSetArgs(Args, frozen=True):
    api_key: str
    api_secret: str


class KeysSaved(KeysInfo, frozen=True, kw_only=True):
    saved: bool


class ReconcileArgs(Args, frozen=True):
    policy: Literal["wait", "adopt"] = "wait"


# -- models ---------------------------------------------------------------------------------------


class PathArgs(Args, frozen=True):
    path: str
    # The name the file was uploaded as (shown in the store instead of a temporary name).
    name: str = ""


class ModelRef(Args, frozen=True):
    sha256: str


class ShadowArgs(Args, frozen=True):
    # None stops the shadow run.
    sha256: str | None


class ModelInfo(Result, frozen=True):
    sha256: str
    model_version: str
    path: str
    features: list[str]
    window: int
    bar_interval_s: float
    output: str
    long_threshold: float
    short_threshold: float
    horizon_bars: int
    symbols: list[str]
    training_range: Any = None
    metrics: Any = None
    # The golden vectors every load reproduces within ``golden_tolerance``.
    golden_cases: int = 0
    golden_tolerance: float = 0.0


class Validation(Result, frozen=True):
    ok: bool
    problems: list[str]
    model: ModelInfo | None = None
    latency_us: float | None = None
    baseline_us: float | None = None
    budget_us: float | None = None
    notes: list[str] = []


class StoredModel(Result, frozen=True):
    sha256: str
    bytes: int
    model_version: str
    added_ts_ns: int
    source: str
    role: Literal["active", "shadow", ""]
    previous: bool
    # What the validator found when the model was stored (None until the engine has checked a
    # model stored without it, such as the shipped default: it does so in the background).
    validation: Validation | None = None


class ModelAdded(Result, frozen=True):
    added: StoredModel
    # True when the same bytes were already stored (nothing was added).
    duplicate: bool
    validation: Validation


class ModelList(Result, frozen=True):
    active: str | None
    shadow: str | None
    rollback_to: str | None
    models: list[StoredModel]
    shadow_run: ShadowRun
    # Uploads being validated or waiting for the validator (one runs at a time).
    validating: int = 0
    # The shadow run's agreement with the active model over time, oldest first.
    agreement: list[AgreementPoint] = []


class ModelSwitched(Result, frozen=True):
    active: ModelInfo
    replaced: str | None


class ShadowChanged(Result, frozen=True):
    shadow: ModelInfo | None
    run_id: int | None = None
    stopped_run: int | None = None


class ModelDeleted(Result, frozen=True):
    deleted: str


# -- the commands ---------------------------------------------------------------------------------

STATUS = Spec(
    "status", NoArgs, Status, "mode, state, equity, model, breakers, tasks, alarms", False
)
HEALTH = Spec("health", NoArgs, Health, "per-stream feed health, books and task states", False)
PAUSE = Spec("pause", NoArgs, EngineStateResult, "stop making new decisions (persisted)", True)
RESUME = Spec("resume", NoArgs, EngineStateResult, "clear pause and the kill switch", True)
KILL = Spec("kill", KillArgs, KillResult, "kill switch: cancel, flatten, halt until resume", True)
BACKUP = Spec("backup", NoArgs, BackupDone, "back up the trading database now", True, slow=True)
JOURNAL = Spec("journal", JournalArgs, list[JournalEntry], "the last N journalled commands", False)
JOB_STATUS = Spec("job.status", JobArgs, JobState, "poll a slow command's job", False)
HELP = Spec("help", NoArgs, list[CommandHelp], "list the commands and their arguments", False)
SETTINGS_GET = Spec(
    "settings.get", NoArgs, SettingsView, "risk limits and symbols, with their sources", False
)
SETTINGS_SET = Spec(
    "settings.set", SettingsSetArgs, SettingsChanged, "change risk limits or symbols (saved)", True
)
MODE_PREFLIGHT = Spec(
    "mode.preflight", NoArgs, Preflight, "live preflight checklist; returns the phrase", True
)
MODE_SET = Spec(
    "mode.set", ModeSetArgs, ModeChanged, "live with the preflight's phrase, or paper", True
)
KEYS_SET = Spec("keys.set", KeysSetArgs, KeysSaved, "store API keys (write-only, 0600)", True)
LIVE_STATUS = Spec("live.status", NoArgs, LiveStatus, "live halt, discrepancies, clock", False)
LIVE_RECONCILE = Spec(
    "live.reconcile", ReconcileArgs, ReconcileReport, "reconcile now; adopt accepts", True
)
MODEL_VALIDATE = Spec(
    "model.validate", PathArgs, Validation, "validate a model file", False, slow=True
)
MODEL_ADD = Spec("model.add", PathArgs, ModelAdded, "validate a file, add it", True, slow=True)
MODEL_LIST = Spec("model.list", NoArgs, ModelList, "stored models and the shadow run", False)
MODEL_ACTIVATE = Spec("model.activate", ModelRef, ModelSwitched, "make a model active", True)
MODEL_SHADOW = Spec(
    "model.shadow", ShadowArgs, ShadowChanged, "run a model beside the active one; null stops", True
)
MODEL_PROMOTE = Spec("model.promote", NoArgs, ModelSwitched, "the shadow becomes active", True)
MODEL_ROLLBACK = Spec(
    "model.rollback", NoArgs, ModelSwitched, "the previous active model again", True
)
MODEL_DELETE = Spec("model.delete", ModelRef, ModelDeleted, "remove a stored model", True)

AnySpec = Spec[Any, Any]


def encode(value: object) -> bytes:
    """JSON for the wire: structs, Decimals (as strings) and paths (as strings)."""
    return msgspec.json.encode(value, enc_hook=str)


def to_builtins(value: object) -> Any:
    """Plain JSON-able data (for the journal)."""
    return msgspec.to_builtins(value, enc_hook=str)


# -- backups ---------------------------------------------------------------------------------------
# Whole-state archives (app.store.archive) and restore (app.store.restore). ``backup`` (above)
# makes an archive once the engine registers app.engine.backups.backup_commands for it.


class ArchiveBrief(Result, frozen=True):
    name: str
    bytes: int
    ts_created_ns: int
    # Why it was made: "" on demand, "scheduled" (daily), "pre-restore" (the state a restore
    # replaced), "uploaded" (taken in by backup.import; named for when it arrived).
    label: str


class BackupList(Result, frozen=True):
    archives: list[ArchiveBrief]
    # A restore staged and waiting for the engine's restart ("" when none).
    pending_restore: str = ""


class BackupRef(Args, frozen=True):
    # An archive's name in <data-dir>/backups (as backup.list shows it): never a path.
    name: str


class RestoreStaged(Result, frozen=True):
    archive: str
    # The archive of the state it replaces (kept in the backups like any other).
    pre_restore: str
    members: list[str]
    # The engine restarts to swap the members in while no database is open; it comes back paused.
    restarting: bool


class ArchiveImported(Result, frozen=True):
    # As backup.list shows it from now on (restore it by this name).
    archive: ArchiveBrief
    # From its manifest: when and by which version it was made, what it holds.
    ts_made_ns: int
    app_version: str
    members: list[str]


BACKUP_LIST = Spec("backup.list", NoArgs, BackupList, "backup archives on the appliance", False)
BACKUP_IMPORT = Spec(
    "backup.import",
    PathArgs,
    ArchiveImported,
    "verify an archive file made elsewhere and list it among the backups",
    True,
    slow=True,
)
BACKUP_RESTORE = Spec(
    "backup.restore",
    BackupRef,
    RestoreStaged,
    "verify an archive, back up the current state, restart into the archive (paused)",
    True,
    slow=True,
)


COMMANDS: dict[str, AnySpec] = {
    s.name: s
    for s in (
        STATUS,
        HEALTH,
        PAUSE,
        RESUME,
        KILL,
        BACKUP,
        JOURNAL,
        JOB_STATUS,
        HELP,
        SETTINGS_GET,
        SETTINGS_SET,
        MODE_PREFLIGHT,
        MODE_SET,
        KEYS_SET,
        LIVE_STATUS,
        LIVE_RECONCILE,
        MODEL_VALIDATE,
        MODEL_ADD,
        MODEL_LIST,
        MODEL_ACTIVATE,
        MODEL_SHADOW,
        MODEL_PROMOTE,
        MODEL_ROLLBACK,
        MODEL_DELETE,
        BACKUP_LIST,
        BACKUP_IMPORT,
        BACKUP_RESTORE,
    )
}
