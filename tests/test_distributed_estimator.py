"""MLPClassifier/MLPRegressor ``fit(..., comm=comm)``: each rank passes its own shard, and
the result equals one process fitting the union batches.

The jobs run ``mpiexec -n K python -m mpi4py <script>`` in a subprocess (as
test_distributed.py). The oracle is the estimator without ``comm`` over the union data
arranged so that its batches are the job's global batches (``shuffle=False``, the ranks'
parts of each step concatenated); with ``shuffle=True`` the job records each epoch's
shuffled shards and the oracle runs one ``partial_fit`` per epoch on them.
"""
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
from fastmlp import MLPClassifier, MLPRegressor  # noqa: E402
from fastmlp._distributed_fit import split_counts  # noqa: E402
from _mpi_helpers import mpiexec  # noqa: E402

HAVE_MPI4PY = importlib.util.find_spec("mpi4py") is not None
needs_mpi = pytest.mark.skipif(not HAVE_MPI4PY, reason='mpi4py is not installed '
                               '(pip install "fastmlp[mpi]")')

SCRIPT = textwrap.dedent("""
    import json, sys, warnings
    import numpy as np
    from mpi4py import MPI
    from fastmlp import MLPClassifier, MLPRegressor
    from fastmlp import _distributed_fit

    warnings.simplefilter("ignore")
    RECORD = []
    _draw = _distributed_fit.ShardBatches.draw
    def draw(self, critical):   # records each epoch's shuffled shard
        first = self.s == 0
        batch = _draw(self, critical)
        if first:
            X, y, w = self._epoch
            RECORD.append([X.tolist(), y.tolist(), None if w is None else w.tolist()])
        return batch
    _distributed_fit.ShardBatches.draw = draw

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    out = {}
    for name, cfg in json.loads(sys.argv[1]).items():
        data = json.load(open(cfg["data"]))
        lo, hi = data["bounds"][rank]
        X, y = np.array(data["X"])[lo:hi], np.array(data["y"])[lo:hi]
        sw = None if data["w"] is None else np.array(data["w"])[lo:hi]
        val = {}
        if data.get("X_val"):
            vlo, vhi = data["val_bounds"][rank]
            val = {"X_val": np.array(data["X_val"])[vlo:vhi],
                   "y_val": np.array(data["y_val"])[vlo:vhi]}
        cls = MLPRegressor if cfg["regressor"] else MLPClassifier
        RECORD.clear()
        est = cls(**cfg["params"]).fit(X, y, sample_weight=sw, comm=comm, **val)
        res = {"coefs": [c.tolist() for c in est.coefs_ + est.intercepts_],
               "loss_curve": est.loss_curve_, "n_iter": est.n_iter_, "t": est.t_,
               "val": est.validation_scores_, "epochs": list(RECORD)}
        if not cfg["regressor"]:
            res["classes"] = est.classes_.tolist()
        out[name] = res
    with open(f"{sys.argv[2]}_{rank}.json", "w") as f:
        json.dump(out, f)
""")


def _run(k, configs, tmp_path):
    script = tmp_path / "est_script.py"
    script.write_text(SCRIPT)
    prefix = tmp_path / f"out{k}"
    # the installed fastmlp (a CI clone's tree has no .so files)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run([mpiexec(), "-n", str(k), sys.executable, "-m", "mpi4py", str(script),
                           json.dumps(configs), str(prefix)], cwd=tempfile.gettempdir(), env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [json.loads(Path(f"{prefix}_{r}.json").read_text()) for r in range(k)], proc.stdout


def _data(tmp_path, name, sizes, regressor=False, weighted=False, val=False, labels=None,
          output=None):
    """A data set split into shards of ``sizes``; ``output`` 'binary', 'multilabel' or
    'poisson' (counts) for those outputs' targets."""
    rng = np.random.default_rng(len(sizes) * 100 + sum(sizes))
    n = sum(sizes)
    X = rng.standard_normal((n, 5))
    y = (X @ rng.standard_normal((5, 2))).tolist() if regressor else \
        (labels if labels is not None else rng.integers(0, 3, n).tolist())
    if output is not None:
        y = {"binary": lambda: (X[:, 0] > 0).astype(int),
             "multilabel": lambda: (X[:, :3] + rng.standard_normal((n, 3)) > 0).astype(int),
             "poisson": lambda: rng.poisson(np.exp(0.4 * X[:, :2]))}[output]().tolist()
    ends = np.cumsum([0] + list(sizes))
    data = {"X": X.tolist(), "y": y, "bounds": [[int(a), int(b)] for a, b in zip(ends, ends[1:])],
            "w": rng.uniform(0.2, 3.0, n).tolist() if weighted else None}
    if val:
        vs = [4 + r for r in range(len(sizes))]
        vends = np.cumsum([0] + vs)
        data["X_val"] = rng.standard_normal((sum(vs), 5)).tolist()
        data["y_val"] = rng.integers(0, 2 if output == "binary" else 3, sum(vs)).tolist()
        data["val_bounds"] = [[int(a), int(b)] for a, b in zip(vends, vends[1:])]
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    return str(path), data


