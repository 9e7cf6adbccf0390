"""The package's layering (.importlinter) holds, and every module is placed in it: a new
module that no contract mentions could otherwise import anything."""

from __future__ import annotations

import configparser
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import etcdward

REPO = Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    p = subprocess.run([lint, "--config", str(REPO / ".importlinter")], capture_output=True, text=True, cwd=REPO,
                       timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "0 broken" in p.stdout


def test_every_module_is_in_a_layer() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / ".importlinter")
    layers = cfg["importlinter:contract:layers"]["layers"]
    placed = {name.strip() for line in layers.splitlines() for name in line.split("|") if name.strip()}
    top = {f"etcdward.{m.name}" for m in pkgutil.iter_modules(etcdward.__path__) if m.name != "__main__"}
    assert top - placed == set(), f"modules not placed in .importlinter's layers: {sorted(top - placed)}"
    sources = set(cfg["importlinter:contract:etcd-client"]["source_modules"].split())
    assert top - sources == {"etcdward.store"}, sorted(top - sources)
