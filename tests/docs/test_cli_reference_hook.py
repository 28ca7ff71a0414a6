"""The MkDocs hook that writes the CLI reference in place of its marker line."""

from __future__ import annotations

from docs.hooks.cli_reference import MARKER, on_page_markdown


def test_the_marker_line_becomes_every_commands_help() -> None:
    """A line holding only the marker is replaced by the help of each command."""
    page = on_page_markdown(f"# CLI\n\n{MARKER}\n")
    assert MARKER not in page
    assert "### `phota jobs wait`" in page


def test_the_marker_named_inside_a_line_is_left_as_written() -> None:
    """A page that names the marker in prose or inline code keeps its text."""
    text = f"The hook replaces the `{MARKER}` line.\n"
    assert on_page_markdown(text) == text
