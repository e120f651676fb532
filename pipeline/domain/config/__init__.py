"""The configuration file: Alertmanager's YAML (``global``, ``route``, ``receivers``) plus ``tenants``, broker
settings (``kafka``) and the settings of our own processes, validated at load time with errors that name the
path of the bad key. The names the rest of the code uses, from ``routes``, ``settings`` and ``loading``."""

from pipeline.domain.config.loading import Config, ConfigError, load_config, parse_config
from pipeline.domain.config.routes import GLOBAL_TENANT, InhibitRuleConfig, ReceiverConfig, RouteConfig
from pipeline.domain.config.settings import FirewallSettings, KafkaSettings, TenantSidecarSettings

__all__ = ["GLOBAL_TENANT", "Config", "ConfigError", "FirewallSettings", "InhibitRuleConfig", "KafkaSettings",
           "ReceiverConfig", "RouteConfig", "TenantSidecarSettings", "load_config", "parse_config"]
