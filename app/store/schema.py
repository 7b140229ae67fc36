"""The schemas of the appliance's databases, as ordered migration lists (see ``db.migrate``).

Append new migrations; never edit one that has shipped.
"""

from __future__ import annotations

# One file per ISO week (``market_<year>_<week>.db``). ``raw_blocks`` is the source of truth: the
# frames exactly as received, with receive timestamps, zstd-compressed per writer batch (see
# ``rawlog``). The other tables are derived from them for queries and can be rebuilt.
MARKET_MIGRATIONS: list[str] = [
    """
    CREATE TABLE raw_blocks (
        id INTEGER PRIMARY KEY,
        ts_first_ns INTEGER NOT NULL,
        ts_last_ns INTEGER NOT NULL,
        frames INTEGER NOT NULL,
        codec TEXT NOT NULL,
        body BLOB NOT NULL
    );
    CREATE INDEX raw_blocks_ts ON raw_blocks (ts_first_ns);
    CREATE TABLE trades (
        ts_recv_ns INTEGER NOT NULL,
        ts_trade_ms INTEGER NOT NULL,
        symbol TEXT NOT NULL,
        agg_id INTEGER NOT NULL,
        price TEXT NOT NULL,
        qty TEXT NOT NULL,
        buyer_maker INTEGER NOT NULL
    );
    CREATE INDEX trades_symbol_ts ON trades (symbol, ts_trade_ms);
    CREATE TABLE tops (
        ts_recv_ns INTEGER NOT NULL,
        ts_event_ms INTEGER NOT NULL,
        symbol TEXT NOT NULL,
        update_id INTEGER NOT NULL,
        bid TEXT NOT NULL,
        bid_qty TEXT NOT NULL,
        ask TEXT NOT NULL,
        ask_qty TEXT NOT NULL
    );
    CREATE INDEX tops_symbol_ts ON tops (symbol, ts_event_ms);
    CREATE TABLE book_snapshots (
        ts_recv_ns INTEGER NOT NULL,
        symbol TEXT NOT NULL,
        update_id INTEGER NOT NULL,
        bids TEXT NOT NULL,
        asks TEXT NOT NULL
    );
    CREATE INDEX book_snapshots_symbol_ts ON book_snapshots (symbol, ts_recv_ns);
    CREATE TABLE marks (
        ts_recv_ns INTEGER NOT NULL,
        ts_event_ms INTEGER NOT NULL,
        symbol TEXT NOT NULL,
        mark TEXT NOT NULL,
        index_price TEXT NOT NULL,
        funding_rate TEXT NOT NULL,
        next_funding_ms INTEGER NOT NULL
    );
    CREATE INDEX marks_symbol_ts ON marks (symbol, ts_event_ms);
    """,
    # History imported by ``appliance download`` (app/store/imports.py): one row per job and week
    # file, written in the transaction that adds its frames, so a job is never imported twice.
    """
    CREATE TABLE imports (
        id INTEGER PRIMARY KEY,
        job TEXT NOT NULL UNIQUE,
        source TEXT NOT NULL,
        symbols TEXT NOT NULL,
        ts_first_ns INTEGER NOT NULL,
        ts_last_ns INTEGER NOT NULL,
        first_block INTEGER,
        last_block INTEGER,
        frames INTEGER NOT NULL,
        ts_ns INTEGER NOT NULL
    );
    """,
]

