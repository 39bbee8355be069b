"""Smoke tests of ``fastmlp bench`` (fastmlp._bench): it runs, prints and writes valid JSON.

No timing is asserted: the figures only have to be positive and finite.
"""
import argparse
import importlib.util
import json
import math
import sys

import numpy as np
import pytest

from fastmlp import _bench as bench
from fastmlp._bench.configs import PREDICT_BATCHES


def _args(*argv):
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(list(argv))


def _positive(v):
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


@pytest.fixture(scope="module")
def smallest_run(tmp_path_factory):
    """One run: the smallest network, --quick, fastmlp and numpy only, both dtypes."""
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    args = _args("--quick", "--seconds", "0.02", "--repeats", "2", "--configs", "1",
                 "--only", "fastmlp,numpy", "--json", str(path))
    status = bench.run(args)
    with open(path) as f:
        return status, json.load(f)


def test_run_writes_valid_json(smallest_run):
    status, result = smallest_run
    assert status == 0
    assert {"date", "machine", "settings", "train"} <= result.keys()
    assert result["complete"] is True
    machine = result["machine"]
    assert {"cpu", "cores", "blas", "fastmlp_threads"} <= machine.keys()
    assert {"internal_api", "version", "num_threads"} <= machine["blas"].keys()
    assert result["settings"]["peers"] == ["fastmlp", "numpy"]
    assert "torch" not in result["settings"]["peers"]

    rows = result["train"]
    assert [(r["network"], r["batch"], r["dtype"]) for r in rows] == [
        ("784-50-10", 100, "float32"), ("784-50-10", 100, "float64")]
    for row in rows:
        assert row["sizes"] == [784, 50, 10]
        assert _positive(row["gemm_limit"]) and _positive(row["gemm_gflops"])
        assert len(row["gemm_limit_runs"]) == 2
        assert set(row["results"]) == {"fastmlp", "numpy"}
        for res in row["results"].values():
            assert _positive(res["samples_per_s"]) and _positive(res["of_limit"])
            assert len(res["runs"]) == 2 and all(_positive(v) for v in res["runs"])
            assert res["steps_per_call"] == 1
        assert _positive(row["fastmlp_speedup"]["numpy"])


def test_run_prints_table(tmp_path, capsys):
    args = _args("--seconds", "0.01", "--repeats", "1", "--configs", "784-50-10",
                 "--dtypes", "float32", "--only", "fastmlp,reference", "--alternate")
    assert bench.run(args) == 0
    out = capsys.readouterr().out
    assert "numpy's BLAS:" in out and "GEMM limit" in out and "784-50-10 @100" in out
    assert "Alternation" in out


def test_predict_rows(tmp_path):
    path = tmp_path / "p.json"
    args = _args("--seconds", "0.01", "--repeats", "1", "--configs", "784-20-10@8",
                 "--dtypes", "float64", "--only", "fastmlp", "--predict", "--json", str(path))
    assert bench.run(args) == 0
    result = json.loads(path.read_text())
    assert [r["batch"] for r in result["predict"]] == PREDICT_BATCHES
    for row in result["predict"]:
        assert _positive(row["results"]["fastmlp"]["samples_per_s"])
        if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnx"):
            assert _positive(row["results"]["onnxruntime"]["samples_per_s"])
            assert _positive(row["fastmlp_speedup"]["onnxruntime"])


def test_plot_writes_png(smallest_run, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "bench.png"
    bench.plot(smallest_run[1], str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_names_the_extra(smallest_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(bench.BenchError, match=r"pip install fastmlp\[plot\]"):
        bench.plot(smallest_run[1], str(tmp_path / "x.png"))


@pytest.mark.parametrize("argv, message", [
    (["--only", "fastmlp,tensorflow"], "unknown peer"),
    (["--configs", "7"], "unknown config"),
    (["--configs", "784-10@0"], "bad config"),
    (["--repeats", "0"], "--repeats"),
    (["--activations", "relu+layernorm"], "unknown layer 'layernorm'"),
    (["--activations", "elu+dropout"], "unknown activation 'elu+dropout'"),
])
def test_bad_arguments_fail_cleanly(argv, message, capsys):
    assert bench.run(_args(*argv)) == 1
    assert message in capsys.readouterr().err


def test_batchnorm_dropout_variant_times_the_extend_network(tmp_path, capsys):
    """``--activations relu,relu+bn+dropout``: the variant row times MultiLayerNetExtend
    with both layers (and the reference's twin), side by side with the plain network, and
    the activations table gives its samples/s as a multiple of the plain one's."""
    path = tmp_path / "v.json"
    args = _args("--seconds", "0.01", "--repeats", "1", "--configs", "784-20-10@8",
                 "--dtypes", "float64", "--only", "fastmlp,numpy,sklearn",
                 "--activations", "relu,relu+bn+dropout", "--json", str(path))
    assert bench.run(args) == 0
    out = capsys.readouterr().out
    assert "relu+bn+dropout / relu" in out
    with open(path) as f:
        rows = json.load(f)["train"]
    assert [r["activation"] for r in rows] == ["relu", "relu+bn+dropout"]
    plain, variant = rows
    for name in ("fastmlp", "numpy"):
        assert _positive(variant["results"][name]["samples_per_s"])
    assert _positive(plain["results"]["sklearn"]["samples_per_s"])
    assert "no batch normalisation" in variant["results"]["sklearn"]["unavailable"]


@pytest.mark.parametrize("variant, batchnorm, dropout", [
    ("relu+bn+dropout", True, True), ("tanh+dropout", False, True),
    ("sigmoid+bn", True, False)])
def test_variant_steps_build_the_extend_network(variant, batchnorm, dropout, monkeypatch):
    from fastmlp import networks_extend
    from fastmlp._bench import peers
    built = []
    original = networks_extend.MultiLayerNetExtend.__init__

    def spy(self, *args, **kwargs):
        built.append(kwargs)
        original(self, *args, **kwargs)
    monkeypatch.setattr(networks_extend.MultiLayerNetExtend, "__init__", spy)
    X = np.random.default_rng(0).random((64, 784))
    T = np.arange(64) % 10
    step, per_call = peers.fastmlp_step([784, 12, 10], 16, "float64", X, T, variant)
    step(0)
    assert per_call == 1 and len(built) == 1
    assert built[0]["use_batchnorm"] is batchnorm and built[0]["use_dropout"] is dropout
    assert built[0]["activation"] == variant.split("+")[0]
