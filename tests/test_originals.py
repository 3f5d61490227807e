"""diffalg against the original packages where they install (`diffsort`, `difftopk` and
`algovision` are pure Python and in the `dev` extra, so CI runs these), and the checks of the map
in tests/originals_map.py that the appendix page "From the original packages" shows."""
import importlib
import inspect
import re
import types
from pathlib import Path

import pytest
import torch

from diffalg.sorting import (DiffSortNet, DiffTopkNet, NeuralSort, SoftSort, TopKCrossEntropyLoss,
                             diff_sort, get_sorting_network, smooth_topk_svm_loss, soft_topk,
                             splitter_selection_network)
from originals_map import ROWS

TESTS = Path(__file__).parent


def comparators(layers):
    """Comparator layers (sorted (lo, hi) pairs) from the layer matrices of diffsort/difftopk:
    row c of split_a / split_b picks the two wires of slot c, and combine_min / combine_max route
    the minimum to wire a and the maximum to wire b (idle wires have a == b)."""
    out = []
    for split_a, split_b, combine_min, combine_max, *_ in layers:
        split_a, split_b = torch.as_tensor(split_a), torch.as_tensor(split_b)
        combine_min, combine_max = torch.as_tensor(combine_min), torch.as_tensor(combine_max)
        pairs = []
        for c in range(split_a.shape[0]):
            a, b = int(split_a[c].argmax()), int(split_b[c].argmax())
            if a != b and split_a[c].sum() > 0:
                lo = a if combine_min[a, c] == 1 else b
                pairs.append((lo, b if lo == a else a))
        out.append(sorted(pairs))
    return out
@pytest.mark.parametrize("n,k", [(2, 1), (10, 1), (10, 3), (16, 16), (37, 5), (100, 5),
                                 (100, 10)])
def test_network_equals_difftopk(n, k):
    """The same comparators in the same layers as difftopk's network. (difftopk runs it only
    through torch-sparse, a compiled package that does not install here, so the relaxed outputs
    are compared through the other networks below.)"""
    ours = [sorted(layer) for layer in splitter_selection_network(n, k).layers]
    networks = pytest.importorskip("difftopk.networks")
    assert ours == comparators(networks.sparse_splitter_selection_network(n, k))


@pytest.mark.parametrize("network", ["odd_even", "bitonic"])
@pytest.mark.parametrize("distribution", ["cauchy", "logistic", "logistic_phi", "reciprocal",
                                          "optimal", "gaussian"])
def test_diffsortnet_equals_diffsort(network, distribution):
    diffsort = pytest.importorskip("diffsort")
    torch.manual_seed(4)
    x = torch.randn(5, 13)
    theirs = diffsort.DiffSortNet(network, 13, steepness=7.0, distribution=distribution)(x)
    ours = DiffSortNet(network, 13, steepness=7.0, distribution=distribution)(x)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("method", ["odd_even", "bitonic__non_sparse", "neuralsort", "softsort"])
@pytest.mark.parametrize("top1_mode", ["sm", "smce", "sort"])
def test_topk_loss_equals_difftopk(method, top1_mode):
    difftopk = pytest.importorskip("difftopk")
    torch.manual_seed(3)
    logits, labels = torch.randn(16, 20), torch.randint(20, (16,))
    kw = dict(p_k=[0.4, 0.0, 0.3, 0.0, 0.3], n=20, m=10, distribution="cauchy",
              top1_mode=top1_mode)
    theirs = difftopk.TopKCrossEntropyLoss(method, 2.0, **kw)(logits, labels)
    ours = TopKCrossEntropyLoss(method, 2.0, **kw)(logits, labels)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("k,tau", [(1, 1.0), (3, 1.0), (5, 0.5)])
def test_svm_equals_difftopk(k, tau):
    smooth_topk = pytest.importorskip("difftopk.smooth_topk")
    torch.manual_seed(k)
    s, labels = 3 * torch.randn(12, 15), torch.randint(15, (12,))
    theirs = smooth_topk.SmoothTopKLoss(15, k, tau)(s.clone(), labels)
    torch.testing.assert_close(smooth_topk_svm_loss(s, labels, k, tau), theirs, atol=1e-6,
                               rtol=1e-6)



