"""The ``alert-pipeline`` command: ``run``, ``ingest``, ``worker``, ``check-config``, ``dlq``, ``receivers``,
``templates``."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from pathlib import Path

from pipeline.cmd import opscli
from pipeline.cmd.runtime import tune_gc
from pipeline.domain.config import Config, ConfigError, load_config


def _load(path: str, bootstrap: str | None) -> Config:
    if bootstrap:
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"invalid config {path}:", file=sys.stderr)
        for where, message in exc.errors:
            print(f"  {where or '(top level)'}: {message}", file=sys.stderr)
        raise SystemExit(2) from None
    return config


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args.config, None)
    receivers = len(config.receivers) + sum(len(t.receivers) for t in config.tenants)
    print(f"{args.config}: OK ({len(config.tenants)} tenants, {receivers} receivers)")
    if config.notification_manager is not None:
        import yaml

        from pipeline.domain.config.nm.report import report

        path = Path(args.config)
        for line in report(yaml.safe_load(path.read_text()), path.parent):
            print(f"  {line}")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from aiohttp import web

    from pipeline.cmd.reload import ignore_sighup_until_ready, serve_ingest_reload
    from pipeline.ingest.security import warn_if_open
    from pipeline.ingest.server import create_ingest_app

    ignore_sighup_until_ready()
    tune_gc()
    config = _load(args.config, args.bootstrap_servers)
    if args.listen:
        config.ingest.listen = args.listen
    host, _, port = config.ingest.listen.rpartition(":")
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_ingest_app(config)
    serve_ingest_reload(app, lambda: load_config(args.config))
    admin = [_bind(config.ingest.admin_listen)] if config.ingest.admin_listen else None
    warn_if_open(config.authenticator, config.ingest.listen)
    web.run_app(app, host=host or "0.0.0.0", port=int(port), print=None, access_log=None, sock=admin,
                ssl_context=config.authenticator.web.ssl_context())
    return 0


def _bind(listen: str) -> socket.socket:
    host, _, port = listen.rpartition(":")
    sock = socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]") or "0.0.0.0", int(port)))
    return sock



def cmd_worker(args: argparse.Namespace) -> int:
    from pipeline.cmd.reload import ignore_sighup_until_ready
    from pipeline.cmd.worker import run_worker

    ignore_sighup_until_ready()
    tune_gc()
    config = _load(args.config, args.bootstrap_servers)
    if args.metrics_listen:
        config.worker.metrics_listen = args.metrics_listen
    if args.data_dir:
        config.worker.data_dir = args.data_dir
    if args.role:
        config.worker.role = args.role
    run_worker(config, lambda: load_config(args.config), loglevel=args.log_level, logfile=args.log_file)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.cmd.run import run_all

    config = _load(args.config, args.bootstrap_servers)
    return run_all(args.config, config, listen=args.listen, demo=args.demo,
                   external=bool(args.bootstrap_servers or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")))


def cmd_dlq(args: argparse.Namespace) -> int:
    import asyncio

    import orjson

    from pipeline.kafka import deadletters

    config = _load(args.config, args.bootstrap_servers)
    try:
        letters = asyncio.run(deadletters.read_dead_letters(config, args.topic))
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    letters = deadletters.select(letters, args.tenant, args.receiver, args.id)
    if args.dlq_command == "list":
        for letter in letters[-args.limit:] if args.limit else letters:
            if args.json:
                record = letter.to_record()
                if letter.notification is not None:
                    record["notification"] = letter.notification
                print(orjson.dumps(record).decode())
            else:
                print(letter.summary())
        return 0
    replayed, skipped = asyncio.run(deadletters.replay(config, letters))
    for what in replayed:
        print(f"replayed {what}")
    for letter, why in skipped:
        print(f"not replayed: {letter.summary()}: {why}", file=sys.stderr)
    print(f"{len(replayed)} of {len(letters)} dead letters replayed", file=sys.stderr)
    return 0 if not skipped else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alert-pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str, func) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
        sub = commands.add_parser(name, help=help)
        sub.set_defaults(func=func)
        return sub

    check = command("check-config", "validate a config file", cmd_check_config)
    check.add_argument("config")

    for name, help, func in (
        ("run", "the whole pipeline (a local Kafka unless one is given), for development", cmd_run),
        ("ingest", "the HTTP ingest only", cmd_ingest),
        ("worker", "the stream and sender agents only", cmd_worker),
    ):
        sub = command(name, help, func)
        sub.add_argument("--config", required=True)
        sub.add_argument("--bootstrap-servers", help="Kafka to use (also KAFKA_BOOTSTRAP_SERVERS)")
        sub.add_argument("--log-level", default="INFO")
        if name in ("run", "ingest"):
            sub.add_argument("--listen", help="ingest address, host:port (default from config)")
        if name == "worker":
            sub.add_argument("--metrics-listen", help="metrics address, host:port")
            sub.add_argument("--data-dir", help="local state directory")
            sub.add_argument("--role", choices=["all", "stream", "delivery"],
                             help="the stages to run (default from config: worker.role)")
            sub.add_argument("--log-file")
        if name == "run":
            sub.add_argument("--demo", action="store_true", help="feed demo alerts and show notifications")
    dlq = command("dlq", "list or replay the dead letters of every stage", cmd_dlq)
    dlq.add_argument("dlq_command", choices=["list", "replay"])
    dlq.add_argument("--config", required=True)
    dlq.add_argument("--bootstrap-servers", help="Kafka to use (also KAFKA_BOOTSTRAP_SERVERS)")
    dlq.add_argument("--topic", help="only this dead-letter topic (e.g. alerts.dlq; default: all of them)")
    dlq.add_argument("--tenant", help="only this tenant's notifications (global for the platform route)")
    dlq.add_argument("--receiver", help="only this receiver's")
    dlq.add_argument("--id", action="append", help="only this notification id (repeatable)")
    dlq.add_argument("--limit", type=int, default=0, help="list: only the newest N")
    dlq.add_argument("--json", action="store_true", help="list: one JSON record per line")
    opscli.add_commands(commands, _load)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
