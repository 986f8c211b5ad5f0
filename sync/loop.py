"""A private event loop on a thread of its own, to which synchronous callers hand coroutines.

The caller's thread only waits on a :class:`concurrent.futures.Future`, so it may itself be
running an event loop (a notebook cell, an ``asyncio.run`` script): nothing is ever run on
the caller's loop, and the store's connections, locks and tasks all live on this one.

Each call runs as a task created in a :class:`contextvars.Context` chosen by the caller: a
copy of the caller's own context outside a transaction, a copy of the open transaction's
context inside one (see :mod:`.transaction`). The stores find their open transaction in a
context variable, so this is what puts a call inside the transaction or outside it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class StoreClosedError(RuntimeError):
    """The synchronous store was closed; its event loop and thread are gone."""


@dataclass(eq=False)
class _Boxed:
    """An exception the call raised, carried out of its task as a value: a
    ``KeyboardInterrupt`` or ``SystemExit`` raised inside a task would otherwise stop the
    whole loop (asyncio re-raises those from ``run_forever``)."""

    error: BaseException


@dataclass(eq=False)
class Call(Generic[T]):
    """One coroutine running on the private loop, and the way to wait for it."""

    runner: LoopThread
    future: concurrent.futures.Future[T] = field(default_factory=concurrent.futures.Future)
    task: asyncio.Task[Any] | None = None
    cancel_requested: bool = False

    def wait(self) -> T:
        """The call's result (or its exception). If the waiting thread is interrupted
        (Ctrl-C in a notebook), the task is cancelled and waited for -- the stores finish a
        step they started and roll back an open transaction -- and the interruption raised."""
        try:
            return self.future.result()
        except BaseException:
            if self.future.done():
                raise  # the call's own outcome (or an interruption just as it ended)
            self.cancel()
            concurrent.futures.wait([self.future])
            raise

    def cancel(self) -> None:
        self.runner.loop.call_soon_threadsafe(self._cancel_in_loop)

    def _cancel_in_loop(self) -> None:
        self.cancel_requested = True
        if self.task is not None:
            self.task.cancel()


async def _guarded(make: Callable[[], Awaitable[T]]) -> T | _Boxed:
    try:
        return await make()
    except asyncio.CancelledError:
        raise
    except BaseException as error:
        return _Boxed(error)


def _settle(future: concurrent.futures.Future[T], task: asyncio.Task[T | _Boxed]) -> None:
    if task.cancelled():
        future.set_exception(asyncio.CancelledError())
        return
    outcome = task.result()
    if isinstance(outcome, _Boxed):
        future.set_exception(outcome.error)
    else:
        future.set_result(outcome)


class LoopThread:
    """An event loop running forever on a daemon thread, until :meth:`stop`."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._stopped = False
        self._calls: set[asyncio.Task[Any]] = set()  # touched on the loop's thread only
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            try:
                left = asyncio.all_tasks(self.loop)
                for task in left:
                    task.cancel()
                if left:
                    self.loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
                self.loop.run_until_complete(self.loop.shutdown_default_executor())
            finally:
                self.loop.close()

    @property
    def stopped(self) -> bool:
        """Whether the store was closed (no call can run any more)."""
        return self._stopped or self.loop.is_closed()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def check_caller(self) -> None:
        """Refuse a call that could never finish: one made from the loop's own thread (an
        agent or hook of the engine calling the sync API) would wait for the loop it blocks,
        and one made after :meth:`stop` has no loop to run on."""
        if self._stopped:
            raise StoreClosedError("this synchronous store is closed; open a new one")
        if threading.get_ident() == self._thread.ident:
            raise RuntimeError(
                "the synchronous store was called from its own event loop thread (from an agent, "
                "a hook or an observer?); use the async store there (sync_store.async_store)"
            )

    def submit(self, make: Callable[[], Awaitable[T]], context: contextvars.Context) -> Call[T]:
        """Start ``make()`` as a task running in ``context`` (used as is, not copied)."""
        self.check_caller()
        call: Call[T] = Call(self)

        def start() -> None:
            if call.cancel_requested:  # interrupted before it started
                call.future.set_exception(asyncio.CancelledError())
                return
            call.future.set_running_or_notify_cancel()
            task = self.loop.create_task(_guarded(make), context=context)
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)
            task.add_done_callback(lambda done: _settle(call.future, done))
            call.task = task

        self.loop.call_soon_threadsafe(start)
        return call

    async def cancel_calls(self) -> None:
        """Cancel the calls still running (transactions left open: rolled back) but the
        caller's own, and wait for them; other tasks on the loop (a driver's monitors) are
        left to the store's ``close``."""
        others = [task for task in self._calls if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def abandon(self, last: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``last()`` and then stop the loop, without waiting: for a store garbage
        collected unclosed (possibly on this very thread, so nothing may block)."""
        if self._stopped or self.loop.is_closed():
            return
        self._stopped = True

        def start() -> None:
            task = self.loop.create_task(last())
            task.add_done_callback(lambda _: self.loop.stop())

        with contextlib.suppress(RuntimeError):  # closed meanwhile
            self.loop.call_soon_threadsafe(start)

    def run(self, make: Callable[[], Awaitable[T]], context: contextvars.Context) -> T:
        return self.submit(make, context).wait()

    def stop(self) -> None:
        """Stop the loop (tasks still running are cancelled) and wait for its thread to end."""
        if self._stopped:
            return
        self.check_caller()
        self._stopped = True
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()


__all__ = ["Call", "LoopThread", "StoreClosedError"]
