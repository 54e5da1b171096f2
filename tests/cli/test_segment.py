import json

import numpy as np
import torch
from click.testing import CliRunner

from mstool.cli import segment as segment_cli
from mstool.cli.main import cli
from mstool.data import synthesize
from mstool.device import make_generator
from mstool.io import read_mask, write_image
from mstool.metastructure import load_prior


def _images(root, n=3, size=48, kind="nuc"):
    data = synthesize(kind, n, size, generator=make_generator(0))
    for i in range(n):
        write_image(root / f"img{i}.tif", data.images[i, 0].numpy().astype(np.uint16))
    return data.labels


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
    # a precision this machine cannot run: one line, and no output folder left behind
    if not torch.cuda.is_available():
        r = runner.invoke(cli, ["segment", str(tmp_path / "imgs"), "--method", "igtt", "--set", "precision=fp16",
                                "-o", str(tmp_path / "fp16"), "-q"])
        assert r.exit_code == 2 and r.stderr.count("\n") == 1, r.output
        assert "`precision` 'fp16' needs a CUDA device" in r.stderr and not (tmp_path / "fp16").exists()


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


def test_segment_reads_dataset_and_cellpose_folders_as_images_only(tmp_path):
    """A dataset root segments its images (every split, or --split), a cellpose folder never its *_masks files."""
    from mstool.data import write_synthetic_dataset

    root = write_synthetic_dataset(tmp_path / "ds", "nuc", n=5, size=32, seed=0)
    runner = CliRunner()
    r = runner.invoke(cli, ["segment", str(root), "-o", str(tmp_path / "all"), "-q", "--no-overlays"])
    assert r.exit_code == 0, r.output
    assert sorted(p.stem for p in (tmp_path / "all" / "masks").iterdir()) == [f"nuc_{i:04d}" for i in range(5)]
    r = runner.invoke(cli, ["segment", str(root), "--split", "test", "-o", str(tmp_path / "test"), "-q"])
    assert r.exit_code == 0, r.output
    assert [p.stem for p in (tmp_path / "test" / "masks").iterdir()] == ["nuc_0004"]
    cp = tmp_path / "cp"
    labels = _images(cp, n=2, size=32)
    for i in range(2):
        from mstool.io import write_mask

        write_mask(cp / f"img{i}_masks.png", labels[i])
    r = runner.invoke(cli, ["segment", str(cp), "-o", str(tmp_path / "cpout"), "-q", "--no-overlays"])
    assert r.exit_code == 0, r.output
    assert sorted(p.stem for p in (tmp_path / "cpout" / "masks").iterdir()) == ["img0", "img1"]
    r = runner.invoke(cli, ["prior", "estimate", "--images", str(cp), "-o", str(tmp_path / "cp.npz"), "-q"])
    assert r.exit_code == 0, r.output
    assert load_prior(tmp_path / "cp.npz").names == ("img0", "img1")


def test_igtt_on_constant_images_gives_empty_masks_and_says_so(tmp_path):
    """A constant image (and a 1 x 1 one) gets an empty mask and one warning line; no network is saved for it,
    not even the one trained on another size group."""
    _images(tmp_path / "imgs", n=2, size=32)
    write_image(tmp_path / "imgs" / "flat.tif", np.full((24, 24), 7, np.uint16))
    write_image(tmp_path / "imgs" / "dot.tif", np.full((1, 1), 7, np.uint16))
    r = CliRunner().invoke(cli, ["segment", str(tmp_path / "imgs"), "--method", "igtt", *IGTT_SETTINGS,
                                 "--no-overlays", "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    warned = [line for line in r.stderr.splitlines() if "Warning:" in line]
    assert any("flat.tif is constant" in line for line in warned)
    assert any("iGTT: constant image(s) [0] have no structure" in line for line in warned)
    assert len(warned) == len(set(warned))
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["checkpoints"] == {"32x32": "model-32x32.pt"} and run["threads"] >= 1
    assert any("constant" in w for w in run["warnings"])
    assert read_mask(tmp_path / "out" / "masks" / "flat.png").sum() == 0
    assert read_mask(tmp_path / "out" / "masks" / "dot.png").shape == (1, 1)
    assert sorted(p.name for p in (tmp_path / "out").glob("*.pt")) == ["model-32x32.pt"]


def test_a_prior_with_almost_no_mass_is_warned_about(tmp_path):
    from mstool.metastructure import Prior, save_prior

    _images(tmp_path / "imgs", n=2, size=32)
    import torch

    density = torch.zeros(2, 2, 32, 32)
    density[:, 0] = 1
    save_prior(tmp_path / "empty.npz", Prior(density, ("img0", "img1"), ("background", "foreground")))
    r = CliRunner().invoke(cli, ["segment", str(tmp_path / "imgs"), "--prior", str(tmp_path / "empty.npz"),
                                 "-o", str(tmp_path / "out"), "--no-overlays"])
    assert r.exit_code == 0, r.output
    assert "almost no mass" in r.stderr and "2 of 2 entries" in r.stderr
    assert any("almost no mass" in w for w in json.loads((tmp_path / "out" / "run.json").read_text())["warnings"])
    r = CliRunner().invoke(cli, ["segment", str(tmp_path / "imgs"), "--prior", str(tmp_path / "empty.npz"),
                                 "-o", str(tmp_path / "quiet"), "--no-overlays", "-q"])
    assert r.exit_code == 0 and r.stderr == "" and r.stdout == ""


def test_skipped_images_are_warned_once_and_counted(tmp_path):
    _images(tmp_path / "imgs", n=2, size=32)
    (tmp_path / "imgs" / "broken.tif").write_bytes(b"not a tiff")
    r = CliRunner().invoke(cli, ["segment", str(tmp_path / "imgs"), "-o", str(tmp_path / "out"), "--no-overlays"])
    assert r.exit_code == 0, r.output
    assert [line for line in r.stderr.splitlines() if line.startswith("Warning: skipped")] == [
        line for line in r.stderr.splitlines() if "broken.tif" in line]
    assert "segmented 2 image(s) with otsu" in r.stdout and "1 skipped" in r.stdout
    assert "broken.tif" in json.loads((tmp_path / "out" / "run.json").read_text())["problems"][0]


def test_igtt_auto_segments_em_membranes_and_says_why(tmp_path):
    from mstool.data import write_synthetic_dataset

    root = write_synthetic_dataset(tmp_path / "em", "em", n=3, size=64, seed=0)
    r = CliRunner().invoke(cli, ["segment", str(root), "--method", "igtt", *IGTT_SETTINGS, "--no-overlays",
                                 "-o", str(tmp_path / "out"), "-q"])
    assert r.exit_code == 0, r.output
    info = json.loads((tmp_path / "out" / "run.json").read_text())["images"]["em_0000"]["method_info"]
    assert info["foreground"] == "dark" and info["foreground_rule"] == "auto"
    assert "background is bright" in info["foreground_reason"]
