"""Segment-parallel video upscaling: a video cut at keyframes into segments that worker
processes (or Ray tasks) upscale side by side, joined at packet level into one output.

``plan`` cuts, ``worker`` is the segment function, ``pool`` runs it in local processes,
``ray_runner`` as Ray tasks, ``workdir`` keeps finished segments for ``--resume``, and
``driver`` ties them together; ``media.mux.join_segments`` joins.
"""
from .driver import upscale_video
from .plan import Segment, SegmentPlan, plan_segments

__all__ = ["upscale_video", "plan_segments", "Segment", "SegmentPlan"]
