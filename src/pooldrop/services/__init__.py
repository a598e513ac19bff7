"""Use cases. Each takes the runtime and a unit of work; none commits (the caller's UoW does)."""
