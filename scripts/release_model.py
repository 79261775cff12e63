"""Release a trained model into cathnet/models/ (or $CATHNET_MODELS): copy the best checkpoint and add the evaluation.

    python scripts/release_model.py MODEL EVAL.json --name cath-arch --command "cathnet train ..." --eval-command "..."
    python scripts/release_model.py RUN/best EVAL.json --name aa-propensity --baseline CNN_EVAL.json ...

MODEL is a model stem (``STEM.json`` + ``STEM.safetensors``, e.g. ``RUN_DIR/best`` from
``cathnet train``); EVAL.json is the output of ``cathnet evaluate MODEL --data ... -o
EVAL.json`` on the test splits. Writes
``NAME.safetensors`` and ``NAME.json`` there (the training metadata plus
``metrics.test``, ``training.command`` and the evaluation command), then checks that the
result loads. ``--baseline`` adds another model's evaluation on the same data (e.g. the
plain CNN of the amino-acid task) to ``metrics.baseline`` for comparison. ``--previous vN``
keeps the release history: the model being replaced is summarised under ``metrics.vN``
(network, parameters, input, its test metrics, validation and training command), and the
summaries it kept of its own predecessors are carried over.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
from pathlib import Path

from cathnet.checkpoint import read_json
from cathnet.fileio import write_json
from cathnet.models import models_dir
from cathnet.predict import load_model

#: metrics keys that hold an earlier release's summary (v1, v2.1, ...)
VERSION_KEY = re.compile(r"v\d+(\.\d+)*")


def summary(meta: dict) -> dict:
    """What the release history keeps of a released model: its network, input, test
    metrics (with per-class recall), validation and training command."""
    test = meta["metrics"]["test"]
    codes = meta["classes"]["codes"]
    return {
        "network": meta["network"]["name"],
        "n_parameters": meta["network"]["n_parameters"],
        "config": meta["network"].get("config"),
        "input": meta["input"],
        **{k: test[k] for k in ("accuracy", "top3_accuracy", "macro_f1", "log_loss", "rotation") if k in test},
        "validation": meta["metrics"].get("validation"),
        "per_class_recall": ({code: test["per_class"][code]["recall"] for code in codes}
                             if "per_class" in test else None),
        "training_command": meta["training"].get("command"),
    }


def history(name: str, key: str) -> dict:
    """The released ``name``'s summary under ``key`` and the summaries it already kept."""
    if not VERSION_KEY.fullmatch(key):
        raise SystemExit(f"--previous {key!r}: expected a version such as v2 or v2.1")
    path = models_dir() / f"{name}.json"
    if not path.exists():
        raise SystemExit(f"--previous {key}: no released {name} in {models_dir()} to summarise")
    old = read_json(path)
    kept = {k: v for k, v in old.get("metrics", {}).items() if VERSION_KEY.fullmatch(k)}
    if key in kept:
        raise SystemExit(f"--previous {key}: the released {name} already keeps a summary of {key}")
    return {**kept, key: summary(old)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="model stem, e.g. runs/x/best")
    parser.add_argument("evaluation", type=Path)
    parser.add_argument("--name", default="cath-arch")
    parser.add_argument("--command", required=True, help="the training command, recorded in the metadata")
    parser.add_argument("--eval-command", required=True, help="the evaluation command, recorded in the metadata")
    parser.add_argument("--baseline", type=Path, action="append", default=[],
                        help="evaluation JSON of a baseline model (repeatable)")
    parser.add_argument("--canonical", choices=["principal"],
                        help="release with this canonical input frame (cathnet.canonical); EVAL.json must use it")
    parser.add_argument("--oriented", action="store_true",
                        help="release an amino-acid model in backbone frames; EVAL.json must use them")
    parser.add_argument("--metrics", action="append", default=[], metavar="KEY=FILE.json",
                        help="more measured metrics for metrics.KEY, e.g. cross_validation=cv.json (repeatable)")
    parser.add_argument("--previous", metavar="vN",
                        help="summarise the model being replaced under metrics.vN and keep its own history")
    args = parser.parse_args()

    stem = args.model.with_suffix("") if args.model.suffix in (".json", ".safetensors") else args.model
    meta = read_json(stem.with_name(stem.name + ".json"))
    evaluation = read_json(args.evaluation)
    if args.canonical:
        meta["input"]["canonical"] = args.canonical
    if args.oriented:
        if meta["task"] != "aa":
            raise SystemExit("--oriented applies to amino-acid models")
        meta["input"]["oriented"] = True
    if evaluation["input"] != meta["input"]:
        raise SystemExit(f"{args.evaluation}: evaluated with input {evaluation['input']}, "
                         f"not the model's {meta['input']}")
    if evaluation["data_sha256"] != meta["data"]["sha256"]:
        raise SystemExit(f"{args.evaluation}: evaluated on other data than the model was trained on")
    baselines = [read_json(p) for p in args.baseline]
    for b in baselines:
        same = [b["data_sha256"], b["splits"], b["n"], b.get("max_items_seed")] == [
            evaluation["data_sha256"], evaluation["splits"], evaluation["n"], evaluation.get("max_items_seed")]
        if not same:
            raise SystemExit(f"baseline {b['checkpoint']}: evaluated on other data, splits or items")
    extra = {}  # read before anything is written
    for item in args.metrics:
        key, _, path = item.partition("=")
        if not key or not path:
            parser.error(f"--metrics {item!r}: expected KEY=FILE.json")
        extra[key] = json.loads(Path(path).read_text())  # any JSON value (e.g. a list of baselines)
    if args.previous:
        extra = {**history(args.name, args.previous), **extra}
    weights = models_dir() / f"{args.name}.safetensors"
    shutil.copyfile(stem.with_name(meta["weights"]["file"]), weights)
    if hashlib.sha256(weights.read_bytes()).hexdigest() != meta["weights"]["sha256"]:
        raise SystemExit(f"{weights}: checksum differs from {stem}.json")
    codes = meta["classes"]["codes"]
    meta["name"] = args.name
    meta["weights"]["file"] = weights.name
    meta["training"]["command"] = args.command
    meta["metrics"] = {
        # an ensemble's validation metrics are its members' (each on its own validation split)
        "validation": meta.get("metrics") or [m["validation"] for m in meta.get("members", [])],
        "test": {
            "splits": evaluation["splits"],
            "n": evaluation["n"],
            "accuracy": evaluation["accuracy"],
            "macro_f1": evaluation["macro_f1"],
            **{k: evaluation[k] for k in ("top3_accuracy", "log_loss", "n_items_in_splits") if k in evaluation},
            "per_class": {
                code: {k: evaluation[k][i] for k in ("precision", "recall", "f1", "support")}
                for i, code in enumerate(codes)
            },
            "confusion": evaluation["confusion"],
            "rotation": evaluation["rotation"],
            "command": args.eval_command,
        },
    }
    if baselines:
        meta["metrics"]["baseline"] = [
            {k: b.get(k) for k in ("network", "n_parameters", "input", "accuracy", "top3_accuracy", "macro_f1",
                                   "log_loss", "rotation")}
            for b in baselines
        ]
    meta["metrics"].update(extra)
    write_json(models_dir() / f"{args.name}.json", meta)
    model = load_model(args.name)
    print(f"released {args.name}: {model.meta['network']['name']}, test accuracy {evaluation['accuracy']:.3f}")


if __name__ == "__main__":
    main()
