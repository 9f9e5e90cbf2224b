"""An append-only journal of paid queries: one fixed-size, checksummed binary record per step.

Queries are what an attacker pays for, so every step's answers are written as soon as the
victim's answer arrives, before the knockoff learns from it, and (``sync=True``, for a paid
victim) fsynced at once. A written record survives the process (a crash, SIGKILL); only an
fsynced one survives the machine (a power cut). With ``sync=False`` (an in-process victim,
whose answers cost nothing to ask again) :meth:`Journal.sync` makes the records so far durable,
as a durable run does before every checkpoint. Steps answered by one victim call (a batched
strategy, see :mod:`knockoff_env.core.batched`) are written together, in one write (and one
fsync), as one *batch* of records. The file is a data format, never a pickle:

* header: magic ``KOJOURN1``, then little-endian uint32 version, queries_per_step Q,
  num_classes K, config length L, the run's id (16 bytes, a UUID: remote victims derive
  their request ids from it), the run's configuration as L bytes of JSON, and a uint32
  CRC-32 of everything before it;
* records, each ``seq`` (uint64, 0, 1, 2…), ``n`` (uint32: images in the step; from version 3
  its top bit says that the next record belongs to the same batch), ``request`` (16 bytes:
  the UUID of the remote request that carried the step's first image, zeros for an
  in-process victim), ``indices`` (Q × int64, query-set indices, unused slots −1),
  ``outputs`` (Q × K float32, the victim's answers, unused rows 0) and a uint32 CRC-32 of
  the record's other bytes.

A process killed mid-write leaves a short (or, after a power loss, garbled) last record, or a
batch whose last records never reached the disk: :meth:`Journal.open` drops the torn record
and the rest of its batch, and truncates the file back to the last whole batch (a resumed
run then sends that batch again as it was, so a served victim recognises its request ids
and does not charge it twice). Any other damage (a bad checksum before the end, a broken
header, records out of order) is a :class:`JournalError`: the file was modified, and
guessing would corrupt the transfer set. Version 2 journals (one batch per record) are read
as they are; new journals are written as version 3.
"""
from __future__ import annotations

import json
import os
import signal
import struct
import uuid
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .checkpoint import CheckpointError, check_config, fsync_dir

MAGIC = b"KOJOURN1"
VERSION = 3
READS = (2, 3)  # version 2: records without the batch bit
MORE = np.uint32(1 << 31)  # the top bit of ``n``: the next record is in the same batch
_FIXED = struct.Struct("<4I16s")  # version, Q, K, config length, run id
TEAR_ENV = "KNOCKOFF_JOURNAL_TEAR_AT"  # fault injection for tests: die halfway through record seq N


class JournalError(CheckpointError):
    """A journal that is damaged, tampered with, or belongs to another run."""


def record_dtype(queries_per_step: int, num_classes: int) -> np.dtype:
    return np.dtype([("seq", "<u8"), ("n", "<u4"), ("request", "u1", (16,)), ("indices", "<i8", (queries_per_step,)),
                     ("outputs", "<f4", (queries_per_step, num_classes)), ("crc", "<u4")])


def header_size(data: bytes) -> int | None:
    """Bytes of the header at the start of ``data`` (None while it is incomplete)."""
    if len(data) < len(MAGIC) + _FIXED.size:
        return None
    size = len(MAGIC) + _FIXED.size + _FIXED.unpack_from(data, len(MAGIC))[3] + 4
    return size if len(data) >= size else None


def _header(config: Mapping, queries_per_step: int, num_classes: int, run_id: uuid.UUID) -> bytes:
    text = json.dumps(dict(config), sort_keys=True).encode()
    body = MAGIC + _FIXED.pack(VERSION, queries_per_step, num_classes, len(text), run_id.bytes) + text
    return body + struct.pack("<I", zlib.crc32(body))


