import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file
from typer.testing import CliRunner

from cathnet import networks
from cathnet.checkpoint import load_model
from cathnet.cli import app
from cathnet.data import stratified_subset
from cathnet.train import TrainError, train

from cath_helpers import run_ddp, tiny_config


@pytest.fixture(scope="module")
def run(dataset, tmp_path_factory):
    """An uninterrupted 2-epoch run (dropout, batch norm and rotation augmentation on)."""
    out = tmp_path_factory.mktemp("run")
    return out, train(tiny_config(dataset, out))


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_training_writes_checkpoints_metrics_and_model(run, dataset):
    out, result = run
    assert result["augment"] is True and result["best"]["epoch"] in (1, 2)
    metrics = _metrics(out)
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert set(metrics[0]) == {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "time"}
    assert [m["lr"] for m in metrics] == pytest.approx([1e-3, 5e-4])  # burn-in 1 epoch, then × 0.5
    assert sorted(p.name for p in out.glob("epoch-*")) == ["epoch-0002.optim.safetensors", "epoch-0002.safetensors"]
    model, meta = load_model(out / "best.json")
    assert meta["format"] == "cathnet-model/1" and meta["task"] == "cath"
    assert meta["network"]["config"] == {"name": "cnn-compact", "in_channels": 1, "n_classes": 10, "widths": [8, 16, 16, 16]}
    assert meta["network"]["n_parameters"] == networks.n_parameters(model)
    assert meta["input"] == {"atoms": "ca", "n_channels": 1, "grid_size": 24, "voxel_size": 4.0, "sigma": 2.0, "centre": "mean atom position"}  # σ: half a voxel
    assert meta["classes"]["codes"][0] == "1.10" and meta["classes"]["names"][0] == "Orthogonal Bundle"
    assert meta["data"]["sha256"] == json.loads(dataset.with_suffix(".json").read_text())["sha256"]
    assert meta["data"]["test_splits"] == [3] and meta["metrics"]["epoch"] == result["best"]["epoch"]
    assert not model.training and model(torch.zeros(2, 1, 24, 24, 24)).shape == (2, 10)


