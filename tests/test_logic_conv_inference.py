"""Discrete inference of convolutional logic networks: the lowered circuit (packed path, plain
path, compiled C, Verilog simulated with Icarus Verilog) equals eval mode bit for bit."""
import shutil

import pytest
import torch

from diffalg._native import find_c_compiler
from diffalg.logic import (Binarize, BitsToImage, FOLDED_GATES, GATE_NAMES, LearnableThresholds,
                           LogicCircuit, LogicLayer, LogicTreeConv2d, OrPool2d, compile_circuit,
                           binarize, count_gates, fixed_thresholds, gate_truth_table,
                           hardware_circuit, logic_tree_net, simulate_verilog, tree_layers,
                           window_inputs)
from diffalg.logic.lowering import OR_GATE
from diffalg.logic.verilog import LOWERINGS

needs_cc = pytest.mark.skipif(find_c_compiler() is None, reason="no C compiler")
needs_iverilog = pytest.mark.skipif(
    shutil.which("iverilog") is None or shutil.which("vvp") is None,
    reason="Icarus Verilog (iverilog, vvp) is not installed: apt-get install iverilog")


def random_gates(model, seed=0):
    "`model` with random gate logits (all 16 gates occur), in eval mode."
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(3 * torch.randn(p.shape, generator=g))
    return model.eval()


def random_bits(shape, seed=0, p=0.5):
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < p).float()


def assert_bits_equal(model, shape, batch, device, seed=0, p=0.5):
    "The circuit of `model` (ending without GroupSum) gives its eval-mode bits, packed and plain."
    model = model.to(device).eval()
    circuit = hardware_circuit(model, shape).circuit
    x = random_bits((batch, *shape), seed, p).to(device)
    with torch.no_grad():
        want = model(x).flatten(1).bool()
    assert torch.equal(circuit.packed(x.flatten(1)), want)
    assert torch.equal(circuit(x.flatten(1)), want)
    return circuit


@pytest.mark.parametrize("size,kernel,stride,padding,groups,depth", [
    ((5, 5), 3, 1, 0, 1, 2), ((7, 9), 3, 1, 1, 2, 2), ((8, 8), 3, 2, 1, 1, 2),
    ((6, 11), (2, 3), (1, 2), (1, 0), 2, 2), ((9, 7), 3, 3, 2, 4, 1),
    ((4, 6), (1, 1), 1, 0, 2, 3), ((3, 3), 3, 1, 2, 1, 3)])
def test_tree_conv_circuit_equals_eval_mode(size, kernel, stride, padding, groups, depth, device):
    conv = random_gates(LogicTreeConv2d(4, 8, kernel, stride, padding, tree_depth=depth,
                                        groups=groups, seed=3))
    for batch in (1, 65):
        circuit = assert_bits_equal(torch.nn.Sequential(conv), (4, *size), batch, device, batch)
    net = torch.nn.Sequential(conv)
    assert circuit.n_gates == count_gates(net, (4, *size))["tree"]
    assert len(circuit.layers) == depth


@pytest.mark.parametrize("kernel,stride,padding", [
    (2, None, 0), (2, 1, 1), (3, 2, 1), ((3, 2), (1, 2), (1, 1)), (1, 1, 0), (4, 3, 2)])
def test_or_pool_circuit_equals_eval_mode(kernel, stride, padding, device):
    pool = OrPool2d(kernel, stride, padding)
    for p, batch in ((0.5, 63), (0.1, 130), (0.02, 1)):   # sparse bits: windows of zeros occur
        assert_bits_equal(torch.nn.Sequential(pool), (3, 7, 8), batch, device, batch, p)


def test_two_by_two_pooling_is_three_or_gates_per_window():
    circuit = hardware_circuit(OrPool2d(2), (2, 6, 4)).circuit
    assert circuit.n_gates == 3 * 2 * 3 * 2 == count_gates(OrPool2d(2), (2, 6, 4))["or"]
    assert all(bool((layer.gates == OR_GATE).all()) for layer in circuit.layers)