def _arrange(shards, sizes, batch_size):
    """The union data in the order of the job's global batches."""
    counts = split_counts(sizes, batch_size)
    bounds = np.concatenate([np.zeros((len(sizes), 1), np.int64), np.cumsum(counts, 1)], 1)
    parts = [[a[bounds[r, s]:bounds[r, s + 1]] for r, a in enumerate(shards)]
             for s in range(counts.shape[1])]
    return np.concatenate([p for step in parts for p in step])


def _close(a, b, rtol=1e-12):
    a, b = np.asarray(a, float), np.asarray(b, float)
    assert a.shape == b.shape
    scale = max(np.abs(b).max(), 1e-300)
    assert np.abs(a - b).max() <= rtol * scale, np.abs(a - b).max() / scale


def _oracle_noshuffle(cfg, data):
    """One process, no comm, the union batches arranged (shuffle=False)."""
    bs = cfg["params"]["batch_size"]
    sizes = [b - a for a, b in data["bounds"]]
    shard = lambda key: [np.asarray(data[key])[a:b] for a, b in data["bounds"]]  # noqa: E731
    X = _arrange(shard("X"), sizes, bs)
    y = _arrange(shard("y"), sizes, bs)
    w = None if data["w"] is None else _arrange(shard("w"), sizes, bs)
    val = {}
    if data.get("X_val"):
        val = {"X_val": np.asarray(data["X_val"]), "y_val": np.asarray(data["y_val"])}
    cls = MLPRegressor if cfg["regressor"] else MLPClassifier
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(**cfg["params"]).fit(X, y, sample_weight=w, **val)


def _oracle_shuffled(cfg, data, ranks):
    """One process, one partial_fit per epoch on the job's recorded shuffled shards."""
    bs = cfg["params"]["batch_size"]
    sizes = [b - a for a, b in data["bounds"]]
    params = dict(cfg["params"], shuffle=False)
    est = MLPClassifier(**params)
    classes = np.asarray(ranks[0]["classes"])
    val = {}
    if data.get("X_val"):
        val = {"X_val": np.asarray(data["X_val"]), "y_val": np.asarray(data["y_val"])}
    for e in range(len(ranks[0]["epochs"])):
        X = _arrange([np.asarray(r["epochs"][e][0]).reshape(-1, 5) for r in ranks], sizes, bs)
        y = classes[_arrange([np.asarray(r["epochs"][e][1], int) for r in ranks], sizes, bs)]
        w = (None if data["w"] is None else
             _arrange([np.asarray(r["epochs"][e][2]) for r in ranks], sizes, bs))
        est.partial_fit(X, y, classes=classes, sample_weight=w, **val)
    return est


BASE = {"hidden_layer_sizes": [7, 4], "alpha": 0.03, "batch_size": 10, "max_iter": 6,
        "random_state": 5, "learning_rate_init": 0.05, "n_iter_no_change": 100}


def _configs(tmp_path, sizes):
    k = len(sizes)
    cfgs, datas = {}, {}
    for solver in ("sgd", "adam"):
        for weighted in (False, True):
            name = f"{solver}_{'w' if weighted else 'u'}"
            path, datas[name] = _data(tmp_path, f"{name}{k}", sizes, weighted=weighted,
                                      val=weighted)
            cfgs[name] = {"data": path, "regressor": False,
                          "params": dict(BASE, solver=solver, shuffle=False)}
            cfgs[name + "_shuffled"] = dict(cfgs[name], params=dict(BASE, solver=solver))
    path, datas["reg"] = _data(tmp_path, f"reg{k}", sizes, regressor=True, weighted=True)
    cfgs["reg"] = {"data": path, "regressor": True,
                   "params": dict(BASE, solver="adam", shuffle=False, learning_rate_init=0.01)}
    # sklearn's other outputs: one logistic unit, a logistic unit per label, exp (Poisson)
    for output, solver, val in (("binary", "sgd", True), ("multilabel", "adam", False),
                                ("poisson", "adam", False)):
        path, datas[output] = _data(tmp_path, f"{output}{k}", sizes, weighted=True, val=val,
                                    output=output)
        extra = {"loss": "poisson", "learning_rate_init": 0.01} if output == "poisson" else {}
        cfgs[output] = {"data": path, "regressor": output == "poisson",
                        "params": dict(BASE, solver=solver, shuffle=False, **extra)}
    for name in list(cfgs):
        datas.setdefault(name, datas[name.replace("_shuffled", "")])
    return cfgs, datas


