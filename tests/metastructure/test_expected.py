"""Expected-density similarity: what a noisy label set's meta-structure will be once training averages its noise."""

from __future__ import annotations

import math

import pytest
import torch

from mstool.data import synthesize
from mstool.errors import DTypeError, ParameterError, ShapeError
from mstool.labels import apply_spec, boundary_distance, label_info
from mstool.metastructure import density, expected_density, expected_similarity, expected_threshold, meta_similarity


@pytest.fixture(scope="module")
def thin() -> torch.Tensor:
    """Tubules a few pixels wide (built-in ER)."""
    return synthesize("er", 6, 96, generator=torch.Generator().manual_seed(3)).labels


@pytest.fixture(scope="module")
def blobs() -> torch.Tensor:
    """Nuclei 10-20 pixels across."""
    return synthesize("nuc", 6, 96, generator=torch.Generator().manual_seed(4)).labels


def noisy(clean: torch.Tensor, spec: str, seed: int = 0) -> torch.Tensor:
    return apply_spec(clean, spec, generator=torch.Generator().manual_seed(seed), num_classes=2)


@pytest.mark.parametrize("kind", ["thin", "blobs"])
@pytest.mark.parametrize("spec", ["sample:0.1", "sample:0.3", "sample:0.5", "flip:0.1,0.1", "flip:0.3,0.3",
                                  "flip:0.3,0.05", "sample:0.2,ignore"])
def test_zero_mean_noise_keeps_the_expected_density(kind, spec, request):
    clean = request.getfixturevalue(kind)
    s = expected_similarity(clean, noisy(clean, spec), bootstrap=0)
    assert s.score > 0.95, s
    assert s.one_draw < s.score - 0.03  # one draw looks worse than what training will see
    assert s.polarity == 1


@pytest.mark.parametrize("kind", ["thin", "blobs"])
@pytest.mark.parametrize("spec", ["dilate:1", "dilate:2", "erode:1"])
def test_a_deterministic_change_keeps_its_one_draw_value(kind, spec, request):
    clean = request.getfixturevalue(kind)
    s = expected_similarity(clean, noisy(clean, spec), bootstrap=0)
    assert s.score == pytest.approx(s.one_draw, abs=0.02)
    assert s.signal > 0.97  # nothing taken for noise
    assert s.score < 0.99


def test_dilation_scores_lower_the_more_it_moves(thin):
    scores = [expected_similarity(thin, noisy(thin, f"dilate:{r}"), bootstrap=0).score for r in (1, 2, 3)]
    assert scores[0] > scores[1] > scores[2]


def test_a_blob_skeleton_scores_low(blobs):
    assert expected_similarity(blobs, noisy(blobs, "skeleton"), bootstrap=0).score < 0.7


@pytest.mark.parametrize("kind", ["thin", "blobs"])
def test_random_labels_carry_no_structure(kind, request):
    clean = request.getfixturevalue(kind)
    for seed in range(3):
        s = expected_similarity(clean, noisy(clean, "random:0.3", seed), bootstrap=0)
        assert abs(s.score) < 0.15, s
        assert s.signal < 0.1


def test_inverted_labels_report_their_polarity(thin):
    s = expected_similarity(thin, noisy(thin, "flip:0.8,0.8"), bootstrap=0)
    assert s.polarity == -1
    assert s.score > 0.95
    assert s.one_draw < -0.5  # the draw itself anti-correlates
    assert expected_similarity(thin, 1 - thin, bootstrap=0).score == pytest.approx(1.0)


def test_clean_labels_score_one(thin):
    s = expected_similarity(thin, thin)
    assert (s.score, s.one_draw, s.low, s.high, s.signal) == pytest.approx((1, 1, 1, 1, 1))


def test_one_draw_is_the_pooled_meta_similarity(blobs):
    y = noisy(blobs, "sample:0.3")
    s = expected_similarity(blobs, y, bandwidth=2, bootstrap=0)
    per_image = meta_similarity(blobs, y, bandwidths=(2,)).pearson[:, 0]
    # Pooled over images rather than averaged, so close but not equal.
    assert s.one_draw == pytest.approx(float(per_image.mean()), abs=0.03)


def test_bootstrap_interval_brackets_the_score_and_follows_the_generator(thin):
    y = noisy(thin, "sample:0.1")
    a = expected_similarity(thin, y, generator=torch.Generator().manual_seed(1))
    b = expected_similarity(thin, y, generator=torch.Generator().manual_seed(1))
    assert a == b
    assert a.low <= a.score <= a.high
    assert a.high - a.low > 0
    single = expected_similarity(thin[:1], y[:1])
    assert single.low == single.score == single.high


