"""``check-config`` on a Notification Manager installation: the example config loads, and each resource
is reported as what it became (receivers, tenant, routes, Config use, silences)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.harness import ROOT


def test_check_config_prints_what_each_resource_became():
    env = {**os.environ, "PLATFORM_WEBHOOK_URL": "https://ops.example.com/hook"}
    done = subprocess.run([sys.executable, "-m", "pipeline.cmd.cli", "check-config", "examples/nm-migration.yml"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "examples/nm-migration.yml: OK (1 tenants, 6 receivers)",
        "  Receiver platform-webhook (webhook) -> receiver platform-webhook of the global route: webhook_configs",
        "  Receiver shop (email) -> receiver shop/email of tenant shop: email_configs, only alerts matching "
        '{severity=~"critical|warning"}',
        "  Receiver shop (slack) -> receiver shop/slack of tenant shop: slack_configs",
        '  Router databases-to-shop -> route {service="postgres"} to shop/slack in tenant shop (route policy All)',
        "  Config default-config -> settings of shop/email (tenant shop), shop/slack (tenant shop)",
        "  Config old-wechat-app -> unused: no Receiver selects it",
        "  Silence nightly-backup -> silence of tenant shop: {alertname=\"BackupRunning\"}, cron '0 2 * * *' for 1h",
    ]
