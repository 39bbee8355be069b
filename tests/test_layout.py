"""The package's layout rules, read from the source with ``ast`` (nothing is imported).

- the import graph of ``fastmlp/**/*.py`` has no cycle; an import anywhere in a
  module (at module level or inside a function) is an edge;
- no module imports a private name (leading underscore) of another fastmlp module, or
  reads one as ``module._name``, except from the helper modules made to be shared
  (:data:`HELPERS`);
- no module is over :data:`MAX_LINES` lines.
"""
import ast
import graphlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fastmlp"

#: Private modules made to be imported by other fastmlp modules (their names, public or
#: private, may be used anywhere in the package). ``_plot`` and ``_bench``: the plotting
#: module and the benchmark harness shared by the CLI and ``bench/``. ``_shard``: the shard rule
#: shared by the loaders and data-parallel training; ``_checkpoint``: the CLI's checkpoints.
HELPERS = {"_backend", "_validation", "_blas", "_sigint", "_files", "_loop", "_fused",
           "_kernels", "_plot", "_bench", "_records", "_networks", "_params", "_optim_state",
           "_estimator_base", "_estimator_params", "_estimator_epochs", "_estimator_record",
           "_distributed_fit", "_version", "_shard", "_checkpoint"}

MAX_LINES = 500


def _modules():
    """{dotted name: path} of every Python module in the package (a package: its __init__)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _imports(name, path):
    """(target module, imported name or None, node) for each fastmlp import in a module.

    ``from pkg import x`` gives (pkg.x, None) when pkg.x is a module, else (pkg, "x")."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "fastmlp":
                    yield alias.name, None, node, alias
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                full = ".".join(base + ([node.module] if node.module else []))
            else:
                full = node.module or ""
            if full.split(".")[0] != "fastmlp":
                continue
            for alias in node.names:
                sub = f"{full}.{alias.name}"
                if sub in MODULES or (PACKAGE.parent / sub.replace(".", "/")).is_dir():
                    yield sub, None, node, alias
                else:
                    yield full, alias.name, node, alias


def _graph():
    graph = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for target, _, _, _ in _imports(name, path):
            while target not in MODULES and "." in target:  # a compiled module: its package
                target = target.rpartition(".")[0]
            if target in MODULES and target != name:
                graph[name].add(target)
    return graph


def test_the_package_is_found():
    assert "fastmlp" in MODULES and "fastmlp.threads" in MODULES


def _cycles(graph):
    """The strongly connected components of more than one module (each holds a cycle)."""
    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    reachable = {name: reach(name) for name in graph}
    components = {frozenset(n for n in reachable[name] if name in reachable[n]) | {name}
                  for name in graph}
    return sorted(sorted(c) for c in components if len(c) > 1)


def test_import_graph_has_no_cycle():
    graph = _graph()
    cycles = _cycles(graph)
    assert not cycles, "modules importing each other (directly or through others):\n" + \
        "\n".join(" <-> ".join(c) for c in cycles)
    list(graphlib.TopologicalSorter(graph).static_order())   # and so an order exists


def _private_part(target, attr):
    """The first private component of ``target`` (+ ``attr``), or None."""
    parts = target.split(".")[1:] + ([attr] if attr else [])
    return next((p for p in parts if _is_private(p)), None)


def _allowed(target, attr, importer):
    """A private name is allowed when it comes from (or is) a helper module, or from a
    subpackage's own private module imported inside that subpackage."""
    modules = target.split(".")
    first = next((i for i, p in enumerate(modules) if _is_private(p)), None)
    if first is not None:
        owner = ".".join(modules[:first])   # the package the private module belongs to
        inside = owner != "fastmlp" and (importer == owner or importer.startswith(owner + "."))
        return modules[first] in HELPERS or inside
    return attr is None or not _is_private(attr)


def test_no_private_names_imported_across_modules():
    bad = []
    for name, path in MODULES.items():
        for target, attr, node, _ in _imports(name, path):
            if _private_part(target, attr) and not _allowed(target, attr, name):
                what = f"{target}.{attr}" if attr else target
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} imports {what}")
    assert not bad, "private names imported across modules:\n" + "\n".join(bad)


def _module_aliases(name, path):
    """{local name: module} for the fastmlp modules a module binds to a name."""
    out = {}
    for target, attr, node, alias in _imports(name, path):
        if attr is not None:
            continue
        if isinstance(node, ast.Import) and not alias.asname:
            out[alias.name.split(".")[0]] = "fastmlp"   # import fastmlp.x binds fastmlp
        else:
            out[alias.asname or alias.name] = target
    return out


def test_no_private_attributes_read_across_modules():
    """``threads._requested`` from another module is a private import by another name."""
    bad = []
    for name, path in MODULES.items():
        aliases = _module_aliases(name, path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                module, attr = aliases.get(node.value.id), node.attr
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                  and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
                  and len(node.args) >= 2 and isinstance(node.args[0], ast.Name)
                  and isinstance(node.args[1], ast.Constant)
                  and isinstance(node.args[1].value, str)):
                module, attr = aliases.get(node.args[0].id), node.args[1].value
            else:
                continue
            if module is None or module == name or not _is_private(attr):
                continue
            if not _allowed(module, attr, name):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} reads "
                           f"{module}.{attr}")
    assert not bad, "private names read across modules:\n" + "\n".join(bad)


def test_no_module_over_the_line_limit():
    long = {str(p.relative_to(PACKAGE.parent)): n for p in MODULES.values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
