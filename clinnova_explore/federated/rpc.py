"""The wire between a coordinator and a site process: framed pickles read by a strict reader.

Messages travel over :mod:`multiprocessing.connection` sockets on loopback (or a private
network): each message is one length-framed pickle, and both ends authenticate with an HMAC
challenge on a shared key before anything else is read. Plain pickles can run any code when
loaded, so both ends read them with :func:`loads`, which only rebuilds what a request or a
response may hold:

- classes and functions defined in ``clinnova_explore`` (analysis steps, specs, cohort
  definitions, site transforms); such functions may be *referenced* (a transform to apply)
  but never *called* while a message is read;
- the reconstruction internals of numpy, pandas and pyarrow arrays and frames;
- ``functools.partial``, ``datetime`` values, ``collections.OrderedDict``, ``pathlib`` paths,
  ``copyreg._reconstructor`` and a few plain builtins (``set``, ``complex``, ``slice``, ...).

Anything else (``os.system``, ``builtins.eval``, a function from a module outside the
package) stops the read with :class:`ForbiddenGlobalError` naming ``module.name``, before
anything in the message runs. The wire cannot carry a lambda or a closure at all: pickling one
fails at the sender with :class:`NotSendableError`.
"""

from __future__ import annotations

import enum
import functools
import importlib
import io
import os
import pickle
import socket
import threading
from collections.abc import Callable
from multiprocessing import AuthenticationError
from multiprocessing.connection import (
    Connection,
    Listener,
    answer_challenge,
    deliver_challenge,
)
from typing import Any, ClassVar, cast

from clinnova_explore.federated.protocol import SiteRequest, SiteResponse, error_text

__all__ = [
    "MAX_MESSAGE_BYTES",
    "ForbiddenGlobalError",
    "NotSendableError",
    "RpcError",
    "allowed_global",
    "client_handshake",
    "dumps",
    "listen",
    "loads",
    "request_message",
    "serve",
    "server_handshake",
    "wake",
]

MAX_MESSAGE_BYTES = 1 << 30
"""Largest message either end reads (1 GiB); a longer one closes the connection."""

PACKAGE = "clinnova_explore"

_BUILTINS = frozenset(
    {"bool", "bytearray", "bytes", "complex", "dict", "float", "frozenset", "int", "list"}
    | {"object", "range", "set", "slice", "str", "tuple"}
)
_EXACT: dict[str, frozenset[str]] = {
    "builtins": _BUILTINS,
    "copyreg": frozenset({"_reconstructor", "__newobj__", "__newobj_ex__"}),
    "functools": frozenset({"partial"}),
    "collections": frozenset({"OrderedDict"}),
    "datetime": frozenset({"date", "datetime", "time", "timedelta", "timezone"}),
    "pathlib": frozenset({"Path", "PosixPath", "PurePath", "PurePosixPath"}),
    "numpy": frozenset({"dtype", "ndarray"}),
    "numpy._core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "numpy._core.numeric": frozenset({"_frombuffer"}),
    "pyarrow.lib": frozenset(
        {"_reconstruct_record_batch", "_reconstruct_table", "_restore_array"}
        | {"chunked_array", "field", "py_buffer", "schema", "type_for_alias"}
    ),
    "pandas._libs.missing": frozenset({"NA", "NAType"}),
    "pandas._libs.tslibs.nattype": frozenset({"NaT", "NaTType", "__nat_unpickle"}),
}
# pandas rebuilds frames from classes in these modules plus a few module-level functions
# whose names follow one of the prefixes below (``_new_Index``, ``_unpickle_block``, ...)
_PANDAS_MODULES = (
    "pandas.core.arrays",
    "pandas.core.dtypes",
    "pandas.core.frame",
    "pandas.core.indexes",
    "pandas.core.internals",
    "pandas.core.series",
    "pandas._libs.arrays",
    "pandas._libs.internals",
    "pandas._libs.interval",
    "pandas._libs.sparse",
    "pandas._libs.tslibs",
)
_PANDAS_FUNCTIONS = ("_new_", "_unpickle", "__pyx_unpickle_", "_timedelta_unpickle")


