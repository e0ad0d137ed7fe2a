"""Benchmark reading FIT files (issue 15): FIT decoders, and `geoheat build` on FIT against GPX.

    python bench/bench_fit.py [--reps 5] [--skip-decoders] [--fit-data DIR] [--gpx-data DIR]

All in one run, so that every ratio compares numbers measured side by side on the
same (shared, noisy) machine:

1. Decoders: each candidate decodes every FIT file of garmin-tree/FIT_OUT, the
   bytes read beforehand, in a fresh process that times only the decoding loop:
   geoheat.fit (geoheat's reader), the SDK as geoheat called it before (and still
   calls it as the fallback), the SDK with every option off, fitdecode and fitfast
   (each if installed: pip install fitdecode fitfast), and geoheat's GPX reader on
   the chengdu runs, per position. Microseconds per position and ratios against
   the SDK and against GPX.
2. Builds: `geoheat build --no-cache --basemap none` of FIT_OUT (--jobs 1 and 2)
   and of the chengdu runs (--jobs 1 and 2), each a fresh process timed from the
   outside (start-up and imports included, as a user sees them), the cases
   alternated over --reps repetitions; medians. Targets: a cold FIT build per
   position <= 1.5x a cold GPX build per position; --jobs 2 <= 0.6x --jobs 1 on FIT.
3. Where a FIT build's time goes, to explain the --jobs ratio: reading alone
   (geoheat.reading.read_files with jobs 1 and 2), and a build of the smallest FIT
   file (start-up, imports, heat and writers, with almost nothing to read).

--fit-data and --gpx-data replace FIT_OUT and the chengdu runs, --zoom the builds' auto
zoom (tests/test_bench.py runs it on the gpx/ samples at zoom 12 with --records 2000,
to see that it runs).
4. Local message types (issue 27): generated FIT files of --records records, all
   of one local type, alternating two local types of one definition, and records
   alternating with another message (a device writing heart rate between them),
   each read by geoheat.fit.read_fit in a fresh process: seconds and peak RSS.
   `--local-types-only` runs just this part.
"""

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from measure import run  # bench/measure.py: one measured process

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
FIT_DIR, GPX_DIR = DATA / "garmin-tree" / "FIT_OUT", DATA / "chengdu-runs"

# Run as `python -c DECODE CANDIDATE FILE...`: prints "positions seconds".
DECODE = r"""
import sys, time
from pathlib import Path


which, paths = sys.argv[1], sys.argv[2:]
blobs = [(Path(p).read_bytes(), Path(p).name) for p in paths]


def geoheat_reader(reader):
    from geoheat import fit
    from geoheat.errors import GPXError

    read = getattr(fit, reader)

    def positions(data, name):
        try:
            return read(data, name)[0].points
        except GPXError:
            return 0
    return positions


def geoheat_fit():
    return geoheat_reader("read_fit")


def geoheat_sdk():
    return geoheat_reader("read_fit_sdk")


def sdk_options_off():
    from garmin_fit_sdk import Decoder, Stream

    def positions(data, name):
        messages, _ = Decoder(Stream.from_byte_array(bytearray(data))).read(
            apply_scale_and_offset=False, convert_datetimes_to_dates=False,
            convert_types_to_strings=False, enable_crc_check=False, expand_sub_fields=False,
            expand_components=False, merge_heart_rates=False)
        return sum(1 for r in messages.get("record_mesgs", [])
                   if r.get("position_lat") is not None and r.get("position_long") is not None)
    return positions


def fitdecode_raw():
    import fitdecode

    def positions(data, name):
        n = 0
        with fitdecode.FitReader(data, processor=None, check_crc=fitdecode.CrcCheck.DISABLED,
                                 error_handling=fitdecode.ErrorHandling.IGNORE) as reader:
            for frame in reader:
                if frame.frame_type == fitdecode.FIT_FRAME_DATA and frame.global_mesg_num == 20:
                    lat = frame.get_value(0, fallback=None, raw_value=True)
                    lon = frame.get_value(1, fallback=None, raw_value=True)
                    n += lat is not None and lon is not None
        return n
    return positions


def fitfast_records():
    import numpy as np
    import fitfast

    def positions(data, name):
        columns = fitfast.records(data)
        fitfast.records(data, message="session")  # the start time and sport
        if "position_lat" not in columns:
            return 0
        lat, lon = columns["position_lat"], columns["position_long"]
        return int((~np.isnan(lat) & ~np.isnan(lon)).sum())
    return positions


def geoheat_gpx():
    from geoheat.gpx import read_gpx_bytes

    return lambda data, name: read_gpx_bytes(data, name).points


try:
    positions = globals()[which]()
except ImportError as err:
    print(f"missing {err.name}")
    sys.exit(0)
started = time.perf_counter()
total = sum(positions(data, name) for data, name in blobs)
print(total, time.perf_counter() - started)
"""

