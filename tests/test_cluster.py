"""Builds on a Dask cluster (--scheduler): the same result as on one machine, bit for bit.

Every cluster here is a LocalCluster on 127.0.0.1 (the autouse no_internet fixture
refuses anything else). Most tests share one of 2 worker processes.
"""

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")  # the dask extra, part of the test extra

import geoheat  # noqa: E402
from geoheat import InputError, ParameterError, cluster, dask_session, url_sources  # noqa: E402
from geoheat.cli import cli  # noqa: E402
from geoheat.reading import parse_file  # noqa: E402
from geoheat.samples import gpx_document  # noqa: E402

from .conftest import shared_folder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "gpx"


def local_cluster(n=2, processes=True):
    with warnings.catch_warnings():  # "Port 8787 is already in use": another is taken
        warnings.filterwarnings("ignore", "Port .* is already in use")
        return distributed.LocalCluster(n_workers=n, threads_per_worker=1,
                                        processes=processes,
                                        host="127.0.0.1", protocol="tcp",
                                        dashboard_address=None, silence_logs=50)


@pytest.fixture(scope="module")
def scheduler():
    """The address of a LocalCluster of 2 worker processes on 127.0.0.1."""
    with local_cluster() as lc:
        yield lc.scheduler_address


@pytest.fixture
def inputs(tmp_path):
    """The sample rides, plus files that cannot be read: skipped and reported as locally."""
    folder = tmp_path / "in"
    shutil.copytree(SAMPLES, folder)
    (folder / "broken.gpx").write_text('<?xml version="1.0"?><gpx><trk><trkseg><trkpt lat="4')
    (folder / "picture.gpx").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (folder / "empty.fit").write_bytes(b"")
    return folder


def comparable(result):
    """A BuildResult's fields that do not depend on where or when it was made."""
    fields = dataclasses.asdict(result)
    for name in ("seconds", "outputs", "basemap"):
        fields.pop(name)
    fields["regions"] = [region._replace(outputs=[]) for region in fields["regions"]]
    return fields


def out(tmp_path, which):
    (tmp_path / which).mkdir(exist_ok=True)
    return tmp_path / which / "h.png"


def build_both(tmp_path, inputs, scheduler, **settings):
    plain = geoheat.build(inputs, out(tmp_path, "plain"), counts=True, **settings)
    dask = geoheat.build(inputs, out(tmp_path, "dask"), counts=True,
                         scheduler=scheduler, **settings)
    return plain, dask


def assert_same_files(tmp_path):
    for name in ("h.png", "h-heat.tif", "h-counts.tif"):
        plain, dask = (tmp_path / which / name for which in ("plain", "dask"))
        assert plain.read_bytes() == dask.read_bytes(), name


def test_cluster_build_equals_the_local_build_bit_for_bit(tmp_path, inputs, scheduler):
    plain, dask = build_both(tmp_path, [inputs], scheduler, zoom=14)
    assert_same_files(tmp_path)
    assert comparable(dask) == comparable(plain)
    # The unreadable files are skipped with the local reasons.
    assert {Path(name).name for name, _ in dask.skipped} == {"broken.gpx", "picture.gpx",
                                                              "empty.fit"}
    assert dask.points_used == plain.points_used > 10_000


@pytest.mark.parametrize("settings", [
    {"mode": "points", "sigma": 0, "extent": "all", "zoom": 12, "scaling": "linear"},
    {"bounds": (46.02, 46.06, 14.46, 14.52), "zoom": 15, "keep_duplicates": True},
    {"privacy": "auto", "zoom": 15},  # the zones and hidden ends cut on the workers too
    {"privacy_zones": ["46.05,14.50,400"], "mode": "points", "zoom": 14},
])
def test_cluster_build_equals_the_local_build_in_other_modes(tmp_path, inputs, scheduler,
                                                             settings):
    plain, dask = build_both(tmp_path, [inputs], scheduler, **settings)
    assert_same_files(tmp_path)
    assert comparable(dask) == comparable(plain)


def test_privacy_hiding_every_point_is_said_as_locally(tmp_path, inputs, scheduler):
    # The count is recorded in one place (counting.record): before, the cluster's own
    # copy said 'no trackpoint lies inside --bounds' here.
    settings = dict(zoom=14, bounds=(46.04, 46.06, 14.49, 14.51),
                    privacy_zones=["46.05,14.50,3000"])
    messages = []
    for which, scheduled in (("plain", {}), ("dask", {"scheduler": scheduler})):
        with pytest.raises(InputError) as caught:
            geoheat.build([inputs], out(tmp_path, which), **settings, **scheduled)
        messages.append(str(caught.value))
    assert messages == ["nothing to draw: every point inside --bounds is hidden by privacy"] * 2


