"""The top-k, logic and shortest-path experiments (diffalg.experiments.topk, .logic,
.shortest_paths): the protocol that the runner relies on, at tiny sizes."""
import math
from functools import partial
from types import SimpleNamespace
import pytest
import torch
from sklearn.datasets import load_digits
import diffalg.data
from diffalg.experiments import logic, run, shortest_paths, topk
from diffalg.logic import LogicCircuit, fit_thresholds
from diffalg.relax import shortest_path
from diffalg.sorting import TopKCrossEntropyLoss

CPU = torch.device("cpu")


def _tiny_digits(source="digits", split="train"):
    "Stand-in for diffalg.data.classification('digits'): 200 train / 100 test 8x8 images."
    if source != "digits":
        raise ValueError(f"the stand-in knows only 'digits', got {source!r}")
    digits = load_digits()
    x = torch.tensor(digits.images[:300], dtype=torch.float32)[:, None] / 16
    y = torch.tensor(digits.target[:300])
    return (x[:200], y[:200]) if split == "train" else (x[200:], y[200:])


@pytest.fixture(autouse=True)
def tiny_data(monkeypatch):
    monkeypatch.setattr(diffalg.data, "classification", _tiny_digits, raising=False)


TOPK = topk.DEFAULTS | {"batch": 8, "hidden": 16}
LOGIC = logic.DEFAULTS | {"batch": 8, "width": 100, "depth": 2, "thresholds": 2,
                          "eval_batch": 64}
PATHS = shortest_paths.DEFAULTS | {"batch": 4, "n_train": 12, "n_test": 6, "size": 5,
                                   "cell": 4, "channels": 4}
CASES = [pytest.param(topk, TOPK, id="topk"),
         pytest.param(topk, TOPK | {"model": "resnet18", "augment": True, "drop": 0.0,
                                    "noise": 0.0, "method": "bitonic",
                                    "distribution": "logistic_phi", "top1_mode": "smce",
                                    "p_k": [0.2] * 5}, id="topk-resnet"),
         pytest.param(logic, LOGIC, id="logic"),
         pytest.param(logic, LOGIC | {"binarize": "grey"}, id="logic-grey"),
         pytest.param(logic, LOGIC | {"binarize": "fixed", "connections": "unique"},
                      id="logic-fixed"),
         pytest.param(shortest_paths, PATHS, id="paths"),
         pytest.param(shortest_paths, PATHS | {"newton": "fisher"}, id="paths-fisher"),
         pytest.param(shortest_paths, PATHS | {"newton": "hessian"}, id="paths-hessian")]
METRICS = {topk: {"top1", "top3", "top5"}, logic: {"relaxed", "discrete"},
           shortest_paths: {"optimal", "regret"}}


@pytest.fixture(scope="module")
def built():
    "One Setup per case (built once: building is the slow part)."
    cache = {}

    def get(mod, cfg):
        key = (mod.__name__, repr(sorted(cfg.items())))
        if key not in cache:
            cache[key] = mod.build(cfg, CPU)
        return cache[key]
    return get


@pytest.mark.parametrize("mod, cfg", CASES)
def test_protocol_names_and_defaults(mod, cfg):
    for name in ("DEFAULTS", "PAPER", "build", "batch", "loss", "evaluate"):
        assert hasattr(mod, name), name
    for key in ("seed", "steps", "batch", "lr", "eval_every"):
        assert key in mod.DEFAULTS
    assert set(mod.PAPER) <= set(mod.DEFAULTS) and set(mod.HELP) == set(mod.DEFAULTS)
    json_types = (bool, int, float, str, list, type(None))
    assert all(isinstance(v, json_types) for v in (mod.DEFAULTS | mod.PAPER).values())


@pytest.mark.parametrize("mod, cfg", CASES)
def test_two_shards_concatenate_to_the_whole_batch(mod, cfg, built):
    setup = built(mod, cfg)
    for step in (0, 5, 31):
        whole = mod.batch(setup, cfg, step, 0, 1)
        halves = [mod.batch(setup, cfg, step, r, 2) for r in (0, 1)]
        for i, part in enumerate(whole):
            assert torch.equal(torch.cat([h[i] for h in halves]), part)
            assert len(halves[0][i]) == cfg["batch"] // 2


