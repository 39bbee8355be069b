"""``fastmlp bench``: training-step throughput of fastmlp and its peers, side by side.

Measures samples/s of one SGD training step (forward, loss, backward, update;
lr 0.1) of the four networks of ``shared/bench/peers.py`` in float32 and
float64, for:

- ``fastmlp``: the textbook API, ``opt.update(net.params, net.gradient(x, t))``;
- ``numpy``: the same API on ``fastmlp.reference`` (plain numpy);
- ``torch``: ``nn.Sequential`` of ``Linear``/``ReLU``, ``CrossEntropyLoss``,
  ``optim.SGD`` (when importable; its intra-op threads set to numpy's BLAS
  thread count);
- ``sklearn``: ``MLPClassifier.partial_fit`` on 10 batches per call (one call
  per batch would time sklearn's per-call validation), counted as 10 steps.

and, in the same run, the GEMM-bound limit of each network: the samples/s a
step would reach doing nothing but its matrix products (forward ``x @ W``,
``x.T @ dout``, ``dout @ W.T`` except for the first layer, whose input
gradient training does not need) at the rate numpy's BLAS reaches on exactly
those shapes. Each peer's share of that limit is reported.

Every figure is the median of ``--repeats`` timed runs; within a repeat the
peers (and the limit) run one after the other, in an order that rotates from
repeat to repeat, so a drift of the machine hits them all alike, each after
0.25 s idle (the last peer's pool stops spinning); one peer's hidden
activations take turns in slices of 0.1 s within its run. Rows of the
batches cycle through one fixed random data set, as in peers.py.

Options add an alternation test (a training step alternated with a user-side
numpy product: do the thread pools coexist?) and an inference test (predict
at batch 1, 100 and 10 000, fastmlp vs ``torch`` under ``no_grad`` and
``onnxruntime`` on the graph ``fastmlp.export_onnx`` writes, 2 intra-op threads).

The harness, one room per module (private: the command is the public door;
the pytest-benchmark suites in ``bench/`` import these modules):

- ``options``: the command-line options and their checks (``BenchError``);
- ``configs``: the networks, peers, dtypes, data set and GEMM workloads;
- ``timing``: calls/s of one callable in slices, medians, interleaved repeats;
- ``machine``: CPU, numpy's BLAS, versions, other processes' CPU share;
- ``peers``: one training step (and one predict) of each peer;
- ``measure``: one row of each table, peers and limit timed together;
- ``report``: header, tables, and the chart (drawn by ``fastmlp._plot``);
- ``main``: ``run(args)``, the whole command.
"""
from .main import run
from .options import BenchError, add_arguments
from .report import plot

__all__ = ["BenchError", "add_arguments", "plot", "run"]
