"""A small IAM policy evaluator: enough to check the Studio role against the calls its flow makes.

Covers identity-policy evaluation for one principal: explicit Deny wins, then
any Allow, else implicit deny. Action and NotAction (case-insensitive
wildcards), Resource and NotResource (case-sensitive `*` / `?` wildcards), and
the condition operators the project's policies use: StringEquals,
StringNotEquals, StringLike, StringNotLike, ArnEquals, ArnLike, Bool (single
valued keys, case-insensitive key names; a missing key fails the condition
except for the negated operators, as in IAM), the set qualifiers
ForAllValues: / ForAnyValue: with StringEquals or StringLike for multivalued
keys (ForAllValues holds when the key is missing or empty, ForAnyValue does
not), and Null. Anything else raises, so a policy the evaluator cannot read
fails the test instead of passing it.
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
    # Single-valued keys map to a string, multivalued ones (sagemaker:InstanceTypes) to a list.
    context: dict[str, str | list[str]] = field(default_factory=dict, hash=False, compare=False)
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


def _condition_holds(condition: dict[str, Any], context: dict[str, str | list[str]]) -> bool:
    lowered = {k.lower(): v for k, v in context.items()}
    for operator, tests in condition.items():
        qualifier, _, base = operator.rpartition(":")
        for key, expected in tests.items():
            actual = lowered.get(key.lower())
            values = [str(v) for v in _as_list(expected)]
            if base == "Null" and not qualifier:
                ok = (actual is None) == (values[0].lower() == "true")
            elif qualifier in ("ForAllValues", "ForAnyValue"):
                if base not in ("StringEquals", "StringLike"):
                    raise NotImplementedError(f"condition operator {operator} is not supported")
                matches = [_matches(base, str(item), values) for item in _as_list(actual or [])]
                ok = all(matches) if qualifier == "ForAllValues" else any(matches)
            elif qualifier:
                raise NotImplementedError(f"condition operator {operator} is not supported")
            elif isinstance(actual, list):
                raise ValueError(f"{key} is multivalued: {operator} needs ForAllValues: or ForAnyValue:")
            elif operator in ("StringEquals", "ArnEquals", "StringLike", "ArnLike", "Bool"):
                ok = actual is not None and _matches(operator, actual, values)
            elif operator in ("StringNotEquals", "StringNotLike"):
                positive = operator.replace("Not", "")
                ok = actual is None or not _matches(positive, actual, values)
            else:
                raise NotImplementedError(f"condition operator {operator} is not supported")
            if not ok:
                return False
    return True


def _matches(operator: str, actual: str, values: list[str]) -> bool:
    """Does one context value satisfy a positive operator against any of the policy's values?"""
    if operator in ("StringEquals", "ArnEquals"):
        return actual in values
    if operator in ("StringLike", "ArnLike"):
        return any(wildcard_match(v, actual) for v in values)
    if operator == "Bool":
        return actual.lower() in [v.lower() for v in values]
    raise NotImplementedError(f"condition operator {operator} is not supported")


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
