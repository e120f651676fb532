"""A test notification through a receiver's real senders: what ``POST /api/v1/receivers/test`` and
``alert-pipeline receivers test`` run (Grafana's "test contact point"; Alertmanager has none).

Each integration of the receiver gets one notification of sample alerts (or the caller's), through
the same :meth:`Sender.attempt` the delivery agent uses, once and without retries: the outcome says
whether it was accepted, how long it took, and, redacted of the integration's secrets, why not.
Nothing is written to Kafka: a test is neither history nor a dead letter.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass

from pipeline.domain.config import Config, ReceiverConfig
from pipeline.domain.models import Alert, Notification
from pipeline.domain.redact import redact_secrets
from senders.base import DeliveryError, SenderContext
from senders.catalog import create_sender

#: A test waits this long for one integration at most, rate-limit waits and split messages included.
TEST_DEADLINE = 60.0


def sample_alerts(now: float) -> list[Alert]:
    """What a test sends when the caller gives no alerts: one firing alert that says it is a test."""
    return [Alert(
        labels={"alertname": "TestNotification", "severity": "info"},
        annotations={"summary": "Test notification from alert-pipeline",
                     "description": "Sent on request to check this receiver; no alert is firing."},
        starts_at=now, ends_at=now + 300, updated_at=now, received_at=now, source="test",
    )]


def make_test_notification(tenant: str, receiver: str, integration: str, alerts: list[Alert],
                           now: float) -> Notification:
    """A notification as dispatch would make it, under a test id and group key."""
    return Notification(
        id=f"test|{tenant}|{receiver}|{integration}|{int(now * 1000)}", tenant=tenant, receiver=receiver,
        integration=integration, group_key=f"{{}}/test:{{receiver={receiver!r}}}", group_labels={},
        alerts=[alert.to_webhook(now) for alert in alerts], reason="test", created_at=now, received_at=now,
    )


@dataclass(slots=True)
class IntegrationOutcome:
    """One integration's answer to the test: ``ok``, or ``failed`` with a redacted error and its reason."""

    integration: str
    status: str
    latency_seconds: float
    error: str = ""
    reason: str = ""
    retryable: bool = False

    def to_json(self) -> dict[str, object]:
        out = asdict(self)
        out["latency_seconds"] = round(self.latency_seconds, 4)
        return out


async def _one(tenant: str, receiver: ReceiverConfig, integration: str, context: SenderContext,
               alerts: list[Alert]) -> IntegrationOutcome:
    config = dict(receiver.integrations())[integration]
    notification = make_test_notification(tenant, receiver.name, integration, alerts, time.time())
    started = time.monotonic()
    try:
        await asyncio.wait_for(create_sender(config, context).attempt(notification), TEST_DEADLINE)
    except DeliveryError as exc:
        return IntegrationOutcome(integration, "failed", time.monotonic() - started, str(exc), exc.reason,
                                  exc.retryable)
    except TimeoutError:
        return IntegrationOutcome(integration, "failed", time.monotonic() - started,
                                  f"no answer within {TEST_DEADLINE:.0f}s", "timeout", True)
    except Exception as exc:  # a sender's bug must not break the test of the other integrations
        message = redact_secrets(f"{type(exc).__name__}: {exc}", config)
        return IntegrationOutcome(integration, "failed", time.monotonic() - started, message, "other")
    return IntegrationOutcome(integration, "ok", time.monotonic() - started)


async def send_test(tenant: str, receiver: ReceiverConfig, config: Config,
                    alerts: list[Alert] | None = None) -> list[IntegrationOutcome]:
    """Send one test notification to every integration of ``receiver`` at once; their outcomes in order.
    The requests go out as the workers' do: behind the receivers' firewall, with the redirect and
    template limits of ``config``."""
    alerts = alerts or sample_alerts(time.time())
    context = SenderContext.for_config(config)
    async with context.http:
        return list(await asyncio.gather(*(_one(tenant, receiver, integration, context, alerts)
                                           for integration, _ in receiver.integrations())))
