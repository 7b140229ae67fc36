"""``appliance import-archive``: Binance's public archive zips, built here in the documented layout
(one CSV per zip, with or without a header line, a ``.CHECKSUM`` beside each), imported into the
market store and read back through the recording readers as a download would be."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys
import zipfile
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from app.engine.decode import decode_event
from app.engine.events import AggTrade, Kline, MarkPriceUpdate
from app.models.public_archive import ArchiveError, describe, import_archives
from app.sim.recordings import iter_recording
from tests.paths import REPO

DAY_MS = 1_704_153_600_000  # 2024-01-02T00:00:00Z, a Tuesday
MINUTES = 90  # of the day that have data
_AGG_HEADER = (
    "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker"
)
_KLINE_HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
    "taker_buy_quote_volume,ignore"
)


def _zip(folder: Path, name: str, rows: list[list[object]], header: str | None) -> Path:
    """A zip holding ``<name>.csv``, with its ``.CHECKSUM`` beside it."""
    text = io.StringIO()
    if header:
        text.write(header + "\n")
    csv.writer(text, lineterminator="\n").writerows(rows)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{name}.csv", text.getvalue())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (folder / f"{name}.zip.CHECKSUM").write_text(f"{digest}  {path.name}\n")
    return path


def _price(minute: int) -> Decimal:
    return Decimal("42000.0") + Decimal(minute % 17) * Decimal("0.5")


def build_archive(root: Path, symbol: str = "BTCUSDT") -> dict[str, int]:
    """A day of one symbol laid out as the archive's folders are: aggTrades (with a header, as
    newer files have), 1-minute klines (without one, as older files have), mark and index price
    klines, and the month's funding rates. Returns the row counts."""
    trades, klines, marks, index = [], [], [], []
    agg = 5_000_000
    for m in range(MINUTES):
        t0 = DAY_MS + m * 60_000
        p = _price(m)
        for k in range(3):  # three trades a minute, 20 s apart
            trades.append([agg, f"{p + k:.1f}", "0.010", agg * 2, agg * 2 + 1, t0 + k * 20_000,
                           "true" if k % 2 else "false"])  # fmt: skip
            agg += 1
        row = [t0, f"{p:.1f}", f"{p + 2:.1f}", f"{p:.1f}", f"{p + 2:.1f}", "0.030", t0 + 59_999,
               "1260.03", 3, "0.010", "420.01", "0"]  # fmt: skip
        klines.append(row)
        marks.append([t0, f"{p:.1f}", f"{p:.1f}", f"{p:.1f}", f"{p + 1:.1f}", "0", t0 + 59_999,
                      "0", 60, "0", "0", "0"])  # fmt: skip
        index.append([t0, f"{p:.1f}", f"{p:.1f}", f"{p:.1f}", f"{p + Decimal('0.5'):.1f}", "0",
                      t0 + 59_999, "0", 60, "0", "0", "0"])  # fmt: skip
    funding = [[DAY_MS - 86_400_000 + h * 3_600_000, 8, f"{0.0001 * (h // 8 + 1):.6f}"]
               for h in range(0, 72, 8)]  # fmt: skip
    base = root / "data" / "futures" / "um" / "daily"
    _zip(base / "aggTrades" / symbol, f"{symbol}-aggTrades-2024-01-02", trades, _AGG_HEADER)
    _zip(base / "klines" / symbol / "1m", f"{symbol}-1m-2024-01-02", klines, None)
    _zip(base / "markPriceKlines" / symbol / "1m", f"{symbol}-1m-2024-01-02", marks, _KLINE_HEADER)
    _zip(base / "indexPriceKlines" / symbol / "1m", f"{symbol}-1m-2024-01-02", index, None)
    monthly = root / "data" / "futures" / "um" / "monthly" / "fundingRate" / symbol
    _zip(monthly, f"{symbol}-fundingRate-2024-01", funding,
         "calc_time,funding_interval_hours,last_funding_rate")  # fmt: skip
    return {"trades": len(trades), "klines": len(klines), "marks": len(marks)}


