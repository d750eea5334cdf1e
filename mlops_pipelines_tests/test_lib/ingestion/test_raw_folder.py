"""The raw-folder index: a run reads only the files that hold its days, each once; unreadable files are listed."""

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from mlops_pipelines.lib.ingestion import raw_folder
from mlops_pipelines.lib.ingestion.raw_folder import load_window, open_index
from mlops_pipelines.lib.ingestion.source_files import list_source_files

D = lambda *a: datetime(*a, tzinfo=UTC)  # noqa: E731
FIRST = D(2026, 1, 1)
LATEST = D(2026, 3, 1)
HOUR = timedelta(hours=1)
HEADER = "symbol,timestamp,open,high,low,close,volume\n"


def day_file(path: Path, *days: str) -> None:
    path.write_text(HEADER + "".join(f"AAA,{day}T{h:02d}:00:00Z,10,11,9,10.5,100\n" for day in days for h in range(24)))


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files parsed, in order."""
    seen: list[str] = []
    original = raw_folder.read_source_file
    monkeypatch.setattr(
        raw_folder, "read_source_file", lambda path, data=None: seen.append(path.name) or original(path, data)
    )
    return seen


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    raw = tmp_path / "raw"
    raw.mkdir()
    for day in ("2026-01-02", "2026-01-03", "2026-01-04"):
        day_file(raw / f"{day}.csv", day)
    day_file(raw / "history.csv", "2026-01-02", "2026-01-03")
    day_file(raw / "old.csv", "1999-12-31")  # no bar in any partition
    (raw / "empty.csv").write_bytes(b"")
    return raw


def load(index: raw_folder.FolderIndex, folder: Path, day: datetime) -> raw_folder.SourceBatch:
    return load_window(
        index,
        list_source_files(folder),
        day,
        day + timedelta(days=1),
        first_bar=FIRST,
        latest=LATEST,
        bar_interval=HOUR,
    )


def test_a_day_reads_only_the_files_with_bars_on_it_each_once(folder: Path, tmp_path: Path, reads: list[str]) -> None:
    path = tmp_path / "index.sqlite"
    with open_index(path) as index:
        cold = load(index, folder, D(2026, 1, 3))
    # the first use scans every file once (to learn its days), and parses none twice
    assert reads == ["2026-01-02.csv", "2026-01-03.csv", "2026-01-04.csv", "empty.csv", "history.csv", "old.csv"]
    assert [Path(f).name for f in cold.files_read] == ["2026-01-03.csv", "history.csv"]
    assert len(cold.bars) == 48 and set(cold.bars["timestamp"].str[:10]) == {"2026-01-03"}
    assert [Path(e.path).name for e in cold.unreadable] == ["empty.csv"] and "0 bytes" in str(cold.unreadable[0].error)

    reads.clear()
    with open_index(path) as index:  # another run, another process: the index persists
        warm = load(index, folder, D(2026, 1, 3))
    assert reads == ["2026-01-03.csv", "history.csv"]
    pd.testing.assert_frame_equal(warm.bars, cold.bars)


def test_files_with_no_bar_in_a_partition_are_read_by_the_first_partition(folder: Path, reads: list[str]) -> None:
    with open_index(None) as index:
        load(index, folder, D(2026, 1, 3))
        reads.clear()
        first = load(index, folder, FIRST)
    assert reads == ["old.csv"] and first.files_read == [str(folder / "old.csv")]
    assert first.bars["timestamp"].str[:10].unique().tolist() == ["1999-12-31"]  # for validation to quarantine


def test_a_touched_file_is_hashed_not_parsed_and_a_changed_one_is_parsed(folder: Path, reads: list[str]) -> None:
    with open_index(None) as index:
        load(index, folder, D(2026, 1, 4))
        reads.clear()
        os.utime(folder / "2026-01-02.csv", ns=(1, 1))  # same content, new mtime
        day_file(folder / "2026-01-03.csv", "2026-01-03", "2026-01-04")  # new content: now holds the 4th too
        batch = load(index, folder, D(2026, 1, 4))
    assert reads == ["2026-01-03.csv", "2026-01-04.csv"]  # the changed one parsed once, though scanned and needed
    assert sorted(Path(f).name for f in batch.files_read) == ["2026-01-03.csv", "2026-01-04.csv"]
    assert len(batch.bars) == 48


def test_the_index_is_a_cache_a_corrupt_one_is_rebuilt(folder: Path, tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    path.write_bytes(b"not a database" * 100)
    with open_index(path) as index:
        batch = load(index, folder, D(2026, 1, 2))
    assert [Path(f).name for f in batch.files_read] == ["2026-01-02.csv", "history.csv"]
    assert (tmp_path / "index.sqlite.corrupt").exists()
    with open_index(path) as index:
        assert index.stored(folder / "2026-01-02.csv") is not None


def test_a_file_that_cannot_be_opened_is_unreadable_and_retried(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = folder / "2026-01-02.csv"
    read_bytes = Path.read_bytes

    def deny(self: Path) -> bytes:  # what a file mode the ingestion user cannot read gives (tests run as root)
        if self == locked:
            raise PermissionError(13, "Permission denied")
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", deny)
    with open_index(None) as index:
        batch = load(index, folder, D(2026, 1, 2))
        assert [Path(e.path).name for e in batch.unreadable] == ["2026-01-02.csv", "empty.csv"]
        assert "2026-01-02.csv: cannot be opened (Permission denied)" in str(batch.unreadable[0].error)
        assert index.stored(locked) is None  # not indexed: read again next time
        monkeypatch.setattr(Path, "read_bytes", read_bytes)
        assert str(locked) in load(index, folder, D(2026, 1, 2)).files_read
