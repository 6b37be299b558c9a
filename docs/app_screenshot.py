"""Screenshot of the web app (docs/app.png) answering for one patient of a cohort, in headless Chromium.

Starts ``python -m fusion.serve BUNDLE`` on a free loopback port, opens the page in Debian's
``chromium`` (driven by playwright), uploads the images of the cohort's ``--row``-th patient,
fills in its clinical values, submits, and saves the answer page (palette-quantised PNG)::

    python docs/app_screenshot.py reports/demo/cv/model_bundle.pt demo_data/cohort.xlsx --out docs/app.png
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle")
    p.add_argument("cohort")
    p.add_argument("--row", type=int, default=0, help="0-based data row of the cohort (default: 0)")
    p.add_argument("--out", default=str(REPO / "docs" / "app.png"))
    p.add_argument("--width", type=int, default=1000)
    p.add_argument("--gradcam-layer", default=None)
    args = p.parse_args(argv)

    import pandas as pd
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from analysis.readers import read_table
    from fusion.bundle import load_bundle

    model = load_bundle(args.bundle)
    schema = model.schema
    cohort = Path(args.cohort)
    row = read_table(cohort).iloc[args.row]
    from fusion.serve import serve_in_background

    extra = ("--gradcam-layer", args.gradcam_layer) if args.gradcam_layer else ()
    with serve_in_background(args.bundle, args=extra) as (url, _):
        with sync_playwright() as pw, tempfile.TemporaryDirectory() as tmp:
            browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": args.width, "height": 800})
            page.goto(url + "/")
            for m, col in schema.image_columns.items():
                if m in model.modalities and isinstance(row.get(col), str):
                    page.set_input_files(f"#image_{m}", str(cohort.parent / row[col]))
            for v in schema.variables:
                value = row.get(v.name)
                if value is None or pd.isna(value):
                    continue
                sel = f"#f_{v.name}"
                if v.levels is not None:
                    if isinstance(value, float) and value.is_integer():
                        value = int(value)
                    page.select_option(sel, str(value))
                else:
                    page.fill(sel, f"{float(value):g}")
            page.click("#submit")
            page.wait_for_selector("#predicted-class", timeout=120_000)
            shot = Path(tmp) / "shot.png"
            page.screenshot(path=str(shot), full_page=True)
            browser.close()
            img = Image.open(shot).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            img.save(args.out, optimize=True)
    print(f"wrote: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
