"""The stage: a small web server inside hs that shows a performance in a browser.

aiohttp runs in a thread of its own, on an asyncio loop of its own. It serves one page
and its files from the package (``handshake_score/play/web/``: nothing is fetched from
the internet, so the page works in a classroom without it), the sounds of ``hs render``
for the browser's sample rate, and a WebSocket at ``/ws`` that streams messages to every
browser watching (a *viewer*).

How it keeps the performance safe from its audience:

- **Nothing waits for a browser.** :meth:`Stage.publish` may be called from any thread
  and only appends to a deque (and, if the loop is not already due to look, wakes it
  once): the conductor hands a note over in a microsecond or two. Encoding and sending
  happen on the stage's own loop.
- **A bounded queue per viewer.** Each viewer has its own list of messages waiting and a
  task that sends them, coalesced into one WebSocket frame. A viewer that cannot keep up
  (a slow network, a sleeping laptop) lets its list fill to :data:`QUEUE_LIMIT`; what
  does not fit is dropped and counted (:attr:`Stage.dropped`), for that viewer alone.
- **Read-only.** A browser's messages are read and thrown away (so a slow reader cannot
  block its TCP connection), one larger than :data:`MAX_FRAME` closes that viewer;
  nothing a browser sends reaches the performance.
- **Only its own page.** Bound to loopback (the default), a request must name a loopback
  host (no DNS rebinding); a WebSocket must come from the stage's own page (its
  ``Origin``), so another web site open in the same browser cannot read the handshakes.
  Every response forbids the page to load anything from anywhere else
  (``Content-Security-Policy``).

>>> stage = Stage(encode=lambda item: [item], hello=lambda: '{"type": "hello"}', sounds=lambda rate: b"")
>>> stage.start(); print(stage.url)
http://127.0.0.1:8700/
>>> stage.publish('{"type": "note"}')
>>> stage.close()
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
import threading
import time
from collections import deque
from importlib import resources
from typing import Callable

from ..errors import HandshakeScoreError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8700
QUEUE_LIMIT = 4096    # messages waiting for one viewer; more are dropped (and counted)
HISTORY = 600         # the latest messages, given to a viewer that comes late
MAX_FRAME = 4096      # the largest message hs reads from a browser; a larger one closes it
HEARTBEAT_S = 10.0    # a viewer that answers no ping within this is let go
CLOSE_S = 2.0         # at the end, how long the viewers get to take what is waiting
CHUNK = 8             # items encoded between two looks at the sockets (each lets the conductor run)
FILES = {"/": ("index.html", "text/html"), "/stage.js": ("stage.js", "text/javascript"),
         "/stage.css": ("stage.css", "text/css")}
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
          "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}

logging.getLogger("aiohttp").addHandler(logging.NullHandler())  # a bad request is answered, not printed


def page_files() -> dict[str, bytes]:
    """The page's files, read from the package (they are package data in a wheel)."""
    folder = resources.files("handshake_score.play") / "web"
    return {path: (folder / name).read_bytes() for path, (name, _) in FILES.items()}


class Viewer:
    """One browser watching: its messages waiting, and its counts."""

    __slots__ = ("ws", "transport", "waiting", "wake", "sent", "dropped", "closing")

    def __init__(self, ws, transport):
        self.ws, self.transport = ws, transport
        self.waiting: list[str] = []
        self.wake = asyncio.Event()
        self.sent = self.dropped = 0
        self.closing = False

    def offer(self, message: str, limit: int) -> None:
        if len(self.waiting) >= limit:
            self.dropped += 1
            return
        self.waiting.append(message)
        self.wake.set()


