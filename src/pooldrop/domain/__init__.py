"""Pure domain rules: windows and triggers, the group state machine, roles, validation.

Standard library only, no I/O; the only project import is :mod:`pooldrop.errors`.
"""
