"""A researcher's own models and configurations in the matrix, without editing this project.

Three ways in:

- ``--perf-model=mypkg.layers:MyKAN`` (or ``path/to/file.py:MyKAN``, or ``name=...:MyKAN`` to name
  it): a class is built as ``MyKAN(layers, num_basis=G)`` with the configuration's layer sizes and
  basis functions per edge; any other callable as ``factory(shape)`` with a
  ``perf.matrix.configs.Shape`` (``layers``, ``num_basis``, the FastKAN grid options ``fastkan``);
- ``--perf-config=layers=784x256x10,batch=128,grid=8`` (or ``name=...``, or a TOML file of named
  tables with those keys);
- the hooks ``pytest_perf_models(registry)`` and ``pytest_perf_configs(registry)`` in a
  ``conftest.py`` (``perf.hooks``), which get a ``Registry``.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import sys
from pathlib import Path
from typing import Any

from torch import nn

from fastkan import BASES
from perf.matrix import models as registry
from perf.matrix.configs import CONFIGS, Config, Shape


class UserError(ValueError):
    """A user's model or configuration that cannot be taken as given; the message names the value."""


def builder(target: Any, name: str):
    """``build(shape)`` for a class (``cls(layers, num_basis=G)``) or a factory (``factory(shape)``)."""
    if inspect.isclass(target):
        if not issubclass(target, nn.Module):
            raise UserError(f"{name}: {target.__qualname__} is a class but not a torch.nn.Module")
        return lambda s: target(list(s.layers), num_basis=s.num_basis)
    if not callable(target):
        raise UserError(f"{name}: {target!r} is neither a class nor a callable")

    def build(s: Shape) -> nn.Module:
        model = target(s)
        if not isinstance(model, nn.Module):
            raise TypeError(f"{name} returned {type(model).__name__}, not a torch.nn.Module")
        return model

    return build


def _module(path: str) -> Any:
    if path.endswith(".py"):
        file = Path(path)
        if not file.is_file():
            raise UserError(f"{path}: no such file")
        module_name = "_perf_user_" + re.sub(r"\W", "_", str(file.resolve()))
        if module_name not in sys.modules:
            spec = importlib.util.spec_from_file_location(module_name, file)
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[module_name]
                raise
        return sys.modules[module_name]
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError as e:
        # `pytest` (unlike `python -m pytest`) leaves the working folder off sys.path.
        if e.name != path.split(".")[0] or os.getcwd() in sys.path:
            raise
        sys.path.insert(0, os.getcwd())
        return importlib.import_module(path)


def from_spec(spec: str) -> registry.Model:
    """The model of ``[name=]module.path:attr`` or ``[name=]file.py:attr``, added to the registry.

    Named by ``name``, else by the import path (a file by its stem: ``my_kan.py:MyKAN`` is
    ``my_kan:MyKAN``).
    """
    alias, _, target = spec.rpartition("=")
    path, _, attr = target.rpartition(":")
    if not path or not attr:
        raise UserError(f"--perf-model {spec!r}: give a model as module.path:Name or file.py:Name")
    try:
        obj = _module(path)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"--perf-model {spec!r}: cannot import it ({type(e).__name__}: {e})") from e
    name = alias or f"{Path(path).stem if path.endswith('.py') else path}:{attr}"
    model = registry.Model(name, builder(obj, name), "user")
    try:
        registry.add(model)
    except ValueError as e:
        raise UserError(f"--perf-model {spec!r}: {e}; give it a name: name={target}") from None
    return model


#: the keys of an ad-hoc configuration, and what each becomes
CONFIG_KEYS = ("name", "layers", "batch", "grid", "grid_min", "grid_max", "mlp_hidden", "default")


def _int(key: str, value: Any, low: int = 1) -> int:
    try:
        out = int(value)
        if out != float(value) or out < low:
            raise ValueError
    except (TypeError, ValueError):
        raise UserError(f"configuration field {key}={value!r}: expected a whole number of at least {low}") from None
    return out


