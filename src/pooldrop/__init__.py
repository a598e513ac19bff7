"""pooldrop: a file drop box for pools of client applications."""

__version__ = "0.1.0"
