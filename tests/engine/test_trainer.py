"""Tests of mstool.engine._config and mstool.engine._trainer: settings, training, checkpoints, resume."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from mstool.engine import PRESETS, TrainConfig, load_model, predict, train
from mstool.errors import (
    DataError,
    FileMissingError,
    FileReadError,
    MstoolWarning,
    ParameterError,
    ShapeError,
    SpecError,
)
from tests.engine import one_thread, tiny_config, tiny_data  # noqa: F401 (one_thread is a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[2]


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


def _without_seconds(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


# ------------------------------------------------------------------------------------------------ config
def test_presets_resolve():
    quick, paper = TrainConfig.from_preset("quick"), TrainConfig.from_preset("paper")
    assert quick.model_options == {"base": 16, "depth": 3}
    assert (quick.crop, quick.epochs, quick.val_every) == (64, 300, 10)
    assert (paper.model_options, paper.crop, paper.optimizer, paper.lr, paper.momentum, paper.weight_decay) == (
        {"base": 64, "depth": 4}, 256, "sgd", 0.05, 0.9, 1e-3)
    assert (paper.schedule, paper.step_size, paper.gamma, paper.epochs, paper.batch_size) == ("step", 20, 0.1, 100, 32)
    assert paper.resolved_loss(2) == "bce" and paper.resolved_loss(3) == "ce"
    assert set(PRESETS) == {"quick", "paper"}


def test_preset_overrides_merge_model_options():
    cfg = TrainConfig.from_preset("paper", model_options={"base": 8}, epochs=3)
    assert cfg.model_options == {"base": 8, "depth": 4} and cfg.epochs == 3
    other = TrainConfig.from_preset("paper", model="hrnet")
    assert other.model_options == {}  # the U-Net options do not carry over to another network
    assert PRESETS["paper"]["model_options"] == {"base": 64, "depth": 4}  # the preset was not changed


def test_preset_errors():
    with pytest.raises(ParameterError, match="`preset` must be one of quick, paper; got 'fast'"):
        TrainConfig.from_preset("fast")
    with pytest.raises(ParameterError, match="unknown training override 'epoch'"):
        TrainConfig.from_preset("quick", epoch=3)


@pytest.mark.parametrize("field, value, message", [
    ("model", "segformer", "`model` must be one of unet"),
    ("model_options", {"width": 3}, "has no option 'width'"),
    ("model_options", [1], "`model_options` must be a dict"),
    ("loss", "focal", "`loss` must be one of auto, bce"),
    ("optimizer", "rmsprop", "`optimizer` must be one of sgd, adam, adamw"),
    ("lr", 0, r"`lr` must be a number > 0; got 0"),
    ("lr", "fast", "`lr` must be a number"),
    ("momentum", 1.0, r"`momentum` must be a number in \[0, 1\)"),
    ("weight_decay", -1e-3, "`weight_decay` must be a number >= 0"),
    ("schedule", "linear", "`schedule` must be one of step, cosine, none"),
    ("step_size", 0, "`step_size` must be an integer >= 1"),
    ("gamma", 0, r"`gamma` must be a number in \(0, 1\]"),
    ("epochs", 2.5, "`epochs` must be an integer >= 1; got 2.5"),
    ("epochs", True, "`epochs` must be an integer >= 1; got True"),
    ("batch_size", 0, "`batch_size` must be an integer >= 1"),
    ("crop", 0, "`crop` must be an integer >= 1"),
    ("flip", "yes", "`flip` must be true or false"),
    ("label_spec", 3, "`label_spec` must be a label-noise spec string"),
    ("noise_mode", "sometimes", "`noise_mode` must be one of offline, online"),
    ("amp", 1, "`amp` must be true or false"),
    ("channels_last", None, "`channels_last` must be true or false"),
    ("grad_clip", 0, "`grad_clip` must be a number > 0"),
    ("checkpoint_every", 0, "`checkpoint_every` must be an integer >= 1"),
    ("num_thresholds", 0, "`num_thresholds` must be an integer >= 1"),
    ("probe", "no", "`probe` must be true or false"),
    ("tile", 8, "`tile` must be an integer >= 16"),
    ("seed", -1, "`seed` must be an integer >= 0"),
])
def test_config_validation(field, value, message):
    with pytest.raises(ParameterError, match=message):
        TrainConfig(**{field: value})


def test_config_bad_spec_names_the_field():
    with pytest.raises(SpecError, match=r"`label_spec`: .*flip"):
        TrainConfig(label_spec="flip:1.5")


def test_config_round_trips():
    cfg = TrainConfig.from_preset("quick", label_spec="sample:0.10", grad_clip=1.0)
    assert cfg.label_spec == "sample:0.1"  # canonical spec text
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    no_none = cfg.to_dict(drop_none=True)
    assert "tile" not in no_none and "crop" in no_none
    assert TrainConfig.from_dict(no_none) == cfg  # a missing optional field reads back as None
    assert cfg.replace(epochs=9).epochs == 9
    with pytest.raises(ParameterError, match="`epochs` must be"):
        cfg.replace(epochs=0)
    with pytest.raises(ParameterError, match="unknown training config 'epoch'"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ParameterError, match="must be a dict of fields"):
        TrainConfig.from_dict([1])


# ------------------------------------------------------------------------------------------------ train
def test_train_lowers_the_loss_and_writes_files(tmp_path):
    images, labels = tiny_data()
    result = train(tiny_config(epochs=3, lr=1e-2), images, labels, out_dir=tmp_path,
                   val_images=images[:2], val_labels=labels[:2])
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < losses[0]
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    assert all(0 <= row["val_dice"] <= 1 for row in result.history)
    assert result.start_epoch == 0 and result.epochs_run == 3 and not result.model.training
    for path in (result.model_path, result.checkpoint_path):
        blob = torch.load(path, weights_only=True)
        assert isinstance(blob, dict) and blob["config"] == result.config.to_dict()
    with open(result.curves_path) as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["epoch", "train_loss", "val_dice", "val_dice_best", "lr", "seconds"]
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert math.isclose(float(rows[2]["train_loss"]), losses[2])


def test_validation_curve_every_few_epochs_and_at_the_end(tmp_path):
    images, labels = tiny_data()
    result = train(tiny_config(epochs=5, val_every=2), images, labels, out_dir=tmp_path,
                   val_images=images[:2], val_labels=labels[:2])
    assert [row["val_dice"] is not None for row in result.history] == [False, True, False, True, True]


def test_load_model_gives_the_trained_network(tmp_path):
    images, labels = tiny_data()
    result = train(tiny_config(), images, labels, out_dir=tmp_path)
    model, meta = load_model(result.model_path)
    assert (meta["model"], meta["num_classes"], meta["out_channels"], meta["loss"], meta["epochs"]) == (
        "unet", 2, 1, "bce", 2)
    assert meta["config"] == result.config.to_dict() and "state_dict" not in meta
    assert torch.equal(predict(model, images), predict(result.model, images))
    from_checkpoint, _ = load_model(result.checkpoint_path)
    assert _same_weights(from_checkpoint, model)


def test_load_model_errors(tmp_path):
    with pytest.raises(FileMissingError, match="model file does not exist"):
        load_model(tmp_path / "none.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(FileReadError, match="cannot be read"):
        load_model(bad)
    other = tmp_path / "other.pt"
    torch.save({"format": "something"}, other)
    with pytest.raises(FileReadError, match="not an mstool model"):
        load_model(other)


def test_training_does_not_touch_global_random_state(tmp_path):
    images, labels = tiny_data(n=2)
    before = torch.get_rng_state()
    train(tiny_config(epochs=1, label_spec="flip:0.2,0.2", model_options={"base": 4, "depth": 2, "dropout": 0.5}),
          images, labels, out_dir=tmp_path)
    assert torch.equal(torch.get_rng_state(), before)


def test_same_seed_same_run_other_seed_other_run(tmp_path):
    images, labels = tiny_data(n=4)
    a = train(tiny_config(epochs=1), images, labels, out_dir=tmp_path / "a")
    b = train(tiny_config(epochs=1), images, labels, out_dir=tmp_path / "b")
    c = train(tiny_config(epochs=1, seed=1), images, labels, out_dir=tmp_path / "c")
    assert _same_weights(a.model, b.model)
    assert not _same_weights(a.model, c.model)


def test_progress_events(tmp_path):
    images, labels = tiny_data(n=3)
    events = []
    train(tiny_config(epochs=2, checkpoint_every=2), images, labels, out_dir=tmp_path, progress=events.append)
    kinds = [e["event"] for e in events]
    assert kinds == ["start", "step", "step", "epoch", "step", "step", "epoch", "end"]  # 3 images, batch 2
    assert events[0]["steps_per_epoch"] == 2 and events[0]["start_epoch"] == 0
    assert events[3]["checkpoint"] is None and events[6]["checkpoint"].endswith("checkpoint.pt")


def test_schedules_set_the_rate(tmp_path):
    images, labels = tiny_data(n=2)
    step = train(tiny_config(epochs=3, optimizer="sgd", lr=0.1, schedule="step", step_size=1, gamma=0.5,
                             grad_clip=1.0), images, labels, out_dir=tmp_path / "s")
    assert [row["lr"] for row in step.history] == pytest.approx([0.1, 0.05, 0.025])
    cosine = train(tiny_config(epochs=2, schedule="cosine", lr=0.01), images, labels, out_dir=tmp_path / "c")
    assert [row["lr"] for row in cosine.history] == pytest.approx([0.01, 0.005])
    flat = train(tiny_config(epochs=2, schedule="none", optimizer="adamw"), images, labels, out_dir=tmp_path / "n")
    assert flat.history[0]["lr"] == flat.history[1]["lr"]


# ------------------------------------------------------------------------------------------------ noise
def _record_draws(monkeypatch):
    import mstool.engine._trainer as trainer_module

    draws = []
    original = trainer_module.apply_spec

    def recording(labels, spec, **kwargs):
        out = original(labels, spec, **kwargs)
        draws.append(out.clone())
        return out

    monkeypatch.setattr(trainer_module, "apply_spec", recording)
    return draws


def test_offline_noise_is_drawn_once(tmp_path, monkeypatch):
    images, labels = tiny_data(n=4)
    draws = _record_draws(monkeypatch)
    result = train(tiny_config(epochs=3, label_spec="flip:0.3,0.3"), images, labels, out_dir=tmp_path)
    assert len(draws) == 1
    assert torch.equal(result.noisy_labels, draws[0])
    # held as bytes while training (the zoo draws on them), handed back as int64
    assert draws[0].dtype == torch.uint8 and result.noisy_labels.dtype == torch.long
    assert not torch.equal(draws[0], labels)
    assert 0 < result.label_stats["ntm_det"] < 1 and not result.label_stats["inverts"]
    assert result.label_stats["changed_fraction"] == pytest.approx(0.3, abs=0.05)


def test_online_noise_is_drawn_every_epoch(tmp_path, monkeypatch):
    images, labels = tiny_data(n=4)
    draws = _record_draws(monkeypatch)
    result = train(tiny_config(epochs=3, label_spec="flip:0.3,0.3", noise_mode="online"), images, labels,
                   out_dir=tmp_path)
    assert len(draws) == 3
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[1], draws[2])
    assert torch.equal(result.noisy_labels, draws[0])


def test_online_deterministic_spec_is_drawn_once(tmp_path, monkeypatch):
    images, labels = tiny_data(n=2)
    draws = _record_draws(monkeypatch)
    train(tiny_config(epochs=2, label_spec="dilate:1", noise_mode="online"), images, labels, out_dir=tmp_path)
    assert len(draws) == 1


def test_clean_spec_draws_nothing(tmp_path, monkeypatch):
    images, labels = tiny_data(n=2)
    draws = _record_draws(monkeypatch)
    result = train(tiny_config(epochs=1), images, labels, out_dir=tmp_path)
    assert draws == [] and torch.equal(result.noisy_labels, labels)
    assert result.label_stats["ntm_det"] == 1.0 and result.label_stats["changed_fraction"] == 0.0


def test_noisy_labels_do_not_depend_on_the_network(tmp_path):
    images, labels = tiny_data(n=3)
    a = train(tiny_config(epochs=1, label_spec="sample:0.3"), images, labels, out_dir=tmp_path / "a")
    b = train(tiny_config(epochs=1, label_spec="sample:0.3", model_options={"base": 2, "depth": 1}), images,
              labels, out_dir=tmp_path / "b")
    assert torch.equal(a.noisy_labels, b.noisy_labels)


def test_inverting_spec_is_recorded(tmp_path):
    images, labels = tiny_data(n=2)
    result = train(tiny_config(epochs=1, label_spec="flip:0.9,0.9"), images, labels, out_dir=tmp_path)
    assert result.label_stats["inverts"] and result.label_stats["ntm_det"] == pytest.approx(-0.8, abs=0.02)


def test_reference_labels_are_what_the_training_labels_are_measured_against(tmp_path):
    images, labels = tiny_data(n=2)
    swapped = torch.where(labels == 255, labels, 1 - labels)  # someone's labels with the classes swapped
    alone = train(tiny_config(epochs=1), images, swapped, out_dir=tmp_path / "a")
    assert alone.label_stats["ntm"] == [[1.0, 0.0], [0.0, 1.0]] and not alone.label_stats["inverts"]
    measured = train(tiny_config(epochs=1), images, swapped, out_dir=tmp_path / "b", reference_labels=labels)
    assert measured.label_stats["ntm"] == [[0.0, 1.0], [1.0, 0.0]] and measured.label_stats["inverts"]
    assert torch.equal(measured.noisy_labels, swapped.long())  # trained on the labels given, as they are
    assert load_model(measured.model_path)[1]["label_stats"]["inverts"]
    with pytest.raises(ShapeError, match=r"`reference_labels` must have the shape of `train_labels`"):
        train(tiny_config(epochs=1), images, swapped, out_dir=tmp_path / "c", reference_labels=labels[:1])


# ------------------------------------------------------------------------------------------------ resume
class _Stop(Exception):
    pass


def _stop_after(epoch):
    def progress(event):
        if event["event"] == "epoch" and event["epoch"] == epoch:
            raise _Stop(f"stopped at the end of epoch {epoch}")

    return progress


@pytest.mark.parametrize("spec, mode", [("flip:0.2,0.2", "offline"), ("flip:0.2,0.2", "online")])
def test_interrupted_run_resumes_bitwise(tmp_path, spec, mode):
    images, labels = tiny_data()
    cfg = tiny_config(epochs=3, label_spec=spec, noise_mode=mode,
                      model_options={"base": 4, "depth": 2, "dropout": 0.3})
    whole = train(cfg, images, labels, out_dir=tmp_path / "whole", val_images=images[:2], val_labels=labels[:2])
    with pytest.raises(_Stop, match="stopped at the end of epoch 1"):
        train(cfg, images, labels, out_dir=tmp_path / "cut", val_images=images[:2], val_labels=labels[:2],
              progress=_stop_after(1))
    resumed = train(cfg, images, labels, out_dir=tmp_path / "cut", val_images=images[:2], val_labels=labels[:2])
    assert resumed.start_epoch == 1 and resumed.epochs_run == 2
    assert _same_weights(whole.model, resumed.model)
    assert _without_seconds(whole.history) == _without_seconds(resumed.history)
    assert torch.equal(whole.noisy_labels, resumed.noisy_labels)
    assert whole.label_stats == resumed.label_stats


def test_finished_run_returns_at_once(tmp_path):
    images, labels = tiny_data(n=2)
    first = train(tiny_config(epochs=1), images, labels, out_dir=tmp_path)
    first.model_path.unlink()
    again = train(tiny_config(epochs=1), images, labels, out_dir=tmp_path)
    assert again.epochs_run == 0 and again.model_path.exists()
    assert _same_weights(first.model, again.model)


def test_resume_false_starts_again(tmp_path):
    images, labels = tiny_data(n=2)
    train(tiny_config(epochs=1), images, labels, out_dir=tmp_path)
    again = train(tiny_config(epochs=1), images, labels, out_dir=tmp_path, resume=False)
    assert again.start_epoch == 0 and again.epochs_run == 1


def test_resume_refuses_other_settings_or_data(tmp_path):
    images, labels = tiny_data(n=2)
    with pytest.raises(_Stop, match="stopped at the end of epoch 1"):
        train(tiny_config(epochs=2), images, labels, out_dir=tmp_path, progress=_stop_after(1))
    with pytest.raises(ParameterError, match="checkpoint was made with `lr` = 0.003, not 0.01"):
        train(tiny_config(epochs=2, lr=0.01), images, labels, out_dir=tmp_path)
    with pytest.raises(ParameterError, match="other training or validation data"):
        train(tiny_config(epochs=2), images.flip(-1), labels.flip(-1), out_dir=tmp_path)
    with pytest.raises(ParameterError, match="other training or validation data"):
        train(tiny_config(epochs=2), images, labels, out_dir=tmp_path, val_images=images, val_labels=labels)
    # settings that do not change training may differ
    done = train(tiny_config(epochs=2, checkpoint_every=5, num_thresholds=7), images, labels, out_dir=tmp_path)
    assert done.start_epoch == 1


def test_damaged_checkpoint_is_reported(tmp_path):
    images, labels = tiny_data(n=2)
    (tmp_path / "checkpoint.pt").write_bytes(b"\x00" * 10)
    with pytest.raises(FileReadError, match="delete it to start again"):
        train(tiny_config(epochs=1), images, labels, out_dir=tmp_path)


def test_stale_temporary_files_are_removed(tmp_path):
    images, labels = tiny_data(n=2)
    stale = tmp_path / ".checkpoint.abc123.tmp.pt"
    stale.write_bytes(b"half a file")
    keep = tmp_path / "notes.txt"
    keep.write_text("mine")
    train(tiny_config(epochs=1), images, labels, out_dir=tmp_path)
    assert not stale.exists() and keep.exists()


_KILLED_RUN = textwrap.dedent("""
    import sys, time, torch
    sys.path.insert(0, {repo!r})
    from tests.engine import tiny_config, tiny_data
    from mstool.engine import train
    torch.set_num_threads(1)
    images, labels = tiny_data()
    def progress(event):
        if event["event"] == "epoch" and event["checkpoint"]:
            open({marker!r}, "w").close()
            time.sleep(120)  # wait here to be killed
    train(tiny_config(epochs=3, label_spec="flip:0.2,0.2"), images, labels, out_dir={out!r}, progress=progress)
