"""What ``fastmlp bench`` prints, built from synthetic result rows (no timing): every line
fits 100 columns with every peer present, a peer without figures gets no column, and
each figure lands in its own cell (issue #15)."""
import contextlib
import io
import re

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from fastmlp._bench.configs import ACTIVATIONS, CONFIGS, PREDICT_BATCHES, network_name
from fastmlp._bench.main import Progress
from fastmlp._bench.report import print_tables, summary

WIDTH = 100
TRAIN_PEERS = ["fastmlp", "numpy", "torch", "sklearn"]
SHORT = {"fastmlp": "fastmlp", "numpy": "numpy", "torch": "torch", "sklearn": "sklearn",
         "onnxruntime": "ort"}
INFO = {"other_processes_cpu_share": 0.02, "cores": 2}


def _results(rates, limit=None):
    """The per-peer records measure.py writes, for {peer: samples/s or None (could not run)}."""
    out = {}
    for name, v in rates.items():
        if v is None:
            out[name] = {"unavailable": f"ImportError: no module named {name}"}
        else:
            out[name] = {"samples_per_s": v, "runs": [v]}
            if limit:
                out[name].update(of_limit=v / limit, steps_per_call=1)
    return out


def _row(sizes, batch, dtype, rates, busy, limit=None, activation=None, alternation=None):
    row = {"network": network_name(sizes), "sizes": sizes, "batch": batch, "dtype": dtype,
           "results": _results(rates, limit), "other_processes_cpu_share_per_repeat": busy}
    if limit:
        row.update(gemm_limit=limit, activation=activation)
    fm = rates.get("fastmlp")
    if fm:
        row["fastmlp_speedup"] = {n: fm / v for n, v in rates.items() if n != "fastmlp" and v}
    for name, v in (alternation or {}).items():
        row["results"][name]["alternation"] = v
    return row


def _printed(names, train, predict_rows=(), alternate=False):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        print_tables(INFO, list(names), train, list(predict_rows), alternate, bool(predict_rows))
    return out.getvalue()


def _tables(text):
    """[(caption, {header: [cell per row]})] of every table in ``text``: a header line is the
    one above a line of dashes, whose runs give each column's span."""
    lines = text.splitlines()
    tables = []
    for i, line in enumerate(lines):
        if not re.fullmatch(r"-+( +-+)*", line):
            continue
        spans = [m.span() for m in re.finditer(r"-+", line)]
        start = i - 1
        while start > 0 and lines[start - 1].strip():
            start -= 1
        caption = " ".join(s.strip() for s in lines[start:i - 1])
        body = []
        for row in lines[i + 1:]:
            if not re.match(r"\d+(-\d+)+", row):
                break
            body.append([row[a:b].strip() for a, b in spans])
        header = [lines[i - 1][a:b].strip() for a, b in spans]
        tables.append((caption, {h: [r[k] for r in body] for k, h in enumerate(header)}))
    return tables


def _cells(tables, kind, keys):
    """{(row key, column header, caption's kind phrase): cell} of the tables with ``kind``."""
    found = {}
    for caption, cols in tables:
        if not caption.startswith(kind):
            continue
        rows = list(zip(*(cols[k] for k in keys)))
        for header, cells in cols.items():
            if header in keys:
                continue
            for key, cell in zip(rows, cells):
                what = "share" if "share of the GEMM" in caption and header in SHORT.values() \
                    else "value"
                assert (key, header, what) not in found, (key, header, caption)
                found[key, header, what] = cell
    return found


def _expected_train(rows, several):
    want = {}
    for r in rows:
        key = (f"{r['network']} @{r['batch']}", r["dtype"]) + ((r["activation"],) if several else ())
        want[key, "GEMM limit", "value"] = f"{r['gemm_limit']:,.0f}"
        want[key, "busy", "value"] = f"{100 * max(r['other_processes_cpu_share_per_repeat']):.0f}%"
        for name, res in r["results"].items():
            if "samples_per_s" not in res:
                continue
            want[key, SHORT[name], "value"] = f"{res['samples_per_s']:,.0f}"
            want[key, SHORT[name], "share"] = f"{100 * res['samples_per_s'] / r['gemm_limit']:.0f}%"
            fm = r["results"].get("fastmlp", {}).get("samples_per_s")
            if name != "fastmlp" and fm:
                want[key, "÷" + SHORT[name], "value"] = f"{fm / res['samples_per_s']:.2f}x"
    return want


