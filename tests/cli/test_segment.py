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
                            "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert "segmented 3 image(s)" in r.output
    assert read_mask(tmp_path / "out" / "masks" / "img0.png").shape == (48, 48)
    assert json.loads((tmp_path / "out" / "run.json").read_text())["prior"].endswith("p.npz")


def test_segment_bad_inputs(tmp_path):
    _images(tmp_path / "imgs", n=1)
    runner = CliRunner()
    r = runner.invoke(cli, ["segment", str(tmp_path / "imgs"), "-o", str(tmp_path / "o"), "--set", "colour=1"])
    assert r.exit_code == 2 and r.stderr.count("\n") == 1
    assert "method 'otsu' has no option 'colour'; its options are: foreground, bins" in r.stderr
    r = runner.invoke(cli, ["prior", "estimate", "-o", str(tmp_path / "p.npz")])
    assert r.exit_code == 2 and "exactly one of --labels and --images" in r.output


IGTT_SETTINGS = ["--set", "rounds=2", "--set", "steps=1", "--set", "crop=16", "--set", "thresholds=5",
                 "--set", "model_options.base=4", "--set", "model_options.depth=1"]


def test_segment_progress_bars_and_quiet(tmp_path):
    _images(tmp_path / "imgs", n=2, size=32)
    runner = CliRunner()
    r = runner.invoke(cli, ["segment", str(tmp_path / "imgs"), "--method", "igtt", *IGTT_SETTINGS, "--no-overlays",
                            "-o", str(tmp_path / "loud")])
    assert r.exit_code == 0, r.output
    assert "images" in r.stderr and "2/2" in r.stderr and "rounds" in r.stderr
    r = runner.invoke(cli, ["segment", str(tmp_path / "imgs"), "--method", "igtt", *IGTT_SETTINGS, "--no-overlays",
                            "-o", str(tmp_path / "quiet"), "-q"])
    assert r.exit_code == 0, r.output
    assert r.stderr == "" and r.stdout == ""  # -q: no bars, no warnings, no closing line
    assert len(list((tmp_path / "quiet" / "masks").iterdir())) == 2


def test_segment_checkpoint_folder_with_two_sizes(tmp_path):
    _images(tmp_path / "imgs", n=2, size=32)
    data = synthesize("nuc", 1, 40, generator=make_generator(1))
    write_image(tmp_path / "imgs" / "big.tif", data.images[0, 0].numpy().astype(np.uint16))
    runner = CliRunner()
    r = runner.invoke(cli, ["segment", str(tmp_path / "imgs"), "--method", "igtt", *IGTT_SETTINGS, "--no-overlays",
                            "-o", str(tmp_path / "trained"), "-q"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "trained").glob("*.pt")) == ["model-32x32.pt", "model-40x40.pt"]
    for checkpoint in (tmp_path / "trained", tmp_path / "trained" / "model-40x40.pt"):
        out = tmp_path / f"again-{checkpoint.name}"
        r = runner.invoke(cli, ["segment", str(tmp_path / "imgs"), "--method", "igtt", "--checkpoint",
                                str(checkpoint), "--no-overlays", "-o", str(out), "-q"])
        assert r.exit_code == 0, r.output
        assert json.loads((out / "run.json").read_text())["images"]["big"]["checkpoint"].endswith("model-40x40.pt")
    r = runner.invoke(cli, ["segment", str(tmp_path / "imgs"), "--method", "igtt", "--checkpoint",
                            str(tmp_path / "imgs"), "-o", str(tmp_path / "bad")])
    assert r.exit_code == 2 and "model-40x40.pt or model.pt" in r.stderr and r.stderr.count("\n") == 1


def test_round_bar_restarts_for_each_network(capsys):
    bars = segment_cli._Bars(quiet=False)
    bars({"event": "start", "images": 2, "groups": 1})
    bars({"event": "group", "size": [8, 8], "images": 2})
    for index, step in ((0, 1), (0, 2), (0, 3), (1, 1)):
        bars({"event": "round", "round": step, "rounds": 5, "index": index, "images": 2, "size": [8, 8]})
    assert bars.rounds.n == 1 and bars.rounds.total == 5 and bars.rounds.desc.startswith("image 2/2")
    bars({"event": "image", "name": "a"})
    assert bars.rounds is None and bars.images.n == 1
    bars.close()
    assert "images" in capsys.readouterr().err
    quiet = segment_cli._Bars(quiet=True)
    quiet({"event": "start", "images": 2, "groups": 1})
    assert quiet.images is None and capsys.readouterr().err == ""
