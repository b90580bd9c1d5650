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
