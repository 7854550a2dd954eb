"""TaskManagerProcess: the root service of ``streamlet taskmanager``.

Boot order (stopped in reverse)::

    network environment (data endpoint; its address is reported at registration)
    task executor (owns the subtask tasks)
    jobmanager connection loop:
        connect (retry with backoff until the JobManager is up) -> register -> session
        session = heartbeats + state reports + metrics reports, until the connection or the
        JobManager is lost -> cancel and drop every job -> connect again

A refused registration (wrong cluster token, bad slot count) is fatal: it is logged with its
reason and the process exits with status 2.  A JobManager that does not acknowledge heartbeats
for ``heartbeat.timeout`` counts as lost.  uvloop is installed here, at the process entry.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

from streamlet.clock import Clock, SystemClock
from streamlet.config import Configuration
from streamlet.errors import StreamletError
from streamlet.ids import new_id
from streamlet.rpc.client import Backoff, connect, session_kwargs
from streamlet.rpc.endpoint import RpcConnection
from streamlet.rpc.errors import RegistrationRefusedError, RpcError, TlsHandshakeResetError
from streamlet.rpc.tls import internal_contexts
from streamlet.rpc.messages import RegisterTaskManager
from streamlet.rpc.gateways import RemoteJobManagerGateway
from streamlet.logging import configure_logging
from streamlet.runtime.eventloop import gc_threshold, new_event_loop
from streamlet.runtime.taskmanager.executor import TaskExecutor, state_options, task_config, watchdog_timeout
from streamlet.runtime.taskmanager.gateway import TaskManagerEndpoint
from streamlet.runtime.taskmanager.metrics_server import MetricsServer
from streamlet.runtime.taskmanager.session import JobManagerSession
from streamlet.runtime.taskmanager.slots import SlotTable

logger = logging.getLogger(__name__)
#: consecutive TLS handshakes the jobmanager closes before this taskmanager counts as refused
_TLS_RESETS = 3


def _resources(slots: int, metrics_port: int | None = None) -> dict[str, Any]:
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = -1
    return {"hostname": socket.gethostname(), "pid": os.getpid(), "cpu_cores": os.cpu_count() or 1,
            "physical_memory": memory, "slots": slots, "metrics_port": metrics_port}


class TaskManagerProcess:
    """See the module docstring.  ``run`` returns when :meth:`stop` is called."""

    def __init__(self, config: Configuration, jobmanager_address: str, slots: int | None = None,
                 clock: Clock | None = None) -> None:
        self.config = config
        self.jobmanager_address = jobmanager_address
        self.slots = SlotTable(slots or config["taskmanager.numberOfTaskSlots"])
        self.clock = clock or SystemClock()
        self.id: str = config["taskmanager.resource-id"] or new_id()
        self.token: str | None = config["security.auth.token"]
        self._stopping = asyncio.Event()
        self.registered = asyncio.Event()
        self.network: Any = None
        self.executor: TaskExecutor | None = None
        #: why the JobManager refused this TaskManager (then :meth:`run` returns)
        self.refusal: str | None = None
        self._tls: Any = None
        #: ``GET /metrics`` of this TaskManager (``metrics.port``), once started
        self.metrics_server: MetricsServer | None = None

    def stop(self) -> None:
        """Ask :meth:`run` to return (cancels running subtasks)."""
        self._stopping.set()

    async def run(self) -> None:
        """Run until stopped, or until the JobManager refuses this TaskManager (see :attr:`refusal`)."""
        from streamlet.runtime.taskmanager.network.environment import NetworkEnvironment

        conf = self.config
        tmp_root = conf["taskmanager.tmp.dir"]
        job_root = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=f"streamlet-tm-{self.id[:8]}-", dir=tmp_root))
        try:
            # certificates are read once, before anything connects or listens
            tls_server, tls_client = await asyncio.to_thread(internal_contexts, conf)
            self._tls = tls_client
            self.network = NetworkEnvironment(host=conf["taskmanager.data.address"],
                                              port=conf["taskmanager.data.port"], token=self.token,
                                              capacity=conf["taskmanager.network.queue-capacity"],
                                              connect_timeout=conf["rpc.ask-timeout"], clock=self.clock,
                                              # a ping every 2 timeouts, a pong due within one (aiohttp: half)
                                              heartbeat=2 * conf["heartbeat.timeout"],
                                              max_frame_bytes=conf["taskmanager.network.max-frame-size"],
                                              ssl_server=tls_server, ssl_client=tls_client)
            try:
                await self.network.start()  # OSError when the data port is taken
                self.executor = TaskExecutor(self.id, self.slots, self.network, self.clock, job_root,
                                             conf["taskmanager.network.queue-capacity"], task_config(conf),
                                             state_options=state_options(conf), storage_config=conf,
                                             watchdog_timeout=watchdog_timeout(conf))
                executor = self.executor
                self.metrics_server = MetricsServer(conf["metrics.address"], conf["metrics.port"],
                                                    lambda: [executor.metrics], self.token)
                await self.metrics_server.start()
                try:
                    async with asyncio.TaskGroup() as tg:
                        self.executor.bind(tg)
                        try:
                            await self._connection_loop(self.executor)
                        finally:
                            await self.executor.reset()
                finally:
                    self.executor.unbind()
            finally:
                if self.metrics_server is not None:
                    await self.metrics_server.stop()
                await self.network.stop()
        finally:
            await asyncio.to_thread(shutil.rmtree, job_root, True)

    async def _connection_loop(self, executor: TaskExecutor) -> None:
        conf = self.config
        backoff = Backoff(self.clock, conf["taskmanager.registration.max-backoff"])
        attempts = resets = 0
        async with aiohttp.ClientSession(**session_kwargs()) as session:
            while not self._stopping.is_set() and self.refusal is None:
                try:
                    ws = await self._connect_or_stop(session)
                    if ws is None:  # stopped while connecting
                        return
                except RegistrationRefusedError as exc:
                    self.refusal = str(exc)
                    return
                except TlsHandshakeResetError as exc:
                    resets += 1
                    if resets >= _TLS_RESETS:  # not a restart: the jobmanager refuses our certificate
                        self.refusal = str(exc)
                        return
                    await self._wait_or_stop(backoff.wait())
                    continue
                except RpcError as exc:
                    attempts += 1
                    if attempts == 1 or attempts % 10 == 0:
                        logger.info("jobmanager not reachable yet (%s); retrying with backoff (attempt %d)",
                                    exc, attempts)
                    await self._wait_or_stop(backoff.wait())
                    continue
                attempts = resets = 0
                conn = RpcConnection(ws, TaskManagerEndpoint(executor), f"jobmanager {self.jobmanager_address}",
                                     conf["rpc.ask-timeout"], idle_timeout=conf["heartbeat.timeout"])
                registered = await self._session(conn, executor)
                await executor.reset()
                self.registered.clear()
                if registered:
                    backoff.reset()
                if not self._stopping.is_set() and self.refusal is None:
                    logger.warning("lost the jobmanager at %s; cancelled every subtask, reconnecting",
                                   self.jobmanager_address)
                    await self._wait_or_stop(backoff.wait())

    async def _connect_or_stop(self, session: aiohttp.ClientSession) -> Any:
        """The websocket to the JobManager, or None when :meth:`stop` came first (a connect to an
        unreachable host may take ``rpc.ask-timeout``; stopping must not wait for it)."""
        conf = self.config

        async def attempt() -> Any:
            try:
                return await connect(session, self.jobmanager_address, self.token, conf["rpc.ask-timeout"],
                                     conf["rpc.max-message-size"], self._tls)
            except StreamletError as exc:  # handed to the caller, not to the task group
                return exc

        async with asyncio.TaskGroup() as tg:
            connecting = tg.create_task(attempt())
            stopper = tg.create_task(self._stopping.wait())
            await asyncio.wait({connecting, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if not connecting.done():
                connecting.cancel()
                return None
        result = connecting.result()
        if isinstance(result, BaseException):
            raise result
        return result

    async def _wait_or_stop(self, aw: Any) -> None:
        async with asyncio.TaskGroup() as tg:
            sleeper = tg.create_task(aw)
            stopper = tg.create_task(self._stopping.wait())
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
            sleeper.cancel()
            stopper.cancel()

    async def _read(self, conn: RpcConnection) -> None:
        """The connection's read loop; a failure in it is a lost JobManager, never a crash of the session."""
        try:
            await conn.run()
        except Exception as exc:  # noqa: BLE001 - whatever broke the socket, the answer is to reconnect
            logger.warning("rpc connection to the jobmanager at %s failed: %s: %s", self.jobmanager_address,
                           type(exc).__name__, exc)
            await conn.close()

    async def _session(self, conn: RpcConnection, executor: TaskExecutor) -> bool:
        """One registered session over ``conn``; returns whether registration succeeded."""
        session = JobManagerSession(
            RemoteJobManagerGateway(conn), executor,
            RegisterTaskManager(self.id, len(self.slots), self.network.address, _resources(len(self.slots),
                                                                                  self.metrics_server.port
                                                                                  if self.metrics_server else None)),
            self.clock, self.config["taskmanager.metrics.interval"], on_end=conn.close,
            name=f"jobmanager {self.jobmanager_address}")
        async with asyncio.TaskGroup() as tg:
            reader = tg.create_task(self._read(conn), name="rpc reader")
            answer = await session.register()
            if answer is None:
                self.refusal = session.refusal
                await conn.close()
                return False
            conn.fence = answer.registration_id
            logger.info("registered at jobmanager %s as %s with %d slot(s); data address %s",
                        self.jobmanager_address, self.id, len(self.slots), self.network.address)
            self.registered.set()
            stopper = tg.create_task(self._stopping.wait())
            await session.run(asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED))
            stopper.cancel()
        return True


def run_taskmanager(config: Configuration, jobmanager_address: str, slots: int | None = None) -> int:
    """Entry of ``streamlet taskmanager``: run on uvloop until SIGTERM/SIGINT; returns the exit status."""
    configure_logging(config["log.level"], config["log.format"])
    process = TaskManagerProcess(config, jobmanager_address, slots)

    async def main() -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, process.stop)
        try:
            await process.run()
        except OSError as exc:
            logger.error("cannot start the taskmanager: %s", exc)
            return 1
        if process.refusal is not None:
            logger.error("%s", process.refusal)
            return 2
        logger.info("taskmanager %s stopped", process.id)
        return 0

    with gc_threshold(config["process.gc.young-threshold"]), asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main())