@pytest.mark.parametrize("blocks,size", [(1, 6), (2, 12), (2, (8, 10))])
def test_network_counts_equal_eval_mode(blocks, size, device):
    h, w = (size, size) if isinstance(size, int) else size
    net = random_gates(logic_tree_net(2, in_channels=2, image_size=size, classes=5,
                                      blocks=blocks, seed=blocks))
    model = torch.nn.Sequential(BitsToImage(1, h, w, 2), *net).to(device)
    circuit = hardware_circuit(model, (h * w * 2,)).circuit
    assert circuit.n_gates == count_gates(net, (2, h, w))["total"]
    for batch in (1, 63, 65, 130):
        x = random_bits((batch, h * w * 2), batch).to(device)
        with torch.no_grad():
            want = model(x)
        counts = circuit.packed(x)
        assert counts.dtype == torch.int64 and counts.device == x.device
        assert torch.equal(counts.float() / circuit.tau, want)
        assert torch.equal(circuit(x), counts)


@needs_cc
def test_compiled_c_equals_eval_mode():
    net = random_gates(logic_tree_net(1, in_channels=3, image_size=8, classes=4, blocks=2,
                                      seed=5))
    circuit = hardware_circuit(net, (3, 8, 8)).circuit
    compiled = compile_circuit(circuit)
    for batch in (1, 63, 65, 130):
        x = random_bits((batch, 3, 8, 8), batch)
        with torch.no_grad():
            want = net(x)
        assert torch.equal(compiled(x.flatten(1)).float() / circuit.tau, want)


@needs_iverilog
def test_verilog_simulation_equals_eval_mode():
    net = random_gates(logic_tree_net(1, in_channels=2, image_size=6, classes=2, blocks=1,
                                      seed=7))
    thresholds = torch.rand(36, 2, generator=torch.Generator().manual_seed(1))
    model = torch.nn.Sequential(Binarize(thresholds), BitsToImage(1, 6, 6, 2), *net).eval()
    pixels = torch.randint(0, 256, (70, 36), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = model(pixels.float() / 255)
    for registered in (False, True):
        sim = simulate_verilog(model, pixels, registered=registered)
        assert torch.equal(sim["counts"].float() / net[-1].tau, want)
        assert torch.equal(sim["label"], sim["counts"].argmax(1))


def test_folded_gates_match_the_truth_table():
    tt, bit = gate_truth_table(), torch.tensor([0, 1])
    for g in range(16):
        for case in range(4):
            a, b = bit * (case < 2), bit * (case % 2 == 0)
            assert torch.equal(tt[g, 2 * a + b], tt[FOLDED_GATES[g, case], 3 * bit])
    assert GATE_NAMES[OR_GATE] == "A or B"


def test_tree_layers_with_constant_leaves():
    g = torch.Generator().manual_seed(0)
    gates = torch.randint(16, (40, 3), generator=g)
    leaves = torch.randint(-1, 3, (40, 4), generator=g)
    leaves[0] = -1                                          # a tree of constants only
    circuit = LogicCircuit(3, tree_layers(leaves, gates))
    x = torch.tensor([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)])
    v = torch.cat([x, torch.zeros(8, 1, dtype=torch.long)], 1)[:, leaves]   # (8, 40, 4)
    tt = gate_truth_table()
    lo = tt[gates[:, 0], 2 * v[..., 0] + v[..., 1]]
    hi = tt[gates[:, 1], 2 * v[..., 2] + v[..., 3]]
    assert torch.equal(circuit(x), tt[gates[:, 2], 2 * lo + hi].bool())


def test_window_inputs_follow_unfold():
    shape = (2, 5, 6)
    idx = torch.arange(1, 61).view(1, *shape).float()
    cols = torch.nn.functional.unfold(idx, (3, 2), padding=(1, 2), stride=(2, 1)).long() - 1
    assert torch.equal(window_inputs(shape, (3, 2), (2, 1), (1, 2)).flatten(0, 1), cols[0])


def test_rewiring_alone_becomes_wires():
    model = torch.nn.Sequential(BitsToImage(2, 3, 2, 3), torch.nn.Flatten())
    circuit = assert_bits_equal(model, (36,), 5, torch.device("cpu"))
    assert circuit.n_gates == 36 and bool((circuit.layers[0].gates == 3).all())


def test_dense_circuit_is_unchanged():
    net = random_gates(torch.nn.Sequential(torch.nn.Flatten(), LogicLayer(12, 16, seed=1),
                                           LogicLayer(16, 8, seed=2)))
    ref, hw = LogicCircuit.from_model(net), hardware_circuit(net).circuit
    assert all(torch.equal(a.indices, b.indices) and torch.equal(a.gates, b.gates)
               for a, b in zip(ref.layers, hw.layers))


