"""Command-line runner shared by every sandbox's ``__main__``.

    python -m connectors.land.sandbox --port 8101 --db var/land.db [--latency-ms 200] [--failure-rate 0.1]

Fault flags override ``SANDBOX_FAULT_*`` environment variables; each sandbox reads its own
business settings (rates, delays) from its own environment prefix. The run-time fault endpoints are
served only with an admin token in ``LIENTHONG_SANDBOX_ADMIN_TOKEN`` (see ``admin.py``); the start
says whether they are.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import uvicorn
from fastapi import FastAPI

from connectors.sandbox_kit.admin import ADMIN_TOKEN_ENV, FAULTS_PATH, admin_token_from_env
from connectors.sandbox_kit.faults import FaultEnvironment, FaultInjector, FaultSettings, FaultUpdate

AppFactory = Callable[[str, FaultSettings | None], FastAPI]


def parse_args(name: str, default_port: int, argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"python -m connectors.{name}.sandbox", description=f"{name} sandbox"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--db", default=":memory:", help="SQLite file (created if missing) or :memory:")
    parser.add_argument("--latency-ms", type=int, default=None)
    parser.add_argument("--failure-rate", type=float, default=None)
    parser.add_argument("--error-status", type=int, choices=[429, 500, 502, 503, 504], default=None)
    parser.add_argument("--fail-next", type=int, default=None, help="the first N calls answer --error-status")
    parser.add_argument("--down-for-s", type=float, default=None)
    parser.add_argument("--down-mode", choices=["unavailable", "drop"], default=None)
    parser.add_argument("--malformed-rate", type=float, default=None)
    parser.add_argument("--fault-seed", type=int, default=None)
    parser.add_argument("--log-level", default="warning")
    return parser.parse_args(argv)


def faults_from(args: argparse.Namespace) -> FaultSettings:
    injector = FaultInjector()
    injector.update(FaultEnvironment().to_update())
    flags = {
        "latency_ms": args.latency_ms,
        "failure_rate": args.failure_rate,
        "error_status": args.error_status,
        "fail_next": args.fail_next,
        "down_for_s": args.down_for_s,
        "down_mode": args.down_mode,
        "malformed_rate": args.malformed_rate,
        "seed": args.fault_seed,
    }
    injector.update(FaultUpdate(**{k: v for k, v in flags.items() if v is not None}))
    return injector.settings


def run(factory: AppFactory, *, name: str, default_port: int, argv: Sequence[str] | None = None) -> None:
    args = parse_args(name, default_port, argv)
    app = factory(args.db, faults_from(args))
    if admin_token_from_env() is None:
        print(
            f"{name} sandbox: no {ADMIN_TOKEN_ENV} given, so {FAULTS_PATH} is not served (404);"
            " faults given at start still apply.",
            file=sys.stderr,
            flush=True,
        )
    else:
        print(
            f"{name} sandbox: {FAULTS_PATH} served to callers with the admin token of {ADMIN_TOKEN_ENV}.",
            file=sys.stderr,
            flush=True,
        )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