# The staging database of ``appliance download`` (``<market dir>/download/staging.db``): every
# page fetched, deduplicated by its natural key, and each task's cursor, written in one
# transaction per page so that an interrupted download continues where it stopped.
DOWNLOAD_MIGRATIONS: list[str] = [
    """
    CREATE TABLE agg_trades (
        symbol TEXT NOT NULL,
        agg_id INTEGER NOT NULL,
        ts_ms INTEGER NOT NULL,
        price TEXT NOT NULL,
        qty TEXT NOT NULL,
        first_id INTEGER NOT NULL,
        last_id INTEGER NOT NULL,
        buyer_maker INTEGER NOT NULL,
        PRIMARY KEY (symbol, agg_id)
    ) WITHOUT ROWID;
    CREATE INDEX agg_trades_ts ON agg_trades (ts_ms);
    CREATE TABLE klines (
        symbol TEXT NOT NULL,
        kind TEXT NOT NULL,
        interval TEXT NOT NULL,
        open_ms INTEGER NOT NULL,
        close_ms INTEGER NOT NULL,
        row TEXT NOT NULL,
        PRIMARY KEY (symbol, kind, interval, open_ms)
    ) WITHOUT ROWID;
    CREATE INDEX klines_close ON klines (close_ms);
    CREATE TABLE funding (
        symbol TEXT NOT NULL,
        ts_ms INTEGER NOT NULL,
        rate TEXT NOT NULL,
        mark TEXT NOT NULL,
        PRIMARY KEY (symbol, ts_ms)
    ) WITHOUT ROWID;
    CREATE TABLE cursors (
        task TEXT PRIMARY KEY,
        position INTEGER NOT NULL,
        from_id INTEGER,
        rows INTEGER NOT NULL,
        done INTEGER NOT NULL
    );
    """,
]

# Paper and live keep their own breakers (app/engine/risk.py): one row per mode. The single row
# kept so far was paper's (SQLite cannot drop the id = 1 check in place: the table is rebuilt).
BREAKERS_PER_MODE_MIGRATION = """
CREATE TABLE breaker_state_by_mode (
    mode TEXT PRIMARY KEY CHECK (mode IN ('paper', 'live')),
    ts_ns INTEGER NOT NULL,
    state TEXT NOT NULL
);
INSERT INTO breaker_state_by_mode (mode, ts_ns, state)
    SELECT 'paper', ts_ns, state FROM breaker_state;
DROP TABLE breaker_state;
ALTER TABLE breaker_state_by_mode RENAME TO breaker_state;
"""

# The trading state: small, precious, written with synchronous=FULL and backed up daily. Orders,
# fills and positions arrive with the decision-loop and live-execution migrations.
# Shadow runs of a candidate model beside the active one (app/models/shadow.py writes them).
SHADOW_MIGRATION = """
CREATE TABLE shadow_runs (
    id INTEGER PRIMARY KEY,
    ts_started_ns INTEGER NOT NULL,
    ts_ended_ns INTEGER,
    active_sha256 TEXT NOT NULL,
    active_version TEXT NOT NULL,
    shadow_sha256 TEXT NOT NULL,
    shadow_version TEXT NOT NULL,
    outcome TEXT NOT NULL DEFAULT ''
);
CREATE TABLE model_signals (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES shadow_runs (id),
    ts_ns INTEGER NOT NULL,
    ts_bar_ms INTEGER NOT NULL,
    symbol TEXT NOT NULL,
    role TEXT NOT NULL,
    model_version TEXT NOT NULL,
    prob REAL NOT NULL,
    direction TEXT NOT NULL,
    confidence REAL NOT NULL,
    action TEXT NOT NULL
);
CREATE INDEX model_signals_run ON model_signals (run_id, ts_bar_ms);
CREATE TABLE shadow_pnl (
    run_id INTEGER NOT NULL REFERENCES shadow_runs (id),
    role TEXT NOT NULL,
    ts_ns INTEGER NOT NULL,
    equity TEXT NOT NULL,
    realized TEXT NOT NULL,
    unrealized TEXT NOT NULL,
    fees TEXT NOT NULL,
    funding TEXT NOT NULL,
    orders INTEGER NOT NULL,
    trades INTEGER NOT NULL,
    PRIMARY KEY (run_id, role)
);
"""

