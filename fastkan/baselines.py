"""The real competitors, when they are installed: efficient-kan and pykan."""

from __future__ import annotations

from typing import Sequence

from torch import nn

EFFICIENT_KAN_INSTALL = (
    "efficient-kan is not on PyPI; install it with "
    "`pip install --no-deps git+https://github.com/Blealtan/efficient-kan` "
    "(--no-deps keeps your torch)"
)
PYKAN_INSTALL = "pykan is not installed; install it with `pip install pykan`"


def efficient_kan_available() -> bool:
    try:
        import efficient_kan  # noqa: F401
    except ImportError:
        return False
    return True


def pykan_available() -> bool:
    try:
        import kan  # noqa: F401
    except ImportError:
        return False
    return True


def efficient_kan_model(layers: Sequence[int], **options) -> nn.Module:
    """efficient-kan's ``KAN(layers, **options)``; ImportError saying how to install it if absent."""
    try:
        from efficient_kan import KAN
    except ImportError as e:
        raise ImportError(EFFICIENT_KAN_INSTALL) from e
    return KAN(list(layers), **options)


def pykan_model(layers: Sequence[int], grid: int = 5, k: int = 3, seed: int = 0, device="cpu", **options) -> nn.Module:
    """pykan's ``KAN(width=layers, grid, k)``; ImportError saying how to install it if absent."""
    try:
        from kan import KAN
    except ImportError as e:
        raise ImportError(PYKAN_INSTALL) from e
    # auto_save would write checkpoints into the working directory on every call.
    options.setdefault("auto_save", False)
    return KAN(width=list(layers), grid=grid, k=k, seed=seed, device=device, **options)