class Journal:
    """Appends step records to ``path`` (fsynced each when ``sync``); see the module docstring."""

    def __init__(self, path: Path, fd: int, dtype: np.dtype, next_seq: int, run_id: uuid.UUID, sync: bool = True):
        self.path, self._fd, self.dtype, self.next_seq, self.run_id = path, fd, dtype, next_seq, run_id
        self.sync_each = bool(sync)
        self.batch_ends = np.ones(next_seq, bool)  # set by open(): each record read, last of its batch?
        tear = os.environ.get(TEAR_ENV)
        self._tear_at = int(tear) if tear else None

    @classmethod
    def create(cls, path: str | Path, config: Mapping, queries_per_step: int, num_classes: int,
               run_id: uuid.UUID | None = None, sync: bool = True) -> "Journal":
        """A new, empty journal (with a new run id unless given); refuses to overwrite an existing one."""
        path = Path(path)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        except FileExistsError:
            raise JournalError(f"{path} already exists: resume that run, or choose a new run directory") from None
        run_id = run_id or uuid.uuid4()
        os.write(fd, _header(config, queries_per_step, num_classes, run_id))
        os.fsync(fd)
        fsync_dir(path.parent)
        return cls(path, fd, record_dtype(queries_per_step, num_classes), 0, run_id, sync)

    @classmethod
    def open(cls, path: str | Path, config: Mapping, sync: bool = True) -> tuple["Journal", np.ndarray]:
        """Reopen for appending after checking it; returns it and the records of its whole
        batches (``n`` = images; :attr:`batch_ends` marks each batch's last record)."""
        path = Path(path)
        if not path.exists():
            raise JournalError(f"no journal at {path}: this directory holds no resumable attack")
        data = path.read_bytes()
        size, dtype, run_id = _read_header(path, data, config)
        body = data[size:]
        whole = len(body) // dtype.itemsize
        records = np.frombuffer(body[:whole * dtype.itemsize], dtype).copy()
        if whole and not _crc_ok(records[-1:], dtype)[0]:
            whole -= 1  # a last record whose bytes did not all reach the disk: torn, drop it
            records = records[:whole]
        bad = np.flatnonzero(~_crc_ok(records, dtype))
        if bad.size:
            raise JournalError(f"{path}: record {int(bad[0])} fails its checksum, so the journal was "
                               "modified or damaged; restore it from a backup or start a new run")
        if not np.array_equal(records["seq"], np.arange(whole)):
            raise JournalError(f"{path}: records are out of sequence; the journal was modified")
        more = (records["n"] & MORE) != 0
        records["n"] &= ~MORE
        if ((records["n"] < 1) | (records["n"] > dtype["indices"].shape[0])).any():
            raise JournalError(f"{path}: a record holds an impossible number of images; the journal was modified")
        while whole and more[whole - 1]:  # a batch whose last records never reached the disk
            whole -= 1
        records, more = records[:whole], more[:whole]
        end = size + whole * dtype.itemsize
        if end != len(data):
            os.truncate(path, end)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        os.fsync(fd)
        journal = cls(path, fd, dtype, whole, run_id, sync)
        journal.batch_ends = ~more
        return journal, records

    @staticmethod
    def saved_config(path: str | Path) -> dict:
        """The configuration in the journal's header (before resuming, to follow its choices)."""
        path = Path(path)
        data = path.read_bytes() if path.exists() else b""
        size = header_size(data)
        if size is None or data[:len(MAGIC)] != MAGIC:
            raise JournalError(f"{path} is not a knockoff_env journal (bad magic or too short)")
        start = len(MAGIC) + _FIXED.size
        return json.loads(data[start:size - 4])

    def append(self, indices: np.ndarray, outputs: np.ndarray, request: uuid.UUID | None = None) -> None:
        """Write (and, with ``sync``, fsync) one step's (indices, victim outputs) and its remote request's id."""
        self.append_batch([(indices, outputs, request)])

    def append_batch(self, steps: list[tuple[np.ndarray, np.ndarray, uuid.UUID | None]]) -> None:
        """Write (and, with ``sync``, fsync) the steps of one victim call, each ``(indices, outputs,
        request)``, as one batch: a reader gets all of them or none."""
        records = np.zeros(len(steps), self.dtype)
        records["indices"] = -1
        for i, (indices, outputs, request) in enumerate(steps):
            n = len(indices)
            records["seq"][i], records["n"][i] = self.next_seq + i, n | (MORE if i + 1 < len(steps) else 0)
            if request is not None:
                records["request"][i] = np.frombuffer(request.bytes, np.uint8)
            records["indices"][i, :n] = indices
            records["outputs"][i, :n] = outputs
        size = self.dtype.itemsize
        raw = bytearray(records.tobytes())
        for i in range(len(steps)):
            raw[(i + 1) * size - 4:(i + 1) * size] = struct.pack("<I", zlib.crc32(raw[i * size:(i + 1) * size - 4]))
        if self._tear_at is not None and 0 <= self._tear_at - self.next_seq < len(steps):  # a kill mid-write
            os.write(self._fd, bytes(raw[:(self._tear_at - self.next_seq) * size + size // 2]))
            os.fsync(self._fd)
            os.kill(os.getpid(), signal.SIGKILL)
        os.write(self._fd, bytes(raw))
        if self.sync_each:
            os.fsync(self._fd)
        self.next_seq += len(steps)

    def sync(self) -> None:
        """Make every record written so far durable (fsync)."""
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1


def _read_header(path: Path, data: bytes, config: Mapping) -> tuple[int, np.dtype, uuid.UUID]:
    start = len(MAGIC) + _FIXED.size
    if len(data) < start + 4 or data[:len(MAGIC)] != MAGIC:
        raise JournalError(f"{path} is not a knockoff_env journal (bad magic or too short)")
    version, q, k, length, run_id = _FIXED.unpack_from(data, len(MAGIC))
    if version not in READS:
        raise JournalError(f"{path} is a version {version} journal; this knockoff_env reads versions {READS} "
                           "(resume it with the version that wrote it, or start a new run)")
    end = start + length
    if len(data) < end + 4 or struct.unpack_from("<I", data, end)[0] != zlib.crc32(data[:end]):
        raise JournalError(f"{path}: the journal header is damaged (bad checksum or cut short)")
    check_config(json.loads(data[start:end]), config, str(path), JournalError)
    return end + 4, record_dtype(q, k), uuid.UUID(bytes=run_id)


def _crc_ok(records: np.ndarray, dtype: np.dtype) -> np.ndarray:
    raw = records.tobytes()
    size = dtype.itemsize
    return np.array([zlib.crc32(raw[i * size:(i + 1) * size - 4]) == int(records["crc"][i])
                     for i in range(len(records))], bool)

