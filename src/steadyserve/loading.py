"""Find and import a user's Service class from ``PATH[:Class]``."""

from __future__ import annotations

import importlib.util
import inspect
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from .errors import ServiceLoadError
from .service import Service


@dataclass(frozen=True)
class ServiceTarget:
    """A resolved ``PATH[:Class]``: the file to import and the class to use."""

    file: Path
    class_name: str | None
    name: str  # service name: the directory name, or the file stem

    def __str__(self) -> str:
        return f"{self.file}:{self.class_name}" if self.class_name else str(self.file)


def parse_target(spec: str) -> ServiceTarget:
    path_part, _, class_name = spec.partition(":")
    try:
        path = Path(path_part).expanduser().resolve()
    except (RuntimeError, OSError) as exc:  # a symlink loop
        raise ServiceLoadError(f"{path_part}: cannot be resolved: {exc}") from exc
    if path.is_dir():
        file, name = path / "service.py", path.name
        if not file.is_file():
            raise ServiceLoadError(f"{path_part}: directory has no service.py")
    elif path.is_file():
        file, name = path, (path.stem if path.stem != "service" else path.parent.name)
    else:
        raise ServiceLoadError(f"{path_part}: no such file or directory")
    if file.suffix != ".py":
        raise ServiceLoadError(f"{path_part}: not a Python file")
    return ServiceTarget(file=file, class_name=class_name or None, name=name)


def _import_file(file: Path) -> object:
    module_name = f"steady_user_{file.parent.name}_{file.stem}".replace("-", "_")
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise ServiceLoadError(f"{file}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(file.parent))  # let the service import its siblings
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise ServiceLoadError(f"{exc.filename}:{exc.lineno}: SyntaxError: {exc.msg}") from exc
    except (Exception, SystemExit) as exc:  # sys.exit() at import is a load error too, with its line
        frame = _deepest_frame_in(file, exc)
        raise ServiceLoadError(f"{frame}: {type(exc).__name__}: {exc}") from exc
    return module


def _deepest_frame_in(file: Path, exc: BaseException) -> str:
    """``file:line`` of the last traceback frame inside the user's file."""
    where = str(file)
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == file:
            where = f"{file}:{frame.lineno}"
    return where


def load_service_class(target: ServiceTarget) -> type[Service]:
    module = _import_file(target.file)
    candidates = {
        name: obj
        for name, obj in vars(module).items()
        if inspect.isclass(obj) and issubclass(obj, Service) and obj is not Service
        and obj.__module__ == getattr(module, "__name__", None)
    }
    if target.class_name is not None:
        cls = getattr(module, target.class_name, None)
        if not (inspect.isclass(cls) and issubclass(cls, Service)):
            raise ServiceLoadError(
                f"{target.file}: no Service subclass named {target.class_name!r}"
                f" (found: {', '.join(sorted(candidates)) or 'none'})"
            )
        return cls
    if len(candidates) != 1:
        found = ", ".join(sorted(candidates)) or "none"
        raise ServiceLoadError(
            f"{target.file}: expected exactly one Service subclass, found {found};"
            " name one with PATH:Class"
        )
    return next(iter(candidates.values()))
