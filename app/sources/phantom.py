"""The built-in live source: the ultrasound phantom rendered in real time.

Publishes frames at a steady rate with the phantom's ground-truth labels (`Frame.truth`), the
pixel spacing and, in `Frame.meta`, the needle tip. Controls live on `.simulator` (plain
methods, safe to call from the GUI thread while this source renders).
"""

from __future__ import annotations

import time

from sonoguide.phantom.simulator import PhantomSimulator
from sonoguide.sources.base import FrameSource, SourceState


class PhantomSource(FrameSource):
    def __init__(self, scene: str = "jugular", fps: float = 30.0, seed: int = 0,
                 size: tuple[int, int] = (512, 512)) -> None:
        if not fps > 0:
            raise ValueError(f"phantom fps must be positive, got {fps}")
        self.simulator = PhantomSimulator(scene, seed=seed, size=size)
        self.simulator.async_rebuild = True  # a depth change must never freeze the picture
        super().__init__(f"phantom:{self.simulator.scene}", nominal_fps=float(fps))
        self.fps = float(fps)

    def _run(self) -> None:
        period = 1.0 / self.fps
        t0 = time.monotonic()
        next_t = t0
        h, w = self.simulator.size
        self._set_status(SourceState.LIVE, "phantom", width=w, height=h, fps=self.fps)
        while not self._stop_event.is_set():
            now = time.monotonic()
            frame = self.simulator.render(now - t0)  # phantom time follows the wall clock
            self._publish(frame.image, now, pixel_spacing_mm=frame.pixel_spacing_mm,
                          truth=frame.labels, needle_tip=frame.needle_tip)
            next_t += period
            if next_t < time.monotonic():  # fell behind: skip, never build a backlog
                next_t = time.monotonic() + period
            if not self._sleep_until(next_t):
                break
