"""One call's conversation with its child, run by the calling thread: one write, one read.

The request goes straight into the child's request pipe; the frames come straight back
from its result pipe. Every frame is checked against its own cap from its header, before
its body is read: a CODE frame over :data:`wire.MAX_CODE_BYTES`, a RESULT frame over the
call's result cap or anything that is not a frame SIGKILLs the child and fails this call
(``output``, or ``crash`` for a malformed frame). The wall deadline is ours: when it passes
the child is SIGKILLed through its pidfd, whatever the forker is doing.
"""

from __future__ import annotations

import os
import select
import time
from dataclasses import dataclass

from . import wire
from .link import ChildHandle
from .verdict import Killed

_POLLIN = select.POLLIN | select.POLLHUP | select.POLLERR
_POLLOUT = select.POLLOUT | select.POLLHUP | select.POLLERR


@dataclass(slots=True)
class Heard:
    """What came back: at most one code frame and one result, or why not."""

    result: wire.Result | None = None
    code: bytes | None = None  # a CODE frame's marshalled code
    compiled: bool = False  # a CODE or NOCODE frame came
    frame_error: str | None = None  # bytes that were not a whole frame at EOF
    malformed: str | None = None  # a whole frame that is not what it may be
    killed: Killed | None = None
    ended: float = 0.0  # monotonic time of the RESULT frame, EOF or kill


def _wait(fd: int, events: int, deadline: float) -> bool:
    """Poll one fd until it is ready (True) or the deadline passes (False)."""
    poller = select.poll()
    poller.register(fd, events)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if poller.poll(max(1, int(left * 1000 + 0.999))):
            return True


def _send(handle: ChildHandle, request: bytes, deadline: float) -> bool:
    """Write the whole request; False only when the deadline passed first."""
    view = memoryview(request)
    try:
        while view:
            try:
                view = view[os.write(handle.req_fd, view) :]
            except BlockingIOError:
                if not _wait(handle.req_fd, _POLLOUT, deadline):
                    return False
    except OSError:
        pass  # the child is gone (EPIPE): its exit tells the story
    finally:
        os.close(handle.req_fd)
        handle.req_fd = -1
    return True


def _frames(buf: bytearray, heard: Heard, result_cap: int, expect_code: bool) -> bool:
    """Consume complete frames from ``buf``; True when the conversation is over."""
    while len(buf) >= wire.FRAME.size:
        size, kind = wire.FRAME.unpack_from(buf)
        cap = {wire.RESULT: result_cap}
        if expect_code and not heard.compiled:  # only before the function ran
            cap.update({wire.CODE: wire.MAX_CODE_BYTES + 1, wire.NOCODE: 1})
        if kind not in cap:
            if size > result_cap:
                heard.killed = Killed.OVERFLOW
            else:
                heard.malformed = f"a frame of type {kind} is not expected here"
            return True
        if size > cap[kind]:
            heard.killed = Killed.OVERFLOW
            return True
        end = 4 + size
        if len(buf) < end:
            return False
        payload = bytes(buf[wire.FRAME.size : end])
        del buf[:end]
        if kind == wire.RESULT:
            try:
                heard.result = wire.decode_result(payload)
            except wire.WireError as exc:
                heard.malformed = str(exc)
            return True
        heard.compiled = True
        heard.code = payload if kind == wire.CODE else None
    return False


def converse(
    handle: ChildHandle, request: bytes, deadline: float, result_cap: int, expect_code: bool
) -> Heard:
    """Send the request, read the answer; the child is SIGKILLed when this returns having
    heard a verdict, on overflow and at the deadline (then ``killed`` says so)."""
    heard = Heard()
    if not _send(handle, request, deadline):
        heard.killed = Killed.TIMEOUT
    else:
        buf = bytearray()
        while True:
            try:
                chunk = os.read(handle.res_fd, 1 << 16)
            except BlockingIOError:
                if not _wait(handle.res_fd, _POLLIN, deadline):
                    heard.killed = Killed.TIMEOUT
                    break
                continue
            except OSError:
                chunk = b""
            if not chunk:
                if buf:
                    heard.frame_error = f"{len(buf)} bytes that are not a whole frame"
                break
            buf += chunk
            if _frames(buf, heard, result_cap, expect_code):
                break
    heard.ended = time.monotonic()
    handle.kill()  # done, overflowing or late: it has nothing more to say
    return heard