@needs_mpi
@pytest.mark.parametrize("sizes", [(37,), (23, 30), (30, 20, 3)],
                         ids=["K1", "K2-uneven", "K3-uneven-empty-parts"])
def test_matches_one_process_on_union_batches(tmp_path, sizes):
    cfgs, datas = _configs(tmp_path, sizes)
    ranks, _ = _run(len(sizes), cfgs, tmp_path)
    for name, cfg in cfgs.items():
        mine = [r[name] for r in ranks]
        for other in mine[1:]:   # every rank ends bitwise the same
            assert other["coefs"] == mine[0]["coefs"], name
            assert other["loss_curve"] == mine[0]["loss_curve"], name
        got = mine[0]
        oracle = (_oracle_shuffled(cfg, datas[name], mine) if name.endswith("_shuffled")
                  else _oracle_noshuffle(cfg, datas[name]))
        for a, b in zip(got["coefs"], oracle.coefs_ + oracle.intercepts_):
            _close(a, b)
        _close(got["loss_curve"], oracle.loss_curve_)
        assert got["t"] == oracle.t_ == sum(sizes) * BASE["max_iter"], name
        if not name.endswith("_shuffled"):
            assert got["n_iter"] == oracle.n_iter_ == BASE["max_iter"]
        if got["val"] is not None:
            _close(got["val"], oracle.validation_scores_)


@needs_mpi
def test_one_rank_is_todays_fit_bit_for_bit(tmp_path):
    path, data = _data(tmp_path, "one", (41,), weighted=True)
    cfgs = {f"{s}": {"data": path, "regressor": False, "params": dict(BASE, solver=s)}
            for s in ("sgd", "adam")}
    ranks, _ = _run(1, cfgs, tmp_path)
    for name, cfg in cfgs.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = MLPClassifier(**cfg["params"]).fit(np.array(data["X"]), np.array(data["y"]),
                                                     sample_weight=np.array(data["w"]))
        assert ranks[0][name]["coefs"] == [c.tolist() for c in est.coefs_ + est.intercepts_]
        assert ranks[0][name]["loss_curve"] == est.loss_curve_


@needs_mpi
def test_classes_union_and_only_rank0_prints(tmp_path):
    labels = ["a", "b"] * 6 + ["b", "c"] * 6
    path, _ = _data(tmp_path, "cls", (12, 12), labels=labels)
    cfgs = {"cls": {"data": path, "regressor": False,
                    "params": dict(BASE, max_iter=3, verbose=2)}}
    ranks, stdout = _run(2, cfgs, tmp_path)
    assert ranks[0]["cls"]["classes"] == ranks[1]["cls"]["classes"] == ["a", "b", "c"]
    assert stdout.count("Iteration 1, loss") == 1 and stdout.count("Iteration 3, loss") == 1


def test_split_counts_use_every_row_once():
    for sizes, bs in [((37,), 10), ((23, 30), 10), ((30, 20, 3), 10), ((1, 1, 50), 7),
                      ((5, 0, 9), 4), ((100, 3), 200)]:
        counts = split_counts(sizes, min(bs, sum(sizes)))
        assert (counts.sum(axis=1) == sizes).all()
        totals = counts.sum(axis=0)
        b = min(bs, sum(sizes))
        assert (totals[:-1] == b).all() and 0 < totals[-1] <= b
    assert (split_counts((37,), 10) == [[10, 10, 10, 7]]).all()   # one rank: sklearn's batches


def test_comm_without_mpi4py_names_the_extra():
    code = textwrap.dedent("""
        import sys
        sys.modules["mpi4py"] = None
        import numpy as np
        from fastmlp import MLPClassifier
        try:
            MLPClassifier(max_iter=1).fit(np.zeros((4, 2)), [0, 1, 0, 1], comm=object())
        except ImportError as exc:
            assert 'pip install "fastmlp[mpi]"' in str(exc), exc
            print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tempfile.gettempdir(),
                          env=dict(os.environ), capture_output=True,
                          text=True, timeout=120)
    assert proc.stdout.strip() == "ok", proc.stdout + proc.stderr
