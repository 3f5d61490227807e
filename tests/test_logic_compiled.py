"""Tests of diffalg.logic.inference and .export: the plain, bit-packed and compiled discrete paths
agree bit for bit."""
import pytest
import torch

from diffalg._native import find_c_compiler
from diffalg.logic import (GATE_FORMS, GroupSum, LogicCircuit, LogicLayer, check_bits, circuit_to_c,
                           compile_circuit, count_groups_packed, gate_truth_table, pack_bits,
                           unpack_bits)

needs_cc = pytest.mark.skipif(find_c_compiler() is None, reason="no C compiler")


def random_net(in_dim=20, widths=(48, 40, 30), k=5, seed=0, connections="random"):
    torch.manual_seed(seed)
    dims = (in_dim,) + tuple(widths)
    layers = [LogicLayer(dims[i], dims[i + 1], connections=connections) for i in range(len(widths))]
    for layer in layers:  # spread the argmax over all 16 gates
        with torch.no_grad():
            layer.weights.normal_(0, 3)
    return torch.nn.Sequential(*layers, *([GroupSum(k, tau=3.0)] if k else [])).eval()


def truth_table_eval(circuit, x):
    "Independent reference: look every gate up in its truth table."
    h = x.long()
    tt = gate_truth_table()
    for idx, g in circuit.layers:
        h = tt[g, 2 * h[:, idx[0]] + h[:, idx[1]]]
    if circuit.k is None:
        return h.bool()
    return h.reshape(h.shape[0], circuit.k, h.shape[1] // circuit.k).sum(-1)


@pytest.mark.parametrize("batch", [1, 7, 63, 64, 65, 128, 255, 256, 257, 1000])
def test_plain_packed_truth_table_agree(batch, device):
    net = random_net().to(device)
    circuit = LogicCircuit.from_model(net)
    x = torch.rand(batch, 20, device=device) > 0.5
    ref = truth_table_eval(circuit, x.cpu())
    assert torch.equal(circuit(x).cpu(), ref)
    assert torch.equal(circuit.packed(x).cpu(), ref)
    assert torch.equal(net(x.float()).cpu(), ref.float() / 3.0)  # eval-mode layers = circuit
    assert circuit.packed(x).device.type == torch.device(device).type


@needs_cc
@pytest.mark.parametrize("lanes", [1, 4])
@pytest.mark.parametrize("batch", [1, 63, 64, 65, 255, 256, 257, 1000])
def test_compiled_agrees(batch, lanes):
    net = random_net(seed=1)
    circuit = LogicCircuit.from_model(net)
    compiled = compile_circuit(circuit, lanes=lanes)
    x = torch.rand(batch, 20) > 0.5
    ref = circuit(x)
    assert torch.equal(compiled(x), ref)
    assert torch.equal(compiled(x, n_threads=3), ref)
    assert torch.equal(circuit.packed(x), ref)


@needs_cc
@pytest.mark.parametrize("k", [None, 1, 2, 30])
def test_all_paths_without_and_with_groupsum(k):
    net = random_net(widths=(40, 30), k=k, seed=2, connections="unique")
    circuit = LogicCircuit.from_model(net)
    x = torch.rand(333, 20) > 0.5
    ref = truth_table_eval(circuit, x)
    assert torch.equal(circuit(x), ref)
    assert torch.equal(circuit.packed(x), ref)
    assert torch.equal(compile_circuit(circuit)(x), ref)


@needs_cc
def test_input_dtypes_and_flatten():
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Flatten(), LogicLayer(12, 24), GroupSum(4, 2.0)).eval()
    circuit = LogicCircuit.from_model(net)
    x = torch.rand(70, 12) > 0.5
    compiled = compile_circuit(net)
    ref = circuit(x)
    for xv in (x, x.float(), x.double(), x.long(), x.to(torch.uint8)):
        assert torch.equal(circuit(xv), ref)
        assert torch.equal(circuit.packed(xv), ref)
        assert torch.equal(compiled(xv), ref)


