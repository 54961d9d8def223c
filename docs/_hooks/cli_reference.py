"""mkdocs hook: the command-line reference, generated from the typer app so that it cannot go stale.

A page holding the line ``<!-- xrfsr commands -->`` gets, in its place, one
section per ``xrfsr`` command: its usage line, its help, and a table of its
arguments and options with their defaults.
"""

from __future__ import annotations

from typing import Any

import click
import typer

MARKER = "<!-- xrfsr commands -->"


def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _row(param: Any) -> str:
    if param.param_type_name == "option":
        names = ", ".join(f"`{name}`" for name in [*param.opts, *param.secondary_opts])
        default = "" if param.is_flag and param.default is False and not param.secondary_opts else param.default
        shown = "" if default is None or default == "" else f"`{default}`"
    else:
        names, shown = f"`{(param.name or '').upper()}`", "required" if param.required else ""
    return f"| {names} | {shown} | {_cell(getattr(param, 'help', None) or '')} |"


def command_reference(app: typer.Typer, program: str = "xrfsr") -> str:
    """Markdown sections for every command of ``app``, in the order ``--help`` lists them."""
    group = typer.main.get_command(app)
    context = click.Context(group, info_name=program)
    sections = []
    for name in group.list_commands(context):  # type: ignore[attr-defined]
        command = group.get_command(context, name)  # type: ignore[attr-defined]
        if command is None or command.hidden:
            continue
        usage = command.get_usage(click.Context(command, info_name=name, parent=context))
        rows = [_row(p) for p in command.params if p.name != "help"]
        sections.append("\n".join([
            f"## `{program} {name}`", "", "```text", usage.removeprefix("Usage: "), "```", "",
            (command.help or "").strip(), "",
            "| argument or option | default | meaning |", "|---|---|---|", *rows, "",
        ]))
    return "\n".join(sections)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Fill the marker of the CLI page (mkdocs calls this for every page)."""
    if MARKER not in markdown:
        return markdown
    from xrfsr_dask.cli import app

    return markdown.replace(MARKER, command_reference(app))
