"""Every adapt conf and sweep space speechtl ships (the recipes' conf/ and new-recipe's templates)
names only known methods, options and training fields, with values of the right types: a typo
in a rarely run method's entry would otherwise surface hours into a run."""

from pathlib import Path

import pytest
import yaml
from conftest import REPO

from speechtl.adapt import METHODS, get_method
from speechtl.cli import BUDGET_KEYS
from speechtl.config import from_dict
from speechtl.train import TrainConfig

TEMPLATES = REPO / "speechtl" / "recipe" / "templates"
ADAPT = sorted(REPO.glob("egs/*/ASR/conf/adapt*.yaml")) + sorted(TEMPLATES.glob("adapt*.yaml"))
SWEEP = sorted(REPO.glob("egs/*/ASR/conf/*sweep*.yaml")) + sorted(TEMPLATES.glob("sweep*.yaml"))


def test_there_are_confs_to_check():
    assert len(ADAPT) >= 6 and len(SWEEP) >= 5
    assert {p.name for p in ADAPT if p.parent == TEMPLATES} == {"adapt.yaml", "adapt_pretrained.yaml"}


@pytest.mark.parametrize("path", ADAPT, ids=lambda p: str(p.relative_to(REPO)))
def test_adapt_conf_methods_build(path: Path):
    conf = yaml.safe_load(path.read_text())
    assert conf.get("methods"), path
    for name, entry in conf["methods"].items():
        entry = entry or {}
        assert set(entry) <= {"options", "train"}, (path, name)
        options = dict(entry.get("options") or {})
        if "teacher" in {f for f in getattr(METHODS[name].Options, "__dataclass_fields__", {})}:
            options.setdefault("teacher", "exp/teacher/final.pt")  # a recipe fills it in
        get_method(name, options)
        from_dict(TrainConfig, {**(conf.get("train") or {}), **(entry.get("train") or {})}, f"{path} {name}")
        # every method at the conf's budget: rows compare at equal compute
        assert not set(entry.get("train") or {}) & set(BUDGET_KEYS), (path, name)


@pytest.mark.parametrize("path", SWEEP, ids=lambda p: str(p.relative_to(REPO)))
def test_sweep_spaces_name_real_fields(path: Path):
    space = yaml.safe_load(path.read_text())
    train_fields = set(TrainConfig.__dataclass_fields__)
    for name, grid in space.items():
        assert name in METHODS, (path, name)
        option_fields = set(getattr(METHODS[name].Options, "__dataclass_fields__", {}))
        for key, values in grid.items():
            kind, _, field = key.partition(".")
            assert kind in ("train", "option"), (path, name, key)
            assert field in (train_fields if kind == "train" else option_fields), (path, name, key)
            assert isinstance(values, list) and values, (path, name, key)  # one value: held fixed
        assert any(len(v) >= 2 for v in grid.values()), (path, name)  # something to choose