def test_cluster_build_of_the_chengdu_runs_is_the_local_build(tmp_path, scheduler):
    runs = shared_folder("chengdu-runs")
    plain, dask = build_both(tmp_path, [runs], scheduler, zoom=15, jobs=2)
    assert_same_files(tmp_path)
    assert comparable(dask) == comparable(plain)
    assert dask.points_used > 400_000


def test_a_parse_cache_on_the_workers_gives_the_same_result(tmp_path, inputs, scheduler):
    cache = tmp_path / "cache"
    plain = geoheat.build([inputs], out(tmp_path, "plain"), zoom=14, counts=True)
    for _ in range(2):  # filling the cache, then reading from it
        dask = geoheat.build([inputs], out(tmp_path, "dask"), zoom=14, counts=True,
                             parse_cache=cache, scheduler=scheduler)
        assert_same_files(tmp_path)
        assert comparable(dask) == comparable(plain)
    assert list(cache.rglob("*.bin"))  # the workers filled it


def test_an_unreachable_scheduler_is_one_line(tmp_path, inputs, monkeypatch):
    monkeypatch.setattr(dask_session, "CONNECT_TIMEOUT", "1s")
    with pytest.raises(ParameterError, match=r"^cannot reach the Dask scheduler at "
                                             r"tcp://127.0.0.1:9 \(Timed out trying"):
        geoheat.build([inputs], out(tmp_path, "dask"), scheduler="tcp://127.0.0.1:9")
    assert not list((tmp_path / "dask").iterdir())


@contextlib.contextmanager
def scripted_peer(behaviour: str):
    """A TCP server on 127.0.0.1 that is not a Dask scheduler; yields its address.
    behaviour: 'silent' accepts and says nothing, 'http' answers what it reads as an
    HTTP server would, 'close' closes each connection at once. It gives up after 20 s,
    closing its connections, so a client that waits for it cannot wait longer."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.05)
    stop, held = threading.Event(), []

    def serve():
        deadline = time.monotonic() + 20
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            held.append(conn)
            if behaviour == "close":
                conn.close()
            elif behaviour == "http":
                conn.settimeout(5)
                with contextlib.suppress(OSError):
                    conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        for conn in held:
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        server.close()


@pytest.mark.parametrize("behaviour, why", [
    ("silent", "it accepted the connection but gave no Dask handshake within 1 s: "
               "not a Dask scheduler?"),
    ("http", "it answers, but not as a Dask scheduler does (MemoryError)"),
    ("close", "it closed the connection without a Dask handshake: not a Dask scheduler?"),
])
def test_a_peer_that_is_not_a_dask_scheduler_is_one_line(tmp_path, inputs, monkeypatch,
                                                          behaviour, why):
    """Before: a silent peer held the build until it went away; an HTTP server's reply
    made Dask's reader ask for 3.07 EiB (MemoryError)."""
    monkeypatch.setattr(dask_session, "CONNECT_TIMEOUT", "1s")
    with scripted_peer(behaviour) as address:
        with pytest.raises(ParameterError) as err:
            geoheat.build([inputs], out(tmp_path, "dask"), scheduler=address)
    assert str(err.value) == f"cannot reach the Dask scheduler at {address} ({why})"
    assert not list((tmp_path / "dask").iterdir())


def test_a_worker_address_is_not_the_scheduler(tmp_path, inputs, scheduler):
    with distributed.Client(scheduler, set_as_default=False) as client:
        worker = next(iter(client.scheduler_info()["workers"]))
    with pytest.raises(ParameterError) as err:
        geoheat.build([inputs], out(tmp_path, "dask"), scheduler=worker)
    assert str(err.value) == (f"cannot reach the Dask scheduler at {worker} "
                              "(that is a Dask Worker, not the scheduler)")


def test_tls_without_dask_tls_settings_is_one_line(tmp_path, inputs):
    """Before: a TypeError from Dask's TLS connector, then 60 s in Client.__del__."""
    with pytest.raises(ParameterError) as err:
        geoheat.build([inputs], out(tmp_path, "dask"), scheduler="tls://127.0.0.1:1")
    assert str(err.value) == ("cannot reach the Dask scheduler at tls://127.0.0.1:1 (TLS needs "
                              "Dask's TLS settings: distributed.comm.tls.ca-file, client.cert "
                              "and client.key)")


