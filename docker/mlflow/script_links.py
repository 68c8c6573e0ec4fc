"""Refuse tag values (and a model version's `run_link`) that a browser would run as script.

MLflow's UI turns some stored values into links: a run's `mlflow.source.name` becomes the
href of its Source link (`target="_top"`, so a `javascript:` href runs in the MLflow page,
with the viewer's session), a model version's `run_link` the href of its run link, a
trace's metadata and a dataset's source URL the hrefs of theirs. Anyone who may tag a run
of their own could plant such a link for an administrator to click. The UI's markdown
(notes, descriptions) is sanitized; these hrefs are not. A Content-Security-
Policy would stop them too, but MLflow shows HTML artifacts in a sandboxed `blob:` frame
that inherits the page's policy, so scripted artifacts (Plotly figures) would stop working.

request_guard.py calls these checks on every JSON object it parses and on OTLP span
attributes that become trace tags.
"""

from __future__ import annotations

import json
import re
from typing import Any


class ScriptLink(ValueError):
    """A value the UI could turn into a link that runs script."""


# What URL parsing does before it reads a scheme (WHATWG URL): leading C0 controls and spaces
# are dropped, and ASCII tabs and newlines anywhere. Case is ignored, for ASCII letters only.
_IGNORED_ANYWHERE = re.compile(r"[\t\n\r]")
_LEADING = "".join(chr(code) for code in range(0x21))
_SCRIPT_SCHEME = re.compile(r"(?:java|vb)script:", re.IGNORECASE | re.ASCII)
# MLflow's tags that hold free text it shows as text or sanitized markdown, never as a link: a
# prompt's template may well start with "JavaScript:".
FREE_TEXT_TAGS = frozenset({"mlflow.prompt.text", "mlflow.note.content"})
# The fields (as MLflow's handlers read them: the proto's name or its camelCase JSON name) whose
# values the UI makes links: a model version's run link; maps of strings, as objects or as JSON
# text: tags, a trace's metadata (its source's git remote, a notebook's workspace URL), and a
# dataset's `source` (the UI links an HTTP source's `url`).
_RUN_LINK = frozenset({"run_link", "runLink"})
_MAPS = frozenset({"tags", "trace_metadata", "traceMetadata", "request_metadata", "requestMetadata", "source"})
_MISSING = object()
_SPLITTING_ESCAPES = (b"\\u", b"\\t", b"\\n", b"\\r")


def is_script_url(value: object) -> bool:
    """Whether a browser would read `value`, used as an href, as a `javascript:` (or `vbscript:`) URL."""
    if not isinstance(value, str) or ":" not in value:
        return False
    return _SCRIPT_SCHEME.match(_IGNORED_ANYWHERE.sub("", value).lstrip(_LEADING)) is not None


def check_value(value: object, where: str) -> None:
    """Refuse `value`, or the string it encodes as JSON (how span attributes carry tags)."""
    candidates = [value]
    if isinstance(value, str) and value.lstrip().startswith('"'):
        try:
            candidates.append(json.loads(value))
        except ValueError:
            pass
    if any(is_script_url(candidate) for candidate in candidates):
        raise ScriptLink(
            f"{where} starts with a script URL ({str(value)[:40]!r}); MLflow's UI makes some values into "
            "links, and this one would run in the session of whoever clicks it"
        )


def check_tag(key: object, value: object, where: str) -> None:
    """check_value for a tag's (or a map entry's) value, unless its key holds free text."""
    if key not in FREE_TEXT_TAGS:
        check_value(value, where)


def _json_map(value: object) -> dict[str, Any]:
    """A map field as sent: an object, or a JSON object encoded as a string (dataset tags and sources)."""
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def check_object(pairs: list[tuple[str, Any]]) -> None:
    """Check one JSON object, as parsed: a key/value entry, a map of tags or metadata, a run link, a source."""
    key: object = None
    value: object = _MISSING
    for name, item in pairs:
        if name == "key":
            key = item
        elif name == "value":
            value = item
        elif name in _RUN_LINK:
            check_value(item, name)
        elif name in _MAPS:
            for entry, entry_value in _json_map(item).items():
                check_tag(entry, entry_value, f"{name}: the value of {entry!r}")
    if isinstance(key, str) and value is not _MISSING:
        check_tag(key, value, f"the value of {key!r}")


def may_hold_script_url(body: bytes) -> bool:
    """False only when no JSON reading of `body` can hold a script URL, so it needs no parse.

    That is a UTF-8 object without "script" in any case, and without the escapes that could spell
    it (`\\u`) or split it where a browser drops the character again (`\\t`, `\\n`, `\\r`).
    """
    head = body.lstrip()[:4]
    if not head.startswith(b"{") or b"\x00" in head:
        return True
    return b"script" in body.lower() or any(escape in body for escape in _SPLITTING_ESCAPES)
