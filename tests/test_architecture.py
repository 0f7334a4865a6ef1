"""docs/ARCHITECTURE.md names every module of the package, and only modules that exist."""

import re
from pathlib import Path

import pytest

from hvqcodec.family import FamilyModel
from hvqcodec.models import FAMILIES

ROOT = Path(__file__).resolve().parent.parent


def test_architecture_names_every_module_and_no_other():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    named = set(re.findall(r"`(hvqcodec/[\w/]+\.py)`", text))
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "hvqcodec").rglob("*.py")}
    assert named - modules == set(), "named but missing"
    assert modules - named == set(), "modules the page does not name"


def test_no_family_imports_another_and_shared_modules_import_none():
    """Families stand apart: a family imports shared modules only, and a shared module (outside
    the registry) imports no family."""
    families = ROOT / "hvqcodec" / "families"
    names = [p.name for p in families.iterdir() if p.is_dir() and not p.name.startswith("_")]
    registry = {"models.py", "__init__.py", "training"}  # they choose among the families
    for path in (ROOT / "hvqcodec").rglob("*.py"):
        text = path.read_text()
        rel = path.relative_to(ROOT / "hvqcodec")
        imported = set(re.findall(r"^\s*(?:from|import) hvqcodec\.families\.(\w+)", text, re.M))
        if rel.parts[0] == "families" and len(rel.parts) > 2:
            assert imported <= {rel.parts[1]}, (rel, imported)
        elif rel.parts[0] != "families" and rel.parts[0] not in registry:
            assert not imported & set(names), (rel, imported)


def test_every_registered_family_supplies_the_contract(tiny_codec, tiny_hyper_codec):
    models = [tiny_codec.model, tiny_hyper_codec.model]
    assert {type(m).__module__.split(".")[2] for m in models} == {"vqvae", "hyper"}
    assert len(FAMILIES) == 2
    for model in models:
        assert isinstance(model, FamilyModel)
        assert model.max_streams >= 2 and model.qualities[0] == 0 and model.qualities[-1] == 100


@pytest.mark.slow
def test_hvqcodec_train_trains_the_default_models_family():
    from hvqcodec.codec import shipped_codec
    from hvqcodec.training import DEFAULT_FAMILY

    assert type(shipped_codec().model).__module__ == f"hvqcodec.families.{DEFAULT_FAMILY}.pipeline"
