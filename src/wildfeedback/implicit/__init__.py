"""Implicit feedback: what users' gaze, mouse and product actions say about the replies they saw.

* `traces`         numpy view of the schema's `Trace` events (the features' input)
* `ifllm_archive`  streaming reader for the IFLLM behaviour archive (never unpacked to disk)
* `ifllm`          the archive joined to the query logs: one window of traces per query shown
* `features`       behaviour features per reply and per query (engaged time, attention share,
                   reading position, look-backs, review phase, gaze-mouse agreement, product signals)
* `text`           text features of the two replies (student encoder + the replies' form)
* `dataset`        the class-balanced pairwise set and its behaviour matrix
* `model`          the implicit reward model (text / behaviour / fused, calibrated) and its CV
* `export`         the model's choices as confidence-weighted DPO pairs and KTO labels
"""