def make_config(fields: dict[str, Any]) -> tuple[str, Config]:
    """A named ``Config`` from ad-hoc fields: layers (784x256x10 or a list), batch, grid, ... ."""
    unknown = [k for k in fields if k not in CONFIG_KEYS]
    if unknown:
        raise UserError(
            f"configuration field {unknown[0]}={fields[unknown[0]]!r}: unknown; valid: {', '.join(CONFIG_KEYS)}"
        )
    if "layers" not in fields:
        raise UserError(f"configuration {fields}: the field layers is required (for example layers=784x64x10)")
    raw = fields["layers"]
    parts = raw.split("x") if isinstance(raw, str) else list(raw)
    layers = tuple(_int("layers", p) for p in parts)
    if len(layers) < 2:
        raise UserError(f"configuration field layers={raw!r}: at least an input and an output size")
    batch = _int("batch", fields.get("batch", 64))
    fastkan: dict[str, Any] = {}
    if "grid" in fields:
        fastkan["num_grids"] = _int("grid", fields["grid"], 2)
    for key in ("grid_min", "grid_max"):
        if key in fields:
            try:
                fastkan[key] = float(fields[key])
            except (TypeError, ValueError):
                raise UserError(f"configuration field {key}={fields[key]!r}: expected a number") from None
    if fastkan.get("grid_min", -2.0) >= fastkan.get("grid_max", 2.0):
        raise UserError(
            f"configuration fields grid_min={fastkan.get('grid_min', -2.0)}, "
            f"grid_max={fastkan.get('grid_max', 2.0)}: grid_min must be below grid_max"
        )
    hidden = _int("mlp_hidden", fields["mlp_hidden"]) if "mlp_hidden" in fields else None
    default = fields.get("default", False)
    if not isinstance(default, bool):
        default = str(default).lower() in ("1", "true", "yes")
    name = str(
        fields.get("name")
        or "x".join(map(str, layers)) + f"-b{batch}" + (f"-g{fastkan['num_grids']}" if "num_grids" in fastkan else "")
    )
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
        raise UserError(f"configuration field name={name!r}: letters, digits and . _ + - only (it goes in case ids)")
    return name, Config(batch=batch, layers=layers, fastkan=fastkan, mlp_hidden=hidden, default=default)


def add_config(fields: dict[str, Any]) -> str:
    name, config = make_config(fields)
    CONFIGS[name] = config
    return name


def _toml(path: str) -> list[str]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise UserError(f"{path}: reading TOML on Python 3.10 needs tomli (pip install tomli)") from None
    try:
        tables = tomllib.loads(Path(path).read_text())
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not valid TOML ({e})") from None
    names = []
    for name, fields in tables.items():
        if not isinstance(fields, dict):
            raise UserError(f"{path}: {name} = {fields!r}: each configuration is a table, [name]")
        names.append(add_config({"name": name, **fields}))
    return names


def configs_from_option(raw: str) -> list[str]:
    """Names of the configurations of a ``--perf-config`` value, ad-hoc ones and TOML files added.

    Comma-separated: a known name, a ``.toml`` file, or ``key=value`` fields; consecutive fields
    make one configuration, and a key given again starts the next.
    """
    names: list[str] = []
    fields: dict[str, str] = {}
    for item in [s.strip() for s in raw.split(",") if s.strip()]:
        if "=" in item:
            key, _, value = item.partition("=")
            if key.strip() in fields:
                names.append(add_config(fields))
                fields = {}
            fields[key.strip()] = value.strip()
            continue
        if fields:
            names.append(add_config(fields))
            fields = {}
        names.extend(_toml(item) if item.endswith(".toml") else [item])
    if fields:
        names.append(add_config(fields))
    return names


class Registry:
    """What a ``pytest_perf_models`` or ``pytest_perf_configs`` hook gets: the matrix to add to."""

    @property
    def models(self) -> dict[str, registry.Model]:
        return registry.models()

    @property
    def configs(self) -> dict[str, Config]:
        return CONFIGS

    @property
    def bases(self) -> tuple[str, ...]:
        return tuple(BASES)

    def add_model(
        self, name: str, build: Any, *, basis: str | None = None, fit: bool = True, small_only: bool = False
    ) -> registry.Model:
        """Add a model: a class built as ``cls(layers, num_basis=G)``, or a factory ``build(shape)``."""
        model = registry.Model(name, builder(build, name), "user", basis=basis, fit=fit, small_only=small_only)
        registry.add(model)
        return model

    def add_config(self, name: str, **fields: Any) -> str:
        """Add a configuration: ``layers`` (a list or 784x256x10), ``batch``, ``grid``, ``grid_min``, ... ."""
        return add_config({"name": name, **fields})
