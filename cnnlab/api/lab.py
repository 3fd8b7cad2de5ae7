"""The lab from Python: the settings its code adds to each preset, and its printed figures beside a run's."""

from dataclasses import dataclass
from pathlib import Path

from cnnlab.core.errors import CnnlabError
from cnnlab.experiments import lab, lab_figures
from cnnlab.reports import facts, html
from cnnlab.reports import report as _report


def lab_settings(name: str, quick: bool = False) -> dict:
    """cnnlab.train's keywords for one of the lab's networks, as `cnnlab lab` trains it: what the lab's code does
    beyond the preset (sections 3 and 4 validate on the test set) and, with quick=True, --quick's subsets."""
    return lab.lab_settings(name, quick)


@dataclass
class Table:
    """A table that prints as Markdown and shows as HTML in a notebook."""
    header: list
    rows: list

    def __str__(self) -> str:
        return _report.table(self.header, self.rows)

    def _repr_markdown_(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return html.to_html(str(self), Path("."), "", fragment=True)


def compare_with_lab(runs, sections=None) -> Table:
    """The lab's printed figures beside these runs': `runs` is a folder holding the lab's run folders (mlp/,
    mlp-deep/, mnist-cnn/, cifar-cnn/; those present are compared) or {preset name: Run or folder}; `sections`
    picks some of "3.2", "3.3", "4.4", "5"."""
    if isinstance(runs, dict):
        folders = {name: Path(getattr(r, "path", r)) for name, r in runs.items()}
    else:
        folders = {name: Path(runs) / name for name in lab.LAB if (Path(runs) / name / "metrics.csv").is_file()}
    unknown = [s for s in sections or [] if s not in lab_figures.SECTIONS]
    if unknown:
        raise CnnlabError(f"no lab section {unknown[0]!r}; choose from {', '.join(lab_figures.SECTIONS)}")
    missing = [lab_figures.SECTIONS[s] for s in sections or [] if lab_figures.SECTIONS[s] not in folders]
    if missing or not folders:
        raise CnnlabError(f"no {missing[0] if missing else 'lab'} run to compare in {runs}; train it first")
    info = {name: facts.gather(folder, evaluate=False) for name, folder in folders.items()}
    return Table(lab_figures.HEADER, lab_figures.side_by_side(info, sections))
