"""An optional MLflow sink: each comparison a parent run, each method x strategy a child run.

    llmsignal run --track mlflow                   # ./mlruns, a local file store that works offline
    llmsignal run --track mlflow:runs/mlruns       # another folder; a database URI needs `pip install mlflow`
    LLMSIGNAL_TRACKING_URI=./mlruns llmsignal run   # the same as --track mlflow:./mlruns
    mlflow ui --backend-store-uri ./mlruns          # then read the runs where researchers already look

A child run holds its method's hyper-parameters and budget, the training loss of every step as step
metrics, every numeric ``comparison.csv`` column as a metric, the verdict as a tag and its tearsheet as an
artifact; the parent holds the settings, ``comparison.html`` and ``comparison.csv``. A sweep logs one
child per trial. Without ``pip install 'llmsignal[mlflow]'`` nothing changes, and asking for tracking
says what to install in one line.
"""

from __future__ import annotations

import importlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

ENV = "LLMSIGNAL_TRACKING_URI"
DEFAULT_URI = "./mlruns"
EXPERIMENT = "llmsignal"


class TrackingError(ValueError):
    """Tracking asked for but not possible (MLflow not installed, an unknown sink)."""


@dataclass(frozen=True)
class Tracking:
    """Where runs go: an MLflow tracking URI."""

    uri: str

    @classmethod
    def parse(cls, spec: str | None) -> Tracking | None:
        """``mlflow`` or ``mlflow:URI`` from ``--track``, else the ``LLMSIGNAL_TRACKING_URI`` variable, else None.

        Checked before any work: MLflow must be importable.
        """
        if spec is None and not os.environ.get(ENV):
            return None
        sink, _, uri = (spec or f"mlflow:{os.environ[ENV]}").partition(":")
        if sink != "mlflow":
            raise TrackingError(f"--track {spec!r}: the only sink is mlflow (mlflow or mlflow:URI)")
        try:
            import mlflow  # noqa: F401
        except ImportError:
            raise TrackingError("--track mlflow needs MLflow: pip install 'llmsignal[mlflow]'") from None
        tracking = cls(uri or DEFAULT_URI)
        tracking.open()
        return tracking

    def open(self) -> None:
        """Open the store (creating a file store's folder and the experiment) now, so that a URI that cannot work is
        one line before the run, not a traceback after it."""
        scheme = self.uri.partition("://")[0].partition("+")[0] if "://" in self.uri else ""
        if scheme in ("sqlite", "postgresql", "mysql", "mssql"):
            try:  # an optional dependency, named at run time: only the full MLflow brings it
                importlib.import_module("sqlalchemy")
            except ImportError:
                raise TrackingError(f"--track mlflow:{self.uri}: a database store needs the full MLflow (pip install "
                                    "mlflow); mlflow-skinny, the [mlflow] extra, keeps runs in a folder "
                                    "(the default ./mlruns)") from None
        try:
            self._mlflow()
        except ModuleNotFoundError as err:  # mlflow-skinny has no SQL store: sqlalchemy and alembic come with mlflow
            raise TrackingError(f"--track mlflow:{self.uri}: this store needs {err.name}, which mlflow-skinny lacks: "
                                "pip install mlflow, or use a folder (the default ./mlruns)") from None
        except Exception as err:  # MLflow's own errors, OSError, a malformed URI: the message names the problem
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise TrackingError(f"--track mlflow:{self.uri}: cannot open the store ({first[:200]})") from None

    def _mlflow(self):
        import mlflow

        if "://" not in self.uri or self.uri.startswith("file:"):
            # MLflow 3 keeps its file store only on request; it is the store that needs no server or database
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        mlflow.set_tracking_uri(self.uri if "://" in self.uri else Path(self.uri).resolve().as_uri())
        mlflow.set_experiment(EXPERIMENT)
        return mlflow

    def log_comparison(self, out: Path, table: pd.DataFrame, settings: dict, children: list[dict],
                       name: str = "comparison") -> str:
        """One parent run for a comparison written to ``out``, and a child per entry of ``children``.

        A child is ``{"name", "params", "row" (a comparison.csv row), "losses", "tearsheet" (a path or None)}``.
        Returns the parent run's id.
        """
        mlflow = self._mlflow()
        with mlflow.start_run(run_name=name) as parent:
            mlflow.log_params({_key(k): str(v)[:500] for k, v in settings.items()})
            for artifact in ("comparison.html", "comparison.csv", "settings.json", "sweep.html", "sweep.csv"):
                if (out / artifact).exists():
                    mlflow.log_artifact(str(out / artifact))
            for child in children:
                with mlflow.start_run(run_name=child["name"], nested=True):
                    mlflow.log_params({_key(k): str(v)[:500] for k, v in child["params"].items()})
                    mlflow.log_metrics(_numbers(child["row"]))
                    mlflow.set_tag("verdict", str(child["row"].get("verdict", ""))[:5000])
                    for step, loss in enumerate(child.get("losses") or []):
                        mlflow.log_metric("train_loss", loss, step=step)
                    if child.get("tearsheet") and Path(child["tearsheet"]).exists():
                        mlflow.log_artifact(str(child["tearsheet"]), "tearsheets")
            return parent.info.run_id


def _key(name: object) -> str:
    """MLflow keys take letters, digits and ``_-. /`` only."""
    return "".join(c if c.isalnum() or c in "_-. /" else "_" for c in str(name))[:250]


def _numbers(row: dict) -> dict[str, float]:
    """The finite numbers of a row (booleans as 0/1): what MLflow takes as metrics."""
    import numpy as np

    numbers = {}
    for key, value in row.items():
        if isinstance(value, bool | np.bool_) or isinstance(value, int | float | np.number) and math.isfinite(value):
            numbers[_key(key)] = float(value)
    return numbers