def test_pack_unpack_roundtrip(device):
    for batch in (1, 64, 100, 129):
        x = torch.rand(batch, 9, device=device) > 0.5
        w = pack_bits(x)
        assert w.shape == (9, -(-batch // 64)) and w.dtype == torch.int64
        assert torch.equal(unpack_bits(w, batch), x)
    # sample s is bit s % 64 of word s // 64
    x = torch.zeros(130, 1, dtype=torch.bool, device=device)
    x[129, 0] = True
    assert pack_bits(x)[0].tolist() == [0, 0, 2]


@needs_cc
def test_c_source():
    circuit = LogicCircuit.from_model(random_net(widths=(30,), k=3))
    src = circuit_to_c(circuit)
    assert "void run(" in src and "vector_size(32)" in src
    assert "vector_size(8)" in circuit_to_c(circuit, lanes=1)


def test_bad_input():
    net = random_net()
    circuit = LogicCircuit.from_model(net)
    with pytest.raises(ValueError, match="binary"):
        circuit(torch.full((4, 20), 0.5))
    with pytest.raises(ValueError, match="binary"):
        circuit.packed(torch.full((4, 20), 2))
    with pytest.raises(ValueError, match=r"\(batch, 20\)"):
        circuit(torch.ones(4, 21))
    with pytest.raises(TypeError, match="x"):
        circuit([[0, 1]])
    with pytest.raises(TypeError, match="Sequential"):
        LogicCircuit.from_model(torch.nn.Sequential(LogicLayer(4, 4), torch.nn.ReLU()))
    with pytest.raises(ValueError, match="not divisible by k=7"):
        LogicCircuit(20, [(l.indices, l.gates()) for l in net[:3]], k=7)
    with pytest.raises(ValueError, match="indices must lie"):
        LogicCircuit(5, [(torch.tensor([[0, 9]]).t().reshape(2, 1), torch.tensor([1]))])
    with pytest.raises(ValueError, match="gates must lie"):
        LogicCircuit(5, [(torch.tensor([[0], [1]]), torch.tensor([16]))])
    with pytest.raises(RuntimeError, match="no C compiler"):
        compile_circuit(circuit, compiler="/nonexistent/cc")
    with pytest.raises(ValueError, match="lanes"):
        circuit_to_c(circuit, lanes=0)
    assert check_bits(torch.tensor([[1, 0]]), 2).dtype == torch.bool


def test_save_load_then_same_circuit():
    import io
    net = random_net(seed=4)
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    buf.seek(0)
    net2 = random_net(seed=5)
    net2.load_state_dict(torch.load(buf))
    x = torch.rand(100, 20) > 0.5
    assert torch.equal(LogicCircuit.from_model(net2)(x), LogicCircuit.from_model(net)(x))


def test_gate_forms_reproduce_truth_tables():
    "Every gate is and/or/xor of (a, not a, 0, 1) and (b, not b, 0, 1): the packed path needs it."
    a, b = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1])
    ops = (torch.bitwise_and, torch.bitwise_or, torch.bitwise_xor)
    for g, (op, sa, sb) in enumerate(GATE_FORMS.tolist()):
        src_a, src_b = [a, 1 - a, 0 * a, 0 * a + 1][sa], [b, 1 - b, 0 * b, 0 * b + 1][sb]
        assert torch.equal(ops[op](src_a, src_b), gate_truth_table()[g])


@pytest.mark.parametrize("m", [1, 2, 3, 5, 16, 255, 256, 797, 2000])
def test_count_groups_packed(m, device):
    torch.manual_seed(m)
    words = torch.randint(-2**63, 2**63 - 1, (3 * m, 5), device=device)
    ref = unpack_bits(words, 320).view(320, 3, m).sum(-1).t()
    assert torch.equal(count_groups_packed(words, 3), ref)
    ones = torch.full((2 * m, 1), -1, dtype=torch.int64, device=device)   # every lane at its max
    assert torch.equal(count_groups_packed(ones, 2), torch.full((2, 64), m, device=device))


@pytest.mark.parametrize("chunk_words", [1, 3, None])
@pytest.mark.parametrize("k", [None, 5])
def test_packed_chunks_and_odd_batches(chunk_words, k, device):
    """Several chunks, a partial last chunk and batches that are not multiples of 64 give the plain
    path's output."""
    net = random_net(k=k, seed=6).to(device)
    circuit = LogicCircuit.from_model(net)
    for batch in (0, 1, 63, 65, 191, 200, 450):
        x = torch.rand(batch, 20, device=device) > 0.5
        ref = truth_table_eval(circuit, x.cpu())
        assert torch.equal(circuit.packed(x, chunk_words=chunk_words).cpu(), ref)


@needs_cc
@pytest.mark.parametrize("k", [None, 5])
@pytest.mark.parametrize("lanes", [1, 2, 8])
def test_compiled_packing_in_c_equals_prepacked(k, lanes):
    """`__call__` packs in C (run_bytes); `pack` + `run_packed` pack in PyTorch: same output, any
    batch and threads."""
    circuit = LogicCircuit.from_model(random_net(k=k, seed=7))
    compiled = compile_circuit(circuit, lanes=lanes)
    for batch in (0, 1, 65, 64 * lanes - 1, 64 * lanes + 1, 1000):
        x = torch.rand(batch, 20) > 0.5
        ref = truth_table_eval(circuit, x)
        packed, b = compiled.pack(x)
        assert torch.equal(compiled.run_packed(packed, b), ref)
        assert torch.equal(compiled.run_packed(packed, b, n_threads=2), ref)
        assert torch.equal(compiled(x), ref) and torch.equal(compiled(x, n_threads=4), ref)
        assert torch.equal(circuit.packed(x), ref)
