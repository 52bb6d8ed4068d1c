"""Delivery building blocks shared by the batch processor, the memory limiter, the exporter helper and the
receivers: merging and splitting batches, the pure batcher, the ledger of buffered bytes and memory pressure.

Processors may import this package (it holds no network code); exporters and receivers use it too, which is
why it does not live under ``pipeline/exporters``.
"""
