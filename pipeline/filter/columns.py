"""How a signal column is declared: name, Arrow type and what it measures."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    description: str

    def field(self) -> pa.Field:
        return pa.field(self.name, self.type, nullable=True, metadata={"description": self.description})


def f32(name: str, description: str) -> Column:
    return Column(name, pa.float32(), description)


def i32(name: str, description: str) -> Column:
    return Column(name, pa.int32(), description)


def to_arrow(column: Column, values) -> pa.Array:
    """numpy values as the column's Arrow type; NaN becomes null (undefined, e.g. no words)."""
    if isinstance(values, pa.Array):
        return values.cast(column.type)
    values = np.asarray(values)
    mask = np.isnan(values) if values.dtype.kind == "f" else None
    if pa.types.is_floating(column.type):
        return pa.array(values.astype(np.float32), column.type, mask=mask)
    return pa.array(values, column.type, mask=mask)