def test_names_say_what_a_file_holds(tmp_path: Path) -> None:
    f = describe(tmp_path / "markPriceKlines" / "BTCUSDT" / "1m" / "BTCUSDT-1m-2024-01-02.zip")
    assert (f.symbol, f.kind, f.interval) == ("BTCUSDT", "markPriceKlines", "1m")
    assert (f.start_ms, f.end_ms) == (DAY_MS, DAY_MS + 86_400_000)
    f = describe(tmp_path / "BTCUSDT-fundingRate-2023-12.zip")
    assert f.kind == "fundingRate" and f.end_ms - f.start_ms == 31 * 86_400_000
    assert describe(tmp_path / "ETHUSDT-5m-2024-01.zip").kind == "klines"
    with pytest.raises(ArchiveError, match="not a Binance archive name"):
        describe(tmp_path / "BTCUSDT-bookDepth-2024-01-02.zip")


def test_an_archive_day_reads_back_like_a_recording(tmp_path: Path) -> None:
    counts = build_archive(tmp_path / "archive")
    market = tmp_path / "market"
    summary = import_archives([tmp_path / "archive"], market)
    assert summary.checksums == "verified" and len(summary.files) == 5
    (week,) = sorted(market.glob("market_*.db"))
    assert summary.written == {week.name: sum(counts.values())}
    kinds: Counter[str] = Counter()
    last_ts, trade_ids, rates = 0, [], set()
    for frame in iter_recording(week):
        assert frame.ts_ns >= last_ts  # in time order
        last_ts = frame.ts_ns
        ev = decode_event(frame.data)
        kinds[type(ev).__name__] += 1
        if isinstance(ev, AggTrade):
            trade_ids.append(ev.agg_trade_id)
            assert frame.ts_ns == ev.ts_trade_ms * 1_000_000
        elif isinstance(ev, Kline):
            assert ev.bar.closed and ev.bar.interval == "1m"
        elif isinstance(ev, MarkPriceUpdate):
            assert Decimal(ev.index_price) == Decimal(ev.mark_price) - Decimal("0.5")
            rates.add(ev.funding_rate)
    assert kinds == {"AggTrade": counts["trades"], "Kline": counts["klines"],
                     "MarkPriceUpdate": counts["marks"]}  # fmt: skip
    assert trade_ids == list(range(5_000_000, 5_000_000 + counts["trades"]))
    # The rate settled at 00:00 on the day is in force until the next settlement (08:00).
    assert rates == {"0.000400"}
    assert not (market / "import").exists() or not any((market / "import").glob("*.db"))
    again = import_archives([tmp_path / "archive"], market)
    assert again.written == {week.name: 0}  # the same job is imported once


def test_a_file_given_twice_counts_once(tmp_path: Path) -> None:
    counts = build_archive(tmp_path / "archive")
    zips = sorted((tmp_path / "archive").rglob("*aggTrades*.zip"))
    summary = import_archives([*zips, *zips], tmp_path / "market")
    assert sum(summary.written.values()) == counts["trades"]


def test_checksums_are_required_and_checked(tmp_path: Path) -> None:
    build_archive(tmp_path / "archive")
    (zipped,) = sorted((tmp_path / "archive").rglob("*aggTrades*.zip"))
    sidecar = zipped.with_name(zipped.name + ".CHECKSUM")
    sidecar.write_text("0" * 64 + f"  {zipped.name}\n")
    with pytest.raises(ArchiveError, match="does not match"):
        import_archives([zipped], tmp_path / "market")
    sidecar.unlink()
    with pytest.raises(ArchiveError, match="--no-checksum"):
        import_archives([zipped], tmp_path / "market")
    summary = import_archives([zipped], tmp_path / "market", checksum=False)
    assert summary.checksums == "not checked" and sum(summary.written.values()) > 0


def test_a_damaged_file_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "archive"
    _zip(folder, "BTCUSDT-aggTrades-2024-01-02", [[1, "42000", "x", 1, 1, DAY_MS, "false"]], None)
    _zip(folder, "BTCUSDT-1m-2024-01-02", [[DAY_MS, "1", "1"]], None)
    with pytest.raises(ArchiveError, match=r"BTCUSDT-1m-2024-01-02.zip: row 1 is not a klines"):
        import_archives([folder / "BTCUSDT-1m-2024-01-02.zip"], tmp_path / "market")
    bad = folder / "BTCUSDT-5m-2024-01-02.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ArchiveError, match="not a zip file"):
        import_archives([bad], tmp_path / "market", checksum=False)


def test_the_command(tmp_path: Path) -> None:
    counts = build_archive(tmp_path / "archive")
    data = tmp_path / "data"
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "--data-dir", str(data), "import-archive",
         str(tmp_path / "archive")],
        capture_output=True, text=True, timeout=100, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert sum(summary["written"].values()) == sum(counts.values())
    assert list((data / "market").glob("market_*.db"))
