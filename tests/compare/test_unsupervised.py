import json

import pytest
import torch

from mstool.compare import (
    SuiteConfig,
    parse_method_spec,
    run_suite,
    split_method_list,
    summarize_unsupervised,
    write_results,
)
from mstool.errors import DataError, ParameterError

from ..pictures import assert_picture_has_content

TINY = {"epochs": 1, "model_options": {"base": 4, "depth": 2}, "crop": 32, "batch_size": 4, "probe": False}
TINY_IGTT = "igtt:rounds=1,steps=2,model-options.base=4,model-options.depth=2"


def test_method_specs_parse_to_canonical_strings():
    assert str(parse_method_spec("igtt: no_ems , rounds=4")) == "igtt:no-ems,rounds=4"
    spec = parse_method_spec("igtt:prior=otsu,prior-weight=2.5")
    assert spec.prior == "otsu" and dict(spec.options) == {"prior_weight": 2.5}
    assert str(spec) == "igtt:prior=otsu,prior-weight=2.5"
    assert parse_method_spec("otsu").deterministic and not parse_method_spec("kmeans").deterministic
    assert not parse_method_spec("otsu:prior=dfc").deterministic
    consensus = parse_method_spec("igtt:prior=otsu+local")
    assert consensus.prior == "otsu+local" and str(consensus) == "igtt:prior=otsu+local"
    assert parse_method_spec("local:prior=otsu+local").deterministic
    assert not parse_method_spec("local:prior=otsu+kmeans").deterministic
    cfg = SuiteConfig(labels=[], seeds=[0], unsupervised=["igtt:prior=otsu+local"], train=TINY)
    assert [c.id for c in cfg.cells()] == ["unsup-igtt-prior-otsu+local__seed0"]


def test_labels_priors_keep_their_spec_whole_and_draw_per_seed_only_when_the_spec_does():
    rough = parse_method_spec("igtt:prior=labels:flip:0.2,0.1,no-ems,prior-weight=2")
    assert rough.prior == "labels:flip:0.2,0.1" and dict(rough.options) == {"no_ems": True, "prior_weight": 2}
    assert str(rough) == "igtt:prior=labels:flip:0.2,0.1,no-ems,prior-weight=2"
    assert parse_method_spec("igtt:prior=labels").prior == "labels:clean"
    # a word argument of the spec stays in it; a method option after it does not
    assert parse_method_spec("otsu:prior=labels:sample:0.1,ignore").prior == "labels:sample:0.1,ignore"
    assert parse_method_spec("otsu:prior=labels:dilate:1").deterministic
    assert not parse_method_spec("otsu:prior=labels:dilate:1+sample:0.3").deterministic
    cfg = SuiteConfig(labels=[], seeds=[0, 1], unsupervised=["otsu:prior=labels:dilate:1",
                                                             "otsu:prior=labels:flip:0.2,0.1"], train=TINY)
    assert [c.id for c in cfg.cells()] == ["unsup-otsu-prior-labels-dilate-1__seed0",
                                           "unsup-otsu-prior-labels-flip-0.2_0.1__seed0",
                                           "unsup-otsu-prior-labels-flip-0.2_0.1__seed1"]
    assert split_method_list("otsu,igtt:prior=labels:flip:0.2,0.1,rounds=2,dfc") == [
        "otsu", "igtt:prior=labels:flip:0.2,0.1,rounds=2", "dfc"]


def test_scribbles_items_keep_their_spec_whole_and_draw_per_seed():
    both = parse_method_spec("igtt:prior=labels:region:0.25,scribbles=labels:region:0.25,rounds=2")
    assert both.prior == both.scribbles == "labels:region:0.25" and dict(both.options) == {"rounds": 2}
    assert str(both) == "igtt:prior=labels:region:0.25,scribbles=labels:region:0.25,rounds=2"
    assert parse_method_spec("dfc:scribbles=labels:sample:0.1,ignore").scribbles == "labels:sample:0.1,ignore"
    # a partial annotation is a draw, so even a deterministic method runs once per seed with one
    assert not parse_method_spec("dfc:scribbles=labels:region:0.25").deterministic
    assert split_method_list("otsu,dfc:scribbles=labels:flip:0.2,0.1,iterations=2") == [
        "otsu", "dfc:scribbles=labels:flip:0.2,0.1,iterations=2"]


