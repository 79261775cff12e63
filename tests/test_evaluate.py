import fcntl
import json
import os
import re
import runpy
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cathnet.cli import app
from cathnet.evaluate import classification_metrics, evaluate, load_logits
from cathnet.train import TrainError, train

from cath_helpers import tiny_config

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def model(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train(tiny_config(dataset, out, epochs=1))
    return dataset, out


def test_classification_metrics_by_hand():
    m = classification_metrics(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0]), 3)
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert m["precision"] == pytest.approx([0.5, 2 / 3, 0.0])
    assert m["recall"] == pytest.approx([0.5, 1.0, 0.0])
    assert m["f1"] == pytest.approx([0.5, 0.8, 0.0])
    assert m["macro_f1"] == pytest.approx(1.3 / 3) and m["support"] == [2, 2, 1]


def test_evaluate_reports_every_metric(model):
    data, out = model
    r = evaluate(out / "best.json", data, rotations=2, device="cpu", batch_size=4)
    assert r["splits"] == [3] and r["n"] == 10 and r["data_matches_training"]
    assert np.array(r["confusion"]).sum() == r["n"] and len(r["f1"]) == len(r["precision"]) == 10
    assert r["numeric_precision"] in ("fp32", "bf16")  # not overwritten by the per-class precision
    assert r["accuracy"] == pytest.approx(np.trace(np.array(r["confusion"])) / r["n"])
    rot = r["rotation"]
    assert rot["n_rotations"] == 2 and len(rot["passes"]) == 2
    assert all(0 <= p["accuracy"] <= 1 and 0 <= p["agreement"] <= 1 for p in rot["passes"])
    assert rot["accuracy_mean"] == pytest.approx(np.mean([p["accuracy"] for p in rot["passes"]]))
    assert 0 <= rot["averaged_accuracy"] <= 1 and 0 <= rot["all_agree"] <= 1
    one = evaluate(out, data, rotations=1, device="cpu")["rotation"]  # one rotation: its own average, all agree
    assert one["all_agree"] == 1.0 and one["averaged_accuracy"] == one["passes"][0]["accuracy"] == rot["passes"][0]["accuracy"]
    again = evaluate(out, data, splits=[3], rotations=2, device="cpu")  # training folder = its best model
    assert again["rotation"] == rot and again["confusion"] == r["confusion"]  # seeded, batch-size independent
    with pytest.raises(TrainError, match="no item in split"):
        evaluate(out, data, splits=[], rotations=0)


def test_cli_evaluate_writes_json_and_png(model, tmp_path):
    data, out = model
    result = tmp_path / "metrics.json"
    r = CliRunner().invoke(app, ["evaluate", str(out / "best.safetensors"), "--data", str(data), "--rotations", "1",
                                 "--device", "cpu", "-o", str(result)])
    assert r.exit_code == 0, r.output
    assert "confusion matrix" in r.output and "per class" in r.output and "rotation robustness" in r.output
    saved = json.loads(result.read_text())
    assert {"accuracy", "precision", "recall", "f1", "confusion", "rotation", "classes"} <= set(saved)
    assert result.with_suffix(".png").read_bytes().startswith(PNG)
    logits = tmp_path / "logits.npz"
    r = CliRunner().invoke(app, ["evaluate", str(out), "--data", str(data), "--rotations", "0", "--device", "cpu",
                                 "--logits", str(logits)])
    assert r.exit_code == 0, r.output
    logp, labels, items = load_logits(logits)  # the metrics follow from the saved logits
    assert logp.shape == (saved["n"], 10) and len(items) == len(set(items.tolist())) == saved["n"]
    assert np.allclose(np.exp(logp).sum(1), 1) and np.isfinite(logp).all()
    predicted = logp.argmax(1)
    assert np.mean(predicted == labels) == pytest.approx(saved["accuracy"])
    assert classification_metrics(labels, predicted, 10)["confusion"] == saved["confusion"]
    assert -logp[np.arange(len(labels)), labels].mean() == pytest.approx(saved["log_loss"], rel=1e-4)
    before = Path(data).read_bytes()
    r = CliRunner().invoke(app, ["evaluate", str(out), "--data", str(data), "--logits", str(data)])
    assert r.exit_code == 2 and "refusing to overwrite" in re.sub(r"[\s│]+", " ", r.output)  # never the input
    assert Path(data).read_bytes() == before
    r = CliRunner().invoke(app, ["evaluate", str(tmp_path / "missing.json"), "--data", str(data)])
    assert r.exit_code == 1 and "missing.json: no such file" in r.output and "Traceback" not in r.output


