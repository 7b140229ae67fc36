"""Runtime settings: ``settings.get`` and ``settings.set`` for the risk limits and the symbols.

A change is validated by the configuration's own rules (``app.config.with_changes``: the same bounds
a TOML file must respect), checked against the active model's contract and the exchange's symbols,
saved in the trading database (``settings.runtime``, applied over TOML and environment at the next
start, under CLI flags), and applied: risk limits at once (the gate reads its config per check);
symbols through a restart of the engine, because the feed's subscriptions, the books, the feature
windows and the risk ATR are all built per symbol at start and warmed there from REST klines. The
control server journals the command with the old and new values (the result).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from app import config, contract
from app.binance.filters import SymbolFilters
from app.clock import Clock
from app.config import AppConfig
from app.engine.control import Handlers
from app.engine.inference import InferenceSlot
from app.errors import ControlError
from app.store import trading
from app.store.writer import DbWriter

log = logging.getLogger(__name__)

SAVED_KEY = "settings.runtime"


def load_saved(db: DbWriter) -> dict[str, object]:
    """The saved runtime settings ("section.key" -> value text), read at start."""
    saved = db.call_sync(lambda c: trading.get_setting(c, SAVED_KEY, {}))
    return dict(saved) if isinstance(saved, dict) else {}


class RuntimeSettings:
    """Owns the engine's current :class:`AppConfig` as far as runtime settings go."""

    def __init__(
        self,
        cfg: AppConfig,
        clock: Clock,
        db: DbWriter,
        slot: InferenceSlot,
        filters: Mapping[str, SymbolFilters],
        on_applied: Callable[[AppConfig], None],
        on_restart: Callable[[str], None],
    ) -> None:
        self.cfg = cfg
        self._clock = clock
        self._db = db
        self._slot = slot
        self._filters = filters
        self._on_applied = on_applied
        self._on_restart = on_restart

    def view(self) -> contract.SettingsView:
        cfg = self.cfg
        rows = []
        for key, bound in config.RUNTIME.items():
            source = cfg.source(key)
            rows.append(
                contract.SettingValue(
                    key=key,
                    value=config.setting_text(cfg, key),
                    source=source,
                    kind=bound.kind,
                    low=str(bound.low),
                    high=str(bound.high),
                    editable=source != "cli",
                )
            )
        model = self._slot.model
        symbols = list(model.contract.symbols) if model is not None else []
        return contract.SettingsView(settings=rows, model_symbols=symbols)

    async def get(self, args: contract.NoArgs) -> contract.SettingsView:
        return self.view()

    def _symbol_problems(self, symbols: list[str]) -> list[str]:
        problems = []
        model = self._slot.model
        if model is not None:
            problems += [
                f"{s}: the active model ({model.contract.model_version}) does not trade it; "
                f"it serves {', '.join(model.contract.symbols)}"
                for s in symbols
                if not model.contract.serves(s)
            ]
        if self._filters:  # known once the exchange answered exchangeInfo
            problems += [
                f"{s}: not a symbol the exchange trades"
                for s in symbols
                if s.upper() not in self._filters
            ]
        return problems

    async def set(self, args: contract.SettingsSetArgs) -> contract.SettingsChanged:
        changes: dict[str, object] = {}
        if args.risk is not None:
            for name in args.risk.__struct_fields__:
                value = getattr(args.risk, name)
                if value is not None:
                    changes[f"risk.{name}"] = value
        if args.symbols is not None:
            changes["feed.symbols"] = [s.strip().lower() for s in args.symbols if s.strip()]
        if not changes:
            raise ControlError("nothing to change: give risk limits or symbols")
        flagged = [k for k in changes if self.cfg.source(k) == "cli"]
        if flagged:
            raise ControlError(
                f"{', '.join(flagged)} set by a command-line flag, which wins over saved settings; "
                "remove the flag to change it here"
            )
        new = config.with_changes(self.cfg, changes, "saved")
        if "feed.symbols" in changes:
            problems = self._symbol_problems(list(new.feed.symbols))
            if problems:
                raise ControlError("symbols refused: " + "; ".join(problems))
        diffs = [
            contract.SettingChange(key=k, old=old, new=now)
            for k in changes
            if (old := config.setting_text(self.cfg, k)) != (now := config.setting_text(new, k))
        ]
        # A form sends every field: only what differs becomes "saved" (the rest keeps its source).
        new = config.with_changes(self.cfg, {d.key: changes[d.key] for d in diffs}, "saved")
        if diffs:
            saved: dict[str, Any] = await self._db.call(
                lambda c: trading.get_setting(c, SAVED_KEY, {})
            )
            saved = {**saved, **{d.key: d.new for d in diffs}}
            ts = self._clock.time_ns()
            await self._db.call(lambda c: trading.set_setting(c, SAVED_KEY, saved, ts))
            self.cfg = new
            self._on_applied(new)
            log.info("settings: %s", "; ".join(f"{d.key} {d.old} -> {d.new}" for d in diffs))
        restarting = any(d.key == "feed.symbols" for d in diffs)
        if restarting:
            self._on_restart("symbols changed to " + ",".join(new.feed.symbols))
        return contract.SettingsChanged(changed=diffs, settings=self.view(), restarting=restarting)

    def handlers(self) -> Handlers:
        h = Handlers()
        h.add(contract.SETTINGS_GET, self.get)
        h.add(contract.SETTINGS_SET, self.set)
        return h
