"""An append-only journal of paid queries: one fixed-size, checksummed binary record per step.

Queries are what an attacker pays for, so every step's answers are written and fsynced as
soon as the victim's answer arrives, before the knockoff learns from it. The file is a data
format, never a pickle:

* header: magic ``KOJOURN1``, then little-endian uint32 version, queries_per_step Q,
  num_classes K, config length L, the run's id (16 bytes, a UUID: remote victims derive
  their request ids from it), the run's configuration as L bytes of JSON, and a uint32
  CRC-32 of everything before it;
* records, each ``seq`` (uint64, 0, 1, 2…), ``n`` (uint32, images in the step),
  ``request`` (16 bytes: the UUID of the step's request to a remote victim, zeros for an
  in-process one), ``indices`` (Q × int64, query-set indices, unused slots −1), ``outputs``
  (Q × K float32, the victim's answers, unused rows 0) and a uint32 CRC-32 of the record's
  other bytes.

A process killed mid-write leaves a short (or, after a power loss, garbled) last record:
:meth:`Journal.open` drops it and truncates the file back to the last whole record. Any
other damage (a bad checksum before the end, a broken header, records out of order) is a
:class:`JournalError`: the file was modified, and guessing would corrupt the transfer set.
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
VERSION = 2
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
    """Appends step records to ``path`` with fsync; see the module docstring for the format."""

    def __init__(self, path: Path, fd: int, dtype: np.dtype, next_seq: int, run_id: uuid.UUID):
        self.path, self._fd, self.dtype, self.next_seq, self.run_id = path, fd, dtype, next_seq, run_id
        tear = os.environ.get(TEAR_ENV)
        self._tear_at = int(tear) if tear else None

    @classmethod
    def create(cls, path: str | Path, config: Mapping, queries_per_step: int, num_classes: int,
               run_id: uuid.UUID | None = None) -> "Journal":
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
        return cls(path, fd, record_dtype(queries_per_step, num_classes), 0, run_id)

    @classmethod
    def open(cls, path: str | Path, config: Mapping) -> tuple["Journal", np.ndarray]:
        """Reopen for appending after checking it; returns it and its whole records."""
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
        if ((records["n"] < 1) | (records["n"] > dtype["indices"].shape[0])).any():
            raise JournalError(f"{path}: a record holds an impossible number of images; the journal was modified")
        end = size + whole * dtype.itemsize
        if end != len(data):
            os.truncate(path, end)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        os.fsync(fd)
        return cls(path, fd, dtype, whole, run_id), records

    def append(self, indices: np.ndarray, outputs: np.ndarray, request: uuid.UUID | None = None) -> None:
        """Write and fsync one step's (indices, victim outputs) and the id of its remote request."""
        n = len(indices)
        record = np.zeros(1, self.dtype)
        record["seq"], record["n"] = self.next_seq, n
        if request is not None:
            record["request"][0] = np.frombuffer(request.bytes, np.uint8)
        record["indices"][0, :] = -1
        record["indices"][0, :n] = indices
        record["outputs"][0, :n] = outputs
        raw = record.tobytes()
        record["crc"] = zlib.crc32(raw[:-4])
        raw = record.tobytes()
        if self._tear_at == self.next_seq:  # simulate a kill in the middle of a write
            os.write(self._fd, raw[:len(raw) // 2])
            os.fsync(self._fd)
            os.kill(os.getpid(), signal.SIGKILL)
        os.write(self._fd, raw)
        os.fsync(self._fd)
        self.next_seq += 1

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _read_header(path: Path, data: bytes, config: Mapping) -> tuple[int, np.dtype, uuid.UUID]:
    start = len(MAGIC) + _FIXED.size
    if len(data) < start + 4 or data[:len(MAGIC)] != MAGIC:
        raise JournalError(f"{path} is not a knockoff_env journal (bad magic or too short)")
    version, q, k, length, run_id = _FIXED.unpack_from(data, len(MAGIC))
    if version != VERSION:
        raise JournalError(f"{path} is a version {version} journal; this knockoff_env reads version {VERSION} "
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

