"diffalg's top level: lazy public names, subpackages as attributes, an import that loads nothing."
import importlib
import importlib.util
import json
import os
import subprocess
import sys

import pytest

import diffalg

# the entry points that the top level must offer (issue 14), with the subpackage that holds each
REQUIRED = {
    "soft_sort": "sorting", "soft_rank": "sorting", "soft_permutation": "sorting",
    "soft_topk": "sorting", "soft_topk_mask": "sorting", "diff_sort": "sorting",
    "sort_loss": "sorting", "DiffSortNet": "sorting", "DiffTopkNet": "sorting",
    "TopKCrossEntropyLoss": "sorting", "NeuralSort": "sorting", "SoftSort": "sorting",
    "Relaxation": "relax", "SoftRasterizer": "rendering", "render_silhouette": "rendering",
    "LogicLayer": "logic", "GroupSum": "logic", "HessianNewtonLoss": "newton",
    "FisherNewtonLoss": "newton", "get_distribution": "distributions",
    "relaxed_step": "distributions",
}
SUBPACKAGES = ("distributions", "data", "ranking", "relax", "sorting", "rendering", "logic",
               "newton", "checks")


def run_fresh(code, **env):
    "Run `code` in a fresh interpreter and return what it prints as JSON."
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, **env}, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_all_is_the_table_and_has_the_required_names():
    assert len(diffalg.__all__) == len(set(diffalg.__all__))
    assert set(diffalg.__all__) == set(diffalg._LAZY)
    for name, module in REQUIRED.items():
        assert diffalg._LAZY.get(name) == module, name


def test_every_table_entry_names_a_module_that_exists():
    for module in set(diffalg._LAZY.values()) | set(diffalg._SUBMODULES):
        assert importlib.util.find_spec(f"diffalg.{module}") is not None, module
    assert set(SUBPACKAGES) <= set(diffalg._SUBMODULES)


def test_names_that_their_module_defines_resolve_to_that_object():
    for name, module in diffalg._LAZY.items():
        mod = importlib.import_module(f"diffalg.{module}")
        if hasattr(mod, name):
            assert getattr(diffalg, name) is getattr(mod, name), name
            assert name in vars(diffalg)           # cached: the next lookup is an ordinary one
    assert diffalg.soft_sort is importlib.import_module("diffalg.sorting").soft_sort


def test_every_public_name_resolves():
    missing = [name for name in diffalg.__all__ if not _resolves(name)]
    assert not missing, f"names in diffalg.__all__ that do not resolve: {missing}"
    namespace = {}
    exec("from diffalg import *", namespace)
    assert set(diffalg.__all__) <= set(namespace)


def _resolves(name):
    try:
        getattr(diffalg, name)
        return True
    except AttributeError:
        return False


def test_subpackages_are_attributes():
    for name in SUBPACKAGES:
        assert getattr(diffalg, name) is importlib.import_module(f"diffalg.{name}")


def test_dir_and_unknown_names():
    listed = dir(diffalg)
    assert set(diffalg.__all__) <= set(listed) and set(SUBPACKAGES) <= set(listed)
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        diffalg.no_such_name
    assert not hasattr(diffalg, "sorting_compiled")        # the flat names of 0.1 are gone


def test_import_is_fast_and_loads_nothing(tmp_path):
    code = (
        "import json, sys, time\n"
        "t = time.perf_counter()\n"
        "import diffalg\n"
        "seconds = time.perf_counter() - t\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('diffalg', 'torch'))\n"
        "print(json.dumps({'seconds': seconds, 'loaded': loaded, 'version': diffalg.__version__}))"
    )
    out = run_fresh(code, DIFFALG_CACHE=str(tmp_path))
    assert out["loaded"] == ["diffalg"]           # no chapter, no torch, hence no kernel either
    assert out["seconds"] < 1.0
    assert out["version"] == diffalg.__version__
    assert list(tmp_path.iterdir()) == []          # nothing was compiled into the cache


def test_first_use_imports_only_that_chapter(tmp_path):
    code = (
        "import json, sys\n"
        "import diffalg\n"
        "diffalg.relaxed_step\n"
        "after_name = sorted(m for m in sys.modules if m.startswith('diffalg'))\n"
        "diffalg.sorting\n"
        "print(json.dumps({'after_name': after_name, 'sorting': 'diffalg.sorting' in sys.modules}))"
    )
    out = run_fresh(code, DIFFALG_CACHE=str(tmp_path))
    assert "diffalg.distributions" in out["after_name"]
    assert not any(m.startswith(("diffalg.sorting", "diffalg.rendering", "diffalg.logic"))
                   for m in out["after_name"])
    assert out["sorting"]
