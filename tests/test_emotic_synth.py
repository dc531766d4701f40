"""The synthetic EMOTIC: deterministic, EMOTIC-like labels, learnable cues, safe writing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_one_line_error

from selinet_compress.emotic import CATEGORIES, open_split
from selinet_compress.emotic.synth import CUES, PREVALENCE, generate


@pytest.fixture(scope="module")
def medium(tmp_path_factory):
    """400 train / 200 test persons: enough for label statistics and a cheap learnability check."""
    return generate(tmp_path_factory.mktemp("synth") / "m", "arrays", {"train": 400, "test": 200}, seed=11)


def test_same_seed_same_data_other_seed_other_data(tmp_path):
    a = generate(tmp_path / "a", "arrays", {"test": 6}, seed=1).path
    b = generate(tmp_path / "b", "arrays", {"test": 6}, seed=1).path
    c = generate(tmp_path / "c", "arrays", {"test": 6}, seed=2).path
    raw = [open_split(p, "test").load_raw(range(6)) for p in (a, b, c)]
    np.testing.assert_array_equal(raw[0]["context"], raw[1]["context"])
    np.testing.assert_array_equal(raw[0]["emotions"], raw[1]["emotions"])
    assert not np.array_equal(raw[0]["context"], raw[2]["context"])


def test_label_statistics_are_emotic_like(medium):
    labels = open_split(medium.path, "train").emotions
    prevalence = dict(zip(CATEGORIES, labels.mean(axis=0), strict=True))
    assert max(prevalence, key=prevalence.get) == "Engagement" and prevalence["Engagement"] > 0.4
    for rare in ("Embarrassment", "Aversion"):
        assert prevalence[rare] < 0.04
    counts = labels.sum(axis=1)
    assert counts.min() >= 1 and counts.max() <= 4 and 1.8 < counts.mean() < 3.0
    assert medium.prevalence["train"] == {
        c: pytest.approx(float(prevalence[c]), abs=1e-4) for c in CATEGORIES
    }


def test_cue_table_covers_every_emotion_with_context_only_and_fine_grained_cues():
    assert sorted(CUES) == sorted(CATEGORIES) == sorted(PREVALENCE)
    kinds = {cue.kind for cue in CUES.values()}
    assert kinds == {"colour", "texture", "shape", "place", "context"}
    assert sum(cue.kind == "context" for cue in CUES.values()) >= 4
    happy, excited = np.array(CUES["Happiness"].value), np.array(CUES["Excitement"].value)
    assert 0 < np.abs(happy - excited).sum() <= 50  # a fine-grained pair
    for cue in CUES.values():
        assert 0 < cue.p_false < cue.p_show < 1  # never a perfect cue


def test_cues_are_learnable_beyond_label_prevalence(medium):
    """A linear model on colour histograms of body and context already beats chance clearly."""
    from sklearn.linear_model import LogisticRegression

    from selinet_compress.metrics import map_score

    def features(split):
        data = open_split(medium.path, split)
        raw = data.load_raw(range(len(data)))
        parts = []
        for key in ("body", "context"):
            q = (raw[key] // 64).astype(np.int64)
            codes = (q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]).reshape(len(data), -1)
            parts.append(np.sqrt(np.stack([np.bincount(c, minlength=64) for c in codes]) / codes.shape[1]))
        return np.concatenate(parts, axis=1), data.emotions

    x_train, y_train = features("train")
    x_test, y_test = features("test")
    scores = np.zeros(y_test.shape)
    for c in range(26):
        if 0 < y_train[:, c].sum() < len(y_train):
            scores[:, c] = (
                LogisticRegression(C=1.0, max_iter=500).fit(x_train, y_train[:, c]).decision_function(x_test)
            )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        learnt = map_score(y_test, scores)
        chance = map_score(y_test, np.random.default_rng(0).random(y_test.shape))
    print(f"colour-histogram logistic regression mAP {learnt:.3f}, random scores {chance:.3f}")
    assert learnt > chance + 0.12, (learnt, chance)


def test_cues_show_up_for_most_labelled_persons(medium):
    rates = [r for r in medium.cue_rate.values() if r is not None]
    assert 0.7 < np.mean(rates) < 0.97


def test_synth_json_says_what_the_data_is_for(medium):
    record = json.loads((medium.path / "synth.json").read_text())
    assert "never a stand-in for EMOTIC" in record["purpose"]
    assert record["sizes"] == {"train": 400, "val": 0, "test": 200} and record["seed"] == 11


def test_cli_synth_writes_a_layout(tmp_path, cli):
    result = cli(
        "synth",
        tmp_path / "out",
        "--layout",
        "csv",
        "--train",
        "3",
        "--val",
        "0",
        "--test",
        "4",
        "--seed",
        "5",
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "emotic_pre" / "test.csv").is_file()
    assert not (tmp_path / "out" / "emotic_pre" / "val.csv").exists()  # 0 persons: no split
    assert len(open_split(tmp_path / "out", "test")) == 4


def test_cli_synth_refuses_a_non_empty_folder_unless_forced(tmp_path, cli):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert_one_line_error(
        cli("synth", out, "--test", "2", "--train", "0", "--val", "0"), "not empty", "--force"
    )
    assert (out / "precious.txt").read_text() == "keep me"
    result = cli("synth", out, "--test", "2", "--train", "0", "--val", "0", "--force")
    assert result.exit_code == 0, result.output
    assert not (out / "precious.txt").exists() and len(open_split(out, "test")) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli("synth", empty, "--test", "2", "--train", "0", "--val", "0").exit_code == 0


def test_cli_synth_needs_some_persons(tmp_path, cli):
    assert_one_line_error(
        cli("synth", tmp_path / "o", "--train", "0", "--val", "0", "--test", "0"), "at least one"
    )


def test_interrupted_synth_leaves_no_data_set(tmp_path, monkeypatch):
    """Ctrl-C in the middle: neither OUT nor a staging folder that could pass for data remains."""
    import selinet_compress.emotic.synth as synth

    real = synth._split_persons

    def interrupted(rng, n, split, writer, progress, stats):
        if split == "test":
            raise KeyboardInterrupt
        return real(rng, n, split, writer, progress, stats)

    monkeypatch.setattr(synth, "_split_persons", interrupted)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path / "out", "mat", {"train": 3, "test": 3}, seed=0)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_forced_synth_keeps_the_old_data(tmp_path, monkeypatch):
    import selinet_compress.emotic.synth as synth

    out = generate(tmp_path / "out", "arrays", {"test": 3}, seed=0).path
    before = open_split(out, "test").load_raw([0])["context"]
    monkeypatch.setattr(synth, "_split_persons", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        generate(out, "arrays", {"test": 3}, seed=1, force=True)
    np.testing.assert_array_equal(open_split(out, "test").load_raw([0])["context"], before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
