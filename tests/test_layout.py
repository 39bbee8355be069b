"""The package's layout rules, read from the source with ``ast`` (nothing is imported).

- the import graph of ``fastmlp/**/*.py`` has no cycle; an import anywhere in a
  module (at module level or inside a function) is an edge;
- private modules (``_loop``, ``_backend``, ...) are the package's shared helpers and may be
  imported anywhere in it, but no module imports a private name (leading underscore) of
  another fastmlp module, or reads one as ``module._name`` (also ``fastmlp.x._name``), except
  inside the subpackage that owns it;
- no module is over :data:`MAX_LINES` lines.
"""
import ast
import graphlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fastmlp"

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


def test_the_package_is_found_and_its_imports_read():
    assert "fastmlp" in MODULES and "fastmlp.threads" in MODULES
    graph = _graph()   # a few edges that exist: the parser sees imports of every kind
    assert "fastmlp._estimator_base" in graph["fastmlp.estimator"]        # from .x import y
    assert "fastmlp._backend" in graph["fastmlp.optimizers"]               # from . import x
    assert "fastmlp.estimator" in graph["fastmlp._model_file"]             # inside a function


def test_import_graph_has_no_cycle():
    try:
        list(graphlib.TopologicalSorter(_graph()).static_order())
    except graphlib.CycleError as exc:
        raise AssertionError("modules importing each other: " + " -> ".join(exc.args[1])) from None


def _allowed(target, attr, importer):
    """Importing a module (private or not), or a public name of one, is allowed; a private
    name of another module only inside the subpackage that owns it (datasets' helpers)."""
    if attr is None or not _is_private(attr):
        return True
    owner = target.rpartition(".")[0]
    return owner != "fastmlp" and (importer == owner or importer.startswith(owner + "."))


def test_no_private_names_imported_across_modules():
    bad = []
    for name, path in MODULES.items():
        for target, attr, node, _ in _imports(name, path):
            if not _allowed(target, attr, name):
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


def _dotted_module(node, aliases):
    """The fastmlp module a ``Name`` or ``Name.attr.attr`` chain names, or None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in aliases:
        return None
    module = ".".join([aliases[node.id], *reversed(parts)])
    return module if module in MODULES else None


def _private_reads(name, path):
    """``module._name`` (or ``getattr(module, "_name")``) reads of other fastmlp modules."""
    aliases = _module_aliases(name, path)
    bad = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute):
            module, attr = _dotted_module(node.value, aliases), node.attr
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
              and isinstance(node.args[1].value, str)):
            module, attr = _dotted_module(node.args[0], aliases), node.args[1].value
        else:
            continue
        if module is not None and module != name and not _allowed(module, attr, name):
            bad.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} reads {module}.{attr}")
    return bad


def test_no_private_attributes_read_across_modules():
    """``threads._requested`` from another module is a private import by another name."""
    bad = [line for name, path in MODULES.items() for line in _private_reads(name, path)]
    assert not bad, "private names read across modules:\n" + "\n".join(bad)


def test_the_private_name_rules_catch_a_planted_module(tmp_path, monkeypatch):
    """The rules find what they are for: a module planted in a copy of the package."""
    planted = tmp_path / "fastmlp" / "planted.py"
    planted.parent.mkdir()
    planted.write_text("import fastmlp.threads\nfrom . import threads\n"
                       "from ._loop import step, _private\n"
                       "a = threads._requested\nb = fastmlp.threads._requested\n"
                       "c = getattr(threads, '_requested')\nd = threads.get_num_threads\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", tmp_path / "fastmlp")
    imported = [(t, a) for t, a, _, _ in _imports("fastmlp.planted", planted)
                if not _allowed(t, a, "fastmlp.planted")]
    assert imported == [("fastmlp._loop", "_private")]
    assert [line.split(" reads ")[1] for line in _private_reads("fastmlp.planted", planted)] \
        == ["fastmlp.threads._requested"] * 3


def test_no_module_over_the_line_limit():
    long = {str(p.relative_to(PACKAGE.parent)): n for p in MODULES.values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