def test_multiclass_sampling_keeps_every_class():
    clean = torch.zeros(4, 48, 48, dtype=torch.long)
    clean[:, 5:20, 5:40] = 1
    clean[:, 28:44, 10:30] = 2
    y = apply_spec(clean, "sample:0.3", generator=torch.Generator().manual_seed(0), num_classes=3)
    assert expected_similarity(clean, y, bootstrap=0).score > 0.95
    assert expected_similarity(clean, y, bootstrap=0).polarity == 1


def test_empty_labels_give_stated_values():
    clean = torch.zeros(2, 16, 16, dtype=torch.long)
    s = expected_similarity(clean, clean.clone(), bootstrap=0)
    assert math.isnan(s.score) and s.as_dict()["score"] is None  # no clean foreground: nothing to compare
    clean[:, 4:10, 4:10] = 1
    s = expected_similarity(clean, torch.zeros_like(clean), bootstrap=0)
    assert s.score == 0 and s.one_draw == 0  # an empty noisy label teaches nothing


def test_bad_input_is_refused():
    a = torch.zeros(2, 16, 16, dtype=torch.long)
    with pytest.raises(ShapeError, match="one shape"):
        expected_similarity(a, torch.zeros(2, 16, 15, dtype=torch.long))
    with pytest.raises(ShapeError, match="no image"):
        expected_similarity(a[:0], a[:0])
    with pytest.raises(ParameterError, match="bandwidth"):
        expected_similarity(a, a, bandwidth=0)
    with pytest.raises(ParameterError, match="bootstrap"):
        expected_similarity(a, a, bootstrap=-1)
    with pytest.raises(DTypeError, match="`noisy` must be an integer tensor"):
        expected_similarity(a, a.float())


def test_expected_density_of_a_sample_is_the_scaled_clean_density(blobs):
    y = noisy(blobs, "sample:0.5")
    est = expected_density(blobs, y)
    clean_d = density(blobs, 2, bandwidth=1)[:, 1:]
    assert est.shape == clean_d.shape
    assert float((est - 0.5 * clean_d).abs().mean()) < 0.005
    assert float((est - 0.5 * clean_d).abs().max()) < 0.1
    dilated = noisy(blobs, "dilate:2")
    torch.testing.assert_close(expected_density(blobs, dilated), density(dilated, 2, bandwidth=1)[:, 1:],
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["thin", "blobs"])
@pytest.mark.parametrize("spec", ["region:0.25", "scribble:0.1", "objects:0.3,ignore"])
def test_partial_labels_exact_where_drawn_keep_the_expected_density(kind, spec, request):
    # a network learns nothing where the label is 255, so one drawn rectangle (or scribbles, or some whole
    # objects) teaches the clean meta-structure however little of the image it covers
    clean = request.getfixturevalue(kind)
    s = expected_similarity(clean, noisy(clean, spec), bootstrap=0)
    assert s.score > 0.99, s
    assert s.one_draw < 0.9  # the draw itself, 255 counted as no class, looks far from it


@pytest.mark.parametrize("kind", ["thin", "blobs"])
def test_a_partial_label_scores_as_its_drawn_part_does(kind, request):
    clean = request.getfixturevalue(kind)
    whole = expected_similarity(clean, noisy(clean, "dilate:2"), bootstrap=0).score
    part = expected_similarity(clean, noisy(clean, "region:0.25+dilate:2"), bootstrap=0).score
    assert part == pytest.approx(whole, abs=0.03) and part < 0.95
    flipped = expected_similarity(clean, noisy(clean, "region:0.5+flip:0.2,0.2"), bootstrap=0)
    assert flipped.score > 0.98 and flipped.signal < 0.95  # the flips inside the region are noise, removed


def test_expected_density_of_a_region_is_the_clean_density_where_drawn(blobs):
    y = noisy(blobs, "region:0.5")
    est, clean_d = expected_density(blobs, y), density(blobs, 2, bandwidth=1)[:, 1:]
    drawn = (y != 255)[:, None]
    inner = torch.nn.functional.max_pool2d((~drawn).float(), 3, 1, 1) == 0  # windows wholly inside the region
    torch.testing.assert_close(est[inner], clean_d[inner], atol=1e-5, rtol=0)


