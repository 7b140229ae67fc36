"""The engine's backup and restore commands, and the daily archive.

``backup`` writes one verified archive of the whole state (``app.store.archive``); ``backup.list``
lists the archives; ``backup.import {"path", "name"}`` takes in an archive made elsewhere (the
panel's upload: verified as a restore would, then listed as ``..._uploaded``); ``backup.restore
{"name"}`` pauses trading, verifies the archive, archives the current state (``pre-restore``),
stages the archive and restarts the engine: at the next start, before any database is opened,
``app.store.restore.apply_pending_restore`` swaps the members in and the engine comes back paused
(a live engine reconciles before it trades, as at every start).

:meth:`BackupService.run` is a supervised task and the appliance's only daily backup: once a UTC
day it writes a ``scheduled`` archive (a failure raises the ``archive_failed`` alarm, cleared by
the next success; it is tried again every minute), and it deletes archives past the retention
(``store.archive_retention_days``, never the newest ``store.archive_keep_min``). Closed market
weeks are backed up on their own (``app.store.backup``): they are recordings, not state.

The engine never holds a passphrase, so its archives leave the API keys out, and its restores
leave an archive's sealed keys alone (the keys saved here are kept; the log says so): keys travel
only through ``appliance backup create --include-keys`` and ``appliance backup restore``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from app import contract
from app.clock import Clock
from app.config import StoreConfig
from app.engine.control import Handlers
from app.errors import ControlError
from app.store import archive, restore
from app.store.archive import ArchiveError, Layout

log = logging.getLogger(__name__)

ARCHIVE_RETENTION_DAYS = StoreConfig.archive_retention_days
ARCHIVE_KEEP_MIN = StoreConfig.archive_keep_min
ALARM = "archive_failed"
_CHECK_S = 60.0


class BackupService:
    """Makes, lists, prunes and restores archives of the state under ``layout``."""

    def __init__(
        self,
        layout: Layout,
        clock: Clock,
        restart: Callable[[str], None],
        pause: Callable[[], Awaitable[object]] | None = None,
        retention_days: int = ARCHIVE_RETENTION_DAYS,
        keep_min: int = ARCHIVE_KEEP_MIN,
        alarm: Callable[[str, str | None], Awaitable[object]] | None = None,
    ) -> None:
        self.layout = layout
        self._clock = clock
        self._restart = restart
        self._pause = pause
        self.retention_days = retention_days
        self.keep_min = keep_min
        # (kind, message) raises an alarm, (kind, None) clears it: a daily backup that keeps
        # failing must be seen on the dashboard, not only in the log.
        self._alarm = alarm
        # One archive or restore at a time: two would race for the same scratch space and name.
        self._lock = asyncio.Lock()

    async def create(self, args: contract.NoArgs) -> contract.BackupDone:
        info = await self._archive("")
        return contract.BackupDone(backup=str(info.path), bytes=info.bytes, sha256=info.sha256)

    async def _archive(self, label: str) -> archive.ArchiveInfo:
        async with self._lock:
            now = self._clock.time_ns()
            try:
                return await asyncio.to_thread(archive.create, self.layout, now, label)
            except ArchiveError as exc:
                raise ControlError(f"backup failed: {exc}") from exc

    async def listing(self, args: contract.NoArgs) -> contract.BackupList:
        found = await asyncio.to_thread(archive.list_archives, self.layout.backup_dir)
        waiting = restore.pending(self.layout.data_dir)
        return contract.BackupList(
            archives=[
                contract.ArchiveBrief(
                    name=a.path.name, bytes=a.bytes, ts_created_ns=a.ts_created_ns, label=a.label
                )
                for a in found
            ],
            pending_restore=str(waiting["archive"]) if waiting else "",
        )

    async def take_in(self, args: contract.PathArgs) -> contract.ArchiveImported:
        """Verify a file made elsewhere and list it; the caller keeps (and removes) its file."""
        source = Path(args.path)
        shown = args.name or source.name
        async with self._lock:
            now = self._clock.time_ns()
            try:
                info, manifest = await asyncio.to_thread(
                    archive.adopt, source, self.layout.backup_dir, now, shown
                )
            except ArchiveError as exc:
                raise ControlError(f"not taken in: {exc}") from exc
            except OSError as exc:
                raise ControlError(f"not taken in: {shown}: {exc.strerror or exc}") from exc
        return contract.ArchiveImported(
            archive=contract.ArchiveBrief(
                name=info.path.name, bytes=info.bytes, ts_created_ns=now, label=info.label
            ),
            ts_made_ns=manifest.ts_created_ns,
            app_version=manifest.app_version,
            members=sorted(manifest.members),
        )

    async def restore(self, args: contract.BackupRef) -> contract.RestoreStaged:
        try:
            path = archive.find(self.layout.backup_dir, args.name)
        except ArchiveError as exc:
            raise ControlError(str(exc)) from exc
        if self._pause is not None:
            await self._pause()  # nothing new is traded from here on; the restart follows
        async with self._lock:
            now = self._clock.time_ns()
            try:
                staged = await asyncio.to_thread(restore.stage, self.layout, path, now)
            except ArchiveError as exc:
                raise ControlError(f"restore refused: {exc}") from exc
        self._restart(f"restoring backup {staged.archive}")
        return contract.RestoreStaged(
            archive=staged.archive,
            pre_restore=staged.pre_restore,
            members=staged.members,
            restarting=True,
        )

    async def run(self) -> None:
        """Daily archive and retention, checked every minute (a supervised task)."""
        while True:
            now = self._clock.time_ns()
            backup_dir = self.layout.backup_dir
            if not await asyncio.to_thread(archive.made_on, backup_dir, now, "scheduled"):
                await self._scheduled()
            removed = await asyncio.to_thread(
                archive.prune, backup_dir, now, self.retention_days, self.keep_min
            )
            for path in removed:
                log.info("backup archive %s past retention: deleted", path.name)
            await asyncio.sleep(_CHECK_S)

    async def _scheduled(self) -> None:
        try:
            await self._archive("scheduled")
        except (ControlError, OSError) as exc:
            # A full disk or an unreadable member: tried again at the next check, and shown.
            message = f"the daily backup archive failed: {exc}"
            log.error("%s", message)
            if self._alarm is not None:
                await self._alarm(ALARM, message)
            return
        if self._alarm is not None:
            await self._alarm(ALARM, None)  # also one left standing before a restart


def service_for(
    data_dir: Path,
    store_cfg: StoreConfig,
    clock: Clock,
    restart: Callable[[str], None],
    pause: Callable[[], Awaitable[object]] | None = None,
    alarm: Callable[[str, str | None], Awaitable[object]] | None = None,
) -> BackupService:
    """The engine's service, with retention from ``store_cfg`` (``AppConfig.store``)."""
    panel_dir = store_cfg.panel_data_dir or archive.default_panel_dir(data_dir)
    return BackupService(
        Layout(data_dir, Path(panel_dir)),
        clock,
        restart,
        pause,
        retention_days=store_cfg.archive_retention_days,
        keep_min=store_cfg.archive_keep_min,
        alarm=alarm,
    )


def backup_commands(service: BackupService) -> Handlers:
    """``backup`` (an archive), ``backup.list``, ``backup.import`` and ``backup.restore``."""
    h = Handlers()
    h.add(contract.BACKUP, service.create)
    h.add(contract.BACKUP_LIST, service.listing)
    h.add(contract.BACKUP_IMPORT, service.take_in)
    h.add(contract.BACKUP_RESTORE, service.restore)
    return h