@pytest.mark.parametrize("network", ["odd_even", "bitonic"])
@pytest.mark.parametrize("n", [2, 8, 13, 16, 33])
def test_networks_equal_diffsort(network, n):
    diffsort = pytest.importorskip("diffsort")
    theirs = diffsort.get_sorting_network(network, n, "cpu")
    ours = [sorted(layer) for layer in get_sorting_network(network, n).layers]
    assert [layer for layer in ours if layer] == [layer for layer in comparators(theirs)
                                                  if layer]


@pytest.mark.parametrize("network", ["odd_even", "bitonic"])
def test_functional_sort_equals_diffsort(network):
    diffsort = pytest.importorskip("diffsort")
    torch.manual_seed(5)
    x = torch.randn(4, 11)
    values, P = diffsort.sort(diffsort.get_sorting_network(network, 11, "cpu"), x.clone(),
                              steepness=6.0, art_lambda=0.25, distribution="logistic_phi")
    r = diff_sort(x, network, 6.0, "logistic_phi", art_lambda=0.25)
    torch.testing.assert_close(r.values, values, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(r.permutation, P, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("network", ["odd_even", "bitonic"])
@pytest.mark.parametrize("k", [1, 3, 7])
def test_difftopknet_equals_difftopk(network, k):
    difftopk = pytest.importorskip("difftopk")
    torch.manual_seed(k)
    x = torch.randn(5, 12)
    _, theirs = difftopk.DiffTopkNet(network, 12, k, sparse=False, steepness=9.0,
                                     distribution="cauchy")(x)
    _, ours = DiffTopkNet(network, 12, k, steepness=9.0, distribution="cauchy")(x)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)


def test_functional_topk_equals_difftopk():
    difftopk = pytest.importorskip("difftopk")
    torch.manual_seed(6)
    x = torch.randn(3, 10)
    net = difftopk.get_sorting_network("odd_even", 10, "cpu")
    _, theirs = difftopk.topk(net, x.clone(), 4, steepness=5.0, distribution="cauchy")
    ours = soft_topk(x, 4, network="odd_even", steepness=5.0, descending=False)
    torch.testing.assert_close(ours.flip(-1), theirs, atol=1e-6, rtol=1e-5)


def test_neuralsort_softsort_equal_difftopk():
    """NeuralSort equals difftopk's; diffalg's SoftSort is difftopk's SoftSort transposed and
    with its rows reversed (rows: inputs, columns: ascending positions, as every diffalg
    relaxed permutation)."""
    difftopk = pytest.importorskip("difftopk")
    torch.manual_seed(7)
    x = torch.randn(4, 9)
    torch.testing.assert_close(NeuralSort(0.7)(x), difftopk.NeuralSort(0.7)(x), atol=1e-6,
                               rtol=1e-5)
    ours = SoftSort(0.7)(x).transpose(-1, -2).flip(-2)
    torch.testing.assert_close(ours, difftopk.SoftSort(0.7)(x), atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------- the map
def resolve(path):
    "The object at a dotted path: a module, then attributes."
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(path)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r[0]}.{r[1]}({r[2]})")
def test_every_row_names_a_counterpart_and_a_test_or_a_reason(row):
    package, name, option, values, target, test, note = row
    assert package and name
    if target is None or test is None:
        assert note, "a row without a counterpart or a test must say why"
    if target is not None:
        resolve(target)
    if test is not None:
        file, func = test.split("::")
        text = (TESTS.parent / file).read_text()
        assert re.search(rf"^def {re.escape(func)}\(", text, re.M), test


ORIGINALS = ["diffsort", "difftopk", "algovision"]
WITH_OPTIONS = ["diffsort", "difftopk"]     # every constructor/function argument has a row


def public_names(module):
    return sorted(a for a in dir(module) if not a.startswith("_")
                  and not isinstance(getattr(module, a), types.ModuleType))


@pytest.mark.parametrize("package", ORIGINALS)
def test_every_public_name_and_option_of_the_installed_originals_is_mapped(package):
    module = pytest.importorskip(package)
    rows = [r for r in ROWS if r[0] == package]
    names = {r[1] for r in rows}
    assert set(public_names(module)) <= names, set(public_names(module)) - names
    if package not in WITH_OPTIONS:
        return
    for name in public_names(module):
        obj = getattr(module, name)
        fn = obj.__init__ if inspect.isclass(obj) else obj
        params = [p for p in inspect.signature(fn).parameters if p not in ("self",)]
        mapped = {o.strip() for r in rows if r[1] == name for o in r[2].split(",")}
        assert set(params) <= mapped, (name, set(params) - mapped)