@pytest.mark.parametrize("spec", ["objects:0.3", "objects:0.5"])
def test_whole_objects_missed_are_one_draw_per_object(blobs, spec):
    s = expected_similarity(blobs, noisy(blobs, spec), bootstrap=0)
    assert s.score > 0.95 > 0.8 > s.one_draw, s  # read per pixel, the missed objects looked like structure
    info = label_info(blobs, noisy(blobs, spec), 2, expected_score=s.score, expected_signal=s.signal)
    assert info.taxonomy == "RCL"
    # anything beside whole objects (a dilation of the kept ones) is not that model: its draw is its score
    moved = expected_similarity(blobs, noisy(blobs, f"{spec}+dilate:1"), bootstrap=0)
    assert moved.score == pytest.approx(moved.one_draw, abs=1e-6) and moved.score < 0.8


def test_boundary_distance_counts_rings_and_skips_ignored():
    labels = torch.zeros(1, 9, 9, dtype=torch.long)
    labels[0, 4, 4] = 1
    d = boundary_distance(labels, 4)
    assert d.dtype == torch.uint8 and d[0, 4, 4] == 1 and d[0, 3, 3] == 1 and d[0, 2, 4] == 2 and d[0, 0, 0] == 4
    labels[0, 4, 5] = 255  # unlabelled: not another class
    assert boundary_distance(labels, 4)[0, 4, 6] == 2
    with pytest.raises(ParameterError, match="max_distance"):
        boundary_distance(labels, 0)


def test_expected_similarity_on_device_matches_cpu(device, thin):
    y = noisy(thin, "sample:0.2")
    cpu = expected_similarity(thin, y, bootstrap=0)
    on = expected_similarity(thin.to(device), y.to(device), bootstrap=0)
    assert on.score == pytest.approx(cpu.score, abs=1e-4)
    assert on.one_draw == pytest.approx(cpu.one_draw, abs=1e-4)


def test_a_thin_skeleton_is_structure_not_noise(thin):
    # The distance cannot pin down which middle pixel a skeleton keeps, but its residual has lines, not salt and
    # pepper: it is kept whole, and the score is the skeleton's own (deterministic) correlation.
    y = noisy(thin, "skeleton")
    s = expected_similarity(thin, y, bootstrap=0)
    assert s.score == pytest.approx(s.one_draw, abs=1e-6) and s.signal == 1 and s.score < 0.95
    torch.testing.assert_close(expected_density(thin, y), density(y, 2, bandwidth=1)[:, 1:], atol=1e-5, rtol=0)


@pytest.mark.parametrize(("ntm", "expected"), [
    ([[1.0, 0.0], [0.0, 1.0]], (0.5, 1)),  # clean
    ([[0.7, 0.3], [0.3, 0.7]], (0.5, 1)),  # flipped both ways alike
    ([[1.0, 0.0], [0.9, 0.1]], (0.05, 1)),  # a 10% sample: 0.5 would find nothing
    ([[0.8, 0.2], [0.0, 1.0]], (0.6, 1)),  # dilated: background next to objects called foreground
    ([[0.2, 0.8], [0.9, 0.1]], (0.55, -1)),  # the classes swapped
])
def test_expected_threshold_is_halfway_between_the_labels_foreground_rates(ntm, expected):
    threshold, polarity = expected_threshold(torch.tensor(ntm))
    assert threshold == pytest.approx(expected[0]) and polarity == expected[1]


def test_expected_threshold_separates_what_a_network_learns_from_sampled_labels():
    """The expected density of a 10% sample is 0.1 on the foreground and 0 off it (Lemma 1): the threshold sits
    between the two, where 0.5 would keep nothing."""
    clean = synthesize("er", 4, 64, generator=torch.Generator().manual_seed(0)).labels
    noisy = apply_spec(clean, "sample:0.1", generator=torch.Generator().manual_seed(1))
    rate_fg = float((noisy[clean == 1] == 1).float().mean())
    rate_bg = float((noisy[clean == 0] == 1).float().mean())
    threshold, polarity = expected_threshold([[1 - rate_bg, rate_bg], [1 - rate_fg, rate_fg]])
    assert polarity == 1 and rate_bg < threshold < rate_fg < 0.5


def test_expected_threshold_bad_input():
    with pytest.raises(ShapeError, match=r"must be a \(2, 2\) binary noise transition matrix; got shape \(3, 3\)"):
        expected_threshold(torch.eye(3))
    with pytest.raises(ParameterError, match="must hold rates in \\[0, 1\\]"):
        expected_threshold([[1.5, 0.0], [0.0, 1.0]])
    with pytest.raises(ParameterError, match="must hold rates in"):
        expected_threshold([[math.nan, 0.0], [0.0, 1.0]])
