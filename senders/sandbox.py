"""Bounds on a template render: a time limit, an output-size limit, and off the event loop.

See docs/architecture.md, Templates.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import math
import operator
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from jinja2.nodes import Impossible
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import Namespace

T = TypeVar("T")
#: How long past its deadline a render may go on before its thread is interrupted.
GRACE = 0.2
_BINOPS = {"*": operator.mul, "**": operator.pow, "+": operator.add}


class LimitExceeded(Exception):
    """A render went past its time or size limit; ``limit`` says which."""

    def __init__(self, limit: str = "time", message: str = "the render took too long"):
        super().__init__(message)
        self.limit = limit


class RenderJob:
    """One render thread's bounds: the deadline of the part being rendered, and the output limit."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.deadline = math.inf
        self.lock = threading.Lock()
        self.finished = False
        self.thread_id: int | None = None

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            raise LimitExceeded()

    def check_size(self, value: Any) -> Any:
        if isinstance(value, str | bytes | list | tuple | dict) and len(value) > self.max_bytes:
            raise LimitExceeded("size", f"a value of {len(value)} items is over the limit of {self.max_bytes}")
        return value

    def interrupt(self) -> None:
        """Raise :class:`LimitExceeded` in the render thread, if it is still rendering."""
        with self.lock:
            if not self.finished and self.thread_id is not None:
                self.deadline = math.inf  # once per overrun: the part's fallback gets a deadline of its own
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.thread_id),
                                                           ctypes.py_object(LimitExceeded))


_current = threading.local()


def _job() -> RenderJob | None:
    return getattr(_current, "job", None)


def _checked() -> None:
    job = _job()
    if job is not None:
        job.check()


class BoundedNamespace(Namespace):
    """``namespace()`` whose assignments are bounded (``ns.s = ns.s ~ ns.s`` doubles a string per loop)."""

    def __setitem__(self, name: str, value: Any) -> None:
        job = _job()
        if job is not None:
            job.check()
            job.check_size(value)
        super().__setitem__(name, value)


class BoundedSandbox(SandboxedEnvironment):
    intercepted_binops = frozenset(_BINOPS)

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        job = _job()
        if job is not None:
            job.check()
            if operator_name == "**" and isinstance(right, int) and abs(right) > 1024:
                raise LimitExceeded("size", "an exponent over 1024")
            if operator_name == "*":
                for sequence, count in ((left, right), (right, left)):
                    if hasattr(sequence, "__len__") and isinstance(count, int) \
                            and len(sequence) * count > job.max_bytes:
                        raise LimitExceeded("size", "a repeated sequence over the size limit")
        result = _BINOPS[operator_name](left, right)
        return job.check_size(result) if job is not None else result

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _checked()
        result = super().call(__context, __obj, *args, **kwargs)
        job = _job()
        return job.check_size(result) if job is not None else result

    def getattr(self, obj: Any, attribute: str) -> Any:
        _checked()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _checked()
        return super().getitem(obj, argument)


def bound_filters(env: BoundedSandbox) -> None:
    """Wrap every filter with the checks (filters are called directly, not through ``env.call``), and
    refuse integer arguments over the size limit (``center(10**9)`` would allocate a gigabyte)."""
    for name, func in list(env.filters.items()):
        env.filters[name] = _bounded(func)
    env.globals["namespace"] = BoundedNamespace


def _bounded(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)  # keeps jinja_pass_arg, which Jinja reads off the function
    def filter_(*args: Any, **kwargs: Any) -> Any:
        job = _job()
        if job is None:  # Jinja folding constants at compile time: leave it to the bounded render
            raise Impossible()
        job.check()
        if any(isinstance(a, int) and abs(a) > job.max_bytes for a in (*args[1:], *kwargs.values())):
            raise LimitExceeded("size", f"a filter argument over the limit of {job.max_bytes}")
        return job.check_size(func(*args, **kwargs))

    return filter_


def render_chunks(chunks: Iterator[str], job: RenderJob, timeout: float) -> str:
    """Join a template's output (``Template.generate``) within the job's time and size limits."""
    job.deadline = time.monotonic() + timeout
    try:
        out, size = [], 0
        for chunk in chunks:
            size += len(chunk)
            if size > job.max_bytes:
                raise LimitExceeded("size", f"the output is over the limit of {job.max_bytes} characters")
            job.check()
            out.append(chunk)
        return "".join(out)
    finally:
        job.deadline = math.inf


async def run_bounded(work: Callable[[RenderJob], T], max_bytes: int, timeout: float) -> T:
    """Run ``work`` in a thread of its own, interrupting it when a part it renders overruns its
    deadline by :data:`GRACE` (or when the caller is cancelled)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    job = RenderJob(max_bytes)

    def settle(result: Any, error: BaseException | None) -> None:
        if not future.done():
            future.set_exception(error) if error is not None else future.set_result(result)

    def main() -> None:
        result, error = None, None
        _current.job = job
        job.thread_id = threading.get_ident()
        try:
            try:
                result = work(job)
            finally:
                with job.lock:
                    job.finished = True
        except BaseException as exc:  # the work's own error, or an interruption that came as it ended
            error = exc
        loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=main, name="template-render", daemon=True).start()
    try:
        while True:
            try:
                return await asyncio.wait_for(asyncio.shield(future), timeout=max(0.05, timeout / 4))
            except TimeoutError:
                if time.monotonic() > job.deadline + GRACE:
                    job.interrupt()
    except asyncio.CancelledError:
        job.interrupt()
        raise
