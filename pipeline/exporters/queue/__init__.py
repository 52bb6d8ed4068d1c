"""Sending queues: what an exporter holds between acknowledging a batch and the backend accepting it.

    MemoryQueue   bounded by batches and bytes; lost on kill -9 (and counted as dropped if still held when the
                  shutdown deadline passes)
    DiskQueue     append-only segment files with checksums; survives kill -9 (and power loss with
                  fsync = "always"); what is left at shutdown stays for the next start

Both implement ``SendingQueue``; the exporter helper does not know which one it drives except through
``persistent``.
"""

from pipeline.exporters.queue.base import QueueItem, SendingQueue
from pipeline.exporters.queue.disk import DiskQueue
from pipeline.exporters.queue.memory import MemoryQueue

__all__ = ["DiskQueue", "MemoryQueue", "QueueItem", "SendingQueue"]
