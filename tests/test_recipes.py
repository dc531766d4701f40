"""Recipe schema and loader: every built-in recipe valid, strict YAML, sections, the CLI list."""

from __future__ import annotations

import json

import pytest
from conftest import assert_one_line_error

from selinet_compress.errors import UserError
from selinet_compress.recipes import (
    PRECISIONS,
    SECTIONS,
    Calibration,
    builtin_names,
    list_recipes,
    load_recipe,
)


def test_required_builtin_recipes_exist():
    names = set(builtin_names())
    assert {
        "fp32",
        "fp16",
        "int8_dynamic",
        "int8_static",
        "int8_static_entropy",
        "int8_static_percentile",
    } <= names


@pytest.mark.parametrize("name", builtin_names())
def test_builtin_recipe_loads_and_round_trips(name):
    recipe = load_recipe(name)
    assert recipe.name == name and recipe.source == "built-in"
    assert recipe.precision in PRECISIONS
    assert recipe.description.strip() and "\n" not in recipe.description
    plain = recipe.to_dict()
    assert json.loads(json.dumps(plain)) == plain  # JSON-able, for sidecars and cache keys
    assert "source" not in plain


def test_calibration_variants_differ_only_in_calibration():
    base = load_recipe("int8_static").to_dict()
    for variant, method in (("int8_static_entropy", "entropy"), ("int8_static_percentile", "percentile")):
        other = load_recipe(variant).to_dict()
        assert other["calibration"]["method"] == method
        differing = {k for k in base if base[k] != other[k]}
        assert differing <= {"name", "description", "calibration"}


def test_dynamic_recipe_names_what_it_quantizes_and_conv_variant_warns():
    dynamic = load_recipe("int8_dynamic")
    assert set(dynamic.op_types) == {"MatMul", "Gemm"} and not dynamic.warning
    conv = load_recipe("int8_dynamic_conv")
    assert "Conv" in conv.op_types and "slower" in conv.warning.lower()
    assert "slow" in conv.description.lower()


def test_list_is_in_precision_order():
    order = [PRECISIONS.index(r.precision) for r in list_recipes()]
    assert order == sorted(order) and list_recipes()[0].name == "fp32"


def test_user_yaml_path_and_default_name(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "description: body kept float\nprecision: int8_static\nkeep_float_modules: [body.features]\n"
        "calibration: {method: entropy, samples: 16}\nonnx: {quant_format: qdq}\n"
    )
    recipe = load_recipe(str(path))
    assert recipe.name == "mine" and recipe.source == str(path)
    assert recipe.keep_float_modules == ("body.features",)
    assert recipe.calibration == Calibration(method="entropy", samples=16)
    assert recipe.section("onnx").quant_format == "qdq"
    assert recipe.to_dict()["sections"] == {"onnx": recipe.to_dict()["sections"]["onnx"]}


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        (
            "description: x\nprecision: int8_static\nper_chanel: true\n",
            ["unknown key 'per_chanel'", "per_channel"],
        ),
        ("description: x\nprecision: int8_statc\n", ["invalid value 'int8_statc'", "int8_static"]),
        ("description: x\nprecision: int8_static\ncalibration: {method: entropi}\n", ["entropy"]),
        (
            "description: x\nprecision: int8_static\ncalibration: {sample: 3}\n",
            ["unknown key 'sample'", "samples"],
        ),
        ("description: x\nprecision: int8_static\ncalibration: {samples: 0}\n", ["at least 1 sample"]),
        (
            "description: x\nprecision: int8_static\nonnx: {quant_fromat: qdq}\n",
            ["quant_fromat", "quant_format"],
        ),
        ("description: x\nprecision: int8_static\nper_channel: maybe\n", ["expected true or false"]),
        ("description: x\nprecision: int8_static\nsource: elsewhere\n", ["unknown key 'source'"]),
        ("precision: fp32\n", ["description"]),
        ("description: [unclosed\n", ["not valid YAML", "line"]),
        ("- just\n- a list\n", ["expected a mapping"]),
    ],
)
def test_bad_recipe_files_fail_with_one_line(tmp_path, text, fragments):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        load_recipe(str(path))
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_unknown_recipe_name_suggests():
    with pytest.raises(UserError, match="did you mean 'int8_static'"):
        load_recipe("int8_statik")
    with pytest.raises(UserError, match="no such recipe file"):
        load_recipe("missing/recipe.yaml")


def test_every_target_registers_a_section():
    from selinet_compress.targets import TARGETS

    for target in TARGETS.names():
        assert target in SECTIONS


def test_recipes_command_lists_one_line_each(cli):
    result = cli("recipes")
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert [line.split()[0] for line in lines] == [r.name for r in list_recipes()]


def test_recipes_command_shows_and_validates_one(cli, tmp_path):
    result = cli("recipes", "int8_static", "--json")
    shown = json.loads(result.output)
    assert shown["calibration"]["method"] == "minmax" and "onnx" in shown["targets_supported"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("description: x\nprecision: int8_static\nper_chanel: true\n")
    assert_one_line_error(cli("recipes", bad), "per_channel")
    assert_one_line_error(cli("recipes", "fp33"), "unknown recipe 'fp33'", "fp32")
    malformed = tmp_path / "malformed.yaml"
    malformed.write_text("description: 'unterminated\n")
    assert_one_line_error(cli("recipes", malformed), "not valid YAML")