def test_cli_an_http_server_as_scheduler_exits_2_in_one_line(tmp_path, inputs):
    """The whole command in its own interpreter: one line, exit 2, and an exit that is
    not held for Client.__del__'s 60 s (the limit below fails the test first)."""
    with scripted_peer("http") as address:
        done = subprocess.run(
            [sys.executable, "-m", "geoheat", "build", str(inputs), "--basemap", "none",
             "-o", str(out(tmp_path, "dask")), "--scheduler", address],
            capture_output=True, text=True, timeout=45, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2, done.stderr
    assert done.stderr == (f"geoheat: error: cannot reach the Dask scheduler at {address} "
                           "(it answers, but not as a Dask scheduler does (MemoryError))\n")


def test_a_client_that_fails_to_start_does_not_hold_the_exit(tmp_path):
    """If the peer passes the question but Dask's Client then fails (here: the question
    skipped), the half-made Client is closed at once, not at exit (60 s then)."""
    code = ("import sys\nfrom geoheat import dask_session, ParameterError\n"
            "dask_session.ask_scheduler = lambda *args: None\n"
            "try:\n    dask_session.Session(sys.argv[1])\n"
            "except ParameterError as err:\n    print(err)\n")
    with scripted_peer("http") as address:
        done = subprocess.run([sys.executable, "-c", code, address], capture_output=True,
                              text=True, timeout=45, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"cannot reach the Dask scheduler at {address} (Unable to "
                                  "allocate 3.07 EiB")
    assert "Traceback" not in done.stderr


def children() -> set[int]:
    """This process's children, but for multiprocessing's resource tracker and forkserver:
    once started they live as long as this process, and a build may be the first to
    start them (in a test run alone, or on a pytest-xdist worker)."""
    import psutil

    def lives_with_this_process(child) -> bool:
        try:
            command = " ".join(child.cmdline())
        except psutil.Error:  # gone between the listing and this look
            return True
        return "multiprocessing.resource_tracker" in command or \
            "multiprocessing.forkserver" in command

    return {p.pid for p in psutil.Process().children(recursive=True)
            if not lives_with_this_process(p)}


def test_cli_scheduler_local_2_starts_and_stops_its_own_cluster(tmp_path, inputs):
    from click.testing import CliRunner

    before = children()
    common = [str(inputs), "--zoom", "14", "--basemap", "none", "--no-cache", "--counts", "-q"]
    runner = CliRunner()
    plain = runner.invoke(cli, ["build", *common, "-o", str(out(tmp_path, "plain"))])
    dask = runner.invoke(cli, ["build", *common, "-o", str(out(tmp_path, "dask")),
                               "--scheduler", "local:2"])
    assert plain.exit_code == 0, plain.output
    assert dask.exit_code == 0, dask.output
    assert_same_files(tmp_path)
    deadline = time.monotonic() + 10
    while children() - before:
        assert time.monotonic() < deadline, "the LocalCluster's processes outlived the build"
        time.sleep(0.2)


# --- failures -------------------------------------------------------------------------

class KillOnce(distributed.WorkerPlugin):
    """Kills the worker process running the build's first counting task (once: a marker
    file says it was done): the worker dies mid-build, as a preempted machine does."""

    name = "kill-once"

    def __init__(self, marker: str):
        self.marker = marker

    def transition(self, key, start, finish, **kwargs):
        if finish == "executing" and str(key).startswith("geoheat-count") \
                and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(key))
            os._exit(1)


def test_a_worker_that_dies_mid_build_is_replaced_and_the_result_is_the_same(tmp_path, inputs):
    marker = tmp_path / "killed"
    with local_cluster() as lc, distributed.Client(lc, set_as_default=False) as client:
        client.register_plugin(KillOnce(str(marker)))
        plain, dask = build_both(tmp_path, [inputs], lc.scheduler_address, zoom=14)
    assert marker.read_text().startswith("geoheat-count")  # a worker did die counting
    assert_same_files(tmp_path)
    assert comparable(dask) == comparable(plain)


class KillAlways(distributed.WorkerPlugin):
    """Kills every worker that starts reading: a file no worker survives."""

    name = "kill-always"

    def transition(self, key, start, finish, **kwargs):
        if finish == "executing" and str(key).startswith("geoheat-read"):
            os._exit(1)


