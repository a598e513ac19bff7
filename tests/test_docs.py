"""The README documents every setting."""

from __future__ import annotations

from pathlib import Path

from pooldrop.config import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_setting_is_in_the_readme() -> None:
    text = README.read_text()
    missing = [n for n in Settings.model_fields if f"`POOLDROP_{n.upper()}`" not in text]
    assert missing == []


def test_quick_start_has_the_two_commands() -> None:
    text = README.read_text()
    assert "pip install -e . && pooldrop serve" in text
    assert "pip install -e '.[test]' && pytest" in text
