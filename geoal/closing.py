"""``with obj:`` for objects that hold something open (a store, a dataset): closed on the way out."""

from __future__ import annotations

from typing import Self


class Closing:
    """A mixin: ``with obj: ...`` calls ``obj.close()`` when the block ends; subclasses define it."""

    def close(self) -> None:
        """Release what the object holds open."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