class Stage:
    """The web server: started by :meth:`start`, fed by :meth:`publish`, stopped by :meth:`close`.

    ``encode(item)`` runs on the stage's loop for each item published and returns the
    messages (JSON texts) to send every viewer, or none. ``hello()`` is the first message a
    viewer gets; ``sounds(rate)`` the bytes of ``/sounds/RATE``. Times sent to browsers are
    milliseconds of :meth:`ms` (``perf_counter`` since the stage was made): each frame says
    its own, so a page can map them to its clock once.
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, encode: Callable[[object], list[str]],
                 hello: Callable[[], str], sounds: Callable[[int], bytes], queue_limit: int = QUEUE_LIMIT,
                 history: int = HISTORY, host_flag: str = "--host", port_flag: str = "--web-port"):
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise HandshakeScoreError(f"{port_flag} must be a port number from 0 to 65535 (0: any free one), not {port!r}")
        if not host or not isinstance(host, str):
            raise HandshakeScoreError(f"{host_flag}: give an address to listen on, such as 127.0.0.1 or 0.0.0.0")
        self.host, self.port = host, port
        self.flags = (host_flag, port_flag)
        self.encode, self.hello, self.sounds = encode, hello, sounds
        self.queue_limit = queue_limit
        self.history: deque[str] = deque(maxlen=history)
        self.files = page_files()
        self.origin_ns = time.perf_counter_ns()
        self.url = ""
        self.addresses: list[tuple] = []
        self.loopback = True
        self.viewers: set[Viewer] = set()
        self.came = self.most = 0          # viewers that came, and the most at once
        self.published = 0                 # messages made for the viewers
        self.delivered = 0                 # messages sent to a viewer
        self._gone_dropped = self._gone_slow = 0  # of viewers gone: messages dropped, viewers that had some
        self.ignored = 0                   # messages browsers sent (all ignored)
        self.too_big = 0                   # viewers closed for sending more than MAX_FRAME
        self.first_viewer = threading.Event()
        self._inbox: deque = deque()
        self._woken = False
        self._working = False
        self._open = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner = None

    # --- any thread ---

    @property
    def dropped(self) -> int:
        """Messages a viewer was too slow to take, all viewers, gone or watching."""
        return self._gone_dropped + sum(v.dropped for v in list(self.viewers))

    @property
    def slow(self) -> int:
        """Viewers that were too slow to take every message."""
        return self._gone_slow + sum(v.dropped > 0 for v in list(self.viewers))

    def ms(self) -> float:
        """Now, in the stage's milliseconds."""
        return (time.perf_counter_ns() - self.origin_ns) / 1e6

    def at_ms(self, perf_ns: int) -> float:
        """A ``perf_counter_ns`` moment in the stage's milliseconds."""
        return (perf_ns - self.origin_ns) / 1e6

    def publish(self, item) -> None:
        """Hand ``item`` to the stage: cheap and never blocking, from any thread. It is
        encoded and sent on the stage's loop."""
        self._inbox.append(item)
        if not self._woken and self._open:
            self._woken = True  # set before the call: a second publish meanwhile need not wake it again
            try:
                self._loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop closed meanwhile
                pass

    def greet(self) -> None:
        """Send every viewer a fresh ``hello()`` (what is playing has changed), after what was
        published before; a viewer that comes later gets its own."""
        if self._open:
            try:
                self._loop.call_soon_threadsafe(self._greet)
            except RuntimeError:
                pass

    def _greet(self) -> None:
        while self._inbox:  # what was published before goes first
            self._work()
        hello = self.hello()
        for viewer in self.viewers:
            viewer.offer(hello, self.queue_limit)

    def wait_for_viewer(self, poll_s: float = 0.25) -> None:
        """Return once a browser has opened the stage (a signal interrupts the wait)."""
        while not self.first_viewer.wait(poll_s):
            pass

    def start(self) -> None:
        """Listen, in a thread of its own; raises :class:`HandshakeScoreError` in one line if
        the address cannot be had (a port in use, an address not of this machine)."""
        import aiohttp  # noqa: F401 - imported here, so a missing aiohttp is said before the thread starts

        ready: dict = {}
        started = threading.Event()

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            loop.set_exception_handler(lambda loop, context: None)  # a browser gone mid-send is not news
            try:
                loop.run_until_complete(self._listen())
            except BaseException as e:  # noqa: BLE001 - handed to start()
                ready["error"] = e
                started.set()
                loop.close()
                return
            self._open = True
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="hs-stage", daemon=True)
        self._thread.start()
        started.wait()
        if "error" in ready:
            self._thread.join()
            raise self._bind_error(ready["error"])
        if self._inbox:  # published before the loop ran: wake it now
            self._woken = True
            self._loop.call_soon_threadsafe(self._drain)

    def close(self) -> None:
        """Let every viewer take what waits for it (for at most :data:`CLOSE_S`), close
        them, stop listening and end the thread. More than once is harmless."""
        if not self._open:
            return
        self._open = False
        try:
            future = asyncio.run_coroutine_threadsafe(self._shut(), self._loop)
            future.result(CLOSE_S + 3)
        except Exception:  # noqa: BLE001 - whatever happened, the loop is stopped below
            pass
        try:
            self._loop.call_soon_threadsafe(self._loop.stop)
        except RuntimeError:
            pass
        self._thread.join(5)

    # --- the stage's loop ---

    async def _listen(self) -> None:
        from aiohttp import web

        @web.middleware
        async def guard(request, handler):
            return await self._guard(request, handler)

        app = web.Application(middlewares=[guard], client_max_size=MAX_FRAME)
        app.router.add_get("/", self._page)
        app.router.add_get("/stage.js", self._page)
        app.router.add_get("/stage.css", self._page)
        app.router.add_get(r"/sounds/{rate:\d{4,6}}", self._sounds)
        app.router.add_get("/ws", self._socket)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=256)
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            raise
        self.addresses = list(self._runner.addresses)
        self.port = self.addresses[0][1]
        self.loopback = all(ipaddress.ip_address(a[0].split("%")[0]).is_loopback for a in self.addresses)
        self.url = f"http://{_url_host(self.host, self.addresses)}:{self.port}/"

    def _bind_error(self, e: BaseException) -> HandshakeScoreError:
        host_flag, port_flag = self.flags
        where = f"{self.host}:{self.port}" if ":" not in self.host else f"[{self.host}]:{self.port}"
        if isinstance(e, socket.gaierror) or isinstance(e, UnicodeError):
            return HandshakeScoreError(f"{host_flag} {self.host}: cannot resolve it ({getattr(e, 'strerror', None) or e})")
        if isinstance(e, OSError) and e.errno == errno.EADDRINUSE:
            return HandshakeScoreError(f"{port_flag} {self.port}: {where} is in use (another hs play --to browser?); "
                                       f"give another {port_flag}, or 0 for any free one")
        if isinstance(e, OSError) and e.errno == errno.EACCES:
            return HandshakeScoreError(f"{port_flag} {self.port}: only root may listen on a port below 1024; "
                                       f"give one above, or 0 for any free one")
        if isinstance(e, OSError) and e.errno == errno.EADDRNOTAVAIL:
            return HandshakeScoreError(f"{host_flag} {self.host}: not an address of this machine")
        if isinstance(e, ImportError):
            return HandshakeScoreError("--to browser needs aiohttp (pip install aiohttp)")
        return HandshakeScoreError(f"the stage cannot listen on {where}: {getattr(e, 'strerror', None) or e}")

    def _drain(self) -> None:
        self._woken = False  # first: a publish from now on wakes the loop again
        if not self._working:
            self._work()

    def _work(self) -> None:
        """Encode and fan out what was published, :data:`CHUNK` items at a time: between two
        chunks the loop polls its sockets, which lets go of Python's lock, so the conductor
        never waits for the stage longer than one chunk takes."""
        inbox, limit, viewers = self._inbox, self.queue_limit, self.viewers
        for _ in range(CHUNK):
            if not inbox:
                break
            for message in self.encode(inbox.popleft()):
                self.published += 1
                self.history.append(message)
                for viewer in viewers:
                    viewer.offer(message, limit)
        self._working = bool(inbox)
        if self._working:
            self._loop.call_soon(self._work)

    async def _shut(self) -> None:
        while self._inbox:
            self._work()
        for viewer in list(self.viewers):
            viewer.closing = True
            viewer.wake.set()
        deadline = time.monotonic() + CLOSE_S
        while self.viewers and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for viewer in list(self.viewers):  # one that takes nothing is not waited for
            viewer.transport.abort()
            self._leave(viewer)
        await self._runner.cleanup()

    # --- requests ---

    def _allowed_host(self, request) -> bool:
        if not self.loopback:
            return True
        return (request.url.host or "").lower().strip("[]") in LOOPBACK_NAMES | {self.host.lower()}

    async def _guard(self, request, handler):
        from aiohttp import web

        if not self._allowed_host(request):
            return web.Response(status=403, text="this stage answers only to its own address\n")
        response = await handler(request)
        response.headers["Content-Security-Policy"] = POLICY
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    async def _page(self, request):
        from aiohttp import web

        name, kind = FILES[request.path]
        return web.Response(body=self.files[request.path], content_type=kind, charset="utf-8")

    async def _sounds(self, request):
        from aiohttp import web

        rate = int(request.match_info["rate"])
        if not 8000 <= rate <= 192_000:
            raise web.HTTPNotFound(text="a sample rate from 8000 to 192000 Hz\n")
        return web.Response(body=self.sounds(rate), content_type="application/octet-stream")

    async def _socket(self, request):
        from aiohttp import WSMsgType, web
        from yarl import URL

        origin = request.headers.get("Origin")
        if origin is not None:
            try:
                o = URL(origin)
                same = (o.host or "").lower() == (request.url.host or "").lower() and o.port == request.url.port
            except ValueError:
                same = False
            if not same:
                return web.Response(status=403, text="only the stage's own page may watch\n")
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_FRAME)
        if not ws.can_prepare(request).ok:
            return web.Response(status=426, text="this is the stage's WebSocket: open / in a browser\n")
        await ws.prepare(request)
        viewer = Viewer(ws, request.transport)
        # what it needs first, then the latest messages, then everything from now on: all on this loop, in order
        viewer.waiting.append(self.hello())
        viewer.waiting.extend(self.history)
        self.viewers.add(viewer)
        self.came += 1
        self.most = max(self.most, len(self.viewers))
        self.first_viewer.set()
        writer = asyncio.get_running_loop().create_task(self._write(viewer))
        viewer.wake.set()
        try:
            async for message in ws:  # read and thrown away: the stage is read-only
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    self.ignored += 1
                elif message.type == WSMsgType.ERROR and getattr(message.data, "code", None) == 1009:
                    self.too_big += 1  # larger than MAX_FRAME: aiohttp closed it
        except Exception:  # noqa: BLE001 - a browser gone any way is one viewer less
            pass
        finally:
            self._leave(viewer)
            writer.cancel()
        return ws

    async def _write(self, viewer: Viewer) -> None:
        ws = viewer.ws
        try:
            while True:
                await viewer.wake.wait()
                viewer.wake.clear()
                if viewer.waiting:
                    batch, viewer.waiting = viewer.waiting, []
                    await ws.send_str('{"now":%.3f,"m":[%s]}' % (self.ms(), ",".join(batch)))
                    viewer.sent += len(batch)
                    self.delivered += len(batch)
                if viewer.closing and not viewer.waiting:
                    self._leave(viewer)
                    await ws.close(code=1001, message=b"hs has stopped")
                    return
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the browser went away mid-send
            self._leave(viewer)

    def _leave(self, viewer: Viewer) -> None:
        if viewer in self.viewers:
            self.viewers.discard(viewer)
            self._gone_dropped += viewer.dropped
            self._gone_slow += viewer.dropped > 0


def _url_host(host: str, addresses: list[tuple]) -> str:
    """The host to put in the stage's URL: the one given, or for every interface
    (0.0.0.0, ::) this machine's address on its default route (no packet is sent to learn it)."""
    if host in ("0.0.0.0", "::"):
        family = socket.AF_INET6 if host == "::" else socket.AF_INET
        probe = ("2001:db8::1", 9) if family == socket.AF_INET6 else ("192.0.2.1", 9)  # documentation addresses
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect(probe)
                host = s.getsockname()[0]
        except OSError:
            host = socket.gethostname()
    return f"[{host}]" if ":" in host else host
