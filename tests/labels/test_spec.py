"""Tests of the label spec grammar (mstool.labels._spec)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mstool.errors import ParameterError, SpecError
from mstool.labels._spec import (
    LabelSpec,
    SpecStep,
    apply_spec,
    is_stochastic,
    parse_spec,
    spec_help,
    split_spec_list,
    taxonomy_of,
)
from mstool.labels._zoo import (
    LABEL_ZOO,
    dilate_labels,
    sample_labels,
    shift_labels,
    skeleton_labels,
    symmetric_flip_labels,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def square(n: int = 2, size: int = 16) -> torch.Tensor:
    labels = torch.zeros(n, size, size, dtype=torch.long)
    labels[:, 3:12, 4:13] = 1
    return labels


# ------------------------------------------------------------------------------------------------------------
# parse_spec and str
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("clean", "clean"),
        ("sample:0.1", "sample:0.1"),
        ("sample:0.10", "sample:0.1"),
        ("sample:0.1,background", "sample:0.1"),
        ("sample:0.1,ignore", "sample:0.1,ignore"),
        ("flip:0.45,0.45", "flip:0.45,0.45"),
        ("flip:0.2", "flip:0.2"),
        ("flip:1,0", "flip:1,0"),
        ("pairflip:0.3", "pairflip:0.3"),
        ("random:0.5", "random:0.5"),
        ("dilate:2", "dilate:2"),
        ("erode:01", "erode:1"),
        ("translate:-2, 3", "translate:-2,3"),
        ("shift:1", "shift:1"),
        ("markov:50,0.8,0.05,0.01", "markov:50,0.8,0.05,0.01"),
        ("scribble:0.2,8", "scribble:0.2"),
        ("scribble:0.2,4", "scribble:0.2,4"),
        (" skeleton + shift:1 + sample:0.1 ", "skeleton+shift:1+sample:0.1"),
        ("sample:1e-3", "sample:0.001"),
    ],
)
def test_round_trip(text, canonical):
    spec = parse_spec(text)
    assert str(spec) == canonical
    assert parse_spec(str(spec)) == spec


def test_typed_arguments():
    spec = parse_spec("flip:1,0+dilate:2+sample:0.5,ignore+translate:-1,2+flip:0.3")
    assert spec.steps == (
        SpecStep("flip", (1.0, 0.0)),
        SpecStep("dilate", (2,)),
        SpecStep("sample", (0.5, "ignore")),
        SpecStep("translate", (-1, 2)),
        SpecStep("flip", (0.3, None)),
    )
    assert isinstance(spec.steps[0].args[0], float) and isinstance(spec.steps[1].args[0], int)
    name, args = spec.steps[1]  # a step is a (name, args) pair
    assert (name, args) == ("dilate", (2,))


def test_label_spec_is_frozen_and_hashable():
    spec = parse_spec("sample:0.1")
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'steps'"):
        spec.steps = ()
    assert {spec, parse_spec("sample:0.10")} == {spec}


def test_label_spec_checks_direct_construction():
    assert str(LabelSpec((("dilate", (3,)), ("flip", (0.1, 0.2))))) == "dilate:3+flip:0.1,0.2"
    with pytest.raises(SpecError, match="empty label spec"):
        LabelSpec(())
    with pytest.raises(SpecError, match=r"`dilate` argument r must be >= 0; got -1"):
        LabelSpec((SpecStep("dilate", (-1,)),))
    with pytest.raises(SpecError, match="must be an integer"):
        LabelSpec((SpecStep("dilate", (1.5,)),))
    with pytest.raises(SpecError, match="unknown label spec 'blur'"):
        LabelSpec((SpecStep("blur", (1,)),))
    with pytest.raises(SpecError, match="needs 2 argument"):
        LabelSpec((SpecStep("flip", (0.1,)),))
    with pytest.raises(SpecError, match=r"must be a \(name, args\) pair"):
        LabelSpec((("dilate", 3),))


def test_parse_returns_a_label_spec_unchanged():
    spec = parse_spec("clean")
    assert parse_spec(spec) is spec


# ------------------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty label spec.*names: clean, sample"),
        ("   ", "empty label spec"),
        ("blur:2", r"unknown label spec 'blur' in 'blur:2'; choose one of: clean, sample, flip"),
        ("sample:0.1+blur", "unknown label spec 'blur'"),
        ("flip:1.5", r"^`flip` argument f must be in \[0, 1\]; got 1.5 \(usage: flip:f,b or flip:f\)$"),
        ("flip:0.1,-0.2", r"`flip` argument b must be in \[0, 1\]; got -0.2"),
        ("flip:nan", r"`flip` argument f must be in \[0, 1\]; got nan"),
        ("flip:abc", r"`flip` argument f must be a number; got 'abc'"),
        ("dilate:-1", r"`dilate` argument r must be >= 0; got -1 \(usage: dilate:r\)"),
        ("dilate:1.5", r"`dilate` argument r must be an integer; got '1.5'"),
        ("dilate", r"`dilate` takes 1 argument; got 0 \(usage: dilate:r\)"),
        ("dilate:", r"`dilate` has ':' but no arguments"),
        ("flip:0.1,0.2,0.3", r"`flip` takes 1 to 2 arguments; got 3"),
        ("skeleton:1", "`skeleton` takes no arguments; got 1"),
        ("markov:5,0.1", r"`markov` takes 4 arguments; got 2 \(usage: markov:T,t1,t2,t3\)"),
        ("flip:0.1,,", "`flip` has an empty argument"),
        ("sample:0.1++clean", "a step of 'sample:0.1\\+\\+clean' is empty"),
        ("sample:0.1+", "is empty"),
        ("sample:0.1,maybe", r"`sample` option unlabeled must be one of background, ignore; got 'maybe'"),
        ("scribble:0.1,0", r"`scribble` argument length must be >= 1; got 0"),
    ],
)
def test_spec_errors(text, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(text)


def test_spec_error_is_a_parameter_error():
    # caught as the base classes on purpose: a SpecError is a ParameterError and a ValueError
    with pytest.raises(ParameterError, match=r"`flip` argument f must be in \[0, 1\]; got 2 \(usage: flip:f,b or flip"):
        parse_spec("flip:2")
    with pytest.raises(ValueError, match="unknown label spec 'nothing'; choose one of: clean, sample, flip"):
        parse_spec("nothing")
    with pytest.raises(SpecError, match="must be a string"):
        parse_spec(0.1)


# ------------------------------------------------------------------------------------------------------------
# split_spec_list
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("clean,sample:0.1,flip:0.2,0.2,dilate:2", ["clean", "sample:0.1", "flip:0.2,0.2", "dilate:2"]),
        ("clean", ["clean"]),
        ("sample:0.1,ignore,clean", ["sample:0.1,ignore", "clean"]),
        ("translate:-2,3,shift:1", ["translate:-2,3", "shift:1"]),
        ("markov:5,0.8,0.05,0.01, random:0.5", ["markov:5,0.8,0.05,0.01", "random:0.5"]),
        ("skeleton+shift:1+sample:0.1,flip:0.1", ["skeleton+shift:1+sample:0.1", "flip:0.1"]),
        ("clean,ignore", ["clean", "ignore"]),  # a choice word belongs only to a step that has it
    ],
)
def test_split_spec_list(text, expected):
    assert split_spec_list(text) == expected


def test_split_spec_list_errors():
    with pytest.raises(SpecError, match="must start with a spec name"):
        split_spec_list("0.1,clean")
    with pytest.raises(SpecError, match="empty spec list"):
        split_spec_list("")


# ------------------------------------------------------------------------------------------------------------
# apply_spec
# ------------------------------------------------------------------------------------------------------------


def test_apply_applies_left_to_right_with_one_generator():
    labels = square()
    ems = apply_spec(labels, "skeleton+shift:1+sample:0.1", generator=gen(4))
    g = gen(4)
    manual = sample_labels(shift_labels(skeleton_labels(labels), 1, generator=g), 0.1, generator=g)
    assert torch.equal(ems, manual)
    assert torch.equal(apply_spec(labels, parse_spec("skeleton+shift:1+sample:0.1"), generator=gen(4)), ems)


def test_apply_order_matters():
    labels = square(1)
    a = apply_spec(labels, "dilate:1+skeleton")
    b = apply_spec(labels, "skeleton+dilate:1")
    assert not torch.equal(a, b)
    assert torch.equal(b, dilate_labels(skeleton_labels(labels), 1))


def test_apply_passes_num_classes():
    labels = square()
    out = apply_spec(labels, "flip:0.5", num_classes=3, generator=gen())
    assert torch.equal(out, symmetric_flip_labels(labels, 0.5, num_classes=3, generator=gen()))
    assert 2 in out.unique().tolist()
    with pytest.raises(ParameterError, match="0..0"):
        apply_spec(labels, "clean", num_classes=1)


def multiclass(n: int = 2, size: int = 24) -> torch.Tensor:
    labels = torch.zeros(n, size, size, dtype=torch.long)
    labels[:, 3:12, 4:13] = 1
    labels[:, 14:21, 2:20] = 2
    labels[:, 0, :] = 255
    return labels


# One spec per zoo entry, in both readings where it has two.
EVERY_OP = [
    "clean",
    "sample:0.3",
    "sample:0.3,ignore",
    "flip:0.2",
    "pairflip:0.3",
    "scribble:0.5",
    "dilate:2",
    "erode:1",
    "skeleton",
    "translate:2,-3",
    "shift:1",
    "markov:4,0.5,0.3,0.05",
    "random:0.4",
    "objects:0.5,ignore",
    "region:0.3",
    "skeleton+shift:1+sample:0.1",
]


def test_every_op_is_listed_here():
    assert {step.name for spec in EVERY_OP for step in parse_spec(spec).steps} == set(LABEL_ZOO.names())


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8])
@pytest.mark.parametrize("spec", EVERY_OP)
def test_apply_equals_the_steps_run_on_the_labels_as_given(spec, dtype):
    # apply_spec runs its steps on byte labels; the result must be what the steps give on the labels' own dtype.
    for labels in (square(), multiclass()):
        labels = labels.to(dtype)
        given = labels.clone()
        g = gen(7)
        expected = labels
        for step in parse_spec(spec).steps:
            expected = LABEL_ZOO.get(step.name).run(expected, *step.args, generator=g, num_classes=None)
        out = apply_spec(labels, spec, generator=gen(7))
        assert out.dtype == dtype
        assert torch.equal(out, expected), spec
        assert torch.equal(labels, given), "the input labels changed"


def test_apply_keeps_classes_beyond_a_byte_when_num_classes_allows_them():
    labels = square()
    out = apply_spec(labels, "random:1", num_classes=400, generator=gen())
    assert out.dtype == torch.long and int(out.max()) > 255


@pytest.mark.parametrize("bad", [-1, 256, 2**31, 2**32, 2**32 + 1, -(2**40)])
def test_apply_rejects_labels_out_of_range(bad):
    labels = square()
    labels[1, 5, 5] = bad
    message = (f"`labels` must hold class indices >= 0; got a minimum of {bad}" if bad < 0 else
               f"`labels` must hold classes below 255 \\(the ignore index\\); got {bad}")
    with pytest.raises(ParameterError, match=message):
        apply_spec(labels, "sample:0.5", generator=gen())


def test_apply_rejects_bad_labels_and_specs():
    with pytest.raises(SpecError, match="unknown label spec"):
        apply_spec(square(), "blur:1")
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        apply_spec(torch.zeros(4, 4, dtype=torch.long), "clean")


def test_apply_flip_f_b_on_multiclass_says_what_to_use():
    labels = square()
    labels[:, 0, 0] = 2
    with pytest.raises(ParameterError, match="flip_by_matrix"):
        apply_spec(labels, "flip:0.1,0.1")


# ------------------------------------------------------------------------------------------------------------
# help, taxonomy, stochastic
# ------------------------------------------------------------------------------------------------------------


def test_spec_help_has_one_line_per_op():
    lines = spec_help().splitlines()
    assert len(lines) == len(LABEL_ZOO)
    for line, name in zip(lines, LABEL_ZOO.names(), strict=True):
        op = LABEL_ZOO.get(name)
        assert line.startswith(op.usage) and f" {op.taxonomy} " in line and line.endswith(op.help)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("clean", "CL"),
        ("clean+clean", "CL"),
        ("sample:0.1", "RCL"),
        ("flip:0.2,0.2+sample:0.5", "RCL"),
        ("clean+scribble:0.1", "RCL"),
        ("dilate:2", "PCL"),
        ("skeleton+shift:1+sample:0.1", "PCL"),
        ("random:0.5", "RL"),
        ("dilate:1+random:0.5+sample:0.2", "RL"),
    ],
)
def test_taxonomy_of(text, kind):
    assert taxonomy_of(text) == kind
    assert parse_spec(text).taxonomy == kind


@pytest.mark.parametrize(
    ("text", "stochastic"),
    [
        ("clean", False),
        ("dilate:2+erode:1+skeleton+translate:1,1", False),
        ("sample:0.1", True),
        ("dilate:1+shift:1", True),
        ("markov:1,0.5,0.5,0", True),
        ("random:0.1", True),
    ],
)
def test_is_stochastic(text, stochastic):
    assert is_stochastic(text) is stochastic


def test_deterministic_specs_ignore_the_generator():
    labels = square()
    spec = "dilate:2+erode:1+skeleton+translate:1,-1"
    assert not is_stochastic(spec)
    assert torch.equal(apply_spec(labels, spec, generator=gen(1)), apply_spec(labels, spec, generator=gen(2)))
