import pytest

from mstool._fs import atomic_dir, atomic_path, prepare_output_dir
from mstool._registry import Registry
from mstool.errors import OutputExistsError, ParameterError


def test_registry_order_lookup_and_errors():
    r = Registry("thing")
    r.add("b", 2)
    r.add("a", 1)
    assert r.names() == ["b", "a"] and "a" in r and len(r) == 2 and list(r) == ["b", "a"]
    with pytest.raises(ParameterError, match="unknown thing 'c'; choose one of: b, a"):
        r.get("c")
    with pytest.raises(ParameterError, match="registered twice"):
        r.add("a", 3)


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".txt"
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_atomic_dir_keeps_old_results_on_failure(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("1")
    with pytest.raises(OutputExistsError, match="not empty"):
        with atomic_dir(out):
            pass
    with pytest.raises(RuntimeError):
        with atomic_dir(out, overwrite=True) as tmp:
            (tmp / "partial.txt").write_text("x")
            raise RuntimeError("killed")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]


def test_prepare_output_dir(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OutputExistsError, match="a file of that name exists"):
        prepare_output_dir(f)
    d = prepare_output_dir(tmp_path / "a" / "b")
    assert d.is_dir()


def test_atomic_writes_get_the_usual_permissions(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "f.txt") as tmp:
            tmp.write_text("x")
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "a").write_text("y")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
