"""Benchmark builds on a Dask cluster against the single-machine build, in one run.

    python bench/bench_cluster.py [--data ../shared/data/chengdu-runs] [--repeat 3]
                                  [--zoom 15] [--street-zoom 17]

Cases (each a fresh Python process, one after another, after the files were read
once so that every case finds them in the page cache; no parse cache, no basemap):

- single process: `geoheat.build(..., jobs=1)`, the reference;
- single machine, 2 processes: `jobs=2` (the local process pool);
- cluster, 1 and 2 workers: a LocalCluster of N worker processes on 127.0.0.1 started
  first (its start-up is reported apart, as a real cluster is up before a build),
  then `geoheat.build(..., scheduler=ADDRESS)`.

Measured per case: the build's wall seconds (median of --repeat), points read per
second; peak RSS of the client process (getrusage; with a LocalCluster it also
holds the scheduler and the nannies) and of each worker process (getrusage run on
the workers by client.run); the bytes the workers sent (Dask's
transfer_outgoing_bytes_total: to each other in the tree reduction and to the
client) and the bytes the client gathered (Dask's sizeof of the summaries and the
final tile counts), both per million points. Every case's GeoTIFF is checked to be
the single process's, byte for byte. Ratios are against the single process of this
same run: the machines are shared and noisy.

Needs the dask extra: pip install -e '.[dask]' (psutil comes with it).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "chengdu-runs"

DRIVER = r"""
import json, resource, sys, time, warnings
from pathlib import Path

args = json.loads(sys.argv[1])
import geoheat
from geoheat import pipeline  # imports (numpy, rasterio, scipy) before the clock starts

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

settings = dict(zoom=args["zoom"], extent=args["extent"], jobs=args["jobs"], parse_cache=None)
out = Path(args["out"])
report = {}
if args["workers"]:
    import distributed
    from geoheat import cluster

    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Port .* is already in use")
        lc = distributed.LocalCluster(n_workers=args["workers"], threads_per_worker=1,
                                      processes=True, host="127.0.0.1",
                                      dashboard_address=None, silence_logs=50)
    client = distributed.Client(lc, set_as_default=False)
    client.wait_for_workers(args["workers"])
    client.run(lambda: __import__("geoheat.cluster"))  # a warm cluster: imports done
    report["startup_s"] = time.perf_counter() - started
    gathered = []
    close = cluster.Session.close

    def recording_close(self):
        if self.client is not None:
            gathered.append(self.bytes_to_client)
        close(self)

    cluster.Session.close = recording_close
    sent = lambda dask_worker: dask_worker.transfer_outgoing_bytes_total
    before = sum(client.run(sent).values())
    started = time.perf_counter()
    result = geoheat.build([args["data"]], out, scheduler=lc.scheduler_address, **settings)
    report["seconds"] = time.perf_counter() - started
    report["worker_bytes"] = sum(client.run(sent).values()) - before
    report["client_bytes"] = sum(gathered)
    report["worker_peak_mb"] = sorted(
        v / 1024 for v in client.run(
            lambda: __import__("resource").getrusage(0).ru_maxrss).values())
    client.close()
    lc.close()
else:
    started = time.perf_counter()
    result = geoheat.build([args["data"]], out, **settings)
    report["seconds"] = time.perf_counter() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    report["worker_peak_mb"] = [children] if args["jobs"] > 1 else []