def _expected_predict(rows):
    want = {}
    for r in rows:
        key = (r["network"], r["dtype"], str(r["batch"]))
        want[key, "busy", "value"] = f"{100 * max(r['other_processes_cpu_share_per_repeat']):.0f}%"
        fm = r["results"]["fastmlp"]["samples_per_s"]
        for name, res in r["results"].items():
            if "samples_per_s" in res:
                want[key, SHORT[name], "value"] = f"{res['samples_per_s']:,.0f}"
                if name != "fastmlp":
                    want[key, "÷" + SHORT[name], "value"] = f"{fm / res['samples_per_s']:.2f}x"
    return want


def _assert_fits(text):
    too_wide = [line for line in text.splitlines() if len(line) > WIDTH]
    assert not too_wide, "\n".join(too_wide)


# samples/s up to 9,999,999 in training (this project's fastest measured cell: 1.4 million,
# 784-50-10 @100 float32) and up to 999,999,999 at inference
train_rate = st.floats(1, 9_999_999)
predict_rate = st.floats(1, 999_999_999)
busy_share = st.lists(st.floats(0, 1), min_size=1, max_size=3)


@st.composite
def runs(draw):
    peers = draw(st.sampled_from([TRAIN_PEERS, ["fastmlp", "numpy"], ["fastmlp", "torch"],
                                  ["fastmlp", "numpy", "sklearn"]]))
    acts = draw(st.lists(st.sampled_from(ACTIVATIONS), min_size=1, max_size=3, unique=True))
    train, predict = [], []
    for sizes, batch in CONFIGS:
        for dtype in ("float32", "float64"):
            limit = draw(train_rate)
            alternation = ({n: draw(st.floats(0.5, 99)) for n in peers if n != "sklearn"}
                           if dtype == "float32" else None)
            for k, act in enumerate(acts):
                rates = {n: draw(train_rate) for n in peers}
                train.append(_row(sizes, batch, dtype, rates, draw(busy_share), limit, act,
                                  alternation if k == 0 else None))
            for b in PREDICT_BATCHES:
                rates = {n: draw(predict_rate) for n in peers if n != "sklearn"}
                rates["onnxruntime"] = draw(predict_rate)
                predict.append(_row(sizes, b, dtype, rates, draw(busy_share)))
    return peers, acts, train, predict


@settings(max_examples=40, deadline=None)
@given(runs())
def test_every_line_fits_and_every_figure_is_in_its_cell(run):
    peers, acts, train, predict = run
    text = _printed(peers, train, predict, alternate=True)
    _assert_fits(text)
    tables = _tables(text)
    several = len(acts) > 1
    keys = ["network @batch", "dtype"] + (["activation"] if several else [])
    assert _cells(tables, "Training", keys) == _expected_train(train, several)
    assert _cells(tables, "Inference", ["network", "dtype", "batch"]) == _expected_predict(predict)
    assert any(caption.startswith("Alternation") for caption, _ in tables)
    assert any(caption.startswith("Activations") for caption, _ in tables) == several
    assert "n/a" not in text
    for name in peers + ["onnxruntime"]:
        legend = re.search(rf"(^|; ){SHORT[name]}: ", text, re.M)   # the legend names it
        assert bool(legend) == (name != "fastmlp"), name
    for row in train + predict:   # the progress line of one row
        assert len("@10000: " + summary(row)) <= WIDTH


def test_all_peers_at_once_fit_with_several_activations():
    """The widest case by hand: every peer, the widest network and figures of 9 digits."""
    rates = dict.fromkeys(TRAIN_PEERS, 9_876_543)
    train = [_row(sizes, batch, dtype, rates, [0.5], 9_999_999, act, dict.fromkeys(rates, 12.5))
             for sizes, batch in CONFIGS for dtype in ("float32", "float64")
             for act in ("relu", "identity")]
    predict = [_row([784, 1024, 1024, 10], b, "float64",
                    dict.fromkeys(["fastmlp", "numpy", "torch", "onnxruntime"], 123_456_789),
                    [1.0]) for b in PREDICT_BATCHES]
    text = _printed(TRAIN_PEERS, train, predict, alternate=True)
    _assert_fits(text)
    headers = {h for _, cols in _tables(text) for h in cols}
    assert {"torch", "sklearn", "ort", "÷torch", "÷sklearn", "÷ort", "GEMM limit"} <= headers