def test_bad_input_is_a_clear_error():
    net = logic_tree_net(1, in_channels=2, image_size=8, classes=2, blocks=1, seed=0)
    assert LogicTreeConv2d in LOWERINGS and OrPool2d in LOWERINGS
    with pytest.raises(TypeError, match="LearnableThresholds"):
        hardware_circuit(torch.nn.Sequential(LearnableThresholds(2, 1), *net), (2, 8, 8))
    with pytest.raises(TypeError, match="Conv2d"):
        hardware_circuit(torch.nn.Sequential(torch.nn.Conv2d(2, 2, 3), *net), (2, 8, 8))
    with pytest.raises(ValueError, match=r"LogicTreeConv2d cannot read inputs of shape \(3, 8"):
        hardware_circuit(net, (3, 8, 8))
    with pytest.raises(ValueError, match="cannot read inputs of shape"):
        hardware_circuit(net, (128,))
    with pytest.raises(ValueError, match="input_shape"):
        hardware_circuit(net)
    with pytest.raises(ValueError, match="does not fit"):
        hardware_circuit(LogicTreeConv2d(2, 2, 5), (2, 3, 3))
    with pytest.raises(ValueError, match="cannot read inputs"):
        hardware_circuit(torch.nn.Sequential(BitsToImage(1, 8, 8, 2), *net), (100,))
    with pytest.raises(ValueError, match="leaves"):
        tree_layers(torch.zeros(4, 3, dtype=torch.long), torch.zeros(4, 2, dtype=torch.long))


def learned_threshold_model(device="cpu"):
    net = random_gates(logic_tree_net(1, in_channels=6, image_size=(6, 8), classes=2, blocks=1,
                                      seed=4))
    model = torch.nn.Sequential(LearnableThresholds(2, 3), *net).to(device).eval()
    with torch.no_grad():
        model[0].thresholds.uniform_(0.1, 0.9)
    return model


def test_fixed_thresholds_equal_learned_thresholds(device):
    model = learned_threshold_model(device)
    fixed = fixed_thresholds(model, (2, 6, 8))
    hw = hardware_circuit(fixed)
    x = torch.rand(65, 2, 6, 8, device=device)
    with torch.no_grad():
        want = model(x)
        assert torch.equal(fixed(x.flatten(1)), want)
    bits = binarize(x.flatten(1), hw.thresholds.to(device))
    assert torch.equal(hw.circuit.packed(bits).float() / hw.circuit.tau, want)
    with pytest.raises(TypeError, match="LearnableThresholds"):
        fixed_thresholds(torch.nn.Sequential(*model[1:]), (2, 6, 8))
    with pytest.raises(ValueError, match=r"\(2, H, W\)"):
        fixed_thresholds(model, (3, 6, 8))


@needs_iverilog
def test_fixed_thresholds_verilog_equals_eval_mode():
    model = learned_threshold_model()
    pixels = torch.randint(0, 256, (40, 2, 6, 8), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = model(pixels.float() / 255)
    sim = simulate_verilog(fixed_thresholds(model, (2, 6, 8)), pixels.flatten(1))
    assert torch.equal(sim["counts"].float() / model[-1].tau, want)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 9, 16, 25])
def test_or_trees_take_one_or_per_input_after_the_first(n):
    "or_tree_layers: each window's OR, with m - 1 OR gates for m inputs, in ceil(log2 m) levels."
    from diffalg.logic.lowering import OR_GATE, or_tree_layers
    g = torch.Generator().manual_seed(n)
    leaves = torch.rand(40, 32, generator=g).argsort(1)[:, :n]   # distinct inputs per window
    leaves[torch.rand(40, n, generator=g) < 0.3] = -1            # inputs on the padding
    circuit = LogicCircuit(32, or_tree_layers(leaves))
    x = torch.rand(70, 32, generator=g) > 0.5
    want = torch.stack([x[:, row[row >= 0]].any(1) if (row >= 0).any() else
                        torch.zeros(70, dtype=torch.bool) for row in leaves], 1)
    assert torch.equal(circuit(x.float()), want)
    m = (leaves >= 0).sum(1)                                     # inputs per window
    ors = sum(int(((layer.gates == OR_GATE) & (layer.indices[0] != layer.indices[1])).sum())
              for layer in circuit.layers)                       # not an OR of a bit with itself
    assert ors == int((m - 1).clamp_min(0).sum())
    assert len(circuit.layers) == max(1, (n - 1).bit_length())