""")


def test_run_killed_with_sigkill_resumes(tmp_path):
    images, labels = tiny_data()
    cfg = tiny_config(epochs=3, label_spec="flip:0.2,0.2")
    marker, out = tmp_path / "checkpointed", tmp_path / "killed"
    code = _KILLED_RUN.format(repo=str(REPO), marker=str(marker), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, "the training process ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 60 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    resumed = train(cfg, images, labels, out_dir=out)
    whole = train(cfg, images, labels, out_dir=tmp_path / "whole")
    assert resumed.start_epoch == 1
    assert _same_weights(whole.model, resumed.model)
    assert _without_seconds(whole.history) == _without_seconds(resumed.history)


# ------------------------------------------------------------------------------------------- other data
def test_multiclass_training(tmp_path):
    images, _ = tiny_data(n=4)
    labels = torch.bucketize(images[:, 0], torch.tensor([-0.5, 0.5]))  # classes 0, 1, 2
    labels[:, :2] = 255
    result = train(tiny_config(epochs=2), images, labels, num_classes=3, out_dir=tmp_path,
                   val_images=images, val_labels=labels)
    assert result.model.num_classes == 3 and "val_miou" in result.history[0]
    model, meta = load_model(result.model_path)
    assert (meta["num_classes"], meta["out_channels"], meta["loss"]) == (3, 3, "ce")
    probs = predict(model, images)
    assert probs.shape == (4, 3, 32, 32) and torch.allclose(probs.sum(1), torch.ones(4, 32, 32))


def test_crop_larger_than_images_warns(tmp_path):
    images, labels = tiny_data(n=2)
    with pytest.warns(MstoolWarning, match="`crop` 64 is larger than the training images"):
        train(tiny_config(epochs=1, crop=64), images, labels, out_dir=tmp_path)


def test_bad_inputs(tmp_path):
    images, labels = tiny_data(n=2)
    cfg = tiny_config(epochs=1)
    with pytest.raises(ParameterError, match="`num_classes` must be an integer >= 2"):
        train(cfg, images, labels, out_dir=tmp_path, num_classes=1)
    with pytest.raises(ShapeError, match=r"`train_labels` must be \(N, H, W\) = \(2, 32, 32\)"):
        train(cfg, images, labels[:, :16], out_dir=tmp_path)
    with pytest.raises(ShapeError, match="at least one image"):
        train(cfg, images[:0], labels[:0], out_dir=tmp_path)
    with pytest.raises(ParameterError, match="`val_images` and `val_labels` must be given together"):
        train(cfg, images, labels, out_dir=tmp_path, val_images=images)
    with pytest.raises(ParameterError, match="`train_labels` must hold class indices in 0..1"):
        train(cfg, images, labels * 2, out_dir=tmp_path)
    with pytest.raises(ShapeError, match="`val_images` must have 1 channel"):
        train(cfg, images, labels, out_dir=tmp_path, val_images=images.repeat(1, 3, 1, 1), val_labels=labels)
    with pytest.raises(ParameterError, match="`config` must be a TrainConfig"):
        train("quick", images, labels, out_dir=tmp_path)
    bad = images.clone()
    bad[0, 0, 0, 0] = math.nan
    with pytest.raises(DataError, match="`train_images` must hold finite values; got NaN or infinite pixels"):
        train(cfg, bad, labels, out_dir=tmp_path)


def test_config_as_dict_is_accepted(tmp_path):
    images, labels = tiny_data(n=2)
    result = train(tiny_config(epochs=1).to_dict(), images, labels, out_dir=tmp_path)
    assert result.config == tiny_config(epochs=1)


def test_train_and_predict_on_device(tmp_path, device):
    images, labels = tiny_data(n=4)
    result = train(tiny_config(epochs=1), images.to(device), labels.to(device), out_dir=tmp_path, device=device,
                   val_images=images.to(device), val_labels=labels.to(device))
    assert next(result.model.parameters()).device.type == device.type
    probs = predict(result.model, images)
    assert probs.device.type == "cpu" and probs.shape == (4, 1, 32, 32)
    assert bool(((probs >= 0) & (probs <= 1)).all())
    model, _ = load_model(result.model_path, device=device)
    assert next(model.parameters()).device.type == device.type


def test_budget_counts_pixels_so_large_images_get_more_crops(tmp_path):
    images, labels = tiny_data(n=6, size=64)
    steps = {}
    for ref in (32, None):
        seen = []
        train(tiny_config(epochs=1, reference_size=ref), images, labels, out_dir=tmp_path / str(ref),
              progress=lambda e, seen=seen: seen.append(e.get("steps")) if e.get("event") == "step" else None)
        steps[ref] = seen[-1]
    # 64 x 64 is four times the 32 x 32 reference: four crops per image and epoch, batch 2 -> 12 steps
    assert steps == {32: 12, None: 3}
    with pytest.raises(ParameterError, match="reference_size"):
        tiny_config(reference_size=0)
    assert TrainConfig.from_preset("quick").reference_size == 128
    assert TrainConfig.from_preset("paper").reference_size == 256


def test_validation_curve_records_the_protocols_best_threshold(tmp_path):
    images, labels = tiny_data()
    result = train(tiny_config(epochs=2, label_spec="sample:0.1"), images, labels, out_dir=tmp_path,
                   val_images=images[:2], val_labels=labels[:2])
    for row in result.history:
        assert 0 <= row["val_dice"] <= row["val_dice_best"] <= 1


def test_convergence_says_whether_the_last_quarter_still_gained():
    from mstool.engine import convergence

    def rows(values, key="val_dice_best"):
        return [{"epoch": 10 * i, key: v} for i, v in enumerate(values, 1)]

    assert convergence(rows([0.5, 0.8, 0.86, 0.862, 0.86, 0.865])) == {
        "converged": True, "gain": 0.005, "curve": "val_dice_best"}
    rising = convergence(rows([0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]))
    assert rising["converged"] is False and rising["gain"] == pytest.approx(0.2)
    assert convergence(rows([0.5, 0.6, 0.7]))["converged"] is None
    assert convergence(rows([0.3, 0.5, 0.52, 0.6], key="val_miou"))["curve"] == "val_miou"
    skipped = [{"epoch": e, "val_dice_best": None} for e in range(1, 9)] + rows([0.4, 0.5, 0.6, 0.7])
    assert convergence(skipped)["converged"] is False  # epochs without validation are left out
