"""Sphinx configuration of fastmlp's documentation (``sphinx-build -W docs docs/_build``).

The narrative pages include README.md's sections (one home for that text); the API
page is built from the docstrings of the installed fastmlp (numpydoc).
"""
import fastmlp

project = "fastmlp"
author = "the fastmlp developers"
copyright = "2026, the fastmlp developers"
release = version = fastmlp.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode", "numpydoc", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
# scikit-learn adds set_*_request methods to every estimator (metadata routing); their
# docstrings refer to sklearn's own glossary, so they are left to sklearn's docs.
autodoc_default_options = {
    "members": True, "undoc-members": False, "show-inheritance": True,
    "exclude-members": "set_fit_request, set_partial_fit_request, set_predict_request, "
                       "set_predict_proba_request, set_score_request, set_output",
}
# numpy.typing.ArrayLike by name, not as its expanded Union (the modules postpone annotations)
autodoc_type_aliases = {"ArrayLike": "numpy.typing.ArrayLike"}
numpydoc_show_class_members = False   # autodoc lists the members
numpydoc_validation_checks: set[str] = set()

# README's sections start at "##" under each page's own title, and README links its
# own files (docs/*.png, source files) by repository path.
suppress_warnings = ["myst.header", "myst.xref_missing"]

html_theme = "alabaster"
html_title = f"fastmlp {release}"