@pytest.mark.parametrize("text, match", [
    ("watershed", "unknown unsupervised method 'watershed'"),
    ("igtt:rounds=0", "rounds"),
    ("igtt:colour=red", "method 'igtt' has no option 'colour'; its options are: rounds, steps"),
    ("igtt:prior=labelz", "prior=labelz.*bootstrapped.*or `labels:SPEC`"),
    ("igtt:prior=labels:bogus", "unknown label spec 'bogus'"),
    ("igtt:prior=labels:", "empty spec"),
    ("igtt:prior=otsu,prior=labels", "one prior per unsupervised method entry"),
    ("igtt:prior=otsu+otsu", "at least two different methods"),
    ("igtt:model-options=2,model-options.base=4", "both as a value"),
    ("otsu:scribbles=labels:region:0.25", "method 'otsu' takes no scribbles.*dfc, igtt do"),
    ("igtt:scribbles=region:0.25", "scribbles are `labels:SPEC`"),
    ("igtt:scribbles=labels", "scribbles are `labels:SPEC`"),
    ("dfc:scribbles=labels:bogus", "unknown label spec 'bogus'"),
    ("dfc:scribbles=labels:region:0.1,scribbles=labels:region:0.2", "one scribbles item"),
    ("", "NAME"),
])
def test_bad_method_specs_say_what_is_wrong(text, match):
    with pytest.raises(ParameterError, match=match):
        parse_method_spec(text)


def test_method_lists_split_before_method_names_only():
    assert split_method_list(["otsu,igtt:no-ems,rounds=2", "dfc:prior=otsu,local"]) == [
        "otsu", "igtt:no-ems,rounds=2", "dfc:prior=otsu", "local"]
    assert split_method_list("igtt,no-ems,rounds=2") == ["igtt:no-ems,rounds=2"]


def test_deterministic_methods_get_one_cell_learned_ones_one_per_seed():
    cfg = SuiteConfig(labels=["clean"], seeds=[3, 4], unsupervised=["otsu", "kmeans", "otsu:prior=kmeans"],
                      train=TINY)
    ids = [c.id for c in cfg.cells()]
    assert ids == ["clean__unet__seed3", "clean__unet__seed4", "unsup-otsu__seed3", "unsup-kmeans__seed3",
                   "unsup-kmeans__seed4", "unsup-otsu-prior-kmeans__seed3", "unsup-otsu-prior-kmeans__seed4"]
    with pytest.raises(ParameterError, match="at least one label spec"):
        SuiteConfig(labels=[], unsupervised=[])


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("unsup") / "run"
    cfg = SuiteConfig(data="synth:er", labels=["clean"], seeds=[0], synth_n=6, synth_size=48, train=TINY,
                      unsupervised=["otsu", TINY_IGTT, "dfc:iterations=3,prior=otsu", "multiotsu",
                                    "otsu:prior=labels",
                                    "dfc:iterations=2,prior=labels:region:0.5,scribbles=labels:region:0.5"])
    rows = run_suite(cfg, run)
    return run, cfg, rows


