"""Package-level invariants: import boundaries and public names."""
import importlib
import pkgutil
import subprocess
import sys

import pytest

import analysis
import fusion


def _modules(pkg):
    for info in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + "."):
        if info.name.endswith("__main__"):
            continue
        yield info.name


def test_analysis_never_imports_torch():
    """Importing every analysis module in a fresh interpreter leaves torch unloaded."""
    names = sorted(_modules(analysis))
    code = (
        "import importlib, sys\n"
        f"for n in {names!r}: importlib.import_module(n)\n"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith('torch.') or m.startswith('torchvision')]\n"
        "print(len(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0", out.stdout + out.stderr


@pytest.mark.parametrize("pkg", [analysis, fusion], ids=["analysis", "fusion"])
def test_every_public_name_imports(pkg):
    for name in _modules(pkg):
        mod = importlib.import_module(name)
        for public in getattr(mod, "__all__", []):
            assert hasattr(mod, public), f"{name}.__all__ lists {public!r}, which does not exist"
