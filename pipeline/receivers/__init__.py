"""Receivers: the network edges where telemetry enters otelpipe.

A receiver turns requests into ``Batch`` objects, hands each to the ``Consumer`` it was given at create time and
translates the result (return, ``Refused``, ``Permanent``) into the sender's protocol. It holds no data itself:
the answer goes back as soon as ``consume`` returns.
"""
