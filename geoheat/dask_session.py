"""A Dask client for one build (`--scheduler ADDRESS` or `local:N`): the scheduler
asked before connecting, a `local:N` cluster started and stopped, the build's futures
cancelled on an error or Ctrl-C.

Failures: an address that is not a Dask scheduler's (or does not answer) is one line,
`cannot reach the Dask scheduler at ADDRESS (why)`; Ctrl-C (KeyboardInterrupt) cancels
every future of the build, closes a `local:N` cluster and is raised again.

Dask is the optional `dask` extra: imported inside functions, and this module only when
a build asks for a scheduler (cluster.py reads and counts with the session).
"""

import contextlib
import gc
import logging
import re
import warnings

from .errors import ParameterError
from .checks import NEEDS_DASK

LOCAL = re.compile(r"local:(\d+)$")
CONNECT_TIMEOUT = "30s"


@contextlib.contextmanager
def _interrupts_ignored():
    """SIGINT ignored in this block, so processes started in it ignore it for life (an
    ignored signal stays ignored across exec, and Python then leaves it so). Blocking
    it instead would not do: the new processes start with no signal blocked."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _quiet_interrupted_gathers() -> None:
    """Leave out asyncio's 'Task exception was never retrieved' for the gathers an
    interrupt left behind (distributed's AllExit when the client closes): the CLI says
    'interrupted' in one line."""
    asyncio_log = logging.getLogger("asyncio")
    if not any(getattr(f, "geoheat", False) for f in asyncio_log.filters):
        def keep(record):
            error = record.exc_info[1] if record.exc_info else None
            return type(error).__name__ != "AllExit"

        keep.geoheat = True
        asyncio_log.addFilter(keep)


def _ignore_interrupts():
    """A worker plugin: ignore SIGINT on the workers of a LocalCluster geoheat started
    (see Session). Made here, so that Dask is imported only with a scheduler."""
    from distributed import WorkerPlugin

    class IgnoreInterrupts(WorkerPlugin):
        name = "geoheat-ignore-interrupts"

        def setup(self, worker=None):
            import signal
            import threading

            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, signal.SIG_IGN)

    return IgnoreInterrupts()


class Session:
    """A Dask client for one build: `local:N` starts (and `close` stops) a LocalCluster of
    N worker processes on 127.0.0.1; any other value is a scheduler's address."""

    def __init__(self, scheduler: str):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ParameterError(NEEDS_DASK) from None
        self.scheduler = scheduler
        self.cluster = None
        self.futures: list = []  # every future of the build, cancelled on interrupt
        self.bytes_to_client = 0  # Dask's size estimate of what the client gathered
        local = LOCAL.match(scheduler)
        try:
            if local:
                # The workers are in the terminal's process group, but Ctrl-C is the
                # client's to handle (cancel, close the cluster): they ignore it, from
                # birth, and when their nanny restarts one (the plugin). The client is
                # made in the same block: a Ctrl-C half-way through Client() left one
                # that hung the interpreter's exit, closing itself from __del__ over a
                # stopped event loop (1 exit in 20). The price: a Ctrl-C during the
                # second or so all this takes is lost.
                with warnings.catch_warnings(), _interrupts_ignored():
                    warnings.filterwarnings("ignore", "Port .* is already in use")  # takes another
                    self.cluster = LocalCluster(
                        n_workers=int(local.group(1)), threads_per_worker=1, processes=True,
                        host="127.0.0.1", dashboard_address=None,
                        silence_logs=logging.CRITICAL)  # errors come back as exceptions
                    self.client = Client(self.cluster, set_as_default=False)
                    self.client.register_plugin(_ignore_interrupts())
            else:
                ask_scheduler(scheduler, CONNECT_TIMEOUT)
                failure = None
                try:
                    self.client = Client(scheduler, timeout=CONNECT_TIMEOUT,
                                         set_as_default=False)
                except Exception as err:  # noqa: BLE001 - it answered the probe, then not
                    failure = unreachable(scheduler, _first_line(err))
                if failure is not None:
                    # A Client whose start failed closes itself when collected, over its
                    # event loop: now, while the loop runs, not at exit (60 s then).
                    gc.collect()
                    raise failure
        except (OSError, TimeoutError) as err:  # the LocalCluster's
            self.close()
            raise unreachable(scheduler, _first_line(err)) from None
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, kind, error, trace) -> None:
        if isinstance(error, KeyboardInterrupt):
            _quiet_interrupted_gathers()
        if error is not None:
            self.cancel()
        self.close()

    @property
    def workers(self) -> int:
        """Tasks the cluster runs at once (its workers' threads), at least 1."""
        return max(sum(self.client.nthreads().values()), 1)

    def cancel(self) -> None:
        """Cancel every future of the build (Ctrl-C, an error): the scheduler drops them."""
        futures, self.futures = self.futures, []
        client = getattr(self, "client", None)
        if futures and client is not None and client.status == "running":
            try:
                client.cancel(futures, force=True)
            except Exception:  # noqa: BLE001 - a scheduler already gone has nothing to cancel
                pass

    def close(self) -> None:
        """Disconnect, and stop the cluster this session started."""
        client, self.client = getattr(self, "client", None), None
        cluster, self.cluster = self.cluster, None
        for thing in (client, cluster):
            if thing is not None:
                try:
                    thing.close()
                except Exception:  # noqa: BLE001 - closing what is gone
                    pass


    def release(self, futures) -> None:
        """Let the scheduler drop these futures' results (and forget them here)."""
        gone = {f.key for f in futures}
        self.futures = [f for f in self.futures if f.key not in gone]
        for future in futures:
            future.release()