def _ignores_sigint(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    ignored = next(line for line in status.splitlines() if line.startswith("SigIgn:"))
    return bool(int(ignored.split()[1], 16) & (1 << (signal.SIGINT - 1)))


def _is_worker(process) -> bool:
    """A Dask worker process of the build (children come and go while it starts: one
    gone between the listing and this look is not one)."""
    import psutil

    try:
        return "spawn_main" in " ".join(process.cmdline())
    except psutil.Error:
        return False


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_ctrl_c_in_a_terminal_stops_the_cli_in_one_line(tmp_path):
    """SIGINT to the whole process group, as a terminal sends it: the workers ignore it,
    the client cancels, stops its cluster and says so in one line."""
    import psutil

    folder = tmp_path / "in"
    for i in range(120):  # enough work to be interrupted in: 4,440 files (links)
        (folder / str(i)).mkdir(parents=True)
        for sample in SAMPLES.glob("*.gpx"):
            (folder / str(i) / sample.name).symlink_to(sample)
    out = tmp_path / "h.png"
    proc = subprocess.Popen(
        [sys.executable, "-m", "geoheat", "build", str(folder), "--zoom", "16", "--no-cache",
         "--basemap", "none", "-o", str(out), "--scheduler", "local:2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:  # until both workers are up (ignoring SIGINT) and the client is not
            assert proc.poll() is None, proc.communicate()
            workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                       if _is_worker(p) and _ignores_sigint(p.pid)]
            if len(workers) >= 2 and not _ignores_sigint(proc.pid):
                break
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    if proc.returncode == 0:
        pytest.skip("the build finished before the interrupt reached it")
    assert proc.returncode == 130
    assert err.strip() == "geoheat: interrupted"
    assert not list(tmp_path.glob("h.*"))
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in workers)


def test_a_file_that_kills_every_worker_fails_the_build_in_one_line(tmp_path, inputs):
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), \
            local_cluster(n=1) as lc, distributed.Client(lc, set_as_default=False) as client:
        client.register_plugin(KillAlways())
        # 40 files on 1 worker: 4 tasks of 10 files; whichever runs first kills it.
        with pytest.raises(InputError, match=r"^the Dask workers handling \S+/in/\S+ and 9 "
                                             r"more files died again and again \(out of mem"):
            geoheat.build([inputs], out(tmp_path, "dask"), zoom=14,
                          scheduler=lc.scheduler_address)


def geoheat_tasks(address):
    with distributed.Client(address, set_as_default=False) as client:
        return client.run_on_scheduler(
            lambda dask_scheduler: [str(k) for k in dask_scheduler.tasks
                                    if str(k).startswith("geoheat-")])


def test_ctrl_c_cancels_the_builds_futures(tmp_path, inputs, scheduler):
    def interrupted(items, label, length=None):
        for item in items:
            raise KeyboardInterrupt
        yield from ()

    with pytest.raises(KeyboardInterrupt):
        geoheat.build([inputs], tmp_path / "h.png", zoom=14, scheduler=scheduler,
                      progress=interrupted)
    deadline = time.monotonic() + 10
    while geoheat_tasks(scheduler):
        assert time.monotonic() < deadline, geoheat_tasks(scheduler)
        time.sleep(0.1)
    assert not list(tmp_path.glob("h.*"))  # nothing written
    # The cluster serves the next build.
    geoheat.build([inputs], tmp_path / "h.png", zoom=14, scheduler=scheduler)


def test_ctrl_c_on_a_local_cluster_stops_it(tmp_path, inputs):
    before = children()

    def interrupted(items, label, length=None):
        raise KeyboardInterrupt
        yield

    with pytest.raises(KeyboardInterrupt):
        geoheat.build([inputs], tmp_path / "h.png", zoom=14, scheduler="local:1",
                      progress=interrupted)
    deadline = time.monotonic() + 10
    while children() - before:
        assert time.monotonic() < deadline, "the LocalCluster outlived the interrupted build"
        time.sleep(0.2)


def test_sum_counts_leaves_its_inputs_unchanged():
    grid = geoheat.tiles.Grid(1, 0, 0, 512, 512)
    a = {(0, 0): np.ones((256, 256), np.uint32), (1, 0): np.full((256, 256), 2, np.uint32)}
    b = {(0, 0): np.full((256, 256), 5, np.uint32), (1, 1): np.ones((256, 256), np.uint32)}
    kept_a = {k: v.copy() for k, v in a.items()}
    kept_b = {k: v.copy() for k, v in b.items()}
    (total,), stats = cluster.sum_counts(([a], [(0, 1, 0)]), ([b], [(1, 2, 3)]), [grid], None)
    assert sorted(stats) == [(0, 1, 0), (1, 2, 3)]
    assert (total[(0, 0)] == 6).all() and (total[(1, 0)] == 2).all() and (total[(1, 1)] == 1).all()
    for kept, now in ((kept_a, a), (kept_b, b)):
        assert kept.keys() == now.keys() and all((kept[k] == now[k]).all() for k in kept)


