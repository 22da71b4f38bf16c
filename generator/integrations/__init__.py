"""Optional integrations with training frameworks; each is imported only when asked for
(``from generator.integrations.lightning import NetlapseCallback`` needs Lightning), so
this face exports nothing itself."""

__all__ = []
