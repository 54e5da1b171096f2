import pytest

from mstool._fs import (
    MARKER,
    atomic_dir,
    atomic_path,
    check_disjoint,
    check_output_dir,
    check_output_file,
    open_run_dir,
)
from mstool._registry import Registry
from mstool.errors import OutputError, OutputExistsError, ParameterError


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
    with pytest.raises(RuntimeError, match="killed"):
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
    with atomic_dir(out) as tmp:
        (tmp / "keep.txt").write_text("1")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "keep.txt"]
    with pytest.raises(OutputExistsError, match="not empty"):
        with atomic_dir(out):
            pass
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_dir(out, overwrite=True) as tmp:
            (tmp / "partial.txt").write_text("x")
            raise RuntimeError("killed")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "new.txt"]


def test_overwrite_never_replaces_a_folder_mstool_did_not_write(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    for overwrite in (False, True):
        with pytest.raises(OutputError, match="not empty and was not written by mstool"):
            with atomic_dir(mine, overwrite=overwrite):
                raise AssertionError("no work may start")
    assert (mine / "notes.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
    (tmp_path / "empty").mkdir()
    with atomic_dir(tmp_path / "empty") as tmp:  # an empty folder is fine
        (tmp / "a").write_text("1")
    assert (tmp_path / "empty" / "a").exists()


def test_folders_of_earlier_versions_count_as_mstool_outputs(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "run.json").write_text('{"mstool_version": "0.0.9"}')
    with atomic_dir(old, overwrite=True) as tmp:
        (tmp / "b").write_text("1")
    assert (old / "b").exists() and not (old / "run.json").exists()
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "run.json").write_text('{"someone": "else"}')
    with pytest.raises(OutputError, match="not written by mstool"):
        check_output_dir(fake, overwrite=True)


@pytest.mark.parametrize("where", ["same", "inside", "above"])
def test_outputs_overlapping_an_input_are_refused(tmp_path, where):
    data = tmp_path / "data" / "images"
    data.mkdir(parents=True)
    (data / "a.tif").write_text("x")
    out = {"same": data, "inside": data / "out", "above": tmp_path / "data"}[where]
    text = {"same": "is the input", "inside": "lies inside the input", "above": "contains the input"}[where]
    with pytest.raises(OutputError, match=text):
        check_disjoint(out, [None, data])
    with pytest.raises(OutputError, match=text):
        check_output_dir(out, overwrite=True, inputs=[data])
    with pytest.raises(OutputError, match=text):
        open_run_dir(out, kind="train", inputs=[data])
    with pytest.raises(OutputError, match=r"a\.tif: the output is the input .*a\.tif; choose another output"):
        check_output_file(data / "a.tif", overwrite=True, inputs=[data / "a.tif"])
    assert sorted(p.name for p in data.iterdir()) == ["a.tif"]


def test_the_current_folder_is_never_an_output(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for out in (".", "..", str(work)):
        with pytest.raises(OutputError, match="current folder|above the current one"):
            check_output_dir(out, overwrite=True)
    check_output_dir("sub")  # a new folder below it is fine


def test_check_output_file(tmp_path):
    f = tmp_path / "p.npz"
    f.write_text("x")
    with pytest.raises(OutputExistsError, match="file exists .pass --overwrite"):
        check_output_file(f)
    assert check_output_file(f, overwrite=True) == f
    with pytest.raises(OutputError, match=r"must be a .npz file; got '.txt'"):
        check_output_file(tmp_path / "p.txt", suffixes=(".npz",))
    with pytest.raises(OutputExistsError, match="a folder of that name exists"):
        check_output_file(tmp_path)


def test_check_output_dir_refuses_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OutputExistsError, match="a file of that name exists"):
        check_output_dir(f)


def test_run_folders_reopen_only_for_their_kind(tmp_path):
    run = open_run_dir(tmp_path / "run", kind="train")
    (run / "checkpoint.pt").write_text("x")
    assert open_run_dir(run, kind="train") == run
    with pytest.raises(OutputError, match="not an mstool compare run folder"):
        open_run_dir(run, kind="compare")
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.txt").write_text("x")
    with pytest.raises(OutputError, match="not an mstool train run folder"):
        open_run_dir(other, kind="train")
    assert sorted(p.name for p in other.iterdir()) == ["a.txt"]


def test_unwritable_places_are_named_as_given(tmp_path, monkeypatch):
    """A read-only place is reported with the path the user gave, never with the hidden temporary one (the test
    makes the place read-only by refusing every temporary file, since root writes into read-only folders)."""
    import tempfile

    def refuse(*args, **kwargs):
        raise OSError(30, "Read-only file system", str(tmp_path / ".seg.x.tmp"))

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(OutputError, match=r"^\S*/rofs/seg: cannot write the output folder here \(Read-only file "
                                          r"system\)$"):
        with atomic_dir(tmp_path / "rofs" / "seg"):
            pass
    with pytest.raises(OutputError, match=r"^\S*/rofs/p.npz: cannot write here \(Read-only file system\)$"):
        with atomic_path(tmp_path / "rofs" / "p.npz"):
            pass


def test_leftovers_of_killed_runs_are_cleared(tmp_path):
    import socket

    host = "".join(c if c.isalnum() else "_" for c in socket.gethostname())
    dead = tmp_path / f".out.{host}-999999999.abc.tmp"  # no such process
    dead.mkdir()
    other_host = tmp_path / ".out.otherhost-999999999.abc.tmp"  # maybe alive on a shared file system
    other_host.mkdir()
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "a").write_text("1")
    assert not dead.exists() and other_host.exists()


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
