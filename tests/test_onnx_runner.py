"""The onnxruntime runner: registered for .onnx, same inputs as PyTorch, threads, config sources,
and files that are not (complete) ONNX models."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from conftest import assert_one_line_error
from onnx_fixtures import built, small_config, small_setup

from selinet_compress.errors import UserError
from selinet_compress.io import sidecar_path
from selinet_compress.runtimes import RUNTIMES, open_runner, target_for_path


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    return built(tmp_path_factory.getbasetemp(), "fp32")


def test_registered_for_onnx_suffix(fp32):
    from selinet_compress.runtimes.onnx_runner import OnnxRunner

    assert target_for_path(fp32) == "onnx" and RUNTIMES.get("onnx") is OnnxRunner
    runner = open_runner(fp32, threads=2)
    assert isinstance(runner, OnnxRunner) and runner.config == small_config()
    assert runner.session.get_session_options().intra_op_num_threads == 2
    described = runner.describe()
    assert described["runtime"] == "onnxruntime" and described["threads"] == 2


def test_same_preprocessed_batches_as_pytorch(fp32, tmp_path_factory):
    from selinet_compress.emotic import iterate_batches, open_split
    from selinet_compress.runtimes.torch_runner import TorchRunner

    setup = small_setup(tmp_path_factory.getbasetemp())
    onnx_runner = open_runner(fp32)
    torch_runner = TorchRunner.open(setup.checkpoint)
    batch = next(iterate_batches(open_split(setup.data, "val"), 4, onnx_runner.config))
    inputs = {n: batch[n] for n in onnx_runner.input_names}
    got, want = onnx_runner.run(inputs), torch_runner.run(inputs)
    assert set(got) == {"emotions", "sentiments"} and got["emotions"].dtype == np.float32
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-6)


def test_config_from_sidecar_when_metadata_is_missing(fp32, tmp_path):
    from selinet_compress.passes.onnx_export import CONFIG_KEY

    model = onnx.load(str(fp32))
    kept = [p for p in model.metadata_props if p.key != CONFIG_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    with pytest.raises(UserError, match="carries no SeLiNet config"):
        open_runner(bare)
    sidecar_path(bare).write_text(json.dumps({"model_config": small_config().to_dict()}))
    assert open_runner(bare).config == small_config()


def test_outputs_mapped_by_width_when_names_differ(fp32, tmp_path):
    model = onnx.load(str(fp32))
    renames = {"emotions": "out_a", "sentiments": "out_b"}
    for node in model.graph.node:
        node.output[:] = [renames.get(o, o) for o in node.output]
    for output in model.graph.output:
        output.name = renames[output.name]
    renamed = tmp_path / "renamed.onnx"
    onnx.save(model, str(renamed))
    body = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    got, want = open_runner(renamed).run({"body": body}), open_runner(fp32).run({"body": body})
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


@pytest.mark.parametrize("keep", [0.5, 0.98, 0])
def test_truncated_or_empty_file_is_a_one_line_error(fp32, tmp_path, keep, cli):
    data = fp32.read_bytes()
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(UserError, match=r"not a (loadable|readable) ONNX model"):
        open_runner(broken)
    assert_one_line_error(cli("inspect", broken), str(broken))


def test_truncated_file_given_to_evaluate(fp32, tmp_path, tmp_path_factory, cli):
    from selinet_compress.cli import COMMANDS

    if "evaluate" not in COMMANDS:
        pytest.skip("the evaluate command is not in this tree yet")
    setup = small_setup(tmp_path_factory.getbasetemp())
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(fp32.read_bytes()[:1000])
    shutil.copy(sidecar_path(fp32), sidecar_path(broken))
    assert_one_line_error(cli("evaluate", broken, "--data", setup.data), str(broken))
