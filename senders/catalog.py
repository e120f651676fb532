"""Every channel module, imported so that each registers its sender (``@sender_for``) on import."""

from senders import file, webhook

__all__ = ["file", "webhook"]
