"""Latent math for the explorer: slerp and blends, keyframe timelines, even frame spacing, and
GIF/MP4 export of morphs.

Pure numpy (docs/DESIGN.md §1): no Qt, no torch at import time; the video encoder loads only when a
file is written. Imports only `studio.core` (and may use `studio.models`).
"""

from studio.latent.animation import write_gif, write_mp4
from studio.latent.interpolate import blend, lerp, slerp
from studio.latent.timeline import Keyframe, Timeline, even_spacing

__all__ = ["Keyframe", "Timeline", "blend", "even_spacing", "lerp", "slerp", "write_gif", "write_mp4"]