def test_unsupervised_rows_are_evaluated_on_the_test_images(mixed_run):
    run, cfg, rows = mixed_run
    by_cell = {r["cell"]: r for r in rows}
    otsu = by_cell["unsup-otsu__seed0"]
    assert otsu["kind"] == "unsupervised" and otsu["model"] == "otsu" and otsu["prior"] is None
    assert otsu["n_images"] == 1  # 6 images: 60/20/20 leaves one test image
    assert 0.3 < otsu["mask/dice"] <= 1 and otsu["oracle/dice"] >= otsu["mask/dice"] - 1e-9
    assert otsu["oracle/uses_test_labels"] is True
    igtt = by_cell["unsup-igtt-model-options.base-4_model-options.depth-2_rounds-1_steps-2__seed0"]
    assert igtt["options"]["model_options"] == {"base": 4, "depth": 2}
    # ground truth given to iGTT is only logged per round, never chosen by
    assert len(igtt["method_info"]["rounds"]) == 1 and "dice" in igtt["method_info"]["rounds"][0]
    dfc = by_cell["unsup-dfc-prior-otsu_iterations-3__seed0"]
    assert dfc["prior"] == "otsu" and dfc["options"] == {"iterations": 3}
    assert by_cell["clean__unet__seed0"]["kind"] == "supervised"
    # multi-Otsu's brightest class is its foreground: a smaller mask than Otsu's two-class split
    multi = by_cell["unsup-multiotsu__seed0"]
    assert 0 < multi["mask/tp"] + multi["mask/fp"] < otsu["mask/tp"] + otsu["mask/fp"]
    # a prior from the exact test labels sets Otsu's threshold to their foreground share
    exact = by_cell["unsup-otsu-prior-labels-clean__seed0"]
    assert exact["prior"] == "labels:clean"
    assert exact["mask/tp"] + exact["mask/fp"] == pytest.approx(exact["mask/tp"] + exact["mask/fn"], rel=0.02)
    assert otsu["mask/tp"] + otsu["mask/fp"] != pytest.approx(otsu["mask/tp"] + otsu["mask/fn"], rel=0.02)
    scribbled = by_cell["unsup-dfc-prior-labels-region-0.5_scribbles-labels-region-0.5_iterations-2__seed0"]
    assert scribbled["scored"] == "pixels without scribbles"
    assert scribbled["drawn_fraction"] == pytest.approx(0.5, abs=0.05)
    assert (run / "log.txt").read_text().count("mask/dice") == 6


def test_report_sets_unsupervised_rows_beside_the_supervised_clean_row(mixed_run):
    run, cfg, rows = mixed_run
    write_results(run)
    md = (run / "summary.md").read_text()
    assert "## Unsupervised methods beside supervised training" in md
    table = [line for line in md.split("## Unsupervised")[1].splitlines() if line.startswith("|")]
    assert len(table) >= 3 and len({line.count("|") for line in table}) == 1  # every row fills the header's columns
    assert "| supervised unet | clean training labels |" in md
    assert "| otsu | none | " in md and "none (prior bootstrapped from otsu)" in md
    assert "| otsu:prior=labels:clean | the exact test labels, as a prior | " in md
    assert ("the test labels through region:0.5, as scribbles, and as a prior | " in md
            and "| own mask, where no scribble was drawn |" in md)
    # the supervised table holds only the label specs
    supervised_table = md.split("## Unsupervised")[0]
    assert "igtt" not in supervised_table
    assert_picture_has_content(run / "plots" / "unsupervised.png")
    assert_picture_has_content(run / "plots" / "unsupervised_examples.png")
    assert "Unsupervised methods beside supervised training" in (run / "report.html").read_text()
    summary = summarize_unsupervised(rows)
    assert [e["spec"] for e in summary] == [
        "otsu", "igtt:model-options.base=4,model-options.depth=2,rounds=1,steps=2", "dfc:prior=otsu,iterations=3",
        "multiotsu", "otsu:prior=labels:clean",
        "dfc:prior=labels:region:0.5,scribbles=labels:region:0.5,iterations=2"]
    assert json.loads((run / "results.json").read_text())["suite"]["unsupervised"][0] == "otsu"


def test_methods_can_be_added_to_a_finished_run(mixed_run):
    run, cfg, _ = mixed_run
    more = SuiteConfig.from_dict({**cfg.to_dict(), "labels": [], "unsupervised": ["local"]})
    rows = run_suite(more, run)
    assert {r["cell"] for r in rows} >= {"unsup-local__seed0", "unsup-otsu__seed0", "clean__unet__seed0"}


