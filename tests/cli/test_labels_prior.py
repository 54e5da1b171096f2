import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mstool.cli.main import cli
from mstool.data import write_synthetic_dataset
from mstool.metastructure import load_prior

from ..pictures import assert_picture_has_content


@pytest.fixture(scope="module")
def er_root(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("cli") / "er", "er", n=4, size=48, seed=1)


def test_labels_specs_lists_the_zoo():
    r = CliRunner().invoke(cli, ["labels", "specs"])
    assert r.exit_code == 0
    for name in ("sample", "flip", "random", "dilate", "erode", "skeleton", "shift", "markov", "scribble"):
        assert name in r.output


def test_labels_make_and_analyze(er_root, tmp_path):
    runner = CliRunner()
    for spec, name in (("sample:0.1", "s"), ("dilate:2", "d"), ("region:0.5", "r")):
        r = runner.invoke(cli, ["labels", "make", "--clean", str(er_root), "--spec", spec, "--seed", "1",
                                "-o", str(tmp_path / name)])
        assert r.exit_code == 0, r.output
        assert f"wrote 4 {spec} masks" in r.output
    r = runner.invoke(cli, ["labels", "analyze", "--clean", str(er_root), "--noisy", str(tmp_path / "s"),
                            "--noisy", str(tmp_path / "d"), "--noisy", str(tmp_path / "r"),
                            "--json", str(tmp_path / "a.json")])
    assert r.exit_code == 0, r.output
    assert "taxonomy RCL" in r.output and "taxonomy PCL" in r.output and "rank 2" in r.output
    # the region changes no pixel it keeps: no boundary fraction to give, and it is RCL by its expected density
    assert r.output.count("boundary fraction - (no pixel changed)") == 1 and "nan" not in r.output
    rows = json.loads((tmp_path / "a.json").read_text())
    assert [row["taxonomy"] for row in rows] == ["RCL", "PCL", "RCL"]


