"diffalg.data: multi-digit numbers from bundled digits, IDX/MNIST loading on files the tests write."
import gzip
import math
import struct

import numpy as np
import pytest
import torch

from diffalg.data import MultiDigitNumbers, digit_pools, digits_numbers, load_mnist, mnist_numbers
from diffalg.data import read_idx


def write_idx(path, array, type_byte=0x08):
    "Write an IDX file independently of diffalg (big-endian header, raw data)."
    header = bytes([0, 0, type_byte, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    big_endian = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    data = header + array.astype(big_endian).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(data)


@pytest.fixture(scope="module")
def pools():
    return digit_pools()


def test_pools_are_disjoint_and_complete(pools):
    tr, te = pools["train"], pools["test"]
    assert len(tr[0]) + len(te[0]) == 1797
    # no image appears in both pools (images are distinct rows of the bundled set)
    a = {tuple(r.tolist()) for r in tr[0].flatten(1)}
    b = {tuple(r.tolist()) for r in te[0].flatten(1)}
    from sklearn.datasets import load_digits
    n_unique = len({tuple(r) for r in load_digits().images.reshape(-1, 64).tolist()})
    assert len(a | b) == n_unique and len(a & b) <= 1797 - n_unique
    assert set(tr[1].tolist()) == set(range(10)) == set(te[1].tolist())
    assert 0.25 < len(te[0]) / 1797 < 0.35
    assert float(tr[0].min()) >= 0 and float(tr[0].max()) <= 1


def test_numbers_are_their_digits():
    ds = digits_numbers("train", n_digits=3, n_numbers=200, seed=5)
    assert len(ds) == 200 and ds.image_shape == (1, 8, 24)
    imgs = ds.images(torch.arange(200))
    for i in range(200):
        digits = [int(c) for c in f"{int(ds.values[i]):03d}"]
        for j, dgt in enumerate(digits):
            k = ds.digit_index[i, j]
            assert int(ds.digit_labels[k]) == dgt
            assert torch.equal(imgs[i, 0, :, 8 * j:8 * (j + 1)], ds.digit_images[k])


def test_deterministic_given_seed_and_train_test_differ():
    a, b = digits_numbers("train", seed=3), digits_numbers("train", seed=3)
    assert torch.equal(a.digit_index, b.digit_index) and torch.equal(a.values, b.values)
    c = digits_numbers("train", seed=4)
    assert not torch.equal(a.values, c.values)
    test = digits_numbers("test")
    # train and test numbers are drawn from disjoint digit pools
    assert not torch.equal(test.digit_images[:10], a.digit_images[:10])


def test_values_are_uniform_over_digit_positions():
    ds = digits_numbers("train", n_digits=2, n_numbers=20_000)
    counts = torch.bincount(ds.values, minlength=100).float()
    assert counts.min() > 100 and counts.max() < 300   # expected 200 each


def test_sample_ranking_shapes_and_distinct_values():
    ds = digits_numbers("test", n_digits=1, n_numbers=500)
    g = torch.Generator().manual_seed(0)
    x, v = ds.sample_ranking(10, 64, generator=g)      # all 10 single digits in every set
    assert x.shape == (64, 10, 1, 8, 8) and v.shape == (64, 10)
    assert all(sorted(row.tolist()) == list(range(10)) for row in v)
    for b in range(3):
        for j in range(10):
            assert x[b, j].shape == (1, 8, 8)
    x2, v2 = ds.sample_ranking(10, 64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(v, v2) and torch.equal(x, x2)


def test_sample_ranking_bad_input():
    ds = digits_numbers("test", n_digits=1, n_numbers=500)
    with pytest.raises(ValueError, match="`n` must be at most"):
        ds.sample_ranking(11, 4)
    with pytest.raises(ValueError, match="`n` must be >= 2"):
        ds.sample_ranking(1, 4)
    with pytest.raises(TypeError, match="`batch_size` must be an int"):
        ds.sample_ranking(3, 2.5)


def test_constructor_bad_input(pools):
    imgs, labels = pools["train"]
    with pytest.raises(ValueError, match="`digit_images` must have shape"):
        MultiDigitNumbers(imgs.flatten(1).unsqueeze(0).unsqueeze(0), labels)
    with pytest.raises(ValueError, match="`digit_labels` must be a tensor of shape"):
        MultiDigitNumbers(imgs, labels[:-1])
    with pytest.raises(ValueError, match="missing"):
        MultiDigitNumbers(imgs[labels != 7], labels[labels != 7])
    with pytest.raises(ValueError, match="`n_digits` must be >= 1"):
        MultiDigitNumbers(imgs, labels, n_digits=0)
    with pytest.raises(ValueError, match="`split` must be one of"):
        digits_numbers("val")
    with pytest.raises(ValueError, match="`test_fraction`"):
        digit_pools(test_fraction=1.5)


def test_to_device_moves_images(device):
    ds = digits_numbers("test", n_numbers=50).to(device)
    x, v = ds.sample_ranking(3, 2)
    assert x.device.type == device.type and v.device.type == device.type


# ---------------------------------------------------------------- IDX / MNIST files

def make_mnist(root, n_train=30, n_test=20, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    ext = ".gz" if gz else ""
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(root / f"{prefix}-images-idx3-ubyte{ext}", imgs)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{ext}", labels)
        out[prefix] = (imgs, labels)
    return out


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_roundtrip(tmp_path, gz):
    written = make_mnist(tmp_path, gz=gz)
    images, labels = load_mnist(tmp_path, "train")
    assert images.shape == (30, 28, 28) and images.dtype == torch.float32
    as_bytes = (images * 255).round().to(torch.uint8).numpy()
    np.testing.assert_array_equal(as_bytes, written["train"][0])
    np.testing.assert_array_equal(labels.numpy(), written["train"][1])
    test_images, _ = load_mnist(tmp_path, "test")
    assert test_images.shape == (20, 28, 28)


def test_mnist_numbers_interface(tmp_path):
    written = make_mnist(tmp_path)
    ds = mnist_numbers(tmp_path, "test", n_numbers=40, seed=2)
    assert ds.image_shape == (1, 28, 112) and len(ds) == 40
    img, value = ds[0]
    first_digit_index = ds.digit_index[0, 0]
    first_digit = (img[0, :, :28] * 255).round().to(torch.uint8).numpy()
    np.testing.assert_array_equal(first_digit, written["t10k"][0][first_digit_index])
    assert int(value) // 1000 == int(written["t10k"][1][first_digit_index])
    x, v = ds.sample_ranking(5, 3)
    assert x.shape == (3, 5, 1, 28, 112)


def test_read_idx_other_types(tmp_path):
    a = np.arange(12, dtype=np.int32).reshape(3, 4) - 5
    write_idx(tmp_path / "a.idx", a, type_byte=0x0C)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx"), a)


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="`root` must be a directory"):
        load_mnist(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="IDX file not found"):
        read_idx(tmp_path / "x")


def test_malformed_files(tmp_path):
    make_mnist(tmp_path)
    bad = tmp_path / "t10k-images-idx3-ubyte"
    bad.write_bytes(b"\x89PNG not an idx file")
    with pytest.raises(ValueError, match="not an IDX file"):
        load_mnist(tmp_path, "test")
    raw = (tmp_path / "train-images-idx3-ubyte").read_bytes()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(raw[:-100])       # truncated data
    with pytest.raises(ValueError, match="header says shape"):
        load_mnist(tmp_path, "train")
    (tmp_path / "train-images-idx3-ubyte").write_bytes(raw[:10])         # truncated header
    with pytest.raises(ValueError, match="header truncated"):
        read_idx(tmp_path / "train-images-idx3-ubyte")
    (tmp_path / "h.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="cannot read as an IDX file"):
        read_idx(tmp_path / "h.gz")


def test_mismatched_counts_and_labels(tmp_path):
    make_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(7, dtype=np.uint8))
    with pytest.raises(ValueError, match="files disagree"):
        load_mnist(tmp_path, "test")
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.full(20, 12, dtype=np.uint8))
    with pytest.raises(ValueError, match="labels must be digits 0-9"):
        load_mnist(tmp_path, "test")


@pytest.mark.parametrize("m, n", [(3, 2), (8, 2), (12, 3)])
def test_distinct_draws_are_uniform_over_ordered_tuples(m, n):
    # both branches (random-permutation prefix for n^2 > m, rejection otherwise): every ordered
    # tuple of n distinct values equally likely; a chi-square statistic far above its mean fails
    from diffalg.data.digits import _distinct_draws
    draws = _distinct_draws(m, 60_000, n, torch.Generator().manual_seed(0))
    assert ((draws >= 0) & (draws < m)).all()
    assert (draws.sort(-1).values.diff(dim=-1) > 0).all()
    codes = (draws * m ** torch.arange(n)).sum(-1)
    counts = torch.bincount(codes, minlength=m ** n).float()
    k = math.perm(m, n)                               # number of ordered tuples of distinct values
    assert int((counts > 0).sum()) == k
    expected = len(draws) / k
    chi2 = float(((counts[counts > 0] - expected) ** 2 / expected).sum())
    assert chi2 < k + 6 * math.sqrt(2 * k)            # mean k - 1, sd sqrt(2 (k - 1))