report["client_peak_mb"] = peak_mb()
report["points"] = result.points_read
report["points_used"] = result.points_used
report["data_tiles"] = result.data_tiles
print(json.dumps(report))
"""

def cases(zoom: int, street: int) -> list[tuple[str, int, str, int, int]]:
    """label, zoom, extent, jobs, workers; the first and the fifth are the references."""
    return [
        ("single process", zoom, "auto", 1, 0),
        ("single machine, 2 processes (-j 2)", zoom, "auto", 2, 0),
        ("cluster, 1 worker", zoom, "auto", 1, 1),
        ("cluster, 2 workers", zoom, "auto", 1, 2),
        (f"single process, z{street} extent all", street, "all", 1, 0),
        (f"cluster, 2 workers, z{street} extent all", street, "all", 1, 2),
    ]


def run_case(data: Path, folder: Path, label: str, zoom: int, extent: str, jobs: int,
             workers: int, repeat: int) -> dict:
    runs = []
    for i in range(repeat):
        out = folder / f"{label.replace(' ', '_').replace(',', '')}-{i}.png"
        args = {"data": str(data), "out": str(out), "zoom": zoom, "extent": extent,
                "jobs": jobs, "workers": workers}
        done = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(args)],
                              capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{label}: failed:\n{done.stderr.strip()[-3000:]}")
        report = json.loads(done.stdout.strip().splitlines()[-1])
        report["tif"] = out.with_name(f"{out.stem}-heat.tif").read_bytes()
        runs.append(report)
    median = statistics.median(r["seconds"] for r in runs)
    best = min(runs, key=lambda r: abs(r["seconds"] - median))
    best["seconds"] = median
    best["client_peak_mb"] = max(r["client_peak_mb"] for r in runs)
    best["worker_peak_mb"] = max((r["worker_peak_mb"] for r in runs),
                                 key=lambda v: max(v, default=0))
    if len({r["tif"] for r in runs}) != 1:
        sys.exit(f"{label}: the GeoTIFF differs from one run to the next")
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--zoom", type=int, default=15)
    parser.add_argument("--street-zoom", type=int, default=17)
    args = parser.parse_args()
    all_cases = cases(args.zoom, args.street_zoom)
    street_reference = all_cases[4][0]
    if not args.data.is_dir():
        sys.exit(f"{args.data}: not found (the chengdu runs live in ../shared/data)")
    for path in sorted(args.data.rglob("*")):  # into the page cache
        if path.is_file():
            path.read_bytes()
    results = {}
    with tempfile.TemporaryDirectory(prefix="geoheat-bench-cluster-") as folder:
        for label, zoom, extent, jobs, workers in all_cases:
            print(f"{label} ...", file=sys.stderr, flush=True)
            results[label] = run_case(args.data, Path(folder), label, zoom, extent, jobs,
                                      workers, args.repeat)
    for label, zoom, extent, _, _ in all_cases:
        reference = results["single process" if zoom == args.zoom else street_reference]
        if results[label]["tif"] != reference["tif"]:
            sys.exit(f"{label}: its GeoTIFF is not the single process's")

    print(f"\n{os.cpu_count()} cores; median of {args.repeat}; the GeoTIFF of every case is "
          "byte for byte the single process's\n")
    print("| case | build s | points/s | x single | client peak MB | worker peak MB "
          "| workers sent B/Mpt | client got B/Mpt | start-up s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, zoom, *_ in all_cases:
        r = results[label]
        reference = results["single process" if zoom == args.zoom else street_reference]
        rate = r["points"] / r["seconds"]
        mpts = r["points"] / 1e6
        workers = ", ".join(f"{v:.0f}" for v in r["worker_peak_mb"]) or "-"
        sent = f"{r['worker_bytes'] / mpts:,.0f}" if "worker_bytes" in r else "-"
        got = f"{r['client_bytes'] / mpts:,.0f}" if "client_bytes" in r else "-"
        startup = f"{r['startup_s']:.2f}" if "startup_s" in r else "-"
        print(f"| {label} | {r['seconds']:.2f} | {rate:,.0f} | "
              f"{reference['seconds'] / r['seconds']:.2f} | {r['client_peak_mb']:.0f} | "
              f"{workers} | {sent} | {got} | {startup} |")
    r = results["cluster, 2 workers"]
    print(f"\n{args.data}: {r['points']:,} points read, {r['points_used']:,} used; zoom "
          f"{args.zoom}: {r['data_tiles']} tiles with heat; zoom {args.street_zoom} extent all: "
          f"{results[all_cases[5][0]]['data_tiles']} tiles")
    one, two = results["cluster, 1 worker"], results["cluster, 2 workers"]
    print(f"2 workers / 1 worker speed-up: {one['seconds'] / two['seconds']:.2f}")


if __name__ == "__main__":
    main()
