"""The toolkit's demo, end to end, on data it generates itself.

Steps (each is an ordinary command a user can run alone; this module only chains them):

1. ``python -m analysis.simulate``  — a deterministic synthetic cohort of 586 patients;
2. ``python -m analysis.table1``    — its Table 1 (xlsx, tex, md, stats csv, ORs, methods);
3. ``python -m fusion.synthetic``   — B-mode, CDFI and elastography images for every patient;
4. ``python -m fusion.train --fusion late embedding --final`` — one CNN per modality and a
   texture-feature baseline, patient-level cross-validation with an inner validation split
   for early stopping, out-of-fold predictions, late and embedding fusion of the three
   modalities (with and without the clinical variables) on the same folds, one results table
   (pooled and per-fold AUCs with patient-level bootstrap 95 % CIs, paired tests against the
   best single modality), figures, and the final model on all patients saved as
   ``cv/model_bundle.pt`` (for ``python -m fusion.predict`` and ``python -m fusion.serve``);
5. ``python -m fusion.gradcam --run`` — Grad-CAM heat maps of three elastography test patients
   per class, each explained by the fold model that never saw it.

Nothing here downloads anything, and the public data sets are not needed.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


from analysis.errors import CohortError

__all__ = ["build_parser", "main"]

EPILOG = """examples:
  python -m fusion.demo                              # everything, output in reports/demo
  python -m fusion.demo --out /tmp/demo --epochs 2   # a quicker, rougher run
  python -m fusion.demo --skip-training              # statistics only (about 10 s)
"""


def build_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fusion.demo",
        description="Generate the synthetic cohort and images, build Table 1 and train the per-modality CNNs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
        add_help=add_help,
    )
    p.add_argument("--out", default="reports/demo", help="output folder (default: reports/demo)")
    p.add_argument("--data", default="demo_data", help="folder for the synthetic cohort and images (default: demo_data)")
    p.add_argument("--n", type=int, default=586, help="patients (default: 586)")
    p.add_argument("--seed", type=int, default=0, help="random seed for every step (default: 0)")
    p.add_argument("--size", type=int, default=64, help="training image size in px (default: 64)")
    p.add_argument("--folds", type=int, default=3, help="cross-validation folds (default: 3)")
    p.add_argument("--epochs", type=int, default=4, help="maximum epochs per fold (default: 4)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: fusion.train's default)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--skip-training", action="store_true", help="stop after Table 1")
    return p


def _step(title: str) -> float:
    print(f"\n== {title}", file=sys.stderr, flush=True)
    return time.perf_counter()


def main(argv=None) -> int:
    from analysis.errors import plain_warnings

    plain_warnings()
    args = build_parser().parse_args(argv)
    from analysis import simulate, table1

    out, data = Path(args.out), Path(args.data)
    cohort_file = data / "cohort.xlsx"
    try:
        t0 = _step(f"1/5 synthetic cohort of {args.n} patients -> {data}")
        # the demo owns its --data folder: a re-run with other settings replaces its files
        rc = simulate.main(["--out", str(data), "--n", str(args.n), "--seed", str(args.seed), "--overwrite"])
        if rc:
            return rc
        _step("2/5 Table 1")
        rc = table1.main([str(cohort_file), "--out", str(out / "table1"), "--seed", str(args.seed)])
        if rc:
            return rc
        if args.skip_training:
            print(f"demo finished in {time.perf_counter() - t0:.0f} s; Table 1 in {out / 'table1'}")
            return 0
        from fusion import synthetic, train

        _step("3/5 synthetic B-mode, CDFI and elastography images")
        rc = synthetic.main([str(cohort_file), "--seed", str(args.seed), "--overwrite"])
        if rc:
            return rc
        _step(f"4/5 per-modality CNNs, texture baseline and their fusions, {args.folds}-fold patient-level "
              "cross-validation; the final model on all patients")
        train_args = [
            str(cohort_file), "--out", str(out / "cv"), "--folds", str(args.folds),
            "--epochs", str(args.epochs), "--size", str(args.size), "--seed", str(args.seed),
            "--device", args.device, "--fusion", "late", "embedding", "--final",
        ]
        if args.threads is not None:
            train_args += ["--threads", str(args.threads)]
        rc = train.main(train_args)
        if rc:
            return rc
        from fusion import gradcam

        _step("5/5 Grad-CAM of elastography test patients, each with the fold model that never saw it")
        # layer3: at the demo's small image size the last block's map is only 2 x 2 pixels
        rc = gradcam.main(["--run", str(out / "cv"), "--modality", "elastography", "--per-class", "3",
                           "--cohort", str(cohort_file), "--out", str(out / "gradcam"),
                           "--layer", "body.layer3", "--device", args.device])
        if rc:
            return rc
    except CohortError as err:  # the step CLIs already report their own errors
        print(f"error: {err}", file=sys.stderr)
        return 2

    results = out / "cv" / "results.md"
    if results.is_file():
        print("\n" + results.read_text(encoding="utf-8"))
    print(f"demo finished in {time.perf_counter() - t0:.0f} s; results in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
