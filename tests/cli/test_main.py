import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from mstool import __version__
from mstool.cli.main import cli


def test_help_lists_commands():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "data" in result.output and "meta-structure" in result.output


def test_version_banner():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == f"mstool {__version__}"
    assert lines[1].startswith("torch ") and "kornia" in lines[1]
    assert lines[2].startswith("device: ")


def test_help_does_not_import_torch():
    code = ("import sys; from click.testing import CliRunner; from mstool.cli.main import cli; "
            "r = CliRunner().invoke(cli, ['data', '--help']); assert r.exit_code == 0, r.output; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_installed_entry_point_runs(tmp_path):
    exe = Path(sys.executable).parent / ("mstool.exe" if os.name == "nt" else "mstool")
    assert exe.exists(), f"console script not installed at {exe}"
    out = subprocess.run([str(exe), "data", "synth", "--kind", "nuc", "--n", "3", "--size", "32",
                          str(tmp_path / "nuc")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "nuc" / "dataset.json").exists()
    bad = subprocess.run([str(exe), "data", "check", str(tmp_path / "nope")], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "does not exist" in bad.stderr


def test_quiet_silences_library_log_warnings_and_restores_logging(caplog):
    import logging

    import click

    from mstool.cli.options import handle_errors, quiet_option

    @click.command()
    @quiet_option
    @handle_errors
    def noisy(quiet):
        logging.getLogger("ray").warning("a library's start-up warning")
        logging.getLogger("ray").error("a library's error")

    caplog.set_level(logging.INFO)
    assert CliRunner().invoke(noisy, []).exit_code == 0
    loud = [r.getMessage() for r in caplog.records]
    caplog.clear()
    assert CliRunner().invoke(noisy, ["-q"]).exit_code == 0
    quiet = [r.getMessage() for r in caplog.records]
    assert loud == ["a library's start-up warning", "a library's error"]
    assert quiet == ["a library's error"]  # errors still come through
    assert logging.root.manager.disable == logging.NOTSET  # the next command logs as before
