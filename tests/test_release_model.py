"""scripts/release_model.py: a release carries its evaluation and, with ``--previous``, the
summaries of the models it replaces."""
import json
import runpy
import sys
from pathlib import Path

import pytest

from cathnet.evaluate import evaluate
from cathnet.train import train

from cath_helpers import tiny_config

SCRIPT = Path(__file__).parent.parent / "scripts" / "release_model.py"


@pytest.fixture(scope="module")
def runs(dataset, tmp_path_factory):
    """Two tiny trained runs on the fixture dataset and their test-split evaluations."""
    out = []
    for seed in (0, 1):
        run = tmp_path_factory.mktemp(f"run{seed}")
        train(tiny_config(dataset, run, epochs=1, seed=seed))
        result = evaluate(run / "best.json", dataset, rotations=1, device="cpu")
        (run / "eval.json").write_text(json.dumps(result))
        out.append((run, result))
    return out


def release(monkeypatch, models: Path, run: Path, *extra: str) -> None:
    monkeypatch.setenv("CATHNET_MODELS", str(models))
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), str(run / "best"), str(run / "eval.json"), "--name", "tiny",
                                      "--command", f"train {run.name}", "--eval-command", "evaluate", *extra])
    runpy.run_path(str(SCRIPT), run_name="__main__")


def test_release_keeps_the_history(runs, tmp_path, monkeypatch):
    (first, first_eval), (second, second_eval) = runs
    with pytest.raises(SystemExit, match="no released tiny"):
        release(monkeypatch, tmp_path, first, "--previous", "v0")
    release(monkeypatch, tmp_path, first)
    meta = json.loads((tmp_path / "tiny.json").read_text())
    assert meta["metrics"]["test"]["accuracy"] == first_eval["accuracy"] and "v1" not in meta["metrics"]
    assert (tmp_path / "tiny.safetensors").exists()

    release(monkeypatch, tmp_path, second, "--previous", "v1")
    meta = json.loads((tmp_path / "tiny.json").read_text())
    v1 = meta["metrics"]["v1"]
    assert meta["metrics"]["test"]["accuracy"] == second_eval["accuracy"]
    assert v1["accuracy"] == first_eval["accuracy"] and v1["macro_f1"] == first_eval["macro_f1"]
    assert v1["training_command"] == f"train {first.name}" and v1["network"] == "cnn-compact"
    assert v1["rotation"] == first_eval["rotation"] and v1["input"] == meta["input"]
    codes = meta["classes"]["codes"]
    assert list(v1["per_class_recall"]) == codes
    assert [v1["per_class_recall"][c] for c in codes] == first_eval["recall"]

    release(monkeypatch, tmp_path, first, "--previous", "v2")  # the history travels on
    meta = json.loads((tmp_path / "tiny.json").read_text())
    assert meta["metrics"]["v1"] == v1 and meta["metrics"]["v2"]["accuracy"] == second_eval["accuracy"]
    assert meta["metrics"]["v2"]["training_command"] == f"train {second.name}"
    for bad, message in (("v2", "already keeps a summary of v2"), ("latest", "expected a version")):
        with pytest.raises(SystemExit, match=message):
            release(monkeypatch, tmp_path, second, "--previous", bad)
    assert json.loads((tmp_path / "tiny.json").read_text()) == meta  # a refused release writes nothing