class RpcError(RuntimeError):
    """A message could not cross the wire (the text says which and why)."""


class ForbiddenGlobalError(RpcError, pickle.UnpicklingError):
    """A message names a global the reader does not rebuild (``module.name`` in the text)."""

    def __init__(self, module: str, name: str, why: str = "") -> None:
        self.global_name = f"{module}.{name}"
        reason = why or "is not allowed across the site boundary"
        super().__init__(
            f"{self.global_name} {reason}; a message may only hold clinnova_explore objects, "
            "numpy/pandas/pyarrow data and plain values"
        )


class NotSendableError(RpcError, TypeError):
    """An object cannot be sent to a site (e.g. a lambda or a closure as a transform)."""


def _in_modules(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _resolve(module: str, name: str) -> Any:
    try:
        mod = importlib.import_module(module)
        return getattr(mod, name)
    except (ImportError, AttributeError):
        raise ForbiddenGlobalError(module, name, "does not exist here") from None


def allowed_global(module: str, name: str) -> Any:
    """The object ``module.name`` if a message may refer to it, else raise.

    Parameters
    ----------
    module, name
        What a pickle asks for (``name`` without dots).

    Raises
    ------
    ForbiddenGlobalError
        Naming ``module.name`` when it is not on the allow list.

    Examples
    --------
    >>> allowed_global("functools", "partial").__name__
    'partial'
    >>> allowed_global("os", "system")
    Traceback (most recent call last):
    ...
    clinnova_explore.federated.rpc.ForbiddenGlobalError: os.system is not allowed across the \
site boundary; a message may only hold clinnova_explore objects, numpy/pandas/pyarrow data and \
plain values
    """
    if "." in name or not name.isidentifier():
        raise ForbiddenGlobalError(module, name, "is not a plain module-level name")
    if name in _EXACT.get(module, ()):
        return _resolve(module, name)
    if _in_modules(module, (PACKAGE,)):
        obj = _resolve(module, name)
        owner = getattr(obj, "__module__", None) or ""
        kinds = isinstance(obj, type) or (callable(obj) and hasattr(obj, "__code__"))
        if kinds and _in_modules(owner, (PACKAGE,)):
            return obj
        raise ForbiddenGlobalError(module, name, "is not a class or function of clinnova_explore")
    if module.startswith("pandas.") and _in_modules(module, _PANDAS_MODULES):
        obj = _resolve(module, name)
        owner = getattr(obj, "__module__", None) or ""
        if isinstance(obj, type) and owner.startswith("pandas."):
            return obj
        if name.startswith(_PANDAS_FUNCTIONS) and callable(obj):
            return obj
    raise ForbiddenGlobalError(module, name)


@functools.cache
def _reconstructors() -> frozenset[int]:
    """Ids of the functions (not classes) a message may call while it is read."""
    ids = set()
    for module, names in _EXACT.items():
        for name in names:
            try:
                obj = _resolve(module, name)
            except ForbiddenGlobalError:  # not in this version of the library
                continue
            if callable(obj) and not isinstance(obj, type):
                ids.add(id(obj))
    return frozenset(ids)


def _may_call(func: Any) -> bool:
    """Whether reading a message may call ``func`` (a class or a reconstruction function).

    Classes of the package are called only when they ask for it (enums, exceptions, classes
    with their own ``__reduce__``); their other instances are rebuilt without ``__init__``.
    """
    if isinstance(func, type):
        if not _in_modules(func.__module__, (PACKAGE,)):
            return True
        if issubclass(func, enum.Enum | BaseException):
            return True
        return any(
            ("__reduce__" in vars(k) or "__reduce_ex__" in vars(k))
            for k in func.__mro__
            if _in_modules(k.__module__, (PACKAGE,))
        )
    if id(func) in _reconstructors():
        return True
    module = getattr(func, "__module__", None) or ""
    name = getattr(func, "__name__", "")
    return module.startswith("pandas.") and name.startswith(_PANDAS_FUNCTIONS)


def _qualified(obj: Any) -> tuple[str, str]:
    module = getattr(obj, "__module__", None) or "?"
    return module, str(getattr(obj, "__qualname__", type(obj).__name__))


class _StrictUnpickler(pickle._Unpickler):
    """The pure-Python unpickler with an allow list and no calls to plain functions."""

    dispatch: ClassVar[dict[int, Any]] = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str) -> Any:
        return allowed_global(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise ForbiddenGlobalError("pickle", "persistent_load", "(persistent ids) is not used")

    def _load_reduce(self) -> None:
        stack = self.stack  # type: ignore[attr-defined]
        args = stack.pop()
        func = stack[-1]
        if not _may_call(func):
            module, name = _qualified(func)
            raise ForbiddenGlobalError(module, name, "may be referenced but not called")
        stack[-1] = func(*args)

    def _load_newobj(self) -> None:
        stack = self.stack  # type: ignore[attr-defined]
        args = stack.pop()
        cls = stack.pop()
        if not isinstance(cls, type):
            module, name = _qualified(cls)
            raise ForbiddenGlobalError(module, name, "is not a class")
        stack.append(cls.__new__(cls, *args))

    def _load_newobj_ex(self) -> None:
        stack = self.stack  # type: ignore[attr-defined]
        kwargs = stack.pop()
        args = stack.pop()
        cls = stack.pop()
        if not isinstance(cls, type):
            module, name = _qualified(cls)
            raise ForbiddenGlobalError(module, name, "is not a class")
        stack.append(cls.__new__(cls, *args, **kwargs))

    def _load_old_instance(self) -> None:
        raise ForbiddenGlobalError("pickle", "INST/OBJ", "(protocol 0/1 instances) is not read")


_dispatch = cast("dict[int, Callable[[_StrictUnpickler], None]]", _StrictUnpickler.dispatch)
_dispatch[pickle.REDUCE[0]] = _StrictUnpickler._load_reduce
_dispatch[pickle.NEWOBJ[0]] = _StrictUnpickler._load_newobj
_dispatch[pickle.NEWOBJ_EX[0]] = _StrictUnpickler._load_newobj_ex
_dispatch[pickle.INST[0]] = _StrictUnpickler._load_old_instance
_dispatch[pickle.OBJ[0]] = _StrictUnpickler._load_old_instance


def loads(data: bytes) -> Any:
    """Rebuild a message, refusing any global that is not on the allow list.

    Raises
    ------
    ForbiddenGlobalError
        The message refers to something outside the allow list (nothing of it ran).
    RpcError
        The bytes are not a valid message.
    """
    try:
        return _StrictUnpickler(io.BytesIO(data)).load()
    except RpcError:
        raise
    except Exception as exc:
        raise RpcError(f"not a valid message ({type(exc).__name__}: {exc})") from None


def dumps(obj: Any) -> bytes:
    """Serialize a message (pickle protocol 5).

    Raises
    ------
    NotSendableError
        ``obj`` holds something that cannot cross a process boundary, such as a lambda or a
        function defined inside another function.
    """
    try:
        return pickle.dumps(obj, protocol=5)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise NotSendableError(
            f"cannot send {type(obj).__name__} to a site: {exc}. Functions sent to a site "
            "(e.g. transforms) must be module-level functions of clinnova_explore or "
            "functools.partial of them; lambdas and closures only work in process"
        ) from None


def listen(host: str = "127.0.0.1", port: int = 0, *, backlog: int = 16) -> Listener:
    """A listening socket (``port=0``: any free port; see ``.address``).

    It does not authenticate by itself: call :func:`server_handshake` on each accepted
    connection (in the connection's own thread, so a client that stalls blocks only itself).
    """
    return Listener((host, port), family="AF_INET", backlog=backlog)


def server_handshake(conn: Connection, authkey: bytes) -> None:
    """Mutual HMAC challenge, server side (raises ``AuthenticationError`` on a wrong key)."""
    deliver_challenge(conn, authkey)
    answer_challenge(conn, authkey)


def client_handshake(conn: Connection, authkey: bytes) -> None:
    """Mutual HMAC challenge, client side."""
    answer_challenge(conn, authkey)
    deliver_challenge(conn, authkey)


def wake(conn: Connection) -> None:
    """Shut a connection's socket down so that a thread blocked reading it returns at once.

    The connection itself stays open; its owner closes it.
    """
    try:
        fd = conn.fileno()
    except OSError:
        return
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


# ---------------------------------------------------------------------- serving a site

Handle = Callable[[SiteRequest], SiteResponse]
_KINDS = ("release", "preview", "status", "forget")


def request_message(request: SiteRequest) -> bytes:
    """A request as sent on the wire: ``(kind, pickled request)``.

    The kind travels outside the request so that a site can answer a request it refuses to
    read with an error of the right kind.
    """
    return dumps((request.kind, dumps(request)))


def _answer(raw: bytes, handle: Handle, site_id: str, lock: threading.Lock) -> bytes:
    """The encoded response to one raw request (never raises)."""
    kind: Any = "release"
    try:
        envelope = loads(raw)
        if not (
            isinstance(envelope, tuple)
            and len(envelope) == 2
            and isinstance(envelope[0], str)
            and isinstance(envelope[1], bytes)
        ):
            raise RpcError("the message is not a request (expected a (kind, request) pair)")
        kind = envelope[0] if envelope[0] in _KINDS else kind
        request = loads(envelope[1])
        if not isinstance(request, SiteRequest):
            raise RpcError(f"expected a SiteRequest, received {type(request).__name__}")
    except RpcError as exc:
        text = f"site {site_id!r} refused to read the request: {error_text(exc)}"
        return dumps(SiteResponse(site_id, kind, ok=False, error=f"RequestRejected: {text}"))
    with lock:
        try:
            response = handle(request)
        except Exception as exc:
            response = SiteResponse(site_id, request.kind, ok=False, error=error_text(exc))
    try:
        return dumps(response)
    except RpcError as exc:
        error = f"the site's answer cannot be sent: {error_text(exc)}"
        return dumps(SiteResponse(site_id, request.kind, ok=False, error=f"RpcError: {error}"))


def _connection(
    conn: Connection, handle: Handle, site_id: str, authkey: bytes, lock: threading.Lock
) -> None:
    """Serve one client connection until it closes (runs in its own thread)."""
    with conn:
        try:
            server_handshake(conn, authkey)
        except (AuthenticationError, EOFError, OSError):
            return
        while True:
            try:
                raw = conn.recv_bytes(MAX_MESSAGE_BYTES)
            except (EOFError, OSError):
                return
            reply = _answer(raw, handle, site_id, lock)
            try:
                conn.send_bytes(reply)
            except OSError:
                return


def serve(
    handle: Handle,
    site_id: str,
    *,
    authkey: bytes,
    host: str = "127.0.0.1",
    port: int = 0,
    ready: Callable[[tuple[str, int]], None] | None = None,
    lock: threading.Lock | None = None,
) -> None:
    """Answer requests with ``handle`` until the process ends (or Ctrl-C).

    Each client connection gets its own thread, but ``handle`` answers one request at a
    time (``lock``). A request that names a global outside the allow list (see
    :func:`loads`) is answered ``ok=False`` with ``RequestRejected: ...`` and never reaches
    ``handle``.

    Parameters
    ----------
    handle
        The site's answer to one request (e.g. ``SiteRuntime.handle``).
    site_id
        Named in rejections.
    authkey
        Shared secret; clients must prove they hold it (HMAC challenge) before sending.
    host, port
        Where to listen (``port=0``: a free port).
    ready
        Called with the ``(host, port)`` listened on, once connections are accepted.
    lock
        Held while a request is answered (default: a new lock).
    """
    if not isinstance(authkey, bytes) or not authkey:
        raise ValueError(f"site {site_id!r}: serving needs a non-empty authkey (bytes)")
    lock = lock if lock is not None else threading.Lock()
    listener = listen(host, port)
    try:
        if ready is not None:
            address = cast("tuple[str, int]", listener.address)
            ready((str(address[0]), int(address[1])))
        while True:
            conn = listener.accept()
            threading.Thread(
                target=_connection,
                args=(conn, handle, site_id, authkey, lock),
                name=f"clinnova-site-{site_id}",
                daemon=True,
            ).start()
    finally:
        listener.close()
