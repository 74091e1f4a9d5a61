"""The CLI's tables, drawn as incus draws them (tests/integration/test_incus_client.py compares
whole outputs with the real client's); here, a cell of several lines and an empty table."""

from __future__ import annotations

from stapes.cli.output import table_lines


def test_a_cell_of_several_lines_grows_its_row() -> None:
    lines = table_lines(["NAME", "IPV4"], [["c1", "10.0.0.2 (eth0)\n10.0.1.2 (eth1)"]], True)
    assert "".join(lines) == (
        "+------+-----------------+\n"
        "| NAME |      IPV4       |\n"
        "+------+-----------------+\n"
        "| c1   | 10.0.0.2 (eth0) |\n"
        "|      | 10.0.1.2 (eth1) |\n"
        "+------+-----------------+\n"
    )


def test_compact_and_empty() -> None:
    assert table_lines(["NAME", "STATE"], [], False) == ["  NAME  STATE  \n"]
    assert "".join(table_lines(["NAME"], [], True)) == "+------+\n| NAME |\n+------+\n"
