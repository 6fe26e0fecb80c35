"""Footage jobs: uploads (streamed to disk, GPS tracks checked), the job queue and the worker that runs
the detection pipeline. Only the worker imports detect and streams, lazily, when a job runs."""
