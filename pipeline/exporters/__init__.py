"""Exporters: the last stage of a pipeline, each a config Struct, a pure encode and one send call.

- ``helper``: the delivery chain every network exporter shares (queue -> retry -> timeout -> send), with its
  config mixin in ``helper_config``;
- ``otlp`` (OTLP/gRPC), ``otlphttp`` (OTLP/HTTP protobuf): forward batches byte for byte;
- ``file`` (OTLP/JSON lines or length-prefixed protobuf), ``debug`` (otelpipe's own log), ``nop``.

Each module exposes ``FACTORY``; ``pipeline.components`` registers them.
"""
