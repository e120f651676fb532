"""``alert-pipeline receivers test`` and ``alert-pipeline templates test``: the twins of
``POST /api/v1/receivers/test`` and ``POST /api/v1/templates/test`` for an operator with the config
file (run where the receivers' secret files are, e.g. ``kubectl exec`` into an ingest pod).

Both print one block per integration or rendering (``--json``: the API's ``data``) and exit 1 when
something failed, so that a script or CI job can check a receiver or a template change.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import yaml

from pipeline.domain.config import GLOBAL_TENANT, Config, ConfigError, ReceiverConfig, parse_config
from pipeline.domain.models import Alert
from pipeline.ingest.receivers import requested_alerts

Load = Callable[[str, str | None], Config]


def _alerts(path: str | None, config: Config) -> list[Alert] | None:
    return requested_alerts({"alerts": orjson.loads(Path(path).read_bytes())}, config) if path else None


def _receiver(args: argparse.Namespace, config: Config) -> ReceiverConfig:
    if args.receiver_file:
        return ReceiverConfig.model_validate(yaml.safe_load(Path(args.receiver_file).read_text()))
    found = config.receiver(args.tenant, args.receiver)
    if found is None:
        raise LookupError(f"tenant {args.tenant!r} has no receiver {args.receiver!r}")
    return found


def receivers_test(args: argparse.Namespace, load: Load) -> int:
    from senders.testsend import send_test

    config = load(args.config, None)
    try:
        receiver = _receiver(args, config)
        alerts = _alerts(args.alerts, config)
    except (LookupError, ValueError, OSError) as exc:
        print(f"alert-pipeline receivers test: {exc}", file=sys.stderr)
        return 2
    outcomes = asyncio.run(send_test(args.tenant, receiver, config, alerts))
    for outcome in outcomes:
        if args.json:
            print(orjson.dumps(outcome.to_json()).decode())
            continue
        where = f"{args.tenant}/{receiver.name} {outcome.integration}"
        latency = f"{outcome.latency_seconds * 1000:.0f} ms"
        print(f"{where}: ok ({latency})" if outcome.status == "ok"
              else f"{where}: failed ({outcome.reason}, {latency}): {outcome.error}")
    return 0 if outcomes and all(o.status == "ok" for o in outcomes) else 1


def _template_sources(items: list[str]) -> dict[str, str]:
    sources = {}
    for item in items:
        part, sep, path = item.partition("=")
        if not sep:
            raise ValueError(f"--template {item!r}: expected PART=FILE")
        sources[part] = Path(path).read_text()
    return sources


def templates_test(args: argparse.Namespace, load: Load) -> int:
    from senders.preview import preview, preview_receiver

    config = load(args.config, None) if args.config else parse_config({"route": {"receiver": "none"},
                                                                        "receivers": [{"name": "none"}]})
    try:
        alerts = _alerts(args.alerts, config)
        if args.receiver:
            renderings = asyncio.run(preview_receiver(args.tenant, _receiver(args, config), args.language, alerts,
                                                      config.global_.external_url))
        else:
            renderings = asyncio.run(preview(_template_sources(args.template or []), args.channel, args.language,
                                             alerts, args.tenant, external_url=config.global_.external_url))
    except (LookupError, ValueError, OSError, ConfigError) as exc:
        print(f"alert-pipeline templates test: {exc}", file=sys.stderr)
        return 2
    for rendering in renderings:
        if args.json:
            print(orjson.dumps(rendering.to_json()).decode())
            continue
        print(f"== {rendering.integration or rendering.channel} ({rendering.language})")
        for part, text in rendering.parts.items():
            print(f"-- {part}\n{text}")
        for failure in rendering.errors:
            line = f", line {failure.line}" if failure.line else ""
            print(f"!! {failure.part} ({failure.template} template{line}): {failure.message}")
    return 1 if any(r.errors for r in renderings) else 0


def add_commands(commands: Any, load: Load) -> None:
    """The ``receivers`` and ``templates`` commands, on the CLI's subparsers."""
    receivers = commands.add_parser("receivers", help="send a test notification through a receiver's integrations")
    receivers.add_argument("action", choices=["test"])
    receivers.add_argument("--config", required=True)
    receivers.add_argument("--tenant", default=GLOBAL_TENANT, help="the receiver's tenant (default: global)")
    which = receivers.add_mutually_exclusive_group(required=True)
    which.add_argument("--receiver", help="a configured receiver's name")
    which.add_argument("--receiver-file", help="a YAML file holding one receiver config")
    receivers.set_defaults(func=lambda args: receivers_test(args, load))

    templates = commands.add_parser("templates", help="render templates per channel and language")
    templates.add_argument("action", choices=["test"])
    templates.add_argument("--config", help="config file (needed with --receiver; else defaults apply)")
    templates.add_argument("--tenant", default=GLOBAL_TENANT)
    templates.add_argument("--receiver", help="render a configured receiver's integrations with their templates")
    templates.add_argument("--template", action="append", metavar="PART=FILE", help="a part's template (repeatable)")
    templates.add_argument("--channel", action="append", help="only this channel (repeatable)")
    templates.add_argument("--language", action="append", help="only this language (repeatable)")
    templates.set_defaults(func=lambda args: templates_test(args, load), receiver_file=None)
    for sub in (receivers, templates):
        sub.add_argument("--alerts", help="a JSON file of alerts (as POST /api/v2/alerts takes); default: a sample")
        sub.add_argument("--json", action="store_true", help="one JSON object per line (the API's data)")