@pytest.mark.parametrize("mod, cfg", CASES)
def test_batch_is_a_function_of_seed_and_step(mod, cfg, built):
    setup = built(mod, cfg)
    first = mod.batch(setup, cfg, 3, 0, 1)
    again = mod.batch(mod.build(cfg, CPU), cfg, 3, 0, 1)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    other_step = mod.batch(setup, cfg, 4, 0, 1)
    other_seed = mod.batch(setup, cfg | {"seed": 1}, 3, 0, 1)
    assert not torch.equal(first[0], other_step[0])
    assert not torch.equal(first[0], other_seed[0])


@pytest.mark.parametrize("mod, cfg", CASES)
def test_batch_not_divisible_by_world_size_raises(mod, cfg, built):
    setup = built(mod, cfg)
    with pytest.raises(ValueError, match="divisible"):
        mod.batch(setup, cfg, 0, 0, 3)
    with pytest.raises(ValueError, match="rank"):
        mod.batch(setup, cfg, 0, 2, 2)


@pytest.mark.parametrize("mod, cfg", CASES)
def test_build_is_deterministic(mod, cfg):
    state = torch.random.get_rng_state()
    a, b = mod.build(cfg, CPU), mod.build(cfg, CPU)
    assert torch.equal(state, torch.random.get_rng_state())     # the caller's RNG is untouched
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    c = mod.build(cfg | {"seed": 1}, CPU).model.state_dict()
    assert not all(torch.equal(sa[k], c[k]) for k in sa)
    assert isinstance(a.optimizer, torch.optim.Adam)
    assert a.optimizer.param_groups[0]["lr"] == cfg["lr"]


@pytest.mark.parametrize("mod, cfg", CASES)
def test_two_steps_stay_finite(mod, cfg):
    setup = mod.build(cfg, CPU)
    for step in range(2):
        value = mod.loss(setup.model, mod.batch(setup, cfg, step, 0, 1), cfg)
        assert value.dim() == 0 and torch.isfinite(value)
        setup.optimizer.zero_grad()
        value.backward()
        setup.optimizer.step()
    assert all(torch.isfinite(p).all() for p in setup.model.parameters())


@pytest.mark.parametrize("mod, cfg", CASES)
def test_evaluate_returns_the_documented_metrics(mod, cfg, built):
    setup = built(mod, cfg)
    setup.model.train()
    metrics = mod.evaluate(setup.model, setup, cfg)
    assert setup.model.training                       # the mode is restored
    assert set(metrics) == METRICS[mod]
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    for key, value in metrics.items():
        assert value >= 0 and (key == "regret" or value <= 1)
    assert metrics == mod.evaluate(setup.model, setup, cfg)


def test_topk_loss_is_the_chapters(built):
    setup = built(topk, TOPK)
    x, y = topk.batch(setup, TOPK, 0, 0, 1)
    expected = TopKCrossEntropyLoss("odd_even", 2.0, [0.5, 0.0, 0.5], n=10)(setup.model(x), y)
    assert torch.allclose(topk.loss(setup.model, (x, y), TOPK), expected)
    ce = TOPK | {"method": "cross_entropy"}
    expected = torch.nn.functional.cross_entropy(setup.model(x), y)
    assert torch.allclose(topk.loss(setup.model, (x, y), ce), expected)


def test_topk_corruption_and_batches_cover_epochs(built):
    setup = built(topk, TOPK)
    clean = _tiny_digits()[0]
    assert not torch.equal(setup.data["train"][0], clean)
    plain = topk.build(TOPK | {"drop": 0.0, "noise": 0.0}, CPU)
    assert torch.equal(plain.data["train"][0], clean)
    cfg = {"seed": 0, "batch": 50}
    seen = torch.cat([topk.batch_indices(200, cfg, s) for s in range(4)])
    assert torch.equal(seen.sort().values, torch.arange(200))


