"""Stream agents: one module per stage of the alert stream (dedup, route, dispatch)."""
