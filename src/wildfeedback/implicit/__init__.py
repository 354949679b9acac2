"""Implicit feedback: what users' gaze, mouse and product actions say about the replies they saw.

* `traces`         numpy view of the schema's `Trace` events (the features' input)
* `ifllm_archive`  streaming reader for the IFLLM behaviour archive (never unpacked to disk)
"""