# --- options and the plain install ---------------------------------------------------

@pytest.mark.parametrize("scheduler, message", [
    ("local:0", "local:N needs N of"),
    ("local:x", "local:N or a Dask scheduler's address"),
    ("http://example.org", "local:N or a Dask scheduler's address"),
    ("", "local:N or a Dask scheduler's address"),
    # Before: a ValueError or TypeError from inside Dask's client, then 60 s at exit.
    ("tcp://127.0.0.1", "local:N or a Dask scheduler's address"),
    ("inproc://x", "local:N or a Dask scheduler's address"),
    # Named apart: a test's name must not hold a pid (pytest-xdist's workers differ).
    pytest.param(f"inproc://127.0.0.1/{os.getpid() + 1}/1", "is inside another process",
                 id="inproc-of-another-process"),
    ("tcp://127.0.0.1:0", "the port must be 1-65535"),
    ("tcp://127.0.0.1:65536", "the port must be 1-65535"),
    ("tcp://host:8786/path", "local:N or a Dask scheduler's address"),
])
def test_bad_schedulers_are_refused_with_one_line(scheduler, message):
    with pytest.raises(ParameterError, match=message):
        geoheat.BuildOptions(scheduler=scheduler)


def test_good_schedulers_are_kept():
    for text in ("local:2", "tcp://127.0.0.1:8786", "127.0.0.1:8786", "tls://head:8786",
                 "tcp://[::1]:8786", "ws://head.example.org:8786", "wss://10.0.0.5:443",
                 f"inproc://127.0.0.1/{os.getpid()}/3"):
        assert geoheat.BuildOptions(scheduler=f" {text} ").scheduler == text


# distributed probes a route to 8.8.8.8 for its own address, which these tests refuse.
@pytest.mark.filterwarnings("ignore:Couldn't detect a suitable IP address")
def test_an_in_process_cluster_of_a_script_is_used(tmp_path, inputs):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Port .* is already in use")
        in_process = distributed.LocalCluster(n_workers=1, threads_per_worker=1,
                                              processes=False, dashboard_address=None,
                                              silence_logs=50)
    with in_process as lc:
        assert lc.scheduler_address.startswith("inproc://")
        plain = geoheat.build([inputs], out(tmp_path, "plain"), zoom=14, counts=True)
        dask = geoheat.build([inputs], out(tmp_path, "dask"), zoom=14, counts=True,
                             scheduler=lc.scheduler_address)
    assert_same_files(tmp_path)
    assert comparable(dask) == comparable(plain)


def test_without_dask_the_scheduler_says_which_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "distributed" else real(name, *a))
    with pytest.raises(ParameterError) as err:
        geoheat.BuildOptions(scheduler="local:2")
    assert str(err.value) == "--scheduler needs the dask extra: pip install 'geoheat[dask]'"


def test_url_inputs_need_a_scheduler():
    with pytest.raises(ParameterError, match="URL inputs are read on a Dask cluster"):
        geoheat.BuildOptions(inputs=["s3://bucket/runs/"])
    options = geoheat.BuildOptions(inputs=["s3://bucket/runs/", "gpx"], scheduler="local:1")
    assert options.inputs == ("s3://bucket/runs/", Path("gpx"))


