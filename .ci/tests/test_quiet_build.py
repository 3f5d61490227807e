"""The book build is quiet: a kernel started the way MyST-NB starts it (nbclient, no configuration)
logs no "Kernel is running over TCP without encryption" warning once tools/sphinx_kernels.py is
loaded (it is, from _config.yml); without it, the same kernel does (so this test can fail)."""
import importlib.util
from pathlib import Path

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
WARNING = "running over TCP without encryption"


def run_notebook():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1 + 1")])
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=120).execute()


@pytest.fixture
def policy():
    "The manager's encryption policy trait, restored after the test."
    trait = KernelManager.transport_encryption
    before = trait.default_value
    yield trait
    trait.default_value = before


def test_extension_is_loaded_by_the_book():
    assert "sphinx_kernels" in (ROOT / "_config.yml").read_text()


def test_kernel_warns_without_the_extension(policy, capfd):
    policy.default_value = "disabled"
    run_notebook()
    assert WARNING in capfd.readouterr().err


def test_kernel_is_quiet_with_the_extension(policy, capfd):
    path = ROOT / "tools" / "sphinx_kernels.py"
    spec = importlib.util.spec_from_file_location("sphinx_kernels", path)
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)
    ext.setup(None)
    assert KernelManager().transport_encryption == "auto"
    run_notebook()
    assert WARNING not in capfd.readouterr().err
