from __future__ import annotations

import pytest

from stapes.api.errors import BadRequest
from stapes.instance.template_language import render


def test_the_pongo2_subset() -> None:
    context = {"config": {"user.a": "x"}, "instance": {"name": "c1"}, "properties": {"p": "d"}}
    assert render('{{ config_get("user.a", "") }}/{{ config_get("user.b", properties.p) }}',
                  context) == "x/d"  # fmt: skip
    assert render('{{ instance.name|upper }} {{ missing|default:"-" }}', context) == "C1 -"
    assert (
        render('{% if config_get("user.a") == "x" %}yes{% else %}no{% endif %}', context) == "yes"
    )
    assert render("{{ unknown.deeper.still }}", context) == ""


@pytest.mark.parametrize(
    "text",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ 2 ** 100000 }}",
        "{{ 'x' * 10**9 }}",
        "{% for i in range(10**9) %}{% endfor %}",
        "{{ 'x' * 2000000 }}",
        "{% if %}",
    ],
)
def test_templates_cannot_escape_or_run_away(text: str) -> None:
    with pytest.raises(BadRequest):
        render(text, {"config": {}})


def test_internals_render_empty() -> None:
    assert render("{{ config_get.__globals__ }}{{ config.__class__ }}", {"config": {}}) == ""
