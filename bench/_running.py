"""The bench's servers as async context managers: ``start`` on entry, ``stop`` on exit."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Self

__all__ = ["Running"]


class Running(ABC):
    """``async with`` awaits :meth:`start`, then :meth:`stop` however the block ends."""

    @abstractmethod
    async def start(self) -> None:
        """Start serving; return once ready."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop serving and release what :meth:`start` took."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