def test_resume_continues_exactly(run, dataset, tmp_path):
    out, _ = run
    config = tiny_config(dataset, tmp_path, epochs=1)
    train(config)
    with open(tmp_path / "metrics.jsonl", "a") as f:  # a line written after the checkpoint, then a crash
        f.write(json.dumps({"epoch": 2, "train_loss": 0.0}) + "\n")
    with pytest.raises(TrainError, match="already holds a training run"):
        train(replace(config, epochs=2))
    with pytest.raises(TrainError, match=r"options differ .* lr \(0.001 -> 0.01\)"):
        train(replace(config, epochs=2, lr=1e-2, resume=True))
    train(replace(config, epochs=2, resume=True))
    for name in ("epoch-0002.safetensors", "epoch-0002.optim.safetensors", "best.safetensors"):
        a, b = load_file(out / name), load_file(tmp_path / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    drop_time = lambda ms: [{k: v for k, v in m.items() if k != "time"} for m in ms]  # noqa: E731
    assert drop_time(_metrics(tmp_path)) == drop_time(_metrics(out))


@pytest.mark.slow
def test_ddp_two_gloo_processes_match_one_process(dataset, tmp_path):
    # batch statistics and dropout differ per process by design: use group norm, no dropout
    config = tiny_config(dataset, tmp_path / "one", model_kwargs={"widths": [8, 16, 16, 16], "norm": "group", "dropout": 0.0})
    train(config)
    run_ddp(replace(config, out=str(tmp_path / "two")))
    a, b = load_file(tmp_path / "one" / "epoch-0002.safetensors"), load_file(tmp_path / "two" / "epoch-0002.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
    for m1, m2 in zip(_metrics(tmp_path / "one"), _metrics(tmp_path / "two")):
        assert m1["train_loss"] == pytest.approx(m2["train_loss"], rel=1e-5)
        assert m1["val_loss"] == pytest.approx(m2["val_loss"], rel=1e-5)
        assert m1["train_acc"] == m2["train_acc"] and m1["val_acc"] == m2["val_acc"]


def test_stratified_subset_is_nested_and_per_class():
    labels = np.repeat(np.arange(4), [40, 20, 8, 1])
    items = np.arange(len(labels))
    half, eighth = (stratified_subset(items, labels, f, seed=1) for f in (0.5, 0.125))
    assert np.bincount(labels[half]).tolist() == [20, 10, 4, 1]
    assert np.bincount(labels[eighth]).tolist() == [5, 2, 1, 1]
    assert set(eighth) <= set(half)
    assert (stratified_subset(items, labels, 1.0, seed=1) == items).all()
    with pytest.raises(TrainError, match="train-fraction"):
        stratified_subset(items, labels, 0.0, seed=1)


def test_networks_registry_shapes_and_configs():
    assert {"cnn-resnet34", "cnn-compact", "se3resnet34", "se3-compact"} <= set(networks.available())
    model = networks.build("cnn-compact", in_channels=2, n_classes=5, widths=(4, 8, 8, 8))
    assert model(torch.zeros(1, 2, 20, 20, 20)).shape == (1, 5)
    rebuilt = networks.from_config(json.loads(json.dumps(model.config)))
    assert rebuilt.config["widths"] == (4, 8, 8, 8) and networks.n_parameters(rebuilt) == networks.n_parameters(model)
    assert 100_000 <= networks.n_parameters(networks.build("cnn-compact", in_channels=1, n_classes=10)) <= 200_000
    with pytest.raises(KeyError, match="available"):
        networks.build("nope", in_channels=1, n_classes=2)


def test_cli_train_usage_and_errors(dataset, tmp_path):
    runner = CliRunner()
    base = ["train", "--data", str(dataset), "--out", str(tmp_path / "r"), "--no-progress", "--device", "cpu",
            "--val-splits", "2", "--test-splits", "3"]
    r = runner.invoke(app, [*base, "--model", "nope"])
    assert r.exit_code == 2 and "unknown network" in r.output
    r = runner.invoke(app, [*base, "--model", "cnn-compact", "--val-splits", "x"])
    assert r.exit_code == 2
    r = runner.invoke(app, [*base, "--model", "cnn-compact", "--val-splits", "3"])
    assert r.exit_code == 1 and "overlap" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, [*base, "--model", "cnn-compact", "--model-arg", "colour=3"])
    assert r.exit_code == 1 and "colour" in r.output
    r = runner.invoke(app, [*base, "--model", "cnn-compact", "--model-arg", "widths=[4,8,8,8]", "--epochs", "1",
                            "--grid-size", "16", "--voxel-size", "6", "--train-fraction", "0.5"])
    assert r.exit_code == 0, r.output
    assert "best epoch 1" in r.output and (tmp_path / "r" / "best.safetensors").exists()
    assert "epoch 1/1  train loss" in r.output  # --no-progress still logs each epoch
    assert json.loads((tmp_path / "r" / "best.json").read_text())["data"]["n_train"] == 10


def test_init_starts_from_a_trained_model_with_a_fresh_schedule(run, dataset, tmp_path):
    out, _ = run
    best = load_file(out / "best.safetensors")
    config = tiny_config(dataset, tmp_path / "warm", epochs=1, lr=1e-12, seed=1, init=str(out / "best.json"))
    train(config)
    warm = load_file(tmp_path / "warm" / "epoch-0001.safetensors")
    weights = [k for k in best if k.endswith("weight") and best[k].dim() > 1]
    assert weights and all(torch.allclose(warm[k], best[k], atol=1e-9) for k in weights)  # lr 1e-12: no step
    assert [m["lr"] for m in _metrics(tmp_path / "warm")] == [1e-12]  # the schedule starts again
    assert load_model(tmp_path / "warm" / "best.json")[1]["training"]["init"] == str(out / "best.json")
    train(replace(config, init=None, out=str(tmp_path / "cold")))
    scratch = load_file(tmp_path / "cold" / "epoch-0001.safetensors")
    assert not all(torch.allclose(scratch[k], best[k], atol=1e-3) for k in weights)  # without --init: from scratch
    with pytest.raises(TrainError, match="network differs"):
        train(replace(config, out=str(tmp_path / "wide"), model_kwargs={"widths": [8, 16, 16, 24]}))
    # dropout changes no weight: fine-tuning may switch it off
    train(replace(config, out=str(tmp_path / "no-dropout"), model_kwargs={"widths": [8, 16, 16, 16], "dropout": 0.0}))
    tuned, meta = load_model(tmp_path / "no-dropout" / "best.json")
    assert meta["network"]["config"]["dropout"] == 0.0
    assert all(torch.allclose(tuned.state_dict()[k], best[k], atol=1e-9) for k in weights)
    with pytest.raises(TrainError, match="input differs"):
        train(replace(config, out=str(tmp_path / "fine"), voxel_size=3.0))
    result = CliRunner().invoke(app, ["train", "--data", str(dataset), "--model", "cnn-compact", "--out",
                                      str(tmp_path / "cli"), "--init", str(tmp_path / "missing.json")])
    assert result.exit_code != 0 and "missing.json" in result.output


def test_patience_stops_early_and_resume_keeps_the_stop(dataset, tmp_path):
    config = tiny_config(dataset, tmp_path, epochs=20, patience=1, lr=3e-3)
    result = train(config)
    lines = _metrics(tmp_path)
    best = max(lines, key=lambda m: (m["val_acc"], -m["val_loss"]))["epoch"]
    assert result["best"]["epoch"] == best
    assert len(lines) == best + 1 < 20  # stopped one epoch after the last improvement
    train(replace(config, epochs=25, resume=True))
    assert len(_metrics(tmp_path)) == len(lines)  # resuming a stopped run trains no further


def test_time_limit_stops_between_epochs_and_resume_continues(dataset, tmp_path):
    config = tiny_config(dataset, tmp_path, epochs=3, time_limit=1e-6)  # any finished epoch exhausts it
    console = Console(record=True, width=200)
    train(config, console)
    assert [m["epoch"] for m in _metrics(tmp_path)] == [1]  # the first epoch always runs
    assert "another epoch would pass --time-limit" in console.export_text()
    train(replace(config, time_limit=None, resume=True))
    assert [m["epoch"] for m in _metrics(tmp_path)] == [1, 2, 3]
    train(replace(config, epochs=5, time_limit=10.0, resume=True))  # a generous limit changes nothing
    assert [m["epoch"] for m in _metrics(tmp_path)] == [1, 2, 3, 4, 5]
