"""Where preprocessing reads its columns from: a pandas frame, or a Parquet file read one column at a time.

Preprocessing looks at one column at a time (what it is, which rows are empty), so a stored dataset
never has to be in memory as a whole: only the column at hand and the encoded matrix being built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Protocol

import numpy as np
import pandas as pd
import pyarrow.parquet as pa_parquet

from bigmodel.errors import DataError
from bigmodel.ml.transform import category_keys


class Columns(Protocol):
    """A table that hands out one column at a time."""

    names: list[str]
    rows: int

    def series(self, name: str) -> pd.Series:
        """The column as a pandas Series (positions 0..rows-1)."""
        ...


class FrameColumns:
    """The columns of a DataFrame already in memory."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.names = list(frame.columns)
        self.rows = len(frame)

    def series(self, name: str) -> pd.Series:
        """One column by name, refusing a name that two columns share."""
        column = self.frame[name]
        if isinstance(column, pd.DataFrame):
            raise DataError(f"column {name!r} appears more than once")
        return column


class ParquetColumns:
    """The columns of a Parquet file, each read from the file when asked for (and then let go)."""

    def __init__(self, source: str | IO[bytes]) -> None:
        self.file = pa_parquet.ParquetFile(source)
        self.names = list(self.file.schema_arrow.names)
        self.rows = int(self.file.metadata.num_rows)

    def series(self, name: str) -> pd.Series:
        """One column, converted to pandas as a whole-table read would convert it."""
        return self.file.read(columns=[name], use_pandas_metadata=False).column(0).to_pandas()


@dataclass(frozen=True)
class Categories:
    """A categorical column as integer codes into its distinct keys (-1 where the value is null)."""

    codes: np.ndarray
    keys: np.ndarray  # object array of the distinct category keys (strings)

    @classmethod
    def of(cls, series: pd.Series) -> Categories:
        """Factorise a raw column by its category keys (vectorised: many categories cost no more)."""
        codes, keys = pd.factorize(category_keys(series), use_na_sentinel=True)
        codes = codes.astype(np.int32) if len(keys) < 2**31 - 1 else codes
        return cls(codes, np.asarray(keys, dtype=object))

    def present(self, rows: np.ndarray) -> tuple[np.ndarray, bool]:
        """(the distinct keys found in these rows, whether a null is among them)."""
        codes = self.codes[rows]
        seen = np.bincount(codes[codes >= 0], minlength=len(self.keys)) > 0
        return self.keys[seen], bool((codes < 0).any())

    def positions(self, categories: list[str], missing: str) -> np.ndarray:
        """For each code (and, last, for null) its index in categories, or -1 when it is not one of them."""
        index = pd.Index(categories, dtype=object)
        lookup = np.empty(len(self.keys) + 1, dtype=np.int64)
        lookup[:-1] = index.get_indexer(self.keys)
        lookup[-1] = index.get_indexer([missing])[0]
        return lookup
