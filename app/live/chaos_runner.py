"""A minimal live process for crash tests: the engine's live side without market data or model.

``python -m app.live.chaos_runner --data-dir D --rest-url U --ws-url W [--symbols btcusdt]
[--keys KEY SECRET] [--go-live] [--entry SIDE:QTY:ATR] [--policy wait|adopt]``

It builds exactly what the engine builds (:class:`~app.live.mode.LiveController` over the order
ledger in ``D/orders.db``, a :class:`~app.engine.risk.RiskGate` whose client-id boot counter is
persisted), restores a persisted live mode (live but halted, then reconciled), optionally goes
live through the preflight and its confirmation phrase, optionally sends one entry through the
gate and the live venue, and prints one JSON object per step on stdout. With
``APPLIANCE_LIVE_CHAOS=after_send`` the order path SIGKILLs the process right after the order's
answer arrives and before it is recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from app.clock import SystemClock
from app.config import LiveConfig, RiskConfig, load
from app.engine.orders import ClientOrderIds, Side, round_price
from app.engine.risk import Approved, Intent, RiskContext, RiskGate
from app.live import keys
from app.live.ledger import OrderLedger
from app.live.mode import LiveController


def _say(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}, default=str) + "\n")
    sys.stdout.flush()


async def main(args: argparse.Namespace) -> int:
    clock = SystemClock()
    cfg = load(
        args.data_dir,
        environ={},
        exchange={"rest_url": args.rest_url, "ws_url": args.ws_url},
        feed={"symbols": args.symbols},
    )
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    live_cfg = LiveConfig(
        reconcile_interval_s=3600.0, reconcile_policy=args.policy, order_timeout_s=2.0
    )
    ledger = OrderLedger(cfg.data_dir / "orders.db")
    boot = int(await ledger.get_state("runner.boot", 0)) + 1
    await ledger.set_state("runner.boot", boot, clock.time_ns())
    risk_cfg = RiskConfig(max_position_notional=Decimal("100000"), max_leverage=Decimal("10"))
    gate = RiskGate(risk_cfg, clock, ClientOrderIds(boot))
    live = LiveController(cfg, live_cfg, clock, gate, {}, ledger=ledger)
    try:
        if args.keys:
            keys.save_keys(cfg.data_dir, args.keys[0], args.keys[1], clock.time_ns())
        report = await live.restore()
        venue = live.venue
        _say(
            "restored",
            mode=live.mode,
            halted=venue.halted if venue else None,
            report=report.as_dict() if report else None,
        )
        if args.go_live:
            pre = await live.preflight()
            _say("preflight", **pre.as_dict())
            report = await live.go_live(pre.phrase)
            _say("live", halted=live.halted, report=report.as_dict())
        venue = live.venue
        if args.entry and venue is not None:
            side, qty, atr = args.entry.split(":")
            symbol = cfg.feed.symbols[0].upper()
            tick = live.filters[symbol].tick_size
            price = round_price(Decimal(await _last_price(live, symbol)), tick, Side(side))
            intent = Intent(
                symbol, Side(side), 0.9, price, Decimal(atr), "chaos", clock.time_ns(),
                qty=Decimal(qty),
            )  # fmt: skip
            context = RiskContext(venue.snapshot(), live.filters.get(symbol), venue.pending_qty())
            decision = gate.check(intent, context)
            if not isinstance(decision, Approved):
                _say("refused", code=str(decision.code), message=decision.message)
                return 2
            _say("sending", client_id=decision.order.client_id)
            update = await venue.place(decision.order, "chaos test entry")
            _say(
                "placed",
                client_id=update.order.client_id,
                status=str(update.status),
                filled=str(update.filled_qty),
            )
        _say("done", **(await live.status()))
    finally:
        await live.close()
        ledger.close()
    return 0


async def _last_price(live: LiveController, symbol: str) -> str:
    session = live.session
    assert session is not None
    rows = await session.client.position_risk()
    for row in rows:
        if row["symbol"] == symbol:
            return str(row["markPrice"])
    raise RuntimeError(f"no mark price for {symbol}")


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.live.chaos_runner")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--rest-url", required=True)
    parser.add_argument("--ws-url", required=True)
    parser.add_argument("--symbols", default="btcusdt")
    parser.add_argument("--keys", nargs=2, metavar=("KEY", "SECRET"))
    parser.add_argument("--go-live", action="store_true")
    parser.add_argument("--entry", help="SIDE:QTY:ATR, e.g. BUY:0.010:50")
    parser.add_argument("--policy", default="wait", choices=("wait", "adopt"))
    return asyncio.run(main(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(cli())