TRADING_MIGRATIONS: list[str] = [
    """
    CREATE TABLE journal (
        id INTEGER PRIMARY KEY,
        ts_ns INTEGER NOT NULL,
        actor TEXT NOT NULL,
        cmd TEXT NOT NULL,
        args TEXT NOT NULL,
        ok INTEGER NOT NULL,
        result TEXT NOT NULL
    );
    CREATE INDEX journal_ts ON journal (ts_ns);
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        ts_ns INTEGER NOT NULL
    );
    CREATE TABLE alarms (
        id INTEGER PRIMARY KEY,
        ts_ns INTEGER NOT NULL,
        kind TEXT NOT NULL,
        message TEXT NOT NULL,
        ts_cleared_ns INTEGER
    );
    CREATE INDEX alarms_open ON alarms (kind) WHERE ts_cleared_ns IS NULL;
    CREATE TABLE task_runs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        ts_started_ns INTEGER NOT NULL,
        ts_ended_ns INTEGER,
        state TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    """,
    # Risk gate, paper execution, positions and the equity series.
    """
    CREATE TABLE boots (
        id INTEGER PRIMARY KEY,
        ts_ns INTEGER NOT NULL
    );
    CREATE TABLE orders (
        client_id TEXT PRIMARY KEY,
        ts_created_ns INTEGER NOT NULL,
        ts_updated_ns INTEGER NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        type TEXT NOT NULL,
        qty TEXT NOT NULL,
        price TEXT,
        reduce_only INTEGER NOT NULL,
        stop_price TEXT,
        take_profit TEXT,
        model_version TEXT NOT NULL,
        purpose TEXT NOT NULL,
        status TEXT NOT NULL,
        filled_qty TEXT NOT NULL,
        avg_price TEXT,
        fees TEXT NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE INDEX orders_symbol_ts ON orders (symbol, ts_created_ns);
    CREATE INDEX orders_open ON orders (status) WHERE status IN ('NEW', 'PARTIALLY_FILLED');
    CREATE TABLE fills (
        id INTEGER PRIMARY KEY,
        ts_ns INTEGER NOT NULL,
        client_id TEXT NOT NULL REFERENCES orders (client_id),
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        price TEXT NOT NULL,
        qty TEXT NOT NULL,
        fee TEXT NOT NULL,
        liquidity TEXT NOT NULL,
        realized_pnl TEXT NOT NULL
    );
    CREATE INDEX fills_client ON fills (client_id);
    CREATE INDEX fills_ts ON fills (ts_ns);
    CREATE TABLE positions (
        symbol TEXT PRIMARY KEY,
        qty TEXT NOT NULL,
        cost TEXT NOT NULL,
        realized TEXT NOT NULL,
        fees TEXT NOT NULL,
        funding TEXT NOT NULL,
        trade_pnl TEXT NOT NULL,
        mark TEXT,
        stop_price TEXT,
        take_profit TEXT,
        ts_ns INTEGER NOT NULL
    );
    CREATE TABLE funding_payments (
        id INTEGER PRIMARY KEY,
        ts_ns INTEGER NOT NULL,
        symbol TEXT NOT NULL,
        rate TEXT NOT NULL,
        mark TEXT NOT NULL,
        position_qty TEXT NOT NULL,
        amount TEXT NOT NULL
    );
    CREATE TABLE risk_events (
        id INTEGER PRIMARY KEY,
        ts_ns INTEGER NOT NULL,
        kind TEXT NOT NULL,
        code TEXT NOT NULL,
        symbol TEXT NOT NULL,
        message TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX risk_events_ts ON risk_events (ts_ns);
    CREATE TABLE breaker_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        ts_ns INTEGER NOT NULL,
        state TEXT NOT NULL
    );
    CREATE TABLE equity (
        ts_ns INTEGER PRIMARY KEY,
        equity TEXT NOT NULL,
        realized TEXT NOT NULL,
        unrealized TEXT NOT NULL,
        fees TEXT NOT NULL,
        funding TEXT NOT NULL
    );
""",
    # Shadow runs: both models' signals and each one's paper PnL (see app/models/shadow.py).
    SHADOW_MIGRATION,
    BREAKERS_PER_MODE_MIGRATION,
]