def test_help_and_a_plain_build_import_no_dask(tmp_path):
    code = ("import sys\nfrom geoheat.cli import cli\nimport geoheat\n"
            f"geoheat.build([{str(SAMPLES)!r}], {str(tmp_path / 'h.png')!r}, zoom=12)\n"
            "print(sorted({'dask', 'distributed', 'fsspec'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


# --- fsspec URLs ----------------------------------------------------------------------

def test_file_urls_read_on_the_workers_equal_the_local_paths(tmp_path, inputs, scheduler):
    url = f"file://{inputs}"
    plain = geoheat.build([inputs], out(tmp_path, "plain"), zoom=14, counts=True)
    dask = geoheat.build([url], out(tmp_path, "dask"), zoom=14, counts=True,
                         scheduler=scheduler)
    assert_same_files(tmp_path)
    # The same files, named by their URLs; the unreadable ones with the same reasons.
    renamed = {name.replace(url, str(inputs)): why.replace(url, str(inputs))
               for name, why in dask.skipped}
    assert renamed == dict(plain.skipped)
    assert (dask.points_used, dask.points_outside) == (plain.points_used, plain.points_outside)


def test_memory_urls_with_an_export_index(tmp_path, write_gpx):
    """memory:// lives in one process: a LocalCluster of threads shares it."""
    import fsspec

    fs = fsspec.filesystem("memory")
    local = tmp_path / "export"
    track = [(104.06 + i * 0.001, 30.66 + i * 0.0005) for i in range(200)]
    write_gpx("a.gpx", track, folder=local / "activities",
              start=datetime(2024, 5, 1, 7, tzinfo=timezone.utc))
    write_gpx("b.gpx", track[::-1], folder=local / "activities",
              start=datetime(2023, 5, 2, 7, tzinfo=timezone.utc))
    write_gpx("c.gpx", track, folder=local / "activities" / ".hidden")
    index = ("Activity ID,Activity Date,Activity Name,Activity Type,Filename\n"
             "1,\"May 1, 2024, 7:00:00 AM\",A,Run,activities/a.gpx\n"
             "2,\"May 2, 2023, 7:00:00 AM\",B,Ride,activities/b.gpx\n")
    (local / "activities.csv").write_text(index)
    for path in local.rglob("*"):
        if path.is_file():
            fs.pipe(f"/geoheat-test/{path.relative_to(local)}", path.read_bytes())
    try:
        found = url_sources.find_url_sources("memory://geoheat-test")
        assert [(s.url, s.activity_type) for s in found] == [
            ("memory://geoheat-test/activities/a.gpx", "Run"),
            ("memory://geoheat-test/activities/b.gpx", "Ride")]
        with local_cluster(processes=False) as lc:
            plain = geoheat.build([local], out(tmp_path, "plain"), zoom=15, counts=True,
                                  types=["Run"])
            dask = geoheat.build(["memory://geoheat-test"], out(tmp_path, "dask"),
                                 zoom=15, counts=True, types=["Run"],
                                 scheduler=lc.scheduler_address)
        assert_same_files(tmp_path)
        assert dask.types == plain.types == {"Run": 1}
        with pytest.raises(InputError, match="no such file or folder"):
            url_sources.find_url_sources("memory://geoheat-test/nothing-here")
    finally:
        fs.rm("/geoheat-test", recursive=True)


def test_parse_url_names_the_url_in_its_reasons(tmp_path):
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/geoheat-parse/broken.gpx", b'<?xml version="1.0"?><gpx><trk><trkseg><trkpt lat="4')
    fs.pipe("/geoheat-parse/big.gpx", b" " * 5000)
    try:
        broken = url_sources.parse_url("memory://geoheat-parse/broken.gpx")
        assert broken.name == "memory://geoheat-parse/broken.gpx"
        assert broken.error.startswith("memory://geoheat-parse/broken.gpx: ")
        assert "geoheat-url-" not in broken.error  # no temporary path
        big = url_sources.parse_url("memory://geoheat-parse/big.gpx", max_bytes=1000)
        assert big.error == "memory://geoheat-parse/big.gpx: larger than 1,000 bytes " \
                            "(--max-file-size raises the limit)"
        gone = url_sources.parse_url("memory://geoheat-parse/gone.gpx")
        assert gone.error.startswith("memory://geoheat-parse/gone.gpx: cannot read")
        good = tmp_path / "one.gpx"
        good.write_text(gpx_document([np.array([(104.0, 30.0), (104.01, 30.01)])]))
        fs.pipe("/geoheat-parse/one.gpx", good.read_bytes())
        parsed = url_sources.parse_url("memory://geoheat-parse/one.gpx")
        local = parse_file(good)
        assert parsed.error is None and parsed.name == "memory://geoheat-parse/one.gpx"
        assert np.array_equal(parsed.xy, local.xy) and parsed.start == local.start
    finally:
        fs.rm("/geoheat-parse", recursive=True)


def test_files_per_task():
    assert cluster.files_per_task(1, 2) == 1
    assert cluster.files_per_task(184, 2) == 16
    assert cluster.files_per_task(40, 2) == 5
    assert cluster.files_per_task(10**6, 100) == cluster.MAX_FILES_PER_TASK
