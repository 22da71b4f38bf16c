"""Optional integrations with training frameworks; each is imported only when asked for."""