def test_multiclass_suites_refuse_unsupervised_rows(tmp_path):
    from mstool.data import write_synthetic_dataset

    root = tmp_path / "shapes"
    write_synthetic_dataset(root, "shapes", 5, 32, seed=0)
    cfg = SuiteConfig(data=str(root), labels=[], seeds=[0], unsupervised=["otsu"], train=TINY)
    with pytest.raises(DataError, match="need binary data"):
        run_suite(cfg, tmp_path / "run")


def test_gap_closed_is_the_papers_share():
    from mstool.compare import gap_closed

    gaps = gap_closed([{"spec": "otsu", "mask/dice": 0.695}, {"spec": "igtt", "mask/dice": 0.788}], 0.86)
    assert gaps["otsu"] == 0 and abs(gaps["igtt"] - 0.5636) < 1e-3
    assert all(v != v for v in gap_closed([{"spec": "igtt", "mask/dice": 0.8}], 0.9).values())  # no Otsu: NaN


def test_a_scribbled_cell_gets_the_prior_of_its_own_annotation_and_is_scored_where_nothing_was_drawn(
        tmp_path, monkeypatch):
    from mstool import IGNORE_INDEX
    from mstool.data import DataSource, prepare_splits
    from mstool.runs import _cells, segment_cell
    from mstool.unsupervised import DFC

    seen = {}
    estimate = _cells.estimate_prior

    def spy_estimate(labels, *args, **kwargs):
        seen["prior_labels"] = labels.clone()
        return estimate(labels, *args, **kwargs)

    segment = DFC.segment

    def spy_segment(self, images, **kwargs):
        seen["scribbles"] = kwargs["scribbles"].clone()
        seen["prior"] = kwargs["prior"]
        return segment(self, images, **kwargs)

    monkeypatch.setattr(_cells, "estimate_prior", spy_estimate)
    monkeypatch.setattr(DFC, "segment", spy_segment)
    splits = prepare_splits(DataSource("synth:er", synth_n=10, synth_size=48), tmp_path / "data")
    row = segment_cell(tmp_path / "cell", splits, "dfc", {"iterations": 2}, prior="labels:region:0.25",
                       scribbles="labels:region:0.25", seed=0)
    drawn = seen["scribbles"] != IGNORE_INDEX
    assert torch.equal(seen["prior_labels"], seen["scribbles"])  # one draw serves both
    assert torch.equal(seen["scribbles"][drawn], splits.test_labels[drawn])
    assert bool(torch.isnan(seen["prior"]).any())  # the undrawn pixels are unknown to the prior
    assert row["scribbles"] == "labels:region:0.25" and row["scored"] == "pixels without scribbles"
    assert row["drawn_fraction"] == pytest.approx(0.25, abs=0.03)
    counted = row["mask/tp"] + row["mask/fp"] + row["mask/fn"] + row["mask/tn"]
    assert counted == int((~drawn).sum())
    assert row["undrawn/dice"] == row["mask/dice"]
    # a row given the annotation only as a prior is scored everywhere, and also where it drew nothing
    prior_only = segment_cell(tmp_path / "prior", splits, "otsu", prior="labels:region:0.25", seed=0)
    assert prior_only["scored"] == "all pixels" and 0 <= prior_only["undrawn/dice"] <= 1
    assert prior_only["undrawn/dice"] != prior_only["mask/dice"]
    plain = segment_cell(tmp_path / "plain", splits, "otsu", seed=0)
    assert plain["scored"] == "all pixels" and plain["drawn_fraction"] is None and "undrawn/dice" not in plain
    assert plain["mask/tp"] + plain["mask/fp"] + plain["mask/fn"] + plain["mask/tn"] == splits.test_labels.numel()
    with pytest.raises(ParameterError, match="method 'otsu' takes no scribbles"):
        segment_cell(tmp_path / "x", splits, "otsu", scribbles="labels:region:0.25")
    with pytest.raises(ParameterError, match="`scribbles` is `labels:SPEC`"):
        segment_cell(tmp_path / "x", splits, "dfc", scribbles="otsu")