# Run as `python -c READ_ONE FILE`: prints "positions seconds" of fit.read_fit alone.
READ_ONE = r"""
import sys, time
from pathlib import Path
from geoheat import fit

data = Path(sys.argv[1]).read_bytes()
started = time.perf_counter()
activity, note = fit.read_fit(data, "x.fit")
print(activity.points, time.perf_counter() - started)
"""


def generated_fit(records: int, layout: str) -> bytes:
    """A FIT activity of `records` records a second apart on a line (timestamp, lat, lon,
    speed): layout 'one' (local type 1 throughout), 'alternating' (local types 1 and 2,
    one definition, in turn) or 'interleaved' (a heart-rate message, local type 3,
    after each record). The bytes are made with numpy: 4 M records in a second."""
    import numpy as np

    def definition(local, number, fields):
        out = bytes([0x40 | local, 0, 0]) + number.to_bytes(2, "little") + bytes([len(fields)])
        return out + b"".join(bytes(f) for f in fields)

    body = definition(0, 0, [(0, 1, 0)]) + bytes([0, 4])  # file_id: an activity
    record_fields = [(253, 4, 0x86), (0, 4, 0x85), (1, 4, 0x85), (6, 2, 0x84)]
    body += definition(1, 20, record_fields) + definition(2, 20, record_fields)
    body += definition(3, 132, [(253, 4, 0x86), (0, 1, 2)])  # hr: timestamp, heart rate
    record = np.dtype([("h", "u1"), ("t", "<u4"), ("lat", "<i4"), ("lon", "<i4"),
                       ("speed", "<u2")])
    rows = np.zeros(records, record)
    i = np.arange(records)
    rows["h"] = 1 + (i % 2) if layout == "alternating" else 1
    rows["t"] = 1_100_000_000 + i
    rows["lat"] = (30.0 + i * 1e-6) * 2**31 / 180
    rows["lon"] = (104.0 + i * 1e-6) * 2**31 / 180
    rows["speed"] = 5000
    if layout == "interleaved":
        hr = np.dtype([("h", "u1"), ("t", "<u4"), ("bpm", "u1")])
        pair = np.zeros(records, [("record", record), ("hr", hr)])
        pair["record"] = rows
        pair["hr"]["h"], pair["hr"]["t"], pair["hr"]["bpm"] = 3, rows["t"], 130
        body += pair.tobytes()
    else:
        body += rows.tobytes()
    header = (14).to_bytes(1, "little") + bytes([0x20]) + (2132).to_bytes(2, "little")
    header += len(body).to_bytes(4, "little") + b".FIT" + bytes(2)
    return header + body + bytes(2)


DECODERS = {
    "geoheat.fit": "geoheat_fit",
    "garmin-fit-sdk, as geoheat called it": "geoheat_sdk",
    "garmin-fit-sdk, every option off": "sdk_options_off",
    "fitdecode, processor=None, no CRC": "fitdecode_raw",
    "fitfast (Rust), records + session": "fitfast_records",
}

