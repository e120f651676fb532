"""Senders: one module per channel, each behind the :class:`senders.base.Sender` interface."""
