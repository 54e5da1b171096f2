import json

import numpy as np
from click.testing import CliRunner

from mstool.cli import segment as segment_cli
from mstool.cli.main import cli
from mstool.data import synthesize
from mstool.device import make_generator
from mstool.io import read_mask, write_image
from mstool.metastructure import load_prior
from mstool.unsupervised import METHODS


def _images(root, n=3, size=48, kind="nuc"):
    data = synthesize(kind, n, size, generator=make_generator(0))
    for i in range(n):
        write_image(root / f"img{i}.tif", data.images[i, 0].numpy().astype(np.uint16))
    return data.labels


def test_cli_method_choices_follow_the_registry():
    assert set(segment_cli.METHOD_NAMES) == set(METHODS.names())


def test_segment_otsu_and_bootstrapped_prior(tmp_path):
    _images(tmp_path / "imgs")
    runner = CliRunner()
    r = runner.invoke(cli, ["prior", "estimate", "--images", str(tmp_path / "imgs"), "--from", "otsu",
                            "--ems", "sample:0.1", "-o", str(tmp_path / "p.npz")])
    assert r.exit_code == 0, r.output
    prior = load_prior(tmp_path / "p.npz")
    assert prior.names == ("img0", "img1", "img2") and "bootstrap:otsu" in prior.source
    r = runner.invoke(cli, ["segment", str(tmp_path / "imgs"), "--method", "otsu", "--prior", str(tmp_path / "p.npz"),
                            "-o", str(tmp_path / "out"), "-q"])
    assert r.exit_code == 0, r.output
    assert "segmented 3 image(s)" in r.output
    assert read_mask(tmp_path / "out" / "masks" / "img0.png").shape == (48, 48)
    assert json.loads((tmp_path / "out" / "run.json").read_text())["prior"].endswith("p.npz")


def test_segment_bad_inputs(tmp_path):
    _images(tmp_path / "imgs", n=1)
    runner = CliRunner()
    r = runner.invoke(cli, ["segment", str(tmp_path / "imgs"), "-o", str(tmp_path / "o"), "--set", "colour=1"])
    assert r.exit_code == 2 and "bad option" in r.stderr and r.stderr.count("\n") == 1
    r = runner.invoke(cli, ["prior", "estimate", "-o", str(tmp_path / "p.npz")])
    assert r.exit_code == 2 and "exactly one of --labels and --images" in r.output
