"""One row of each ``fastmlp bench`` table: the peers and the GEMM limit, timed interleaved.

``bench_train`` measures one network and dtype at one or more hidden
activations, all interleaved (the training table, plus the alternation test);
``bench_predict`` one network and dtype at each predict batch
(the inference table). Each returns plain dicts, the records of the JSON.
"""
from .configs import PREDICT_BATCHES, batch_start, gemm_work, make_data, network_name, user_matmul
from .machine import CpuShare, available_cores
from .peers import STEP_MAKERS, predictors
from .timing import Rate, alternation, interleave, median


def _speedups(row):
    """fastmlp's samples/s over each other peer's, when fastmlp has a figure."""
    fm = row["results"].get("fastmlp", {}).get("samples_per_s")
    if fm:
        row["fastmlp_speedup"] = {n: fm / r["samples_per_s"] for n, r in row["results"].items()
                                  if n != "fastmlp" and "samples_per_s" in r}


def bench_train(sizes, batch, dtype, names, seconds, repeats, alternate, log, idle=None,
                activations=("relu",)):
    """The rows of the training table for one network and dtype, one per hidden activation
    (a list of dicts, see ``fastmlp._bench.main.run``). Every peer at every activation and
    the GEMM limit are timed interleaved in the same repeats, so the rows compare side by
    side; the alternation test runs at the first activation only."""
    X, T = make_data(dtype)
    cpu = CpuShare()
    rows = {act: {"network": network_name(sizes), "sizes": sizes, "batch": batch,
                  "dtype": dtype, "activation": act, "results": {}} for act in activations}
    steps = {}
    for act in activations:
        for name in names:
            try:
                steps[name, act] = STEP_MAKERS[name](sizes, batch, dtype, X, T, act)
            except Exception as exc:  # noqa: BLE001 - a peer that cannot run is reported
                rows[act]["results"][name] = {"unavailable": f"{type(exc).__name__}: {exc}"[:200]}
    limit_call, flops = gemm_work(sizes, batch, dtype)
    tasks = {"gemm_limit": Rate(limit_call, batch)}
    for key, (step, per_call) in steps.items():
        tasks[key] = Rate(step, batch * per_call)
    if alternate and dtype == "float32":   # the user's product is float32: so are these rows
        mm = user_matmul()
        for (name, act), (step, per_call) in steps.items():
            if per_call == 1 and act == activations[0]:
                tasks["alternation:" + name] = lambda step=step: alternation(step, mm, seconds)
    # one peer's activations take turns by slices (one thread pool); peers one after another
    runs, busy, discarded = interleave(tasks, repeats, seconds, log, idle,
                                       group=lambda key: key[0] if isinstance(key, tuple) else key)
    limit = median(runs["gemm_limit"])
    for act, row in rows.items():
        row["gemm_limit"] = limit
        row["gemm_limit_runs"] = runs["gemm_limit"]
        row["gemm_gflops"] = limit / batch * flops / 1e9
        for (name, step_act), (_, per_call) in steps.items():
            if step_act != act:
                continue
            v = median(runs[name, act])
            res = {"samples_per_s": v, "of_limit": v / limit, "runs": runs[name, act],
                   "steps_per_call": per_call}
            if act == activations[0] and "alternation:" + name in runs:
                res["alternation"] = median(runs["alternation:" + name])
                res["alternation_runs"] = runs["alternation:" + name]
            row["results"][name] = res
        _speedups(row)
        row["other_processes_cpu_share"] = cpu.others(available_cores())
        row["other_processes_cpu_share_per_repeat"] = busy
        row["discarded_repeats"] = discarded
    return list(rows.values())


def bench_predict(sizes, dtype, names, seconds, repeats, log, idle=None):
    """The inference rows of one network and dtype, one per batch of PREDICT_BATCHES."""
    X, _ = make_data(dtype)
    preds, missing = predictors(sizes, dtype, names)
    rows = []
    for batch in PREDICT_BATCHES:
        cpu = CpuShare()
        row = {"network": network_name(sizes), "sizes": sizes, "batch": batch, "dtype": dtype,
               "results": dict(missing)}
        tasks = {name: Rate(lambda i, f=f, b=batch: f(X[batch_start(i, b):batch_start(i, b) + b]),
                            batch) for name, f in preds.items()}
        runs, busy, discarded = interleave(tasks, repeats, seconds, log, idle)
        for name in preds:
            row["results"][name] = {"samples_per_s": median(runs[name]), "runs": runs[name]}
        _speedups(row)
        row["other_processes_cpu_share"] = cpu.others(available_cores())
        row["other_processes_cpu_share_per_repeat"] = busy
        row["discarded_repeats"] = discarded
        rows.append(row)
    return rows
