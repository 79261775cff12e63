"""Markdown tables of the CATH v2 evaluation (issue #14) from the JSON files of ``cathnet evaluate``.

    python experiments/cath_v2/report.py [EVAL_DIR]     (default: experiments/cath_v2/eval)

Reads ``foldK-val.json`` (member K on its own validation split K: cross-validation),
``foldK-test9.json`` (member K on test split 9), ``ens-test9.json`` (the ensemble) and
``v1-test9.json`` (the released v1), and prints the cross-validation, test and per-class
tables of ``experiments/cath_v2/README.md`` and ``cathnet/models/README.md``; then the
ablation (input × network × ensemble, every run trained on splits 0–7 with the same
schedule) from the files named in ``ABLATION``; then the canonical principal-axes frame
against none (``foldK-val-canonical.json``, ``ens-test9-canonical.json``; the five-member
``ens5-test9-canonical.json``).

    python experiments/cath_v2/report.py --cv OUT.json [EVAL_DIR]

writes the cross-validation of every ``foldK-val-canonical.json`` (what a release records as
``metrics.cross_validation``; v2.1's is ``cross_validation_canonical.json``, folds 6–8).
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from cathnet.fileio import write_json

#: (network, input, σ in Å, validation-split-8 evaluation, test-split-9 evaluation), files relative to EVAL_DIR
ABLATION = [
    ("`se3-compact` (v1)", "Cα typed helix/strand/coil: 3 scalars", 1.0, "../v1-cath-arch-val8", "v1-test9"),
    ("`se3-compact`", "Cα typed helix/strand/coil: 3 scalars", 1.5, "se3-ca-ss-s1.5-val8", "se3-ca-ss-s1.5-test9"),
    ("`se3-compact`", "+ ss-orientation fields (l = 1, 2)", 1.0, "../v2-fields-s1.0/val8", "fields-s1.0-test9"),
    ("`se3-compact`", "+ ss-orientation fields (l = 1, 2)", 1.5, "fold8-val", "fold8-test9"),
    ("`cnn-compact`", "Cα typed helix/strand/coil: 3 scalars", 1.5, "cnn-ca-ss-val8", "cnn-ca-ss-test9"),
    ("`cnn-compact` (twin)", "+ the same fields as 16 scalar channels", 1.5, "cnn-twin-val8", "cnn-twin-test9"),
    ("ensemble of 3 `se3-compact` (v2)", "+ ss-orientation fields (l = 1, 2)", 1.5, None, "ens-test9"),
    ("the same ensemble (v2.1, released)", "+ principal-axes frame", 1.5, None, "ens-test9-canonical"),
]


def _load(folder: Path, name: str) -> dict:
    return json.loads((folder / f"{name}.json").read_text())


def _folds(folder: Path, suffix: str = "") -> list[int]:
    """The folds K with an evaluation ``foldK-val{suffix}.json``, in order."""
    return sorted(int(p.name[4:-len(f"-val{suffix}.json")]) for p in folder.glob(f"fold*-val{suffix}.json"))


def _rotations(ev: dict) -> str:
    rot = ev["rotation"]
    averaged = f"{rot['averaged_accuracy']:.3f}" if rot.get("averaged_accuracy") is not None else "–"
    all_agree = f"{rot['all_agree']:.3f}" if rot.get("all_agree") is not None else "–"
    return f"{rot['accuracy_mean']:.3f} | {rot['agreement_mean']:.3f} | {rot['n_rotations']} | {averaged} | {all_agree}"


def main(folder: Path) -> None:
    folds = _folds(folder)
    print("| fold (validation split) | top-1 | macro F1 | top-1, single random rotations | agreement |")
    print("| --- | --- | --- | --- | --- |")
    accs = []
    for k in folds:
        ev = _load(folder, f"fold{k}-val")
        accs.append(ev["accuracy"])
        rot = ev["rotation"]
        print(f"| {k} ({ev['n']} domains) | {ev['accuracy']:.3f} | {ev['macro_f1']:.3f} | "
              f"{rot['accuracy_mean']:.3f} | {rot['agreement_mean']:.3f} |")
    if len(accs) > 1:
        print(f"| mean ± std over {len(accs)} folds | {statistics.mean(accs):.3f} ± {statistics.stdev(accs):.3f} "
              "| | | |")
    print()
    rows = [("v1 `cath-arch`", "v1-test9")] + [(f"v2 member, fold {k}", f"fold{k}-test9") for k in folds]
    rows += [("v2 ensemble of 3", "ens-test9"), ("v2.1: v2 in principal-axes frames", "ens-test9-canonical"),
             ("ensemble of 5 (folds 4–8), principal-axes frames, not released", "ens5-test9-canonical")]
    print("| model (test split 9) | parameters | top-1 | macro F1 | top-3 | top-1, single random rotations "
          "| agreement | N | top-1, mean of N rotations | all N agree |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    evals = {}
    for label, name in rows:
        if not (folder / f"{name}.json").exists():
            continue
        ev = evals[label] = _load(folder, name)
        print(f"| {label} | {ev['n_parameters']:,} | {ev['accuracy']:.3f} | {ev['macro_f1']:.3f} | "
              f"{ev['top3_accuracy']:.3f} | {_rotations(ev)} |")
    print()
    codes = next(iter(evals.values()))["classes"]["codes"]
    print("| recall, test split 9 | " + " | ".join(codes) + " |")
    print("| --- |" + " --- |" * len(codes))
    for label, ev in evals.items():
        print(f"| {label} | " + " | ".join(f"{r:.2f}" for r in ev["recall"]) + " |")
    print()
    ablation(folder, codes)
    print()
    canonical(folder)


def ablation(folder: Path, codes: list[str]) -> None:
    """Input fields × network × ensemble: validation split 8, test split 9 (4 random rotations)."""
    print("| network | input | σ (Å) | parameters | val top-1 | test top-1 | test macro F1 "
          "| test agreement under rotation | lowest test recall |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for network, inputs, sigma, val_name, test_name in ABLATION:
        if not (folder / f"{test_name}.json").exists():
            continue
        test = _load(folder, test_name)
        val = f"{_load(folder, val_name)['accuracy']:.3f}" if val_name else "–"
        worst = min(range(len(codes)), key=lambda i: test["recall"][i])
        print(f"| {network} | {inputs} | {sigma} | {test['n_parameters']:,} | {val} | {test['accuracy']:.3f} | "
              f"{test['macro_f1']:.3f} | {test['rotation']['agreement_mean']:.3f} | "
              f"{test['recall'][worst]:.2f} ({codes[worst]}) |")


def canonical(folder: Path) -> None:
    """Each fold's member and the ensemble without and with the canonical principal-axes frame."""
    print("| model, split | frame | top-1 | macro F1 | top-1, single random rotations | agreement | all N agree |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    folds = _folds(folder, "-canonical")
    pairs = [(f"member {k}, validation split {k}", f"fold{k}-val") for k in reversed(folds)]
    pairs += [("ensemble of 3 (v2, v2.1), test split 9", "ens-test9"),
              ("ensemble of 5 (folds 4–8), test split 9", "ens5-test9")]
    for label, name in pairs:
        for frame, suffix in (("as given", ""), ("principal axes", "-canonical")):
            if (folder / f"{name}{suffix}.json").exists():
                ev = _load(folder, name + suffix)
                rot = ev["rotation"]
                all_agree = (
                    f"{rot['all_agree']:.3f} (N = {rot['n_rotations']})" if rot.get("all_agree") is not None else "–"
                )
                print(f"| {label} | {frame} | {ev['accuracy']:.3f} | {ev['macro_f1']:.3f} | "
                      f"{rot['accuracy_mean']:.3f} | {rot['agreement_mean']:.4f} | {all_agree} |")


def cross_validation(folder: Path) -> dict:
    """Each member on the fold it held out, in the principal-axes frame (``foldK-val-canonical.json``):
    what ``scripts/release_model.py --metrics cross_validation=...`` records."""
    folds = [_load(folder, f"fold{k}-val-canonical") for k in _folds(folder, "-canonical")]
    rows = [{"val_split": ev["splits"][0], "n": ev["n"], "accuracy": ev["accuracy"], "macro_f1": ev["macro_f1"],
             "rotation_accuracy_mean": ev["rotation"]["accuracy_mean"],
             "rotation_agreement_mean": ev["rotation"]["agreement_mean"]} for ev in folds]
    accs = [r["accuracy"] for r in rows]
    return {"description": "each member on the validation split it held out (superfamily-disjoint folds); splits 0-8 "
            "minus that fold trained it, split 9 untouched; every structure turned into its principal-axes frame "
            "(input.canonical = principal)", "folds": rows, "accuracy_mean": statistics.mean(accs),
            "accuracy_std": statistics.stdev(accs), "macro_f1_mean": statistics.mean(r["macro_f1"] for r in rows)}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--cv"]:  # report.py --cv OUT.json [EVAL_DIR]
        out = Path(sys.argv[2])
        write_json(out, cross_validation(Path(sys.argv[3]) if len(sys.argv) > 3 else out.parent))  # atomic
    else:
        main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "eval")