@pytest.mark.slow
def test_data_efficiency_experiment_resumes_piece_by_piece(model, tmp_path, monkeypatch, capsys):
    data, _ = model
    script = Path(__file__).parents[1] / "experiments" / "data_efficiency.py"
    out = tmp_path / "de.json"

    def piece(max_runs: int, *more: str) -> list[dict]:
        monkeypatch.setattr(sys, "argv", [
            str(script), "--data", str(data), "--json", str(out), "--png", str(tmp_path / "de.png"),
            "--runs", str(tmp_path / "runs"), "--fractions", "1,0.5", "--seeds", "0", "--epochs", "1", "--epoch-size", "16",
            "--val-splits", "2", "--test-splits", "3", "--device", "cpu", "--no-progress", "--max-runs", str(max_runs), *more,
        ])
        with pytest.raises(SystemExit) as exit_:
            runpy.run_path(str(script), run_name="__main__")
        assert exit_.value.code == 0
        return json.loads(out.read_text())["runs"]

    first = piece(2)
    assert [(r["model"], r["fraction"]) for r in first] == [("se3-compact", 1.0), ("cnn-compact", 1.0)]
    fd = os.open(tmp_path / "runs" / "se3-compact-f0.5-s0.lock", os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another worker is training this run: skip it
    runs = piece(1)  # resumes: the finished runs are kept, the next free one is added
    os.close(fd)
    assert runs[:2] == first and (runs[2]["model"], runs[2]["fraction"], runs[2]["n_train"]) == ("cnn-compact", 0.5, 10)
    runs = piece(1)
    assert (runs[3]["model"], runs[3]["fraction"]) == ("se3-compact", 0.5)
    trained = json.loads((tmp_path / "runs" / "se3-compact-f0.5-s0" / "best.json").read_text())
    assert trained["training"]["epoch_size"] == 16  # the same steps per epoch at every fraction
    config = json.loads(out.read_text())["config"]
    assert (config["grid_size"], config["voxel_size"], config["sigma"], config["atoms"]) == (50, 2.0, 1.0, "ca")
    assert all(0 <= r["test_accuracy"] <= 1 and r["best_epoch"] >= 1 for r in runs)
    assert (tmp_path / "de.png").read_bytes().startswith(PNG)
    (tmp_path / "de.png").unlink()
    capsys.readouterr()
    assert piece(1, "--report", "--seeds", "0,1") == runs  # trains nothing (seed 1 undone): plot and tables
    printed = capsys.readouterr().out
    assert (tmp_path / "de.png").read_bytes().startswith(PNG)
    assert "| 0.5 (10 domains) |" in printed and "paired by seed" in printed
    assert printed.count("| `se3-compact` |") == 2 and printed.count("| `cnn-compact` |") == 2


@pytest.mark.slow
def test_data_efficiency_experiment_under_torchrun(dataset, tmp_path):
    """Two ranks train several runs in one process group and rank 0 tests each (re-initialising the
    group per run, the third run used to hang)."""
    script = Path(__file__).parents[1] / "experiments" / "data_efficiency.py"
    out = tmp_path / "de.json"
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script),
            "--data", str(dataset), "--json", str(out), "--png", str(tmp_path / "de.png"), "--runs", str(tmp_path / "runs"),
            "--fractions", "1,0.5", "--seeds", "0", "--epochs", "1", "--epoch-size", "16", "--val-splits", "2",
            "--test-splits", "3", "--device", "cpu", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-3000:]
    runs = json.loads(out.read_text())["runs"]
    assert [(r["model"], r["fraction"]) for r in runs] == [
        ("se3-compact", 1.0), ("cnn-compact", 1.0), ("se3-compact", 0.5), ("cnn-compact", 0.5)]
    assert all(r["best_epoch"] == 1 and 0 <= r["test_accuracy"] <= 1 for r in runs)
    assert "4 of 4 runs done" in stderr and "processes=2" in stderr
