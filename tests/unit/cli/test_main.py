"""``cdyb-jxc``: a domain error out of any sub-command is one line on stderr and the exit status of its
retryable flag (SPEC §8), never a traceback."""

from __future__ import annotations

import pytest

from cdyb_jxc.cli import main
from cdyb_jxc.cli import simulator as simulator_cli
from cdyb_jxc.exceptions import CallRejectedError, ProfileError, TransportError


def test_a_bad_profile_for_the_simulator_exits_2_naming_it(tmp_path, capsys):
    missing = tmp_path / "nope.toml"
    code = main(["simulator", "dump", "--db", str(tmp_path / "sim.db"), "--profile", str(missing)])
    assert code == 2
    assert capsys.readouterr().err == f"cdyb-jxc: profile file {missing} does not exist\n"


@pytest.mark.parametrize(
    ("err", "code"), [(ProfileError("bad"), 2), (CallRejectedError("no"), 2), (TransportError("gone"), 1)]
)
def test_any_domain_error_of_a_sub_command_maps_from_its_flag(monkeypatch, capsys, tmp_path, err, code):
    def _dump(args):
        raise err

    monkeypatch.setattr(simulator_cli, "_dump", _dump)
    assert main(["simulator", "dump", "--db", str(tmp_path / "sim.db")]) == code
    assert capsys.readouterr().err == f"cdyb-jxc: {err}\n"


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path):
    """``cdyb-jxc simulator dump | head``: the pipe closes under the command; no traceback follows."""
    import subprocess
    import sys
    from pathlib import Path

    import cdyb_jxc

    program = (
        "import sys\n"
        "from cdyb_jxc.cli import main, simulator\n"
        "def endless(args):\n"
        "    while True:\n"
        "        print('serial_no,quantity')\n"
        "simulator._dump = endless\n"
        f"sys.exit(main(['simulator', 'dump', '--db', {str(tmp_path / 'sim.db')!r}]))\n"
    )
    env = {"PYTHONPATH": str(Path(cdyb_jxc.__file__).parent.parent), "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen(
        [sys.executable, "-c", program], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    assert proc.stdout.readline() == b"serial_no,quantity\n"
    proc.stdout.close()  # what head does once it has its lines
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=30) == 1
    assert "Traceback" not in err, err
    assert "BrokenPipe" not in err, err


def test_a_broken_pipe_that_is_not_stdouts_is_shown(monkeypatch, tmp_path):
    def _dump(args):
        raise BrokenPipeError(32, "a socket of its own")

    monkeypatch.setattr(simulator_cli, "_dump", _dump)
    with pytest.raises(BrokenPipeError, match="a socket of its own"):
        main(["simulator", "dump", "--db", str(tmp_path / "sim.db")])