def test_topk_augmentation_crops_and_flips():
    cfg = TOPK | {"augment": True, "drop": 0.0, "noise": 0.0}
    setup = topk.build(cfg, CPU)
    x, _ = topk.batch(setup, cfg, 0, 0, 1)
    idx = topk.batch_indices(200, cfg, 0)
    raw = setup.data["train"][0][idx]
    assert x.shape == raw.shape and not torch.equal(x, raw)
    assert (x.sum((1, 2, 3)) <= raw.sum((1, 2, 3)) + 1e-5).all()      # crops lose pixels


def test_logic_loss_and_discrete_accuracy_are_the_chapters(built):
    setup = built(logic, LOGIC)
    x, y = logic.batch(setup, LOGIC, 0, 0, 1)
    assert set(x.unique().tolist()) <= {0.0, 1.0} and x.shape[1] == 64 * 2
    expected = torch.nn.functional.cross_entropy(setup.model(x), y)
    assert torch.allclose(logic.loss(setup.model, (x, y), LOGIC), expected)
    metrics = logic.evaluate(setup.model, setup, LOGIC)
    xt, yt = setup.data["test"]
    bits = logic.encode(xt, setup.data, LOGIC, training=False)
    hits = (LogicCircuit.from_model(setup.model)(bits).argmax(1) == yt).sum().item()
    assert hits / len(yt) == metrics["discrete"]


def test_logic_grey_trains_on_grey_values_and_evaluates_on_bits(built):
    cfg = LOGIC | {"binarize": "grey"}
    setup = built(logic, cfg)
    x, _ = logic.batch(setup, cfg, 0, 0, 1)
    assert x.shape[1] == 64 and not set(x.unique().tolist()) <= {0.0, 1.0}
    bits = logic.encode(setup.data["test"][0], setup.data, cfg, training=False)
    assert set(bits.unique().tolist()) <= {0.0, 1.0}


def test_shortest_paths_loss_is_the_chapters(built):
    setup = built(shortest_paths, PATHS)
    images, paths = shortest_paths.batch(setup, PATHS, 0, 0, 1)
    relaxed = shortest_path(setup.model(images), steepness=1.0)[1]
    expected = ((relaxed - paths) ** 2).mean()
    assert torch.allclose(shortest_paths.loss(setup.model, (images, paths), PATHS), expected)
    fisher = PATHS | {"newton": "fisher"}
    assert torch.allclose(shortest_paths.loss(setup.model, (images, paths), fisher), expected)
    true_paths = setup.data["train"][1]
    assert set(true_paths.unique().tolist()) <= {0.0, 1.0}


BAD = [(topk, TOPK, "steps", -1, ValueError), (topk, TOPK, "batch", 0, ValueError),
       (topk, TOPK, "lr", 0.0, ValueError), (topk, TOPK, "model", "vgg", ValueError),
       (topk, TOPK, "method", "bubble", ValueError), (topk, TOPK, "p_k", [0.5, 0.6], ValueError),
       (topk, TOPK, "drop", 1.0, ValueError), (topk, TOPK, "seed", 1.5, TypeError),
       (topk, TOPK, "source", 3, TypeError),
       (logic, LOGIC, "width", 105, ValueError), (logic, LOGIC, "depth", 0, ValueError),
       (logic, LOGIC, "binarize", "otsu", ValueError),
       (logic, LOGIC, "architecture", "lstm", ValueError),
       (logic, LOGIC, "tau", -1.0, ValueError), (logic, LOGIC, "thresholds", 0, ValueError),
       (shortest_paths, PATHS, "newton", "bfgs", ValueError),
       (shortest_paths, PATHS, "cell", 2, ValueError),
       (shortest_paths, PATHS, "tikhonov", 0.0, ValueError),
       (shortest_paths, PATHS, "distribution", "zipf", ValueError),
       (shortest_paths, PATHS, "hessian_method", "lbfgs", ValueError)]