def test_batchnorm_dropout_variants_fit():
    """The widest variant label (``identity+bn+dropout / relu``) with every peer."""
    rates = dict.fromkeys(TRAIN_PEERS, 9_876_543)
    train = [_row(sizes, batch, dtype, rates, [0.5], 9_999_999, act, dict.fromkeys(rates, 12.5))
             for sizes, batch in CONFIGS for dtype in ("float32", "float64")
             for act in ("relu", "identity+bn+dropout", "sigmoid+dropout")]
    text = _printed(TRAIN_PEERS, train, [], alternate=True)
    _assert_fits(text)
    assert "identity+bn+dropout / relu" in text


def test_a_peer_without_figures_gets_no_column():
    """torch asked for (--only) but not importable, onnxruntime missing at inference:
    no column, no n/a, the reason said once under the table."""
    train = [_row(sizes, batch, "float32", {"fastmlp": 5e5, "numpy": 2e5, "torch": None},
                  [0.1], 9e5, "relu") for sizes, batch in CONFIGS]
    predict = [_row([784, 50, 10], b, "float32",
                    {"fastmlp": 1e6, "numpy": 4e5, "torch": None, "onnxruntime": None}, [0.1])
               for b in PREDICT_BATCHES]
    text = _printed(["fastmlp", "numpy", "torch"], train, predict)
    _assert_fits(text)
    headers = {h for _, cols in _tables(text) for h in cols}
    assert headers & {"torch", "÷torch", "ort", "÷ort", "sklearn"} == set()
    assert {"fastmlp", "numpy", "÷numpy"} <= headers
    assert "n/a" not in text and "torch:" not in text and "ort:" not in text
    assert text.count("PyTorch unavailable: ImportError") == 2   # training, inference
    assert text.count("onnxruntime (export_onnx) unavailable") == 1


def test_a_peer_missing_in_some_rows_shows_there_only():
    train = [_row([784, 50, 10], 100, "float32", {"fastmlp": 5e5, "sklearn": 1e5}, [0.1], 9e5,
                  "relu"),
             _row([784, 50, 10], 100, "float32", {"fastmlp": 4e5, "sklearn": None}, [0.1], 9e5,
                  "identity")]
    cells = _cells(_tables(_printed(["fastmlp", "sklearn"], train)), "Training",
                   ["network @batch", "dtype", "activation"])
    key = ("784-50-10 @100", "float32", "identity")
    assert cells[key, "sklearn", "value"] == "n/a"
    assert cells[key, "÷sklearn", "value"] == "-"
    assert cells[("784-50-10 @100", "float32", "relu"), "÷sklearn", "value"] == "5.00x"


def test_ratio_sign_on_a_stdout_without_it():
    train = [_row([784, 50, 10], 100, "float32", {"fastmlp": 5e5, "torch": 1e5}, [0.1], 9e5)]
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    with contextlib.redirect_stdout(stream):
        print_tables(INFO, ["fastmlp", "torch"], train, [], False, False)
    stream.flush()
    assert "/torch" in raw.getvalue().decode("ascii")


@given(st.lists(st.text("x.", min_size=1, max_size=3), min_size=1, max_size=40),
       st.lists(st.integers(20, 95), min_size=1, max_size=4))
def test_progress_lines_wrap_before_the_width(dots, items):
    """Items of up to 95 columns after a progress line of dots: no line passes 100."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        log = Progress()
        log("784-1024-1024-10 @512 float64 ")
        for d in dots:
            log(d)
        for n in items:
            log.item("f" * n)
        log("\n")
    lines = err.getvalue().splitlines()
    assert max(map(len, lines)) <= WIDTH
    assert "".join(lines).replace(" ", "").replace(";", "") == (
        "784-1024-1024-10@512float64" + "".join(dots) + "".join("f" * n for n in items))



class _Stop(Exception):
    pass


def test_the_load_and_coretype_warnings_fit_too(monkeypatch, capsys):
    """bench's warnings on stderr wrap at the tables' width (the load warning was 262
    columns on one line), every word kept."""
    import argparse

    from fastmlp import _bench
    from fastmlp._bench import main as bench_main
    parser = argparse.ArgumentParser()
    _bench.add_arguments(parser)
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setattr(bench_main, "oversubscribed", lambda pool: (3.4, 2))

    def stop(names):
        raise _Stop   # the run ends once both warnings are out
    monkeypatch.setattr(bench_main, "peer_versions", stop)
    with pytest.raises(_Stop):
        bench_main.run(parser.parse_args(["--quick"]))
    err = capsys.readouterr().err
    words = " ".join(err.split())
    assert "OPENBLAS_CORETYPE=Haswell is set" in words
    assert "other processes keep 3.4 cores busy" in words
    assert max(len(line) for line in err.splitlines()) <= 100
