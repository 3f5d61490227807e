"""The Verilog export of logic gate networks: the module simulated with Icarus Verilog (iverilog,
vvp) on random inputs equals the network in eval mode, bit for bit."""
import re
import shutil

import pytest
import torch

from diffalg.logic.binarization import Binarize
from diffalg.logic.gates import gate_truth_table
from diffalg.logic.inference import LogicCircuit
from diffalg.logic.layers import GroupSum, LogicLayer
from diffalg.logic.verilog import (LOWERINGS, VERILOG_GATES, check_identifier, gate_expression,
                                   hardware_circuit, integer_thresholds, simulate_verilog,
                                   to_verilog, verilog_testbench, write_verilog)

needs_iverilog = pytest.mark.skipif(
    shutil.which("iverilog") is None or shutil.which("vvp") is None,
    reason="Icarus Verilog (iverilog, vvp) is not installed: apt-get install iverilog")


def random_network(dims, k=None, tau=3.0, seed=0, binarizer=None):
    "LogicLayers of widths `dims`, their gates cycling through all 16 in random order; eval mode."
    gen = torch.Generator().manual_seed(seed)
    layers = [LogicLayer(a, b, seed=seed + i) for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]))]
    for layer in layers:
        gates = torch.randperm(layer.out_dim, generator=gen) % 16
        layer.weights.data = torch.nn.functional.one_hot(gates, 16).float()
    mods = ([binarizer] if binarizer is not None else []) + layers
    return torch.nn.Sequential(*mods, *([GroupSum(k, tau)] if k else [])).eval()


def all_gates(model):
    "Whether every one of the 16 gates occurs in the model."
    gates = torch.cat([m.gates() for m in model if isinstance(m, LogicLayer)])
    return set(gates.tolist()) == set(range(16))


def test_gate_expressions_match_truth_tables():
    for g in range(16):
        expr = gate_expression(g, "a", "b").replace("1'b0", "0").replace("1'b1", "1")
        row = [eval(expr, {"a": a, "b": b}) & 1 for a in (0, 1) for b in (0, 1)]
        assert row == gate_truth_table()[g].tolist()
    assert len(VERILOG_GATES) == 16
    with pytest.raises(ValueError, match="gate"):
        gate_expression(16, "a", "b")


@needs_iverilog
@pytest.mark.parametrize("dims, k, registered", [
    ([16, 16], 4, False),                 # one layer
    ([20, 32, 24, 18], 3, False),         # three layers, groups of 6
    ([30, 64, 48, 40, 40, 33], 3, True),  # five layers, pipelined, groups of 11
    ([10, 17], 1, True),                  # one class, a group of 17 (odd sizes)
])
def test_simulation_equals_eval_mode(dims, k, registered):
    net = random_network(dims, k=k, seed=len(dims))
    assert all_gates(net)
    x = torch.rand(500, dims[0], generator=torch.Generator().manual_seed(1)) > 0.5
    sim = simulate_verilog(net, x, bits=True, registered=registered)
    with torch.no_grad():
        bits, scores = net[:-1](x.float()), net(x.float())
    assert torch.equal(sim["y"], bits.bool())
    assert torch.equal(sim["counts"], (scores * 3).round().long())
    assert torch.equal(sim["label"], scores.argmax(1))


@needs_iverilog
@pytest.mark.parametrize("registered", [False, True])
def test_bits_only_and_circuit_input(registered):
    net = random_network([12, 40, 25], seed=3)               # no GroupSum: the bits only
    assert all_gates(net)
    circuit = LogicCircuit.from_model(net)
    x = torch.rand(300, 12, generator=torch.Generator().manual_seed(2)) > 0.5
    sim = simulate_verilog(circuit, x, "bits_net", registered=registered)
    assert set(sim) == {"y"}
    with torch.no_grad():
        assert torch.equal(sim["y"], net(x.float()).bool())
    # counts only (no y port) and a batch that is not a round number
    grouped = torch.nn.Sequential(*net, GroupSum(5, tau=2.0)).eval()
    sim = simulate_verilog(grouped, x[:77], registered=registered)
    assert set(sim) == {"counts", "label"}
    with torch.no_grad():
        assert torch.equal(sim["counts"], (grouped(x[:77].float()) * 2).round().long())


