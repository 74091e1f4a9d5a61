"""The template language of image templates: Incus renders them with pongo2 (Django-like);
Jinja2's sandbox runs the same subset here (variables and attributes, ``config_get()``,
``if``/``elif``/``else``, ``for``, comparisons and filters), pongo2's ``value|filter:arg`` read
as ``value|filter(arg)``. Templates come with images, so nothing they do reaches beyond the
values they are given: the sandbox refuses attribute access to Python internals, and output is
bounded."""

from __future__ import annotations

import re
from typing import Any

from jinja2 import ChainableUndefined, TemplateError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from stapes.api.errors import BadRequest

MAX_OUTPUT = 1 << 20
"""The most a template may render (bytes of text)."""

# pongo2's filter arguments: |name:"x" or |name:value -> |name("x") / |name(value)
_FILTER_ARG = re.compile(r"\|\s*(\w+)\s*:\s*(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|[\w.]+)")
_TAG = re.compile(r"({{.*?}}|{%.*?%})", re.DOTALL)


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja2's sandbox, with ``*`` and ``**`` bounded: a template cannot make a huge string
    or number to exhaust the daemon's memory."""

    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and abs(right) > 256:
            raise SecurityError("exponent too large")
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(count, int)
                if sized and len(seq) * count > MAX_OUTPUT:
                    raise SecurityError("repetition too large")
        return super().call_binop(context, operator, left, right)


_ENV = _Sandbox(
    undefined=ChainableUndefined,  # an unknown variable renders empty, as in pongo2
    autoescape=False,
    keep_trailing_newline=True,
)


def _pongo_to_jinja(text: str) -> str:
    return _TAG.sub(lambda m: _FILTER_ARG.sub(r"|\1(\2)", m.group(0)), text)


def render(text: str, context: dict[str, Any]) -> str:
    """``text`` rendered with ``context``; a template that is not valid is a 400 naming why."""
    config = context.get("config") or {}

    def config_get(key: str, default: Any = "") -> Any:
        return config.get(key, default)

    try:
        template = _ENV.from_string(_pongo_to_jinja(text))
        out = template.render({**context, "config_get": config_get})
    except TemplateError as exc:
        raise BadRequest(f"Template error: {exc}") from None
    except (ArithmeticError, TypeError, ValueError, LookupError, RecursionError) as exc:
        # what the template's own expressions raise (an image's template is not trusted)
        raise BadRequest(f"Template error: {type(exc).__name__}: {exc}") from None
    if len(out) > MAX_OUTPUT:
        raise BadRequest(f"Template output is over {MAX_OUTPUT} bytes")
    return out
