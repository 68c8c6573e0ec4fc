"""A small IAM policy evaluator: enough to check the Studio role against the calls its flow makes.

Covers identity-policy evaluation for one principal: explicit Deny wins, then
any Allow, else implicit deny. Action and NotAction (case-insensitive
wildcards), Resource and NotResource (case-sensitive `*` / `?` wildcards), and
the condition operators the project's policies use: StringEquals,
StringNotEquals, StringLike, StringNotLike, ArnEquals, ArnLike, Bool (single
valued keys, case-insensitive key names; a missing key fails the condition
except for the negated operators, as in IAM). Anything else raises, so a
policy the evaluator cannot read fails the test instead of passing it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

Decision = Literal["Allow", "Deny", "ImplicitDeny"]


@dataclass(frozen=True)
class Request:
    """One authorization question: may `action` be done on `resource` with this context?"""

    action: str
    resource: str
    context: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    why: str = field(default="", compare=False)  # which flow step needs it, for messages

    def __str__(self) -> str:
        ctx = f" {self.context}" if self.context else ""
        return f"{self.action} on {self.resource}{ctx}"


@lru_cache(maxsize=4096)
def _pattern(wildcard: str, ignore_case: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in wildcard)
    return re.compile(f"^{body}$", re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def wildcard_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    return bool(_pattern(pattern, ignore_case).match(value))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _condition_holds(condition: dict[str, Any], context: dict[str, str]) -> bool:
    lowered = {k.lower(): v for k, v in context.items()}
    for operator, tests in condition.items():
        for key, expected in tests.items():
            actual = lowered.get(key.lower())
            values = [str(v) for v in _as_list(expected)]
            if operator in ("StringEquals", "ArnEquals"):
                ok = actual is not None and actual in values
            elif operator == "StringNotEquals":
                ok = actual is None or actual not in values
            elif operator in ("StringLike", "ArnLike"):
                ok = actual is not None and any(wildcard_match(v, actual) for v in values)
            elif operator == "StringNotLike":
                ok = actual is None or not any(wildcard_match(v, actual) for v in values)
            elif operator == "Bool":
                ok = actual is not None and actual.lower() in [v.lower() for v in values]
            else:
                raise NotImplementedError(f"condition operator {operator} is not supported")
            if not ok:
                return False
    return True


def statement_applies(statement: dict[str, Any], request: Request) -> bool:
    """Does this statement's action, resource and condition cover the request?"""
    if "Action" in statement:
        actions = _as_list(statement["Action"])
        if not any(wildcard_match(a, request.action, ignore_case=True) for a in actions):
            return False
    elif "NotAction" in statement:
        if any(wildcard_match(a, request.action, ignore_case=True) for a in _as_list(statement["NotAction"])):
            return False
    else:
        raise ValueError(f"statement without Action or NotAction: {statement}")
    if "Resource" in statement:
        if not any(wildcard_match(r, request.resource) for r in _as_list(statement["Resource"])):
            return False
    elif "NotResource" in statement:
        if any(wildcard_match(r, request.resource) for r in _as_list(statement["NotResource"])):
            return False
    else:
        raise ValueError(f"statement without Resource or NotResource: {statement}")
    if "Principal" in statement or "NotPrincipal" in statement:
        raise ValueError("identity policies have no Principal")
    return _condition_holds(statement.get("Condition", {}), request.context)


def evaluate(statements: list[dict[str, Any]], request: Request) -> Decision:
    """IAM's order for one identity: any explicit Deny, else any Allow, else implicit deny."""
    applying = [s for s in statements if statement_applies(s, request)]
    if any(s["Effect"] == "Deny" for s in applying):
        return "Deny"
    if any(s["Effect"] == "Allow" for s in applying):
        return "Allow"
    return "ImplicitDeny"


def allowing_statement(statements: list[dict[str, Any]], request: Request) -> dict[str, Any] | None:
    """The first Allow statement that grants the request (for readable test output)."""
    if evaluate(statements, request) != "Allow":
        return None
    return next(s for s in statements if s["Effect"] == "Allow" and statement_applies(s, request))
