"""The inference pool: one supervisor per host, one worker process per device.

Web workers never load models; they send jobs to the pool over Unix sockets (plain ``socket``
calls, which gevent makes cooperative; ``multiprocessing`` queues hang under its monkey-patching)
and stream chunks back. See ``docs/architecture.md`` for the flow.
"""