@pytest.mark.parametrize("mod, cfg, key, value, error", BAD,
                         ids=[f"{m.__name__.rsplit('.', 1)[1]}-{k}" for m, _, k, _, _ in BAD])
def test_bad_config_values_raise_clear_errors(mod, cfg, key, value, error):
    with pytest.raises(error, match=f"`{key}`"):
        mod.build(cfg | {key: value}, CPU)


def test_real_digits_source(monkeypatch):
    monkeypatch.undo()
    setup = topk.build(TOPK, CPU)
    x, y = setup.data["train"]
    assert x.dim() == 4 and y.dtype == torch.int64 and setup.data["classes"] == 10


@pytest.mark.parametrize("mod, cfg", [CASES[1], CASES[3], CASES[6]])
def test_protocol_on_every_device(mod, cfg, device):
    setup = mod.build(cfg, device)
    assert next(setup.model.parameters()).device.type == device.type
    part = mod.batch(setup, cfg, 0, 1, 2)
    assert all(t.device.type == device.type for t in part)
    value = mod.loss(setup.model, part, cfg)
    setup.optimizer.zero_grad()
    value.backward()
    setup.optimizer.step()
    assert torch.isfinite(value) and set(mod.evaluate(setup.model, setup, cfg)) == METRICS[mod]


@pytest.mark.parametrize("mod, cfg", [CASES[0], CASES[2], CASES[5], CASES[7]])
def test_mean_of_shard_gradients_is_the_whole_batch_gradient(mod, cfg, built):
    "What DistributedDataParallel relies on: averaging the processes' gradients."
    model = built(mod, cfg).model
    params = [p for p in model.parameters() if p.requires_grad]

    def grads(part):
        return torch.autograd.grad(mod.loss(model, part, cfg), params)
    setup = built(mod, cfg)
    whole = grads(mod.batch(setup, cfg, 2, 0, 1))
    halves = [grads(mod.batch(setup, cfg, 2, r, 2)) for r in (0, 1)]
    for g, a, b in zip(whole, *halves):
        assert torch.allclose(g, (a + b) / 2, rtol=1e-4, atol=1e-6)


def _table(n=60, features=3, seed=0):
    "A random table whose class is the sign of its first feature: {'train': .., 'test': ..}."
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=gen)
    y = (x[:, 0] > 0).long()
    cut = 2 * n // 3
    return {"train": (x[:cut], y[:cut]), "test": (x[cut:], y[cut:])}


def test_logic_own_data_and_quantile_thresholds():
    "build's `data` replaces cfg['source']; binarize='quantile' fits quantile thresholds."
    data = _table()
    cfg = LOGIC | {"binarize": "quantile", "thresholds": 4, "width": 20}
    setup = logic.build(cfg, CPU, data=data)
    x = data["train"][0]
    assert torch.equal(setup.data["binarizer"].thresholds, fit_thresholds(x, 4, "quantile"))
    assert setup.data["in_dim"] == 12 and setup.data["classes"] == 2
    assert torch.equal(setup.data["test"][0], data["test"][0])
    bits, labels = logic.batch(setup, cfg, 0, 0, 1)
    assert bits.shape == (8, 12) and set(bits.unique().tolist()) <= {0.0, 1.0}
    fitted = logic.build(cfg | {"binarize": "fitted"}, CPU, data=data)
    assert not torch.equal(fitted.data["binarizer"].thresholds, fit_thresholds(x, 4, "quantile"))
    with pytest.raises(TypeError, match="`data`"):
        logic.build(cfg, CPU, data={"train": data["train"]})


def test_logic_own_data_through_the_runner():
    "A protocol object with build(..., data=...) runs like a named experiment (the chapter's)."
    data = _table()
    table = SimpleNamespace(__name__="table", DEFAULTS=logic.DEFAULTS, PAPER={},
                            batch=logic.batch, loss=logic.loss, evaluate=logic.evaluate,
                            build=partial(logic.build, data=data))
    cfg = {"batch": 8, "width": 20, "depth": 2, "binarize": "quantile", "thresholds": 2,
           "steps": 5, "eval_every": 2}
    record, setup = run(table, cfg, return_setup=True, progress=False)
    assert record["experiment"] == "table" and record["steps"] == 5
    assert [h["step"] for h in record["history"]] == [2, 4] and len(record["losses"]) == 5
    assert record["metrics"] == logic.evaluate(setup.model, setup, record["config"])
    assert setup.data["train"][0].shape == (40, 3)


