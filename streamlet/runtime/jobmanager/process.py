"""JobManagerProcess: the root service of ``streamlet jobmanager``.

Children, started in this order and stopped in reverse (:class:`~streamlet.lifecycle.Lifecycle`)::

    resource manager   TaskManager registry + heartbeat monitor (needed by everything below)
    dispatcher         JobMasters (needs the resource manager)
    rpc server         /rpc for TaskManagers on jobmanager.rpc.port (hands sessions to both above)
    rest server        the REST API on rest.port (reads through the dispatcher)

``streamlet run`` runs the same services in its own process (``runtime.minicluster``), with the
RPC server only when TaskManager processes connect and the REST API only when asked for.

uvloop and logging are set up here, at the process entry, and nowhere in library code.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from aiohttp import web

from streamlet.clock import Clock, SystemClock
from streamlet.config import Configuration
from streamlet.lifecycle import Lifecycle
from streamlet.rest.app import create_app
from streamlet.rest.limits import RestLimits
from streamlet.rpc.endpoint import RpcConnection
from streamlet.rpc.server import RpcServer
from streamlet.rpc.tls import internal_contexts, rest_server_context
from streamlet.runtime.jobmanager.dispatcher import Dispatcher
from streamlet.runtime.jobmanager.gateway import TaskManagerSession
from streamlet.runtime.jobmanager.resource_manager import ResourceManager
from streamlet.logging import configure_logging
from streamlet.runtime.eventloop import gc_threshold, new_event_loop

logger = logging.getLogger(__name__)


class JobManagerProcess:
    """See the module docstring.  :attr:`ready` is set once both servers listen."""

    def __init__(self, config: Configuration, clock: Clock | None = None, serve_rpc: bool = True,
                 serve_rest: bool = True) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        #: ``streamlet run`` without TaskManager processes needs no RPC port, and no REST port
        #: unless asked for one
        self.serve_rpc = serve_rpc
        self.serve_rest = serve_rest
        self.ready = asyncio.Event()
        self._stopping = asyncio.Event()
        self.rest_port: int | None = None
        self.rpc_port: int | None = None
        self.resource_manager: ResourceManager | None = None
        self.dispatcher: Dispatcher | None = None

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Serve until :meth:`stop`; raises OSError when a port is taken."""
        conf = self.config
        upload_root = conf["web.upload.dir"]
        upload_dir = (Path(upload_root) if upload_root
                      else Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="streamlet-jm-")))
        try:
            await self._serve(upload_dir)
        finally:
            if not upload_root:  # also when a port was taken: the directory is ours either way
                await asyncio.to_thread(shutil.rmtree, upload_dir, True)

    async def _serve(self, upload_dir: Path) -> None:
        conf = self.config
        # certificates are read once, before anything listens (a bad file fails the start)
        rpc_tls, _ = await asyncio.to_thread(internal_contexts, conf)
        rest_tls = await asyncio.to_thread(rest_server_context, conf)
        rm = ResourceManager(self.clock, conf["heartbeat.interval"], conf["heartbeat.timeout"],
                             conf["cluster.evenly-spread-out-slots"])
        dispatcher = Dispatcher(rm, conf, self.clock, upload_dir)
        self.resource_manager, self.dispatcher = rm, dispatcher

        def session(conn: RpcConnection) -> TaskManagerSession:
            return TaskManagerSession(conn, rm, dispatcher, deploy_timeout=max(conf["rpc.ask-timeout"], 30.0))

        rpc = RpcServer(conf["jobmanager.rpc.address"], conf["jobmanager.rpc.port"], session,
                        conf["security.auth.token"], conf["rpc.ask-timeout"], conf["heartbeat.timeout"],
                        conf["rpc.max-message-size"], ssl_context=rpc_tls)
        async with Lifecycle("jobmanager") as lc:
            lc.spawn(rm.run(), "heartbeat monitor")
            # stopped by letting it end: it suspends the jobs that still run
            lc.spawn(dispatcher.run(), "dispatcher", stop=dispatcher.stop)
            await dispatcher.started.wait()  # submissions need the dispatcher's TaskGroup
            if self.serve_rpc:
                await lc.start("rpc server", rpc.start(), rpc.stop)
                self.rpc_port = rpc.port
            # the jobs are suspended before the TaskManager connections close (their loss would fail them)
            lc.on_stop("suspend the jobs", dispatcher.stop)
            if self.serve_rest:
                rest_runner = web.AppRunner(create_app(dispatcher, conf["security.auth.token"],
                                                       RestLimits.from_config(conf)),
                                            handle_signals=False, access_log=None)
                await lc.start("rest server", rest_runner.setup(), rest_runner.cleanup)
                site = web.TCPSite(rest_runner, conf["rest.address"], conf["rest.port"], ssl_context=rest_tls)
                await site.start()
                server = site._server
                self.rest_port = (server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
                                  if server is not None and server.sockets else conf["rest.port"])  # type: ignore[union-attr]
            logger.info("jobmanager up: REST %s, RPC %s",
                        f"{'https' if rest_tls else 'http'}://{conf['rest.address']}:{self.rest_port}"
                        if self.serve_rest else "off",
                        f"{'wss' if rpc_tls else 'ws'}://{conf['jobmanager.rpc.address']}:{self.rpc_port}/rpc"
                        if self.serve_rpc else "off")
            self.ready.set()
            await lc.run_until(self._stopping)


def run_jobmanager(config: Configuration) -> int:
    """Entry of ``streamlet jobmanager``: run on uvloop until SIGTERM/SIGINT; returns the exit status."""
    configure_logging(config["log.level"], config["log.format"])
    process = JobManagerProcess(config)

    async def main() -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, process.stop)
        failed: list[BaseException] = []
        try:
            await process.run()
        except* OSError as group:
            failed.extend(group.exceptions)
        if failed:
            logger.error("cannot start the jobmanager: %s; pick free ports with -D rest.port=... "
                         "-D jobmanager.rpc.port=...", failed[0])
            return 1
        logger.info("jobmanager stopped")
        return 0

    with gc_threshold(config["process.gc.young-threshold"]), asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main())
