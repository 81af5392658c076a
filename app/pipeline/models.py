"""The shipped models, one per mode, and loading a mode's segmenter + analyzer together."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sonoguide.paths import models_dir
from sonoguide.pipeline.analysis import MODES, TARGET_CLASS, Analyzer
from sonoguide.pipeline.guidance import Guide
from sonoguide.pipeline.segmenter import ModelLoadError, Segmenter

# the shipped models (package data); SONOGUIDE_MODELS_DIR overrides it
MODELS_DIR = models_dir()

log = logging.getLogger(__name__)


def default_model_path(mode: str) -> Path:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return MODELS_DIR / f"{mode}.onnx"


def load_mode(mode: str, model_path: str | Path | None = None, provider: str = "auto",
              intra_op_threads: int = 2) -> tuple[Segmenter, Analyzer]:
    """Segmenter and Analyzer for `mode`; ModelLoadError (message names the file) if unusable,
    including a model that lacks the mode's target class (e.g. a plexus model in jugular mode).
    """
    path = Path(model_path) if model_path is not None else default_model_path(mode)
    if not path.exists() and model_path is None:
        raise ModelLoadError(f"{path}: the {mode} model is not installed (model file not found)")
    segmenter = Segmenter(path, provider=provider, intra_op_threads=intra_op_threads)
    wanted = TARGET_CLASS[mode]
    if wanted not in segmenter.classes:
        raise ModelLoadError(
            f"{path}: model classes {list(segmenter.classes)} lack '{wanted}', which {mode} "
            f"mode targets; pick the {mode} model")
    return segmenter, analyzer_for(segmenter, mode)


def load_for_machine(mode: str, model_path: str | Path | None = None, provider: str = "auto",
                     threads: int | None = None, *, recalibrate: bool = False,
                     progress=None) -> LoadedModel:
    """The mode's model as this machine runs it best: on the CPU, the shipped variant (int8 or
    float32) and thread count measured fastest here among those the model card allows
    (sonoguide.pipeline.speed, cached per CPU and model hash); an explicit model path or thread
    count, or a GPU, is used as given. ModelLoadError (naming the file) if unusable."""
    from sonoguide.pipeline.providers import CPU, default_intra_op_threads, provider_plan

    note, settings_problem = "", ""
    on_cpu = provider_plan(provider)[0] == [CPU]
    if model_path is None and on_cpu:
        from sonoguide.pipeline.speed import choose_speed

        options = None if threads is None else (threads,)
        choice = choose_speed(mode, models_dir=MODELS_DIR, thread_options=options,
                              recalibrate=recalibrate, progress=progress)
        model_path, threads, note = choice.path, choice.threads, choice.summary()
        settings_problem = choice.cache_problem or ""
    segmenter, analyzer = load_mode(mode, model_path, provider,
                                    threads or default_intra_op_threads())
    log.info("mode %s: model %s (version %s) from %s on %s%s%s", mode, segmenter.name,
             segmenter.contract.version, segmenter.path, segmenter.provider,
             f"; {note}" if note else "",
             f"; {segmenter.provider_note}" if segmenter.provider_note else "")
    return LoadedModel(segmenter, analyzer, note, settings_problem)


def analyzer_for(segmenter: Segmenter, mode: str, **options) -> Analyzer:
    """The mode's analyzer for this model, with the model's calibrated unsure levels
    (`options`: Analyzer's other keyword arguments)."""
    analyzer = Analyzer(segmenter.classes, mode,
                        unsure_below=dict(segmenter.contract.unsure_below), **options)
    analyzer.guide = Guide(mode)
    return analyzer


@dataclass(frozen=True)
class LoadedModel:
    """A mode's segmenter and analyzer, loaded together (what the live session runs)."""

    segmenter: Any  # Segmenter (or a test fake with the same attributes)
    analyzer: Any
    speed_note: str = ""  # which variant and thread count was chosen on this machine, and why
    settings_problem: str = ""  # the speed cache was bad (moved aside) or cannot be saved

    @property
    def version(self) -> str:
        contract = getattr(self.segmenter, "contract", None)
        return str(getattr(contract, "version", "?"))

    @property
    def provider(self) -> str:
        return str(getattr(self.segmenter, "provider", "?"))

    @property
    def name(self) -> str:
        return str(getattr(self.segmenter, "name", "model"))