def test_logic_history_ends_with_the_final_metrics():
    "The chapter's training table: history every eval_every steps, its last row the metrics."
    record, setup = run("logic", LOGIC | {"steps": 4, "eval_every": 2}, return_setup=True,
                        progress=False)
    assert [h["step"] for h in record["history"]] == [2, 4]
    last = {k: v for k, v in record["history"][-1].items() if k != "step"}
    assert last == record["metrics"] and set(last) == {"relaxed", "discrete"}
    assert record["train_seconds"] > 0 and len(record["losses"]) == 4


def test_shortest_paths_build_is_the_newton_chapters_setup():
    "The Newton chapter's runs start from the maps and the network it built before the runner."
    from diffalg.relax import TerrainCostNet, terrain_maps
    cfg = shortest_paths.DEFAULTS | {"size": 5, "n_train": 6, "n_test": 3, "channels": 4}
    setup = shortest_paths.build(cfg, CPU)
    images, costs, _ = terrain_maps(6, size=5, seed=0)
    test_images, test_costs, _ = terrain_maps(3, size=5, seed=1)
    assert torch.equal(setup.data["train"][0], images)
    assert torch.equal(setup.data["train"][1], shortest_path(costs, hard=True)[1])
    assert torch.equal(setup.data["test"][1], test_costs)
    torch.manual_seed(0)
    net = TerrainCostNet(channels=4)
    for p, q in zip(setup.model.parameters(), net.parameters()):
        assert torch.equal(p, q)


def test_shortest_paths_build_reuses_the_last_maps():
    "Two builds with the same maps share them; other maps are made afresh, equal to a new build."
    first = shortest_paths.build(PATHS, CPU)
    again = shortest_paths.build(PATHS | {"seed": 1, "newton": "fisher"}, CPU)
    assert again.data["train"][0] is first.data["train"][0]
    assert again.data is not first.data
    other = shortest_paths.build(PATHS | {"data_seed": 1}, CPU)
    assert not torch.equal(other.data["train"][0], first.data["train"][0])
    shortest_paths._maps.cache_clear()
    fresh = shortest_paths.build(PATHS, CPU)
    assert fresh.data["train"][0] is not first.data["train"][0]
    for a, b in zip(fresh.data["train"] + fresh.data["test"],
                    first.data["train"] + first.data["test"]):
        assert torch.equal(a, b)


def test_logic_conv_architecture_trains_and_evaluates():
    "architecture='conv': logic_tree_net on the images (width = k, depth = blocks)."
    from diffalg.experiments import make_config
    cfg = {"architecture": "conv", "width": 1, "depth": 2, "batch": 8, "thresholds": 2,
           "steps": 3, "residual_init": 0.9, "eval_batch": 200}
    record, setup = run("logic", cfg, return_setup=True, progress=False)
    assert set(record["metrics"]) == {"relaxed", "discrete"} and len(record["losses"]) == 3
    assert type(setup.model[0]).__name__ == "BitsToImage"
    assert setup.model[0].shape == (1, 8, 8, 2)              # digits: 1 channel of 8 x 8, 2 bits
    again = logic.build(make_config("logic", cfg), CPU)
    assert all(torch.equal(a, b) for a, b in zip(again.model.state_dict().values(),
                                                  logic.build(make_config("logic", cfg), CPU)
                                                  .model.state_dict().values()))
    with pytest.raises(ValueError, match="architecture"):
        run("logic", {"architecture": "lstm", "steps": 1}, progress=False)
    with pytest.raises(ValueError, match="residual_init"):
        logic.build(make_config("logic", cfg | {"residual_init": 1.5}), CPU)
