"""Every TFLite variant of one checkpoint, in one run: size, AP, ΔAP vs PyTorch fp32, LiteRT latency.

Rows: onnx2tf fp32 / fp16 / int8_dynamic / int8_static and litert-torch fp32 / int8_static (PT2E),
each built with ``quantize`` (reused from OUT when its sidecar has the same cache key; the
conversions themselves are cached by content hash in OUT/cache). Each file is evaluated on
``--split`` with the LiteRT runner and compared with PyTorch fp32's per-sample scores (paired
bootstrap 95 % CI of ΔmAP, raw and boosted). Latency: ``interpreter.invoke()`` on one real
preprocessed sample at batch 1 with ``--threads`` threads and XNNPACK, every model timed in
interleaved rounds in this one process, so load from other processes hits all alike and the
ratios hold when absolute figures drift. ``--profile`` adds per-op timings (one-op models, see
``selinet_compress.audit.tflite_profile``) of the fp32 and int8 files: where the time goes.

Goals checked with ratios from this run: int8_static (onnx2tf) size <= 0.28 x fp32, ΔAP >= -0.7
points (the worse of raw / boosted), latency <= 0.9 x fp32 and <= the litert-torch int8 file's;
fp16 runs and |ΔAP| <= 0.1 points.

    python benchmarks/bench_tflite_recipes.py CKPT --data DIR [--out DIR] [--split test] [--profile]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

from bench_common import ci, reference_header, score_against_reference

GOAL_ROWS = ("int8_static", "int8_static_float_outputs")  # rows checked against the int8_static goals
GOALS = {"size_ratio": 0.28, "delta_ap_points": -0.7, "latency_ratio": 0.9, "fp16_delta_ap_points": 0.1}
# (row name, recipe, tflite section changes, recipe field changes)
VARIANTS = [
    ("fp32", "fp32", {}, {}),
    ("fp16", "fp16", {}, {}),
    ("int8_dynamic", "int8_dynamic", {}, {}),
    ("int8_static", "int8_static", {}, {}),
    # The output layers in float (as the ONNX recipe): 8-bit output scores tie, ties cost AP.
    ("int8_static_float_outputs", "int8_static_float_outputs", {}, {}),
    # Not goal rows: what per-tensor weights would save (no per-channel scales / int64 zero points),
    # and the int8 file as onnx2tf writes it without our HardSwish / HardSigmoid rewrites (the fix).
    ("int8_static_per_tensor", "int8_static", {}, {"per_channel": False}),
    (
        "int8_static__no_rewrites",
        "int8_static",
        {"pseudo_hardswish": False, "rewrite_hardsigmoid": False},
        {},
    ),
    ("fp32__litert-torch", "fp32", {"converter": "litert-torch"}, {}),
    ("int8_static__litert-torch", "int8_static", {"converter": "litert-torch", "io_dtype": "int8"}, {}),
]


def build_all(args, variants) -> tuple[dict[str, Path], dict[str, str]]:
    """Build (or reuse, by cache key) every variant; returns (name -> artifact, name -> failure)."""
    from selinet_compress.errors import UserError
    from selinet_compress.io import read_sidecar, sha256_file
    from selinet_compress.recipes import load_recipe
    from selinet_compress.targets import artifact_path, cache_key, quantize
    from selinet_compress.targets.tflite import with_tflite_options

    checkpoint_sha = sha256_file(args.checkpoint)
    built, failed = {}, {}
    for name, recipe_name, changes, fields in variants:
        recipe = load_recipe(recipe_name)
        recipe = with_tflite_options(recipe, **changes) if changes else recipe
        recipe = dataclasses.replace(recipe, **fields) if fields else recipe
        path = artifact_path(args.out, recipe.name, "tflite", name)
        sidecar = read_sidecar(path) if path.is_file() else None
        key = cache_key(args.checkpoint, recipe, "tflite", args.data, checkpoint_sha)
        if sidecar is not None and sidecar.get("cache_key") == key:
            print(f"[{name}] reusing {path} (same cache key)", file=sys.stderr)
            built[name] = path
            continue
        started = time.perf_counter()
        try:
            built[name] = quantize(
                args.checkpoint,
                recipe,
                "tflite",
                args.data,
                args.out,
                name=name,
                cache_dir=args.out / "cache",
                force=True,
                progress=not args.quiet,
            )
        except UserError as exc:  # a failure is a row, not a crash
            failed[name] = str(exc)
            print(f"[{name}] FAILED: {exc}", file=sys.stderr)
            continue
        print(f"[{name}] built in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return built, failed


def latencies(models: dict[str, Path], sample: dict, threads: int, rounds: int, runs: int) -> dict[str, dict]:
    """invoke() p50 / p90 / min ms per model, in interleaved rounds (see module docstring)."""
    from selinet_compress.bench import interleaved_latency
    from selinet_compress.runtimes.tflite_runner import LiteRTRunner

    runners = {name: LiteRTRunner.open(path, threads=threads) for name, path in models.items()}
    for runner in runners.values():
        runner.run({n: sample[n] for n in runner.input_names})  # sets the input tensors once
    timing = interleaved_latency({name: r.invoke_once for name, r in runners.items()}, rounds, runs)
    return {name: t | {"load_seconds": runners[name].load_seconds} for name, t in timing.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("bench_tflite_recipes"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N samples only")
    parser.add_argument("--variants", default=None, help="comma-separated row names (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10, help="interleaved latency rounds")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per model per round")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--profile", action="store_true", help="per-op timings of the fp32 / int8 files")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()

    from selinet_compress.emotic import iterate_batches, open_split
    from selinet_compress.environment import environment
    from selinet_compress.errors import UserError
    from selinet_compress.evaluate import evaluate
    from selinet_compress.io import sha256_file
    from selinet_compress.model.selinet import SeLiNetConfig

    wanted = set(args.variants.split(",")) if args.variants else None
    variants = [v for v in VARIANTS if wanted is None or v[0] in wanted or v[0] == "fp32"]
    try:
        models, failed = build_all(args, variants)
        if "fp32" not in models:
            raise UserError(f"the fp32 TFLite file (the ratios' denominator) failed: {failed.get('fp32')}")
        progress = not args.quiet
        reference = evaluate(
            args.checkpoint, args.data, args.split, limit=args.limit, threads=args.threads, progress=progress
        )
        results = {}
        for name, path in models.items():
            results[name] = score_against_reference(path, reference, args, progress)
        config = SeLiNetConfig.from_dict(results["fp32"]["sidecar"]["model_config"])
        sample = next(iterate_batches(open_split(args.data, args.split), 1, config))
        timing = latencies(models, sample, args.threads, args.rounds, args.runs)
        load_during = os.getloadavg()[0]
        profiles = {}
        if args.profile:
            from selinet_compress.audit.tflite_profile import profile_ops

            for name in ("fp32", "int8_static", "int8_static__no_rewrites", "int8_static__litert-torch"):
                if name in models:
                    profiles[name] = profile_ops(
                        models[name], threads=args.threads, runs=20, progress=progress
                    )
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    fp32 = results["fp32"]
    lines = [
        f"checkpoint {args.checkpoint} (sha256 {sha256_file(args.checkpoint)[:12]}), {args.split} split of "
        f"{args.data}: {reference.n} persons; PyTorch fp32 mAP raw {100 * reference.metrics['map']:.2f}, "
        f"boosted {100 * reference.metrics['map_boosted']:.2f}",
        "",
        "| variant | converter | what the file is | size MB | size ratio | mAP raw | mAP boosted "
        "| ΔAP raw (95 % CI) | ΔAP boosted (95 % CI) | LiteRT p50 ms | latency ratio | XNNPACK partitions |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    for name, _recipe, changes, _fields in variants:
        converter = changes.get("converter", "onnx2tf")
        if name in failed:
            lines.append(
                f"| {name} | {converter} | FAILED: {failed[name][:120]} |  |  |  |  |  |  |  |  |  |"
            )
            continue
        r, t = results[name], timing[name]
        audit = r["sidecar"]["audit"]
        lines.append(
            f"| {name} | {converter} | {audit['what_it_is']} | {r['size_mb']:.2f} "
            f"| {r['size_mb'] / fp32['size_mb']:.3f} | {100 * r['map']:.2f} | {100 * r['map_boosted']:.2f} "
            f"| {ci(r['delta_raw'])} | {ci(r['delta_boosted'])} | {t['p50_ms']:.2f} "
            f"| {t['p50_ms'] / timing['fp32']['p50_ms']:.2f} | {audit['xnnpack']['partitions']} |"
        )
    env = environment("ai-edge-litert", "tensorflow", "onnx2tf", "torch")
    cpu = env["cpu"]
    lines += [
        "",
        f"latency: LiteRT {env['versions']['ai-edge-litert']} interpreter + XNNPACK, invoke() at batch 1, "
        f"{args.threads} threads, {args.rounds} interleaved rounds x {args.runs} runs per model; "
        f"{cpu['model']} "
        f"({cpu['logical_cores']} logical cores; {' '.join(cpu['flags'])}); load average during the timing "
        f"{load_during:.1f} (a shared machine: absolute ms are noisy, ratios are what counts; phones with "
        "NEON dot-product / fp16 arithmetic rank the variants differently). ΔAP in points, paired bootstrap "
        f"({args.bootstrap} resamples) against PyTorch fp32 on the same persons.",
    ]
    goals, goal_lines = check_goals(results, timing, failed)
    for name, profile in profiles.items():
        from selinet_compress.audit.tflite_profile import format_profile

        goal_lines += ["", f"per-op profile, {name}:", *format_profile(profile, top=10)]
    print("\n".join(lines + goal_lines))
    if args.json:
        from selinet_compress.io import write_json_atomic

        write_json_atomic(
            args.json,
            {
                **reference_header(args, reference),
                "variants": {
                    n: {k: v for k, v in results[n].items() if k != "sidecar"}
                    | {"latency": timing[n], "audit": results[n]["sidecar"]["audit"]}
                    for n in results
                },
                "failed": failed,
                "goals": goals,
                "profiles": profiles,
                "environment": env,
                "table": lines + goal_lines,
            },
        )
    return 0


def check_goals(results: dict, timing: dict, failed: dict) -> tuple[dict, list[str]]:
    """The issue's must-show goals, from this run's figures."""
    lines = ["", "goals (ratios from this run):"]
    goals: dict = {}
    for name in GOAL_ROWS:
        if name not in results:
            lines.append(f"- {name}: FAILED ({failed.get(name, 'not built')})")
            continue
        r = results[name]
        figures = {
            "size_ratio": r["size_mb"] / results["fp32"]["size_mb"],
            "delta_ap_points": 100 * min(r["delta_raw"][0], r["delta_boosted"][0]),
            "latency_ratio": timing[name]["p50_ms"] / timing["fp32"]["p50_ms"],
        }
        met = {
            "size_ratio": figures["size_ratio"] <= GOALS["size_ratio"],
            "delta_ap_points": figures["delta_ap_points"] >= GOALS["delta_ap_points"],
            "latency_ratio": figures["latency_ratio"] <= GOALS["latency_ratio"],
        }
        if "int8_static__litert-torch" in timing:
            figures["vs_litert_torch_int8"] = (
                timing[name]["p50_ms"] / timing["int8_static__litert-torch"]["p50_ms"]
            )
            met["vs_litert_torch_int8"] = figures["vs_litert_torch_int8"] <= 1.0
        goals[name] = {"figures": figures, "met": met}
        word = {True: "met", False: "MISSED"}
        audit = r["sidecar"]["audit"]
        lines += [
            f"- {name} size {figures['size_ratio']:.3f} x fp32 (goal <= {GOALS['size_ratio']}): "
            f"{word[met['size_ratio']]} -- of its {r['size_mb']:.2f} MB, "
            f"{audit['quantization_param_bytes'] / 1e6:.2f} MB are per-channel scales (fp32) and zero "
            "points "
            f"(int64, the TFLite schema) for {audit['per_channel_tensors']} weight and bias tensors",
            f"- {name} ΔAP {figures['delta_ap_points']:+.2f} points, the worse of raw / boosted "
            f"(goal >= {GOALS['delta_ap_points']}): {word[met['delta_ap_points']]}",
            f"- {name} latency {figures['latency_ratio']:.2f} x fp32 "
            f"(goal <= {GOALS['latency_ratio']}): {word[met['latency_ratio']]}; "
            f"XNNPACK partitions {audit['xnnpack']['partitions']}, not delegated: "
            f"{audit['xnnpack']['not_delegated'] or 'none'}",
        ]
        if "vs_litert_torch_int8" in figures:
            lines.append(
                f"- {name} latency {figures['vs_litert_torch_int8']:.2f} x the litert-torch int8 "
                f"file's (goal <= 1.0): {word[met['vs_litert_torch_int8']]}"
            )
    if "fp16" in results:
        r = results["fp16"]
        worst = 100 * max(abs(r["delta_raw"][0]), abs(r["delta_boosted"][0]))
        ok = worst <= GOALS["fp16_delta_ap_points"]
        goals["fp16"] = {"figures": {"abs_delta_ap_points": worst}, "met": {"runs": True, "delta_ap": ok}}
        lines.append(
            f"- fp16 runs; |ΔAP| {worst:.2f} points (goal <= {GOALS['fp16_delta_ap_points']}): "
            f"{'met' if ok else 'MISSED'}"
        )
    else:
        lines.append(f"- fp16: FAILED ({failed.get('fp16', 'not built')})")
    return goals, lines


if __name__ == "__main__":
    sys.exit(main())