def unreachable(address: str, why: str) -> ParameterError:
    return ParameterError(f"cannot reach the Dask scheduler at {address} ({why})")


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err).strip() else type(err).__name__


def ask_scheduler(address: str, timeout: str | float = CONNECT_TIMEOUT) -> None:
    """Make sure a Dask scheduler answers at `address` within `timeout`, or raise
    ParameterError 'cannot reach the Dask scheduler at ADDRESS (why)'.

    Asked as a Dask client first asks (the comm handshake, then 'identity'), on an
    event loop of its own in a thread, so the whole exchange can be cut off: Dask's
    connect bounds the TCP connect but not the handshake after it (a peer that
    accepts and stays silent holds it for ever), bytes that are not Dask's raise
    whatever its reader makes of them (a 3 EiB allocation for an HTTP server's
    reply), and a Client whose start failed that way hangs the exit for 60 s."""
    import asyncio
    import threading

    from dask.utils import parse_timedelta
    from distributed.comm import CommClosedError, connect
    from distributed.comm.addressing import parse_address
    from distributed.comm.registry import get_backend
    from distributed.security import Security

    seconds = parse_timedelta(timeout, "s")
    try:
        get_backend(parse_address(address)[0])
        connection = Security().get_connection_args("client")
    except (ValueError, ImportError) as err:
        raise unreachable(address, _first_line(err)) from None
    if address.startswith(("tls://", "wss://")) and connection.get("ssl_context") is None:
        raise unreachable(address, "TLS needs Dask's TLS settings: distributed.comm.tls."
                                   "ca-file, client.cert and client.key")

    async def identity():
        # TCP retries stop a little before the whole deadline, so that a port nothing
        # listens on says so rather than 'no handshake'.
        comm = await connect(address, timeout=seconds * 0.9, **connection)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    outcome: list = []

    def run():
        try:
            outcome.append(asyncio.run(asyncio.wait_for(identity(), seconds)))
        except BaseException as err:  # noqa: BLE001 - judged below, in the caller's thread
            outcome.append(err)

    asker = threading.Thread(target=run, name="geoheat-ask-scheduler", daemon=True)
    asker.start()
    asker.join(seconds + 5)  # the loop's own deadline ends it first
    answer = outcome[0] if outcome else TimeoutError()
    if isinstance(answer, dict) and answer.get("type") == "Scheduler":
        return
    if isinstance(answer, (TimeoutError, asyncio.TimeoutError)):
        why = (f"it accepted the connection but gave no Dask handshake within {seconds:g} s: "
               "not a Dask scheduler?")
    elif isinstance(answer, CommClosedError):
        why = "it closed the connection without a Dask handshake: not a Dask scheduler?"
    elif isinstance(answer, OSError):
        why = _first_line(answer)  # 'Timed out trying to connect to ... after 27 s'
    elif isinstance(answer, dict) and isinstance(answer.get("type"), str):
        why = f"that is a Dask {answer['type']}, not the scheduler"
    elif isinstance(answer, BaseException) and not isinstance(answer, Exception):
        raise answer  # KeyboardInterrupt, SystemExit: not the peer's doing
    else:
        kind = type(answer).__name__
        why = f"it answers, but not as a Dask scheduler does ({kind})"
    raise unreachable(address, why)
