import pytest

from mstool.compare import Cell, SuiteConfig, cell_id, parse_list, read_config_file, spec_family, write_toml
from mstool.errors import FileReadError, ParameterError, SpecError

TINY = {"epochs": 1, "model_options": {"base": 4, "depth": 2}, "crop": 32, "batch_size": 4, "probe": False}


def test_parse_list_keeps_flip_arguments_together():
    assert parse_list(["clean,sample:0.1,flip:0.2,0.2,flip:0.45,0.45,dilate:2", "random:0.3"]) == [
        "clean", "sample:0.1", "flip:0.2,0.2", "flip:0.45,0.45", "dilate:2", "random:0.3"]
    assert parse_list(("unet,hrnet", "deeplabv3plus"), kind="models") == ["unet", "hrnet", "deeplabv3plus"]


def test_cell_ids_are_folder_safe_and_unique():
    ids = {cell_id(s, "unet", 0) for s in ("flip:0.2,0.2", "flip:0.2,0.3", "skeleton+shift:1+sample:0.1")}
    assert len(ids) == 3 and all("/" not in i and ":" not in i and "," not in i for i in ids)


def test_suite_config_defaults_and_plan():
    cfg = SuiteConfig(labels=["clean", "flip:0.45,0.45"], seeds=[0, 1])
    assert cfg.synth_n == 24 and cfg.synth_size == 128
    assert [c.id for c in cfg.cells()] == ["clean__unet__seed0", "clean__unet__seed1",
                                          "flip-0.45_0.45__unet__seed0", "flip-0.45_0.45__unet__seed1"]
    tc = cfg.train_config(Cell("flip:0.45,0.45", "unet", 1))
    assert tc.label_spec == "flip:0.45,0.45" and tc.seed == 1 and tc.model == "unet"
    assert cfg.train_config(Cell("clean", "hrnet", 0)).model == "hrnet"
    assert tc.noise_mode == "online" and cfg.train_config(Cell("clean", "unet", 0)).noise_mode == "offline"
    forced = SuiteConfig(labels=["flip:0.2,0.2"], train={"noise_mode": "offline"})
    assert forced.train_config(forced.cells()[0]).noise_mode == "offline"


@pytest.mark.parametrize("values, error, match", [
    ({"labels": ["flip:1.5,0"]}, SpecError, "flip"),
    ({"models": ["vgg"]}, ParameterError, "unknown model 'vgg'"),
    ({"seeds": [-1]}, ParameterError, "seeds"),
    ({"preset": "huge"}, ParameterError, "preset"),
    ({"data": "synth:golgi"}, ParameterError, "synthetic kind"),
    ({"train": {"lr": -1}}, ParameterError, "lr"),
    ({"train": {"label_spec": "clean"}}, ParameterError, "set per run"),
    ({"colour": "red"}, ParameterError, "unknown suite setting"),
])
def test_suite_config_errors(values, error, match):
    with pytest.raises(error, match=match):
        SuiteConfig.from_dict(values)


def test_toml_round_trip(tmp_path):
    cfg = SuiteConfig(labels=["clean", "flip:0.2,0.2"], train={**TINY, "grad_clip": 1.5})
    path = tmp_path / "run.toml"
    path.write_text(write_toml(cfg.to_dict()))
    assert SuiteConfig.from_dict(read_config_file(path)) == cfg
    path.write_text("labels = [")
    with pytest.raises(FileReadError, match="not valid TOML"):
        read_config_file(path)


def test_spec_family():
    assert spec_family("sample:0.1") == ("sample", 0.1)
    assert spec_family("skeleton") == ("skeleton", None)
