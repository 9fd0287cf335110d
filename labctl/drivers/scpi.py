"""What our SCPI drivers share: ``*IDN?`` identity, a clean error queue, settings that are checked.

A SCPI instrument does not answer a setting; it files an error in its queue (``SYST:ERR?``)
when it refuses one, and stays silent when it cannot answer a query. So every setting is
followed by the error query, and a query that times out asks the queue why, so that the error
names the command and carries the instrument's own text.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from pymeasure.adapters import Adapter

from labctl.drivers.base import LabInstrument, make_adapter
from labctl.drivers.options import ScpiOptions
from labctl.drivers.retry import asked
from labctl.errors import ConfigError, GarbledReply, InstrumentError, InstrumentTimeout

T = TypeVar("T")


class ScpiInstrument(LabInstrument):
    """A ``LabInstrument`` that speaks SCPI.

    A setting travels with its error query in one message (``:POW 3 dBm;:SYST:ERR?``): one round
    trip instead of two, and no write-after-write that TCP's Nagle algorithm would hold back for
    a delayed acknowledgement (pyvisa-py leaves TCP_NODELAY off on SOCKET resources). At
    connection the identity is checked, then ``*CLS`` empties the error queue so that errors left
    from before are not blamed on our first setting.
    """

    error_query = "SYST:ERR?"
    max_errors = 30  # longest SCPI error queue we drive; a queue that never empties is an error itself

    def __init__(
        self,
        adapter: str | Adapter,
        name: str,
        identity: Sequence[str] | None = None,
        check_identity: bool = True,
        **kwargs: Any,
    ):
        if identity is not None:
            if isinstance(identity, str) or not all(isinstance(m, str) and m for m in identity):
                raise ConfigError(f"{name}: option identity must be a list of strings, got {identity!r}")
            self.identity_markers = tuple(identity)
        self._checking = False  # the next write carries the error query
        self._checked_command: str | None = None
        super().__init__(adapter, name, check_identity=check_identity, **kwargs)
        self.write_checked("*CLS")

    def identify(self) -> str:
        return super().ask("*IDN?").strip()  # no error-queue follow-up: the device may not be SCPI

    # -- transport: settings carry the error query, silent queries are explained ----------------
    def write(self, command: str, **kwargs: Any) -> None:
        if self._checking:
            self._checking = False
            self._checked_command = command
            command = f"{command.rstrip(';')};:{self.error_query}"
        super().write(command, **kwargs)

    def ask(self, command: str, query_delay: float | None = None) -> str:
        """Ask; if no answer comes, report what the error queue says about it (if anything)."""
        try:
            return super().ask(command, query_delay)
        except InstrumentTimeout as timeout:
            self._explain(command, timeout)
            raise

    @contextmanager
    def checked(self) -> Iterator[None]:
        """Check that the instrument accepted the one setting written inside the block.

        Works for pymeasure properties too (``with self.checked(): self.power = 3``).
        """
        self._checking, self._checked_command = True, None
        try:
            yield
        finally:
            self._checking = False
        command = self._checked_command
        if command is None:
            raise RuntimeError(f"{self.name}: checked() block wrote nothing")
        try:
            first = self.read()
        except InstrumentTimeout as timeout:
            self._explain(command, timeout)
            raise
        errors = [] if self._error_code(first) == 0 else [first.strip(), *self.device_errors()]
        if errors:
            raise InstrumentError(
                self.name,
                f"refused {command!r}: {'; '.join(errors)}. Check the value against the instrument's range and options",
            )

    def write_checked(self, command: str) -> None:
        """Send one setting and make sure the instrument accepted it.

        A setting is absolute (a power, a frequency, output on), so sending it again after its
        check was lost or garbled leaves the instrument as one send would.
        """

        def send() -> None:
            with self.checked():
                self.write(command)

        asked(self.name, send, self.drop_input)

    def get_checked(self, setting: str) -> Any:
        """Read the pymeasure ``control``/``measurement`` called ``setting``; an answer it cannot
        parse or map is an InstrumentError naming the query, not a bare ValueError."""
        try:
            return getattr(self, setting)
        except (ValueError, KeyError, TypeError) as exc:
            raise InstrumentError(
                self.name, f"unexpected answer to {self._last_command!r} ({setting}): {exc}. Check the link"
            ) from None

    def set_checked(self, setting: str, value: Any) -> None:
        """Set the pymeasure ``control``/``setting`` called ``setting`` and make sure the
        instrument accepted the value."""
        with self.checked():
            setattr(self, setting, value)

    def query(self, command: str) -> str:
        return asked(self.name, lambda: self.ask(command).strip(), self.drop_input)

    # -- the error queue ---------------------------------------------------------------------------
    def _error_code(self, reply: str) -> int:
        code, sep, _ = reply.strip().partition(",")
        try:
            if sep:
                return int(code)
        except ValueError:
            pass
        raise GarbledReply(self.name, f"unreadable answer {reply!r} to {self.error_query}. Check the link")

    def device_errors(self) -> list[str]:
        """Read the error queue until it reports no error; the entries, oldest first."""
        errors: list[str] = []
        for _ in range(self.max_errors):
            reply = super().ask(self.error_query).strip()
            if self._error_code(reply) == 0:
                return errors
            errors.append(reply)
        raise InstrumentError(self.name, f"the error queue does not empty: {errors[:3]}... Reset the instrument")

    def _explain(self, command: str, timeout: InstrumentTimeout) -> None:
        """After a silent command: raise the device's own error for it if it filed one."""
        try:
            errors = self.device_errors()
        except InstrumentError:
            return  # the link itself is gone; the timeout says it best
        if errors:
            raise InstrumentError(self.name, f"no answer to {command!r}: {'; '.join(errors)}") from timeout

    # -- replies -------------------------------------------------------------------------------------
    def query_float(self, command: str) -> float:
        return self.as_float(self.query(command), command)

    def as_float(self, reply: object, command: str) -> float:
        """A number from a reply, or an error naming the command and the reply."""
        try:
            return float(reply)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise GarbledReply(self.name, f"unreadable answer {reply!r} to {command!r}. Check the link") from None

    def as_flag(self, reply: object, command: str) -> bool:
        """A SCPI boolean reply (0 or 1)."""
        value = float(reply) if isinstance(reply, bool) else self.as_float(reply, command)
        if value not in (0.0, 1.0):
            raise InstrumentError(self.name, f"unexpected answer {reply!r} to {command!r} (0 or 1 expected)")
        return value == 1.0


def open_scpi(cls: type[T], name: str, resource: str, options: dict[str, Any], declaration: type[ScpiOptions]) -> T:
    """``from_station`` for a SCPI driver: the declared options become constructor keywords,
    except ``timeout_s``, which is the link's."""
    kwargs = declaration.checked(name, options).values()
    adapter = make_adapter(resource, timeout_s=kwargs.pop("timeout_s"))
    try:
        return cls(adapter, name=name, **kwargs)  # type: ignore[call-arg]
    except BaseException:
        adapter.close()  # a refused or misconfigured device must not keep its port
        raise
