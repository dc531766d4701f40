"""evaluate(): runner x data -> scores -> metrics, the JSON / npz outputs and the CLI."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from selinet_compress.emotic import iterate_batches, open_split, sentiment_matrix
from selinet_compress.evaluate import EvalResult, evaluate
from selinet_compress.model.boost import sentiment_boost
from selinet_compress.model.selinet import SeLiNetConfig, build_model
from selinet_compress.runtimes.torch_runner import TorchRunner

SMALL = SeLiNetConfig(body_size=32, context_size=32)  # the full network on tiny inputs: fast


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from selinet_compress.checkpoint import init_checkpoint
    from selinet_compress.emotic.synth import generate

    root = tmp_path_factory.mktemp("evaluate")
    data = {
        layout: generate(root / layout, layout, {"train": 2, "test": 14}, seed=4).path
        for layout in ("arrays", "mat")
    }
    return {"data": data, "model": init_checkpoint(root / "small.pt", SMALL, seed=1)}


def quiet_evaluate(*args, **kwargs) -> EvalResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # classes absent from 14 persons: tested in test_metrics
        return evaluate(*args, progress=False, **kwargs)


def test_evaluate_equals_a_hand_written_loop(setup):
    model = build_model(SMALL, seed=2)
    # Make the sentiment head fire so that the boost changes scores (random init barely does).
    with __import__("torch").no_grad():
        model.sentiment_head.out.bias.fill_(1.0)
    runner = TorchRunner.from_model(model)
    result = quiet_evaluate(None, setup["data"]["arrays"], batch_size=8, runner=runner)

    split = open_split(setup["data"]["arrays"], "test")
    scores, sentiments = [], []
    for batch in iterate_batches(split, 8, SMALL):
        out = runner.run({"body": batch["body"], "context": batch["context"]})
        scores.append(out["emotions"])
        sentiments.append(out["sentiments"])
    scores, sentiments = np.concatenate(scores), np.concatenate(sentiments)
    np.testing.assert_allclose(result.scores, scores, atol=1e-5)
    np.testing.assert_allclose(result.sentiment_scores, sentiments, atol=1e-5)
    boosted = sentiment_boost(
        scores, sentiments, sentiment_matrix(), SMALL.boost_top_k, SMALL.boost_threshold
    )
    np.testing.assert_allclose(result.scores_boosted, boosted, atol=1e-5)
    assert not np.allclose(result.scores_boosted, 1 / (1 + np.exp(-scores)))  # the boost did something
    np.testing.assert_array_equal(result.labels, split.emotions)
    assert result.ids == split.ids and result.n == 14

    defined = [c for c in range(26) if split.emotions[:, c].any()]
    expected = np.mean([average_precision_score(split.emotions[:, c], scores[:, c]) for c in defined])
    assert result.metrics["map"] == pytest.approx(expected, abs=1e-6)
    expected_boosted = np.mean(
        [average_precision_score(split.emotions[:, c], boosted[:, c]) for c in defined]
    )
    assert result.metrics["map_boosted"] == pytest.approx(expected_boosted, abs=1e-6)
    assert result.throughput > 0


def test_json_and_npz_outputs(setup, tmp_path):
    result = quiet_evaluate(setup["model"], setup["data"]["arrays"], limit=9, batch_size=4, workers=1)
    record = result.to_json()
    assert record["n"] == 9 and 0 <= record["map"] <= 1 and 0 <= record["map_boosted"] <= 1
    assert set(record["sentiment_ap"]) == {"Positive", "Negative", "Neutral"}
    assert len(record["per_class_ap"]) == 26
    assert all(ap is None or 0 <= ap <= 1 for ap in record["per_class_ap"].values())
    assert record["data"]["layout"] == "arrays" and record["model"]["target"] == "torch"
    json.dumps(record)  # plain JSON

    path = result.save_scores(tmp_path / "scores.npz")
    saved = np.load(path)
    assert {"scores", "scores_boosted", "labels", "ids", "sentiment_scores", "sentiment_labels"} <= set(
        saved.files
    )
    assert saved["scores"].shape == (9, 26) and list(saved["ids"]) == result.ids
    assert json.loads((tmp_path / "scores.npz.json").read_text())["n"] == 9


def test_every_layout_gives_the_same_scores(setup):
    arrays = quiet_evaluate(setup["model"], setup["data"]["arrays"])
    mat = quiet_evaluate(setup["model"], setup["data"]["mat"])
    np.testing.assert_allclose(mat.scores, arrays.scores, atol=1e-5)
    assert mat.metrics["map"] == pytest.approx(arrays.metrics["map"])


def test_model_without_sentiment_head(setup):
    config = SMALL.replace(use_sentiment=False)
    result = quiet_evaluate(
        None, setup["data"]["arrays"], runner=TorchRunner.from_model(build_model(config, 0))
    )
    assert result.sentiment_scores is None and result.metrics["sentiment_ap"] == {}
    np.testing.assert_allclose(
        result.scores_boosted, 1 / (1 + np.exp(-result.scores.astype(np.float64))), atol=1e-6
    )


def test_cli_prints_the_tables_and_writes_outputs(setup, cli, tmp_path):
    result = cli(
        "evaluate",
        setup["model"],
        "--data",
        setup["data"]["mat"],
        "--batch-size",
        "8",
        "--json",
        tmp_path / "m.json",
        "--scores",
        tmp_path / "s.npz",
        "--workers",
        "2",
    )
    assert result.exit_code == 0, result.output
    out = result.output
    for fragment in (
        "mAP ",
        "mAP boosted",
        "sentiment AP Positive",
        "Engagement",
        "Yearning",
        "throughput:",
        "samples/s",
        "positives",
    ):
        assert fragment in out, fragment
    record = json.loads((tmp_path / "m.json").read_text())
    assert {"map", "map_boosted", "per_class_ap", "sentiment_ap", "n"} <= set(record)
    shown = next(line for line in out.splitlines() if line.startswith("mAP "))
    assert f"{100 * record['map']:.2f}" in shown  # printed in percentage points
    assert np.load(tmp_path / "s.npz")["labels"].shape == (14, 26)


def test_cli_json_to_stdout(setup, cli):
    result = cli("evaluate", setup["model"], "--data", setup["data"]["arrays"], "--limit", "3", "--json", "-")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["n"] == 3


def test_cli_reports_a_missing_model_in_one_line(setup, cli, tmp_path):
    from conftest import assert_one_line_error

    assert_one_line_error(
        cli("evaluate", tmp_path / "none.pt", "--data", setup["data"]["arrays"]), "no such file"
    )
