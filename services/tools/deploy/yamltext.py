"""YAML as the generated manifests are written: keys in the order given, no anchors, multi-line text
as literal blocks, and a header comment."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def dump(document: Any) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)


def dump_all(documents: Iterable[Any], header: str = "") -> str:
    """Documents separated by ``---``, after ``header`` (each line made a comment)."""
    comment = "".join(f"# {line}".rstrip() + "\n" for line in header.strip().splitlines()) if header else ""
    return comment + "---\n".join(dump(d) for d in documents)
