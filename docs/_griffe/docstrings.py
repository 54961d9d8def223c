"""Griffe extension for the docs site: numpydoc as this library writes it, rendered right.

mkdocstrings renders Markdown and parses numpydoc with griffe. Two habits
of the library's docstrings need help on the way:

- **Sphinx roles** (``:func:`fit_probe```, ``:class:`~xrfsr_dask.model.RDN```)
  would be printed as they are. Each is rewritten before rendering. A name
  that resolves to an object of ``xrfsr_dask`` (in the scope of the
  documented object, as Python would look it up) becomes a link to its
  entry on the site, or inline code if the site does not document it. A
  name that resolves to nothing (a typo, a renamed or removed object)
  becomes a cross-reference that ``mkdocs build --strict`` fails on.
  Builtins and other libraries' names (``ValueError``, ``xarray.Dataset``)
  become inline code. A leading ``~`` shows only the last component, as
  in Sphinx.
- **Grouped parameters** (``tile, batch_size`` on one line, sharing a
  description) get, from griffe, the type and default of the first name
  for every name. Each name of a group gets its own type and default from
  the signature instead.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterator
from typing import Any

import griffe

PACKAGE = "xrfsr_dask"
ROLE = re.compile(r":(?:py:)?(func|class|meth|attr|data|mod|obj|exc|const):`(~?)([\w.]+?)(?:\(\))?`")
GROUP = re.compile(r"^\s*(\w+(?:,\s*\w+)+)\s*$", re.MULTILINE)


def _objects(obj: griffe.Object) -> Iterator[griffe.Object]:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)


def _target(obj: griffe.Object, role: str, name: str) -> str | None:
    """Full path of ``name`` seen from ``obj``, or None when it is not in scope.

    A package that imports a function named like one of its submodules
    (``xrfsr_dask.tomo.reconstruct``) is read by griffe as the submodule; a
    role that names a function there points to the function inside it
    (``xrfsr_dask.tomo.reconstruct.reconstruct``).
    """
    if name == PACKAGE or name.startswith(PACKAGE + "."):
        path = name
    else:
        head, _, rest = name.partition(".")
        try:
            path = obj.resolve(head)
        except griffe.NameResolutionError:
            return None
        path = f"{path}.{rest}" if rest else path
    if role != "mod" and path.startswith(PACKAGE + "."):
        found = _lookup(obj, path)
        last = path.rsplit(".", 1)[-1]
        if found is not None and found.is_module and last in found.members and not found.members[last].is_module:
            return f"{path}.{last}"
    return path


def _lookup(obj: griffe.Object, path: str) -> griffe.Object | griffe.Alias | None:
    """The object of the package at ``path``, or None when there is none."""
    if path == PACKAGE:
        return obj.package
    try:
        return obj.package[path.removeprefix(PACKAGE + ".")]
    except (KeyError, griffe.AliasResolutionError):
        return None


def rewrite_roles(obj: griffe.Object, text: str) -> str:
    """``text`` with every Sphinx role replaced by a link, inline code or a checked reference."""

    def replace(match: re.Match[str]) -> str:
        role, tilde, name = match.groups()
        title = name.rsplit(".", 1)[-1] if tilde else name
        target = _target(obj, role, name)
        ours = target is not None and (target == PACKAGE or target.startswith(PACKAGE + "."))
        if ours and _lookup(obj, target) is not None:
            # Resolved by autorefs to the object's entry if the site has one, else left as code.
            return f'<autoref identifier="{target}" optional><code>{title}</code></autoref>'
        external = target is not None or "." in name or name in vars(builtins)
        if external and not (name.startswith(PACKAGE + ".") or ours):
            return f"`{title}`"
        # Names nothing in the package: a reference that the strict build reports.
        return f"[`{title}`][{target or name}]"

    return ROLE.sub(replace, text)


def fix_groups(obj: griffe.Object) -> None:
    """Give each name of a grouped parameter entry its own type and default."""
    grouped = {name.strip() for line in GROUP.findall(obj.docstring.value) for name in line.split(",")}
    if not grouped or not (obj.is_function or obj.is_class):
        return
    parameters = obj.parameters
    for section in obj.docstring.parsed:
        if section.kind in (griffe.DocstringSectionKind.parameters, griffe.DocstringSectionKind.other_parameters):
            for item in section.value:
                if item.name in grouped and item.name in parameters:
                    item.annotation = parameters[item.name].annotation
                    item.value = parameters[item.name].default


class LibraryDocstrings(griffe.Extension):
    """Rewrite Sphinx roles and fix grouped entries in every docstring of the package."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for obj in _objects(pkg):
            if obj.docstring is not None:
                obj.docstring.value = rewrite_roles(obj, obj.docstring.value)
                fix_groups(obj)
