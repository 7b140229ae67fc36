"""Commands: ``dataset``, ``download``, ``import-archive``, ``train``, ``model``, ``backtest``.

``model validate`` runs the sandboxed validator locally; the other ``model`` subcommands are the
control channel's ``model.*`` commands sent to the running engine (journalled there).
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.errors import ConfigError

# Every `appliance` command builds this parser: what a command needs is imported when it runs,
# so that `appliance engine` or `appliance ctl` never loads the replay's simulator and recorder.
if TYPE_CHECKING:
    from app.models.replay import Replayed, ReplayItem, SimSeries

_SIM_PREFIX = "sim:"
_WARMUP_MS = 20 * 60_000  # the risk ATR (14 one-minute bars) and the windows warm up first


def sim_source(series: SimSeries) -> str:
    """A simulator series as a source string (kept in dataset sidecars and model metadata)."""
    return (
        f"{_SIM_PREFIX}symbols={','.join(series.symbols)};seed={series.seed};"
        f"start_ms={series.start_ms};minutes={series.minutes}"
    )


def parse_sim(source: str) -> SimSeries:
    from app.models.replay import SimSeries

    fields = dict(kv.split("=", 1) for kv in source.removeprefix(_SIM_PREFIX).split(";"))
    return SimSeries(
        tuple(fields["symbols"].split(",")),
        int(fields["seed"]),
        int(fields["start_ms"]),
        int(fields["minutes"]),
    )


def open_sources(sources: Sequence[str]) -> Iterator[Replayed]:
    """Events of every source in turn (give recordings in time order: week files sort so)."""
    from app.models.replay import recording_events, sim_events

    for src in sources:
        if src.startswith(_SIM_PREFIX):
            yield from sim_events(parse_sim(src))
        else:
            yield from recording_events(_recording(src))


def open_inputs(sources: Sequence[str]) -> Iterator[ReplayItem]:
    """:func:`open_sources` with the engine's warm-up inputs (recorded, or for a simulator series
    the klines an engine would fetch at its start): what a backtest replays."""
    from app.models.replay import recording_inputs, sim_inputs

    for src in sources:
        if src.startswith(_SIM_PREFIX):
            yield from sim_inputs(parse_sim(src))
        else:
            yield from recording_inputs(_recording(src))


def _recording(src: str) -> Path:
    path = Path(src)
    if not path.exists():
        raise ConfigError(f"recording {path} does not exist")
    return path


def _sources(ns: argparse.Namespace) -> list[str]:
    from app.models.replay import DAY0_MS, SimSeries

    if ns.replay:
        return [str(p) for p in ns.replay]
    symbols = tuple(s.strip().lower() for s in ns.sim_symbols.split(",") if s.strip())
    return [
        sim_source(
            SimSeries(symbols, ns.sim_seed * 1000 + k, DAY0_MS + k * 6 * 3_600_000, ns.sim_minutes)
        )
        for k in range(ns.sim_segments)
    ]


def _source_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--replay", type=Path, nargs="+", help="recordings: .jsonl, .db, .db.zst")
    p.add_argument("--sim-minutes", type=int, default=60, help="else: simulate this long")
    p.add_argument("--sim-segments", type=int, default=1, help="segments k: seed*1000+k, 6 h apart")
    p.add_argument("--sim-seed", type=int, default=1)
    p.add_argument("--sim-symbols", default="btcusdt,ethusdt")


# -- dataset -----------------------------------------------------------------------------------


def _cmd_dataset(ns: argparse.Namespace) -> int:
    from app.models.dataset import DEFAULT_FEATURES, DatasetSpec, build

    spec = DatasetSpec(
        features=tuple(ns.features.split(",")) if ns.features else DEFAULT_FEATURES,
        bar_interval_s=ns.bar_interval_s,
        horizon_bars=ns.horizon_bars,
        threshold_bps=ns.threshold_bps,
        take_profit_bps=ns.take_profit_bps,
        stop_loss_bps=ns.stop_loss_bps,
        max_gap_s=ns.max_gap_s,
    )
    summary = build([(src, open_sources([src])) for src in _sources(ns)], spec, ns.out)
    json.dump(summary, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


# -- download ----------------------------------------------------------------------------------


def parse_time_ms(text: str) -> int:
    """Epoch milliseconds, or an ISO 8601 date/time (UTC unless it says otherwise)."""
    from datetime import UTC, datetime

    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"{text!r} is neither epoch ms nor an ISO date/time") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _cmd_download(ns: argparse.Namespace) -> int:
    from app import config as config_mod
    from app.models.download import DownloadSpec, download

    spec = DownloadSpec(
        symbols=tuple(s.strip().upper() for s in ns.symbols.split(",") if s.strip()),
        start_ms=parse_time_ms(ns.start),
        end_ms=parse_time_ms(ns.end),
        intervals=tuple(i for i in ns.intervals.split(",") if i),
        trades=not ns.no_trades,
        funding=not ns.no_funding,
        mark_interval="" if ns.mark_interval == "none" else ns.mark_interval,
        page_limit=ns.page_limit,
        budget_share=ns.budget_share,
    )
    base_url = ns.rest_url or config_mod.EXCHANGE_PROFILES[ns.exchange][0]
    out = ns.out if ns.out is not None else ns.data_dir / "market"
    summary = download(spec, base_url, out)
    print(json.dumps(summary, indent=1))
    return 0


def _cmd_import_archive(ns: argparse.Namespace) -> int:
    from dataclasses import asdict

    from app.models.public_archive import import_archives

    out = ns.out if ns.out is not None else ns.data_dir / "market"
    summary = import_archives(ns.files, out, checksum=not ns.no_checksum)
    print(json.dumps(asdict(summary), indent=1))
    return 0


# -- train -------------------------------------------------------------------------------------


def _default_model(ns: argparse.Namespace) -> int:
    script = Path(__file__).resolve().parents[2] / "models" / "make_default.py"
    spec = importlib.util.spec_from_file_location("make_default", script)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{script} not found: --default needs a working copy")
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_default"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    args = ["--seed", str(ns.seed)]
    if ns.out is not None:
        args += ["--out", str(ns.out)]
    if ns.segment_minutes is not None:
        args += ["--segment-minutes", str(ns.segment_minutes)]
    code: int = module.main(args)
    return code


def _cmd_train(ns: argparse.Namespace) -> int:
    if ns.default:
        return _default_model(ns)
    if ns.data is None or ns.out is None:
        raise ConfigError("appliance train needs --data DATASET and --out MODEL (or --default)")
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise ConfigError("training needs torch: pip install 'appliance[train]'") from exc
    from app.engine.inference import load_model
    from app.models.dataset import read
    from app.models.normalize import parse_normalize
    from app.models.train import TrainConfig, train

    norm = parse_normalize(ns.normalize, TrainConfig.clip)
    spec, parts, meta = read(ns.data)
    cfg = TrainConfig(
        rolling=0 if norm is None else norm.window,
        arch=ns.arch,
        window=ns.window,
        label=ns.label,
        hidden=ns.hidden,
        epochs=ns.epochs,
        seed=ns.seed,
        walk_forward=ns.walk_forward,
        int8=ns.int8,
    )
    result = train(cfg, spec, parts, meta)
    tmp = ns.out.with_name(ns.out.name + ".tmp")
    tmp.write_bytes(result.model)
    model = load_model(tmp)  # the engine's own checks, golden vectors included
    tmp.replace(ns.out)
    figures = dict(result.figures)
    if not ns.no_backtest:
        start, end = result.test_range_ms
        # A rolling z-score warms over its N bars too, before the windows.
        warmup_ms = _WARMUP_MS + cfg.rolling * spec.bar_interval_s * 1000
        events = (
            e
            for e in open_sources(meta["sources"])
            if start - warmup_ms <= e[0] // 1_000_000 <= end
        )
        figures["backtest_test_period"] = _backtest(model, events, ns).as_dict()
    print(json.dumps({"model": str(ns.out), "sha256": model.sha256, **figures}, indent=1))
    return 0


# -- backtest ------------------------------------------------------------------------------------


def _backtest(model: Any, events: Iterator[ReplayItem], ns: argparse.Namespace) -> Any:
    from app.models.backtest import run_backtest
    from app.models.replay import (
        ReplayBooks,
        load_depth_snapshots,
        recorded_filters,
        sim_filters,
    )

    first = list(itertools.islice(events, 5000))
    symbols = tuple(sorted({ev.symbol for _, _, ev in first}))
    if getattr(ns, "exchange_info", None):
        filters = recorded_filters(ns.exchange_info)
    else:
        filters = sim_filters(s.lower() for s in symbols)
    snapshots = load_depth_snapshots(ns.snapshots) if getattr(ns, "snapshots", None) else {}
    return run_backtest(
        model, itertools.chain(first, events), filters, symbols, ReplayBooks(snapshots)
    )


def _cmd_backtest(ns: argparse.Namespace) -> int:
    from app.engine.inference import load_model
    from app.models.backtest import format_result

    if ns.save and ns.report is not None:
        raise ConfigError("backtest: give --report DIR or --save, not both")
    model = load_model(ns.model)
    sources = _sources(ns)
    result = _backtest(model, open_inputs(sources), ns)
    if ns.json:
        print(json.dumps(result.as_dict(), indent=1))
    else:
        print(format_result(result))
    if ns.report is not None or ns.save:
        from app.models.report import write_report
        from app.store.reports import new_report_dir

        out = ns.report or new_report_dir(ns.data_dir, model.contract.model_version)
        paths = write_report(result, model, out, sources)
        print(f"report: {paths[1]} (figures in {paths[0]})", file=sys.stderr)
    return 0


# -- model ---------------------------------------------------------------------------------------


def _cmd_validate(ns: argparse.Namespace) -> int:
    from app.models.validate import ValidationLimits, format_report, validate

    limits = ValidationLimits(max_bytes=ns.max_bytes, baseline=ns.baseline)
    report = validate(ns.file, limits)
    if ns.json:
        print(json.dumps(report.as_dict(), indent=1))
    else:
        print(format_report(report, ns.file))
    return 0 if report.ok else 1


def _cmd_model_ctl(ns: argparse.Namespace) -> int:
    import asyncio

    from app import config as config_mod
    from app import contract
    from app.ctl import EngineClient, Reply

    cfg = config_mod.load(ns.data_dir.resolve(), ns.config, None)
    client = EngineClient(cfg.control_socket, actor=ns.actor)
    reply: Reply[Any]
    if ns.action == "add":
        path = contract.PathArgs(path=str(Path(ns.ref).resolve()), name=Path(ns.ref).name)
        reply = asyncio.run(client.call(contract.MODEL_ADD, path))
    elif ns.action == "list":
        reply = asyncio.run(client.call(contract.MODEL_LIST))
    elif ns.action == "activate":
        reply = asyncio.run(client.call(contract.MODEL_ACTIVATE, contract.ModelRef(sha256=ns.ref)))
    elif ns.action == "delete":
        reply = asyncio.run(client.call(contract.MODEL_DELETE, contract.ModelRef(sha256=ns.ref)))
    elif ns.action == "shadow":
        ref = None if ns.ref in (None, "stop", "none") else ns.ref
        reply = asyncio.run(client.call(contract.MODEL_SHADOW, contract.ShadowArgs(sha256=ref)))
    elif ns.action == "promote":
        reply = asyncio.run(client.call(contract.MODEL_PROMOTE))
    elif ns.action == "rollback":
        reply = asyncio.run(client.call(contract.MODEL_ROLLBACK))
    else:
        raise ValueError(f"unknown model action {ns.action!r}")
    out = contract.to_builtins(reply.result) if reply.ok else {"error": reply.error}
    print(json.dumps(out, indent=1))
    return 0 if reply.ok else 1


def register(sub: Any) -> None:
    """Add ``dataset``, ``train``, ``model`` and ``backtest`` to the ``appliance`` parser."""
    from app.models.validate import ValidationLimits

    p = sub.add_parser("dataset", help="recordings or a simulator series -> labelled feature rows")
    _source_flags(p)
    p.add_argument("--out", type=Path, required=True, help=".csv (or .parquet with pyarrow)")
    p.add_argument("--features", help="comma-separated catalogue names (default: the default's)")
    p.add_argument("--bar-interval-s", type=int, default=1)
    p.add_argument("--horizon-bars", type=int, default=120)
    p.add_argument("--threshold-bps", type=float, default=5.0)
    p.add_argument("--take-profit-bps", type=float, default=10.0)
    p.add_argument("--stop-loss-bps", type=float, default=10.0)
    p.add_argument("--max-gap-s", type=float, default=5.0)
    p.set_defaults(func=_cmd_dataset)

    _register_download(sub)

    _register_train(sub)

    p = sub.add_parser("backtest", help="the decision loop over a recording, paper execution")
    p.add_argument("--model", type=Path, required=True)
    _source_flags(p)
    p.add_argument("--snapshots", type=Path, help="REST depth snapshots (diff-depth recordings)")
    p.add_argument("--exchange-info", type=Path, help="recorded exchangeInfo (else the sim's)")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--report", type=Path, metavar="DIR", help="write report.json and report.html into DIR"
    )
    p.add_argument(
        "--save",
        action="store_true",
        help="write the report under <data-dir>/reports/<time>_<model>/ (the panel's Models "
        "page lists those)",
    )
    p.set_defaults(func=_cmd_backtest)

    p = sub.add_parser("model", help="validate model files; manage the engine's model store")
    msub = p.add_subparsers(dest="action", required=True)
    v = msub.add_parser("validate", help="check a file in a sandboxed process")
    v.add_argument("file", type=Path)
    v.add_argument("--json", action="store_true")
    v.add_argument("--max-bytes", type=int, default=ValidationLimits().max_bytes)
    v.add_argument("--baseline", type=Path, default=ValidationLimits().baseline)
    v.set_defaults(func=_cmd_validate)
    for action, ref_help in (
        ("list", None),
        ("add", "model file"),
        ("activate", "sha256 (or a unique prefix)"),
        ("shadow", "sha256, or 'stop'"),
        ("promote", None),
        ("rollback", None),
        ("delete", "sha256"),
    ):
        a = msub.add_parser(action, help=f"model.{action} on the running engine")
        if ref_help is not None:
            a.add_argument("ref", nargs="?" if action == "shadow" else None, help=ref_help)
        a.add_argument("--actor", default="", help="who is asking (journalled)")
        a.set_defaults(func=_cmd_model_ctl)


def _register_train(sub: Any) -> None:
    p = sub.add_parser("train", help="train an MLP or GRU (needs torch), or --default")
    p.add_argument("--default", action="store_true", help="regenerate models/default.onnx")
    p.add_argument("--segment-minutes", type=int, default=None, help="with --default")
    p.add_argument("--data", type=Path, help="a dataset written by appliance dataset")
    p.add_argument("--out", type=Path)
    p.add_argument("--arch", choices=("mlp", "gru"), default="mlp")
    p.add_argument("--label", choices=("horizon", "triple"), default="horizon")
    p.add_argument("--window", type=int, default=16)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--walk-forward", type=int, default=3, help="folds (0: none)")
    p.add_argument("--int8", action="store_true", help="try int8; kept only if faster")
    p.add_argument(
        "--normalize",
        default="fixed",
        metavar="fixed|rolling:N",
        help="fixed: a scaler fitted on the training split, in the graph (default); rolling:N: "
        "a rolling z-score over the last N bars per feature, declared in the contract and "
        "applied by the engine (no decision before N + window - 1 bars)",
    )
    p.add_argument("--no-backtest", action="store_true", help="skip the test-period backtest")
    p.set_defaults(func=_cmd_train)


def _register_download(sub: Any) -> None:
    from app import config as config_mod

    p = sub.add_parser("download", help="history from the exchange's REST into the market store")
    p.add_argument("--symbols", required=True, help="comma-separated, e.g. btcusdt,ethusdt")
    p.add_argument("--start", required=True, help="epoch ms or ISO date/time (UTC)")
    p.add_argument("--end", required=True, help="epoch ms or ISO date/time (UTC), exclusive")
    p.add_argument("--intervals", default="1m", help="kline intervals, comma-separated")
    p.add_argument("--mark-interval", default="1m", help="mark/index price klines, or 'none'")
    p.add_argument("--no-trades", action="store_true", help="skip aggTrades")
    p.add_argument("--no-funding", action="store_true", help="skip the funding rate history")
    p.add_argument("--exchange", choices=sorted(config_mod.EXCHANGE_PROFILES), default="sim")
    p.add_argument("--rest-url", help="override the profile's REST base URL")
    p.add_argument("--out", type=Path, help="market directory (default: <data-dir>/market)")
    p.add_argument("--page-limit", type=int, default=1000, help="rows per request (1..1000)")
    p.add_argument("--budget-share", type=float, default=0.8, help="of the weight limit per min")
    p.set_defaults(func=_cmd_download)

    p = sub.add_parser(
        "import-archive", help="Binance's public archive zips (read from disk) into the store"
    )
    p.add_argument("files", type=Path, nargs="+", help="zip files, or folders holding them")
    p.add_argument("--out", type=Path, help="market directory (default: <data-dir>/market)")
    p.add_argument(
        "--no-checksum", action="store_true", help="import zips without a .CHECKSUM beside them"
    )
    p.set_defaults(func=_cmd_import_archive)
