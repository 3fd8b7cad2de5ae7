"""The public API, re-exported by `cnnlab` itself: Keras' words (fit -> train, History.history -> Run.history,
summary, callbacks, image_size...) for cnnlab's runs. The CLI is a thin shell over these functions."""

from cnnlab.api.lab import Table, compare_with_lab, lab_settings
from cnnlab.api.library import (
                                Data,
                                Model,
                                Predictions,
                                Report,
                                compare,
                                load_dataset,
                                load_model,
                                presets,
                                report,
                                summary,
)
from cnnlab.api.run import Run, load_run, train

__all__ = ["Data", "Model", "Predictions", "Report", "Run", "Table", "compare", "compare_with_lab", "lab_settings",
           "load_dataset", "load_model", "load_run", "presets", "report", "summary", "train"]