def test_labels_make_bad_spec_is_one_line(er_root, tmp_path):
    r = CliRunner().invoke(cli, ["labels", "make", "--clean", str(er_root), "--spec", "dilate:-1",
                                 "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "dilate" in r.stderr
    assert not (tmp_path / "x").exists()
    r = CliRunner().invoke(cli, ["labels", "make", "--clean", str(er_root), "--spec", "blur:2",
                                 "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "unknown" in r.stderr and "sample" in r.stderr


def test_prior_estimate_and_show(er_root, tmp_path):
    runner = CliRunner()
    out = tmp_path / "density.npz"
    r = runner.invoke(cli, ["prior", "estimate", "--labels", str(er_root), "--split", "train", "--ems", "paper",
                            "--kernel", "gaussian", "--bandwidth", "3", "-o", str(out)])
    assert r.exit_code == 0, r.output
    p = load_prior(out)
    assert p.kernel == "gaussian" and p.bandwidth == 3 and "skeleton+shift:1+sample:0.1" in p.source
    assert "known on" not in r.output  # full labels: the prior knows every pixel
    r = runner.invoke(cli, ["prior", "estimate", "--labels", str(er_root), "--split", "train", "-o", str(out)])
    assert r.exit_code == 2 and "exists" in r.stderr
    r = runner.invoke(cli, ["prior", "show", str(out), "-o", str(tmp_path / "p.png"), "--images", str(er_root),
                            "--labels", str(er_root), "--rows", "2"])
    assert r.exit_code == 0, r.output
    assert_picture_has_content(tmp_path / "p.png")


def test_a_region_annotation_prior_is_read_where_it_is_known(er_root, tmp_path):
    """labels make region:0.25 -> prior estimate -> segment --prior: Otsu's fraction is the prior's mean over the
    pixels it knows, not diluted by the three quarters nobody annotated."""
    import torch

    runner = CliRunner()
    r = runner.invoke(cli, ["labels", "make", "--clean", str(er_root), "--split", "test", "--spec", "region:0.25",
                            "--seed", "0", "-o", str(tmp_path / "region")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["prior", "estimate", "--labels", str(tmp_path / "region"), "-o", str(tmp_path / "p.npz")])
    assert r.exit_code == 0, r.output
    prior = load_prior(tmp_path / "p.npz")
    known = prior.known()
    assert 0.2 < float(known.float().mean()) < 0.6  # the drawn quarter and a window around it
    assert f"known on {100 * float(known.float().mean()):.0f}% of the pixels (the rest unlabelled)" in r.output
    fg = prior.foreground()
    r = runner.invoke(cli, ["segment", str(er_root / "test" / "images"), "--method", "otsu", "--prior",
                            str(tmp_path / "p.npz"), "--no-overlays", "-q", "-o", str(tmp_path / "seg")])
    assert r.exit_code == 0, r.output
    images = json.loads((tmp_path / "seg" / "run.json").read_text())["images"]
    for i, name in enumerate(prior.names):
        fraction = images[name]["method_info"]["fraction"][0]
        assert fraction == pytest.approx(float(fg[i][known[i]].mean()), abs=1e-5)
        assert fraction > 1.5 * float(torch.nan_to_num(fg[i], nan=0.0).mean())


def test_prior_show_rejects_a_bad_file(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    r = CliRunner().invoke(cli, ["prior", "show", str(bad), "-o", str(tmp_path / "p.png")])
    assert r.exit_code == 2 and "bad.npz" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "p.png").exists()


def test_real_dsb_sample_through_labels_and_prior(dsb_dir, tmp_path):
    """The real nuclei sample: a 10% sampled label is RCL, a dilated one PCL; a prior estimates from it."""
    import shutil

    clean = tmp_path / "clean"
    clean.mkdir()
    shutil.copy(dsb_dir / "image.tif", clean / "dsb.tif")
    shutil.copy(dsb_dir / "mask.tif", clean / "dsb_masks.tif")
    runner = CliRunner()
    for spec, name in (("sample:0.1", "s"), ("dilate:3", "d")):
        r = runner.invoke(cli, ["labels", "make", "--clean", str(clean), "--spec", spec, "-o", str(tmp_path / name)])
        assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["labels", "analyze", "--clean", str(clean), "--noisy", str(tmp_path / "s"),
                            "--noisy", str(tmp_path / "d"), "--json", str(tmp_path / "a.json")])
    assert r.exit_code == 0, r.output
    assert [row["taxonomy"] for row in json.loads((tmp_path / "a.json").read_text())] == ["RCL", "PCL"]
    r = runner.invoke(cli, ["prior", "estimate", "--labels", str(tmp_path / "s"), "-o", str(tmp_path / "p.npz")])
    assert r.exit_code == 0, r.output
    assert load_prior(tmp_path / "p.npz").density.shape == (1, 2, 512, 512)


def test_class_index_masks_warn_once_per_kind_and_binary_mode_refuses(tmp_path):
    """0..7 masks read as binary: auto reads them as objects with one warning line (and a count of the other
    files), --mask-mode binary refuses them naming the file, multiclass reads them as classes."""
    import shutil

    import numpy as np
    from PIL import Image

    root = write_synthetic_dataset(tmp_path / "ds", "er", n=3, size=32, seed=0)
    rng = np.random.default_rng(0)
    for mask in root.glob("*/labels/*.png"):
        Image.fromarray(rng.integers(0, 8, (32, 32)).astype(np.uint8)).save(mask)
    runner = CliRunner()
    r = runner.invoke(cli, ["prior", "estimate", "--labels", str(root), "-o", str(tmp_path / "p.npz")])
    assert r.exit_code == 0, r.output
    lines = r.stderr.splitlines()
    assert len(lines) == 2 and "read as object ids" in lines[0] and "er_0000.png" in lines[0]
    assert lines[1] == f"Warning: the same for 2 more (the last: {root / 'test' / 'labels' / 'er_0002.png'})"
    r = runner.invoke(cli, ["prior", "estimate", "--labels", str(root), "--mask-mode", "binary",
                            "-o", str(tmp_path / "b.npz")])
    assert r.exit_code == 2 and "er_0000.png: mask values 0, 1, 2" in r.stderr and "--mask-mode" in r.stderr
    r = runner.invoke(cli, ["prior", "estimate", "--labels", str(root), "--mask-mode", "multiclass", "-q",
                            "-o", str(tmp_path / "m.npz")])
    assert r.exit_code == 0 and r.stderr == "" and r.stdout == ""
    assert load_prior(tmp_path / "m.npz").density.shape[1] == 8
    shutil.rmtree(tmp_path / "ds")


def test_labels_make_quiet_and_overwrite_only_its_own_output(er_root, tmp_path):
    runner = CliRunner()
    args = ["labels", "make", "--clean", str(er_root), "--spec", "sample:0.1", "-o", str(tmp_path / "n")]
    r = runner.invoke(cli, [*args, "-q"])
    assert r.exit_code == 0 and r.stdout == "" and r.stderr == ""
    r = runner.invoke(cli, [*args, "--overwrite"])
    assert r.exit_code == 0 and "wrote 4 sample:0.1 masks" in r.stdout
    assert (tmp_path / "n" / "noise.json").exists()


def test_consensus_prior_from_images(tmp_path):
    root = write_synthetic_dataset(tmp_path / "em", "em", n=3, size=48, seed=0)
    runner = CliRunner()
    r = runner.invoke(cli, ["prior", "estimate", "--images", str(root), "--from", "otsu,local,kmeans", "--ems",
                            "sample:0.1", "-o", str(tmp_path / "c.npz")])
    assert r.exit_code == 0, r.output
    prior = load_prior(tmp_path / "c.npz")
    assert prior.source.startswith("bootstrap:otsu+local+kmeans foreground:dark ems:sample:0.1")
    assert prior.fractions is not None and 0.1 < float(prior.foreground().mean()) < 0.5
    for bad, text in ((["--from", "otsu,otsu"], "at least two different methods"),
                      (["--from", "otsu,snake"], "'snake'")):
        r = runner.invoke(cli, ["prior", "estimate", "--images", str(root), *bad, "-o", str(tmp_path / "x.npz")])
        assert r.exit_code == 2 and text in r.stderr and "--from" in r.stderr and r.stderr.count("\n") == 1


def _make(runner, clean, spec, out):
    r = runner.invoke(cli, ["labels", "make", "--clean", str(clean), "--spec", spec, "--seed", "2", "-o", str(out)])
    assert r.exit_code == 0, r.output


@pytest.fixture(scope="module")
def nuc_sets(tmp_path_factory):
    """Clean nuclei labels and three noisy copies: sampled, dilated, skeletons."""
    root = tmp_path_factory.mktemp("audit")
    clean = write_synthetic_dataset(root / "nuc", "nuc", n=6, size=64, seed=3)
    runner = CliRunner()
    for spec, name in (("sample:0.2", "s"), ("dilate:3", "d"), ("skeleton", "k")):
        _make(runner, clean, spec, root / name)
    return root, clean


def test_labels_audit_scores_classifies_and_draws(nuc_sets, tmp_path):
    root, clean = nuc_sets
    r = CliRunner().invoke(cli, ["labels", "audit", "--clean", str(clean), "--noisy", str(root / "s"),
                                 "--noisy", str(root / "d"), "--noisy", str(root / "k"), "--bootstrap", "50",
                                 "--pictures", str(tmp_path / "pics"), "--json", str(tmp_path / "a.json")])
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "a.json").read_text())
    assert [row["taxonomy"] for row in rows] == ["RCL", "PCL", "PCL"]
    sampled, dilated, skeleton = rows
    assert sampled["expected_score"] > 0.95 > sampled["expected_one_draw"]
    assert skeleton["expected_score"] < dilated["expected_score"] < 0.95
    assert all(row["expected_low"] <= row["expected_score"] <= row["expected_high"] for row in rows)
    assert "keeps the meta-structure: expect near-clean training" in r.output
    assert "moves the meta-structure: expect a loss" in r.output
    assert "6 of 6 masks have clean labels" in r.output
    assert sorted(p.name for p in (tmp_path / "pics").glob("*.png")) == ["d.png", "k.png", "s.png"]
    for picture in (tmp_path / "pics").glob("*.png"):
        assert_picture_has_content(picture)
    # `labels analyze` reports the score too, and calls a blob skeleton PCL through it
    r = CliRunner().invoke(cli, ["labels", "analyze", "--clean", str(clean), "--noisy", str(root / "k")])
    assert r.exit_code == 0 and "taxonomy PCL" in r.output and "expected-density score" in r.output


def test_labels_audit_with_clean_labels_for_some_images(nuc_sets, tmp_path):
    import shutil

    root, clean = nuc_sets
    # an expert labelled 2 of the noisy set's training images: a plain folder of their masks
    few = tmp_path / "few"
    few.mkdir()
    noisy_train = root / "s" / "train" / "labels"
    for p in sorted((clean / "train" / "labels").glob("*.png"))[:2]:
        shutil.copy(p, few / p.name)
    r = CliRunner().invoke(cli, ["labels", "audit", "--clean", str(few), "--noisy", str(noisy_train),
                                 "--bootstrap", "0"])
    assert r.exit_code == 0, r.output
    total = len(list(noisy_train.glob("*.png")))
    assert total > 2 and f"2 of {total} masks have clean labels and were used" in r.output
    assert "[no interval: --bootstrap 0]" in r.output  # not a zero-width interval


def test_labels_audit_bad_input_is_one_line(nuc_sets, tmp_path):
    import numpy as np
    import tifffile

    root, clean = nuc_sets
    other = tmp_path / "other"
    other.mkdir()
    tifffile.imwrite(other / "unrelated.tif", np.zeros((64, 64), np.uint8))
    r = CliRunner().invoke(cli, ["labels", "audit", "--clean", str(clean), "--noisy", str(other)])
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and "no mask shares a name" in r.stderr
    import shutil

    small = tmp_path / "small"
    shutil.copytree(root / "s", small)
    mask = sorted(small.rglob("*.png"))[0]
    from mstool.io import write_mask

    write_mask(mask, np.zeros((32, 64), np.uint8))
    r = CliRunner().invoke(cli, ["labels", "audit", "--clean", str(clean), "--noisy", str(small),
                                 "--pictures", str(tmp_path / "pics")])
    assert r.exit_code == 2 and r.stderr.count("\n") == 1
    assert mask.name in r.stderr and "32 x 64" in r.stderr and "64 x 64" in r.stderr
    assert not (tmp_path / "pics").exists()  # nothing written on a refused input


def test_labels_audit_warns_that_weak_signal_trains_slowly(nuc_sets, tmp_path):
    root, clean = nuc_sets
    _make(CliRunner(), clean, "flip:0.45,0.45", tmp_path / "f")
    r = CliRunner().invoke(cli, ["labels", "audit", "--clean", str(clean), "--noisy", str(tmp_path / "f"),
                                 "--bootstrap", "0"])
    assert r.exit_code == 0, r.output
    assert "RCL: keeps the meta-structure" in r.output and "needs many more steps to converge" in r.output


def test_labels_audit_of_all_background_labels_says_the_score_is_undefined(tmp_path):
    import numpy as np

    from mstool.io import write_mask

    for name in ("clean", "noisy"):
        (tmp_path / name).mkdir()
        for i in range(3):
            write_mask(tmp_path / name / f"m{i}.png", np.zeros((32, 32), np.uint8))
    r = CliRunner().invoke(cli, ["labels", "audit", "--clean", str(tmp_path / "clean"),
                                 "--noisy", str(tmp_path / "noisy"), "--json", str(tmp_path / "a.json")])
    assert r.exit_code == 0, r.output
    assert "score undefined: the clean labels hold no foreground" in r.output
    assert json.loads((tmp_path / "a.json").read_text())[0]["expected_score"] is None


def test_segment_takes_a_region_annotation_as_scribbles(er_root, tmp_path, monkeypatch):
    """labels make region:0.25 -> segment --scribbles: each image's own partial labels reach the method, pixel for
    pixel, and run.json counts them."""
    import numpy as np
    import torch

    from mstool.io import read_mask
    from mstool.runs import _segment
    from mstool.unsupervised import DFC

    runner = CliRunner()
    r = runner.invoke(cli, ["labels", "make", "--clean", str(er_root), "--spec", "region:0.25", "--seed", "0",
                            "-o", str(tmp_path / "region")])
    assert r.exit_code == 0, r.output
    seen = []
    segment = DFC.segment

    def spy(self, images, **kwargs):
        seen.append(kwargs["scribbles"].clone())
        return segment(self, images, **kwargs)

    monkeypatch.setattr(DFC, "segment", spy)
    drawn_beside = []
    monkeypatch.setattr(_segment, "plot_label_panel", lambda path, columns, **kw: drawn_beside.append(columns))
    r = runner.invoke(cli, ["segment", str(er_root), "--method", "dfc", "--set", "iterations=2", "--scribbles",
                            str(tmp_path / "region"), "-q", "-o", str(tmp_path / "seg")])
    assert r.exit_code == 0, r.output
    run = json.loads((tmp_path / "seg" / "run.json").read_text())
    assert run["scribbles"] == str(tmp_path / "region")
    drawn = {p.stem: read_mask(p) for p in (tmp_path / "region").rglob("*.png")}
    assert set(run["images"]) == set(drawn) and len(seen) == 1 and seen[0].shape[0] == len(drawn) == 4
    for i, name in enumerate(run["images"]):
        assert np.array_equal(seen[0][i].numpy(), drawn[name])
        # each overlay shows the image's own scribbles beside its mask
        assert [c[0] for c in drawn_beside[i]] == ["image", "mask", "scribbles (grey: not labelled)"]
        assert np.array_equal(drawn_beside[i][2][1], drawn[name])
        labelled = int((drawn[name] != 255).sum())
        assert 0 < labelled < drawn[name].size and run["images"][name]["scribbled"] == labelled
    assert int(torch.isin(seen[0], torch.tensor([0, 1])).sum()) == sum(
        v["scribbled"] for v in run["images"].values())


def test_segment_scribbles_bad_input_is_one_line(er_root, tmp_path):
    from mstool.io import write_mask

    runner = CliRunner()
    name = sorted((er_root / "train" / "images").iterdir())[0].stem

    def run(*extra, method="dfc"):
        return runner.invoke(cli, ["segment", str(er_root), "--split", "train", "--method", method,
                                   "--set", "iterations=1",
                                   "--no-overlays", "-q", "-o", str(tmp_path / "out"), *extra])

    (tmp_path / "ok").mkdir()
    write_mask(tmp_path / "ok" / f"{name}.png", np.full((48, 48), 255, dtype=np.uint8))
    for folder, mask in (("values", np.full((48, 48), 2, dtype=np.uint8)),
                         ("size", np.zeros((40, 48), dtype=np.uint8)),
                         ("names", np.zeros((48, 48), dtype=np.uint8))):
        write_mask(tmp_path / folder / f"{'other' if folder == 'names' else name}.png", mask)
    # a gray (not palette) PNG of 0, 2 and 255: read as object ids it would be foreground everywhere
    gray = np.full((48, 48), 255, dtype=np.uint8)
    gray[:10], gray[20:30] = 2, 0
    (tmp_path / "gray").mkdir()
    Image.fromarray(gray, mode="L").save(tmp_path / "gray" / f"{name}.png")
    for extra, method, message in (
            (["--scribbles", str(tmp_path / "gray")], "dfc", "scribbles hold 0 (background), 1 (foreground) and "
                                                             "255 (not labelled); found 2"),
            (["--scribbles", str(tmp_path / "ok")], "otsu", "method 'otsu' takes no scribbles (partial labels); dfc, "
                                                            "igtt do"),
            (["--scribbles", str(tmp_path / "values")], "dfc", "scribbles hold 0 (background), 1 (foreground) and "
                                                               "255 (not labelled); found 2"),
            (["--scribbles", str(tmp_path / "size")], "dfc", "scribbles are 40 x 48 but image"),
            (["--scribbles", str(tmp_path / "names")], "dfc", "no scribble mask is named like an image"),
            (["--scribbles", str(tmp_path / "ok"), "--checkpoint", str(tmp_path / "ok" / f"{name}.png")], "igtt",
             "scribbles train a network, and a checkpoint only predicts")):
        r = run(*extra, method=method)
        assert r.exit_code == 2 and r.stderr.count("\n") == 1 and message in r.stderr, (extra, r.output)
        assert not (tmp_path / "out").exists()
    # an image with no mask in the folder is segmented without scribbles, and said so
    r = run("--scribbles", str(tmp_path / "ok"))
    assert r.exit_code == 0, r.output
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert any("no mask for 1 of 2 images" in w for w in record["warnings"])
    assert sorted(v["scribbled"] for v in record["images"].values()) == [0, 0]
