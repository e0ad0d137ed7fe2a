"""Does the colour tell how often? Heat against passes, read back from a real build.

    python bench/colour_fidelity.py INPUTS... [--zoom 16] [--sigma 1] [--normalize global]
                                    [--copies N] [--tree DIR]

Builds INPUTS to a GeoTIFF with its `--counts` GeoTIFF and QGIS style (a fresh `geoheat
build` process, with the geoheat of --tree: this checkout by default, or another one for
a before/after), then reads the two rasters pixel by pixel. For the pixels a track
crosses (count > 0), by passes: how many pixels, the median heat, the share drawn in
the top colour (colormap index 255), and where the .qml's legend puts that many passes
and how far that is from the median heat (its error). Then the summary the issue asks
for: whether the medians ever fall as passes rise, the spread (median heat at the 90th
percentile count minus at 1 pass), the top-colour share of pixels with no more than
the median count, and the largest legend error.

--copies N builds a city-sized set instead: N shifted copies of the chengdu runs
(bench_scale.make_collection), in one temporary folder.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ROWS = (1, 2, 3, 4, 5, 7, 10, 20, 50, 100)


def build(tree: Path, inputs: list[str], out: Path, args: list[str]) -> None:
    """One `geoheat build` of inputs to out (a .tif, its -counts.tif and .qml)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    command = [sys.executable, "-m", "geoheat", "build", *inputs, "-o", str(out), "--counts",
               "--no-cache", "-q", *args]
    subprocess.run(command, check=True, env=env, cwd=tree)


def read(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as src:
        return src.read(1)


def qml_legend(path: Path) -> dict[int, float]:
    """The .qml's labelled ramp items: passes -> the heat QGIS draws that label at."""
    items = ET.parse(path).getroot().iter("item")
    legend = {}
    for item in items:
        found = re.match(r"([\d,]+) (pass|passes|track points?)$", item.get("label", ""))
        if found:
            legend.setdefault(int(found.group(1).replace(",", "")), float(item.get("value")))
    return legend


def table(heat: np.ndarray, counts: np.ndarray, legend: dict[int, float]) -> tuple[list, dict]:
    """Rows (passes, pixels, median heat, top share, legend heat, legend error) and the
    summary (monotone, spread, top share at or below the median count, worst legend error)."""
    lit = counts > 0
    c, h = counts[lit], heat[lit]
    top = np.rint(np.clip(h, 0, 1) * 255) >= 255
    values = np.unique(c)
    medians = {int(v): float(np.median(h[c == v])) for v in values}
    rows = []
    wanted = sorted({*[v for v in ROWS if v in medians], int(np.percentile(c, 90)),
                     int(values[-1]), *legend})
    for n in wanted:
        if n not in medians:
            continue
        pick = c == n
        at = legend.get(n)
        rows.append((n, int(pick.sum()), medians[n], float(top[pick].mean()), at,
                     None if at is None else abs(at - medians[n])))
    series = [medians[int(v)] for v in values]
    p90 = int(values[np.searchsorted(values, np.percentile(c, 90))])
    median_count = np.median(c)
    errors = [abs(at - medians[n]) for n, at in legend.items() if n in medians]
    summary = {
        "lit pixels": int(lit.sum()),
        "medians never fall": bool(np.all(np.diff(series) >= -1e-6)),
        "1/2/3 passes": " / ".join(f"{medians.get(n, float('nan')):.2f}" for n in (1, 2, 3)),
        f"spread (p90 = {p90} passes) - 1 pass": medians[p90] - medians[int(values[0])],
        f"top colour, <= median ({median_count:g} passes)": float(top[c <= median_count].mean()),
        "legend: items, worst error": f"{len(legend)}, "
                                      + (f"{max(errors):.2f}" if errors else "none"),
    }
    return rows, summary


def show(rows, summary) -> None:
    print("| passes | pixels | median heat | top colour | legend at | legend error |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for n, pixels, median, top, at, error in rows:
        legend = "" if at is None else f"{at:.2f}"
        err = "" if error is None else f"{error:.2f}"
        print(f"| {n:,} | {pixels:,} | {median:.2f} | {top:.0%} | {legend} | {err} |")
    print()
    for key, value in summary.items():
        print(f"- {key}: {value:.2f}" if isinstance(value, float) else f"- {key}: {value}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="*")
    parser.add_argument("--zoom", default="auto")
    parser.add_argument("--sigma", default="1")
    parser.add_argument("--normalize", default="global")
    parser.add_argument("--extra", default="", help="more build options, one string")
    parser.add_argument("--copies", type=int, default=0,
                        help="build N shifted copies of the chengdu runs instead")
    parser.add_argument("--tree", type=Path, default=ROOT,
                        help="the geoheat checkout to build with (default: this one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="geoheat-fidelity-") as work:
        work = Path(work)
        inputs = list(args.inputs)
        if args.copies:
            sys.path.insert(0, str(Path(__file__).parent))
            from collection import make_collection  # bench/collection.py

            print(make_collection(work / "set", copies=args.copies).description)
            inputs.append(str(work / "set"))
        if not inputs:
            parser.error("no inputs (name files or folders, or --copies N)")
        out = work / "h.tif"
        build(args.tree.resolve(), inputs, out,
              ["--zoom", str(args.zoom), "--sigma", str(args.sigma), "--normalize",
               args.normalize, *args.extra.split()])
        rows, summary = table(read(out), read(work / "h-counts.tif"),
                              qml_legend(out.with_suffix(".qml")))
    print(f"{' '.join(args.inputs) or f'{args.copies} copies of chengdu-runs'}: zoom {args.zoom}, "
          f"sigma {args.sigma}, normalize {args.normalize} ({args.tree.resolve().name})\n")
    show(rows, summary)


if __name__ == "__main__":
    main()
