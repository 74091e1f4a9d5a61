"""The SFTP helper's command line (parsed by hand: argparse was measurably slow in a forked
spare) takes what the daemon sends and refuses the rest, before entering any instance."""

from __future__ import annotations

import pytest

from stapes.host import sftp_server


def test_the_daemons_two_forms_parse() -> None:
    stopped = sftp_server.parse(["--root", "/var/lib/x/rootfs", "--id-base", "1000000"])
    assert stopped == sftp_server.Options(root="/var/lib/x/rootfs", id_base=1000000)
    running = sftp_server.parse(["--pid", "42", "--userns"])
    assert running == sftp_server.Options(pid="42", userns=True)


@pytest.mark.parametrize(
    "argv", [["--root"], ["--id-base", "x"], ["--chroot", "/"], ["/"], ["--pid"]]
)
def test_anything_else_is_refused_without_serving(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert sftp_server.main(argv) == 2
    assert capsys.readouterr().err.startswith("sftp: ")
