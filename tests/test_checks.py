"diffalg.checks: the argument checks every module shares."
import pytest
import torch

from diffalg.checks import check_choice, check_int, check_positive, check_tensor


def test_check_tensor():
    x = torch.zeros(2, 3)
    assert check_tensor(x, "x", min_dim=2) is x
    with pytest.raises(TypeError, match="`y` must be a torch.Tensor, got list"):
        check_tensor([1.0], "y")
    match = r"`y` must have at least 3 dimension\(s\), got shape \(2, 3\)"
    with pytest.raises(ValueError, match=match):
        check_tensor(x, "y", min_dim=3)
    with pytest.raises(TypeError, match="dtype torch.int64"):
        check_tensor(torch.arange(3), "y")
    assert check_tensor(torch.arange(3), "y", floating=False) is not None
    with pytest.raises(ValueError, match="finite"):
        check_tensor(torch.tensor([float("inf")]), "y", finite=True)


@pytest.mark.parametrize("bad", [0, -3, float("nan"), float("-inf"), torch.tensor([1.0, 0.0])])
def test_check_positive_rejects(bad):
    with pytest.raises(ValueError, match="`tau` must be finite and > 0"):
        check_positive(bad, "tau")


def test_check_positive_types():
    assert check_positive(3, "tau") == 3
    with pytest.raises(TypeError):
        check_positive(True, "tau")
    with pytest.raises(TypeError):
        check_positive(None, "tau")
    with pytest.raises(TypeError):
        check_positive(torch.tensor([True]), "tau")


def test_check_int_and_choice():
    assert check_int(torch.tensor(3).item(), "k") == 3
    with pytest.raises(ValueError, match="`k` must be >= 1, got 0"):
        check_int(0, "k", minimum=1)
    with pytest.raises(TypeError, match="`k` must be an int, got float"):
        check_int(1.0, "k")
    assert check_choice("a", "mode", ("a", "b")) == "a"
    with pytest.raises(ValueError, match=r"`mode` must be one of \['a', 'b'\], got 'c'"):
        check_choice("c", "mode", ("a", "b"))
    with pytest.raises(TypeError, match="`mode` must be a str"):
        check_choice(1, "mode", ("a", "b"))
