"""The use cases both faces call: the ONE place the CLI and the GUI meet the engine.

``cli.py`` parses arguments and drives tqdm bars; the GUI builds the same
request objects and runs them in an ``EngineWorker``. Neither builds a model,
templates, a validation plan or a write into the store of its own:

* ``jobs.models``      ``load_model``: which checkpoint, which image size, which adapter.
* ``jobs.templates``   ``TemplateSpec`` and ``load_templates``: which templates, checked once.
* ``jobs.training``    ``TrainRequest`` / ``train_run``.
* ``jobs.propagation`` ``PropagateRequest`` / ``propagate_run``: predictions file, journal,
  ``--write-to``; every output path checked before any work.
* ``jobs.cluster``     ``ClusterSettings`` (``PropagateRequest.cluster``): the same run on a Ray cluster.
* ``jobs.outputs``     the output rule: new, ours, or --overwrite; never an input.
* ``jobs.store_target`` the store a write goes into (``--write-to``, Write back): never a file
  of ours, never one that would hide a photo's annotations.
* ``jobs.review``     ``ReviewSession``: the Review panel's use case (states, undo, session file);
  ``jobs.review_predictions`` reads a predictions file into it, ``jobs.review_files`` finds
  saved reviews, ``jobs.write_back`` writes the accepted outlines into the store.
* ``jobs.evaluation``  ``EvaluateRequest`` / ``evaluate_run``.
* ``jobs.checkpoint_download`` ``DownloadRequest`` / ``download_run``: Progress and CancelToken in bytes.
* ``jobs.prompt_masks`` masks from SAM2 clicks, boxes, Refine and Fix (the GUI runs them off its thread).

Each ``*_run(request, progress, cancel, log_fn)`` reports counts through ``progress`` and the
lines worth showing the user through ``log_fn`` (docs/design/layers.md, "One log channel").

Importing ``descriptron_sam2pal.jobs`` is cheap: torch loads only when a job runs.
"""