@needs_iverilog
def test_binarized_inputs_as_integers():
    gen = torch.Generator().manual_seed(4)
    thresholds = torch.rand(6, 3, generator=gen)
    thresholds[0] = torch.tensor([0.0, 5 / 15, 1.5])        # on a level, and never on
    net = random_network([18, 32, 20], k=2, seed=5, binarizer=Binarize(thresholds))
    levels = torch.randint(0, 16, (500, 6), generator=gen)
    levels[:16, 0] = torch.arange(16)
    sim = simulate_verilog(net, levels, input_bits=4, input_scale=15, registered=True)
    with torch.no_grad():
        scores = net(levels.float() / 15)
    assert torch.equal(sim["counts"], (scores * 3).round().long())
    assert torch.equal(sim["label"], scores.argmax(1))
    with pytest.raises(ValueError, match="lie in"):
        simulate_verilog(net, levels + 16, input_bits=4, input_scale=15)


def test_integer_thresholds_reproduce_binarize():
    thresholds = torch.tensor([[0.0, 0.3, 1 / 3, 0.5], [-1.0, 0.999, 1.0, 2.0]])
    c = integer_thresholds(thresholds, 4, 15)
    levels = torch.arange(16)
    on = Binarize(thresholds)((levels / 15).view(-1, 1).expand(-1, 2)).bool()
    assert torch.equal(on, (levels.view(-1, 1, 1) >= c).flatten(1))
    assert c[1, 0] == 0 and c[1, 3] == 16


def test_verilog_text(tmp_path):
    net = random_network([8, 16, 16], k=2)
    src = to_verilog(net, "small_net")
    assert src.startswith("// small_net") and src.rstrip().endswith("endmodule")
    assert re.search(r"^module small_net \($", src, re.M)
    assert src.count(" = ") >= 32 and "1'b0" in src and "1'b1" in src
    assert max(len(line) for line in src.splitlines()) <= 100
    assert "always" not in src and "clk" not in src
    pipelined = to_verilog(net, "small_net", registered=True)
    assert pipelined.count("always @(posedge clk)") == 2
    assert "input wire [7:0] x" in src and "output wire [7:0] counts" in src
    path = write_verilog(tmp_path / "small.v", net, "small_net")
    assert path.read_text() == src
    tb = verilog_testbench(net, "small_net", "a.txt", "b.txt")
    assert "module tb_small_net;" in tb and '"a.txt"' in tb and "small_net dut" in tb
    with pytest.raises(ValueError, match="quotes"):
        verilog_testbench(net, "small_net", 'a".txt')


def test_bad_names_and_models():
    net = random_network([8, 16], k=2)
    for bad in ["2net", "net-1", "my net", "", "module", "wire", "a" * 1025]:
        with pytest.raises(ValueError, match="module_name"):
            to_verilog(net, bad)
    with pytest.raises(TypeError, match="module_name"):
        to_verilog(net, 7)
    assert check_identifier("_n$1") == "_n$1"
    with pytest.raises(TypeError, match="Linear"):
        to_verilog(torch.nn.Sequential(LogicLayer(8, 16), torch.nn.Linear(16, 2)))
    with pytest.raises(TypeError, match="ReLU"):
        hardware_circuit(torch.nn.ReLU())
    with pytest.raises(ValueError, match="nothing to output"):
        to_verilog(net, bits=False, counts=False)
    with pytest.raises(ValueError, match="cannot read"):
        hardware_circuit(net, input_shape=(3, 3))
    with pytest.raises(ValueError, match="binary"):
        simulate_verilog(net, torch.full((2, 8), 0.5))
    assert torch.nn.Flatten in LOWERINGS and LogicLayer in LOWERINGS


def test_missing_simulator_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="Icarus Verilog"):
        simulate_verilog(random_network([8, 16], k=2), torch.zeros(2, 8))