# Run as `python -c READ JOBS FILE...`: prints "positions seconds" of read_files alone.
READ = r"""
import sys, time
from pathlib import Path
from geoheat.reading import read_files

jobs, paths = int(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
started = time.perf_counter()
parsed = read_files(paths, None, jobs)
print(sum(p.points for p in parsed), time.perf_counter() - started)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="alternated repetitions (median)")
    parser.add_argument("--decoder-reps", type=int, default=3)
    parser.add_argument("--skip-decoders", action="store_true",
                        help="measure only geoheat's own readers, not the other decoders")
    parser.add_argument("--records", type=int, default=4_000_000,
                        help="records in each generated file of part 4")
    parser.add_argument("--local-types-only", action="store_true",
                        help="measure only part 4, the local message types")
    parser.add_argument("--fit-data", type=Path, default=FIT_DIR, help="a folder of FIT files")
    parser.add_argument("--gpx-data", type=Path, default=GPX_DIR,
                        help="a folder of GPX files to compare with")
    parser.add_argument("--zoom", default="auto", help="the builds' zoom")
    args = parser.parse_args()
    if args.local_types_only:
        local_types(args.records, args.reps)
        return
    fit_dir, gpx_dir = args.fit_data, args.gpx_data
    fit_files = sorted(str(p) for p in fit_dir.glob("*.fit"))
    gpx_files = sorted(str(p) for p in gpx_dir.glob("*.gpx"))
    if not fit_files or not gpx_files:
        sys.exit(f"needs {fit_dir} and {gpx_dir} (../shared beside the checkout)")
    small_fit = min(fit_files, key=os.path.getsize)  # FIT_OUT's: 52469467.fit, 59 positions
    # The tables' names of the two folders ("FIT_OUT" and "chengdu" by default).
    fit_name = fit_dir.name
    gpx_name = "chengdu" if gpx_dir == GPX_DIR else gpx_dir.name

    def shown(label: str) -> str:
        return label.replace("FIT_OUT", fit_name).replace("chengdu", gpx_name)

    for path in fit_files + gpx_files:  # warm the page cache: no case pays for the disk
        Path(path).read_bytes()
    py, work = sys.executable, Path(tempfile.mkdtemp(prefix="geoheat-bench-fit-"))
    print(f"{len(fit_files)} FIT files ({sum(os.path.getsize(p) for p in fit_files) / 1e6:.0f} MB)"
          f" from {fit_dir}; {len(gpx_files)} GPX from {gpx_dir}")
    print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} (--jobs 2 needs an "
          "idle second core: quote its ratio only from a quiet machine)")

    # 1. Decoders, alternated, median seconds.
    decoded: dict[str, list[float]] = {}
    points: dict[str, int] = {}
    gpx_label = shown("geoheat GPX reader (chengdu runs)")
    decoders = {label: function for label, function in DECODERS.items()
                if label == "geoheat.fit" or not args.skip_decoders}
    decoders[gpx_label] = "geoheat_gpx"
    for _ in range(args.decoder_reps):
        for label, function in list(decoders.items()):
            files = gpx_files if function == "geoheat_gpx" else fit_files
            out = run([py, "-c", DECODE, function, *files]).stdout
            if out.startswith("missing"):
                print(f"  {label}: {out.strip()} (pip install it to measure it)")
                del decoders[label]
                continue
            count, seconds = out.split()
            points[label] = int(count)
            decoded.setdefault(label, []).append(float(seconds))
    fit_points = points["geoheat.fit"]
    per_point = {label: statistics.median(times) / points[label] * 1e6
                 for label, times in decoded.items() if points[label]}
    sdk = per_point.get("garmin-fit-sdk, as geoheat called it")
    print(f"\n| decoder (decode only, median of {args.decoder_reps}) | positions | s |"
          " us/position | positions/s | x SDK | x GPX reader |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, us in per_point.items():
        seconds = statistics.median(decoded[label])
        flag = "" if label == gpx_label or points[label] == fit_points else " (count differs!)"
        print(f"| {label}{flag} | {points[label]:,} | {seconds:.3f} | {us:.2f} | "
              f"{1e6 / us:,.0f} | {us / sdk if sdk else float('nan'):.4f} | "
              f"{us / per_point[gpx_label]:.3f} |")

    # 2. Builds and 3. where the time goes, alternated, median seconds.
    def build(folder: Path, jobs: int, name: str) -> list[str]:
        return [py, "-m", "geoheat", "build", str(folder), "--no-cache", "--jobs", str(jobs),
                "--zoom", args.zoom, "--basemap", "none", "-q",
                "-o", str(work / name / "heatmap.png")]

    for name in ("fit1", "fit2", "gpx1", "gpx2", "one"):
        (work / name).mkdir()
    cases = {
        "build FIT_OUT --jobs 1": build(fit_dir, 1, "fit1"),
        "build chengdu --jobs 1": build(gpx_dir, 1, "gpx1"),
        "build FIT_OUT --jobs 2": build(fit_dir, 2, "fit2"),
        "build chengdu --jobs 2": build(gpx_dir, 2, "gpx2"),
        "build one small FIT file": build(Path(small_fit), 1, "one"),
        "read_files FIT_OUT jobs 1": [py, "-c", READ, "1", *fit_files],
        "read_files FIT_OUT jobs 2": [py, "-c", READ, "2", *fit_files],
    }
    walls: dict[str, list[float]] = {name: [] for name in cases}
    cpus: dict[str, list[float]] = {name: [] for name in cases}
    inner: dict[str, list[float]] = {}
    for _ in range(args.reps):
        for name, argv in cases.items():
            seconds, cpu, _, out = run(argv)
            walls[name].append(seconds)
            cpus[name].append(cpu)
            if name.startswith("read_files"):
                inner.setdefault(name, []).append(float(out.split()[1]))
    gpx_points = points[gpx_label]
    median = {name: statistics.median(times) for name, times in walls.items()}
    cpu = {name: statistics.median(times) for name, times in cpus.items()}
    print(f"\n| case (median of {args.reps}, alternated) | wall s | CPU s | positions |"
          " wall us/position |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, seconds in median.items():
        n = {"build FIT_OUT": fit_points, "build chengdu": gpx_points}.get(name[:13])
        cells = f"{n:,} | {seconds / n * 1e6:.2f}" if n else " | "
        print(f"| {shown(name)} | {seconds:.2f} | {cpu[name]:.2f} | {cells} |")
    for name, times in inner.items():
        print(f"| {shown(name)}: the call alone | {statistics.median(times):.2f} | | | |")

    fit_pp = median["build FIT_OUT --jobs 1"] / fit_points
    gpx_pp = median["build chengdu --jobs 1"] / gpx_points
    jobs_fit = median["build FIT_OUT --jobs 2"] / median["build FIT_OUT --jobs 1"]
    jobs_gpx = median["build chengdu --jobs 2"] / median["build chengdu --jobs 1"]
    reading = statistics.median(inner["read_files FIT_OUT jobs 1"])
    print("\n| ratio | target | measured |")
    print("| --- | --- | ---: |")
    print(f"| cold FIT build per position / cold GPX build per position | <= 1.5 | "
          f"{fit_pp / gpx_pp:.2f} |")
    cpu_ratio = (cpu["build FIT_OUT --jobs 1"] / fit_points) / (
        cpu["build chengdu --jobs 1"] / gpx_points)
    print(f"| the same in CPU seconds | | {cpu_ratio:.2f} |")
    print(shown(f"| FIT_OUT build --jobs 2 / --jobs 1 | <= 0.6 | {jobs_fit:.2f} |"))
    print(shown(f"| chengdu build --jobs 2 / --jobs 1 (for comparison) | | {jobs_gpx:.2f} |"))
    print(shown(f"| FIT_OUT read_files jobs 2 / jobs 1 (the call alone) | | "
                f"{statistics.median(inner['read_files FIT_OUT jobs 2']) / reading:.2f} |"))
    print(shown(f"| reading's share of a FIT_OUT build, --jobs 1 | | "
                f"{reading / median['build FIT_OUT --jobs 1']:.2f} |"))
    print(shown(f"| build of one small FIT file / FIT_OUT build, --jobs 1 | | "
                f"{median['build one small FIT file'] / median['build FIT_OUT --jobs 1']:.2f} |"))
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}; outputs in {work}")
    local_types(args.records, args.reps)


def local_types(records: int, reps: int) -> None:
    """Part 4: generated files of each layout, read alone in fresh processes, alternated."""
    py, work = sys.executable, Path(tempfile.mkdtemp(prefix="geoheat-bench-fit-types-"))
    files = {}
    for layout in ("one", "alternating", "interleaved"):
        files[layout] = work / f"{layout}.fit"
        files[layout].write_bytes(generated_fit(records, layout))
    seconds: dict[str, list[float]] = {layout: [] for layout in files}
    peaks: dict[str, list[float]] = {layout: [] for layout in files}
    positions = {}
    for _ in range(reps):
        for layout, path in files.items():
            measured = run([py, "-c", READ_ONE, str(path)])
            count, inner = measured.stdout.split()
            positions[layout] = int(count)
            seconds[layout].append(float(inner))
            peaks[layout].append(measured.peak_mb)
    print(f"\n| generated FIT, {records:,} records (median of {reps}) | MB | positions |"
          " read_fit s | peak RSS MB | us/position |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for layout, path in files.items():
        median = statistics.median(seconds[layout])
        print(f"| {layout} | {path.stat().st_size / 1e6:.0f} | {positions[layout]:,} | "
              f"{median:.2f} | {statistics.median(peaks[layout]):.0f} | "
              f"{median / positions[layout] * 1e6:.2f} |")
    for path in files.values():
        path.unlink()
    work.rmdir()


if __name__ == "__main__":
    main()
