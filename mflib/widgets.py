"""An ipywidgets explorer of convergence: pick a solver and its main parameters, and see
its training and validation RMSE redrawn against iterations and seconds.

The explorer builds without a front end (its controls are plain widget objects and its
figure a matplotlib figure), so it can be created, driven and tested in any Python
process. :meth:`ConvergenceExplorer.show` displays the controls and, beside them, a
static image of the current figure: under papermill or nbval, where no widget is ever
rendered, the notebook still holds the default state's curves; in a live notebook every
change of a control refits the model and redraws the figure inside the widget.

Requires ``ipywidgets`` (the ``notebooks`` extra).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from sklearn.base import clone

from .plots import plot_history
from .registry import make_estimator

#: the solvers on offer: label -> (estimator class name, {main parameter: choices}).
#: Every estimator keeps its other defaults; the preselected value of a control is the
#: estimator's default where the choices hold it.
EXPLORER_SOLVERS = {
    "ALS": ("ALS", {"n_factors": [2, 5, 10, 20, 50], "regularization": [1.0, 3.0, 10.0, 15.0,
                                                                         30.0, 100.0],
                    "max_iter": [5, 15, 30]}),
    "SGD": ("SGD", {"n_factors": [10, 50, 100], "learning_rate": [0.002, 0.005, 0.01, 0.02],
                    "regularization": [0.02, 0.05, 0.1, 0.2], "max_iter": [20, 40, 60]}),
    "SVRG": ("SVRG", {"learning_rate": [0.005, 0.01, 0.02], "regularization": [0.02, 0.05,
                                                                                0.1, 0.2],
                      "max_iter": [10, 20, 40]}),
    "SVD++": ("SVDpp", {"n_factors": [10, 20, 50], "learning_rate": [0.003, 0.007, 0.015],
                        "max_iter": [10, 20, 40]}),
    "RGD (Grassmann)": ("RGD", {"n_factors": [1, 3, 5, 10], "regularization": [0.03, 0.1, 0.3,
                                                                                1.0, 3.0],
                                "max_iter": [20, 50, 100]}),
    "R-SVRG (Grassmann)": ("RSVRG", {"n_factors": [1, 3, 5, 10],
                                     "regularization": [0.03, 0.1, 0.3, 1.0],
                                     "max_iter": [10, 20, 40]}),
    "Euclidean GD": ("EuclideanGD", {"n_factors": [3, 5, 10], "regularization": [3.0, 10.0,
                                                                                 30.0],
                                     "max_iter": [50, 100, 200]}),
    "SoftImpute": ("SoftImpute", {"regularization": [3.0, 10.0, 20.0, 40.0],
                                  "max_iter": [20, 50, 100]}),
    "Bayesian MF": ("BayesianMF", {"n_factors": [5, 10, 20], "max_iter": [50, 100, 200]}),
}


class ConvergenceExplorer:
    """Pick a solver and its main parameters; the model is fitted on ``train`` with
    ``validation`` as ``eval_set`` and its RMSE curves drawn against iterations and
    solver seconds.

    Parameters
    ----------
    train, validation : RatingMatrix
        Where the model is fitted, and what its validation RMSE is measured on (never a
        test part: the explorer is for choosing settings).
    solvers : dict, default :data:`EXPLORER_SOLVERS`
        label -> (estimator class name, {parameter: list of choices}).
    solver : str, optional
        The label selected first (default: the first of ``solvers``).
    random_state : int, default 0
        Given to every estimator that takes one, so a setting always draws the same curve.

    Attributes
    ----------
    solver_control : ipywidgets.Dropdown
    parameter_controls : dict of name -> ipywidgets.SelectionSlider
        The controls of the selected solver's main parameters.
    widget : ipywidgets.VBox
        Everything, for ``display``.
    model : the fitted estimator of the current selection
    figure : matplotlib Figure of the current selection
    """

    def __init__(self, train, validation, *, solvers=None, solver=None, random_state=0):
        import ipywidgets as widgets  # noqa: PLC0415  (the notebooks extra)

        self._widgets = widgets
        self.train, self.validation = train, validation
        self.solvers = dict(EXPLORER_SOLVERS if solvers is None else solvers)
        if not self.solvers:
            raise ValueError("solvers is empty; give at least one label -> (class name, "
                             "{parameter: choices})")
        solver = next(iter(self.solvers)) if solver is None else solver
        if solver not in self.solvers:
            raise ValueError(f"unknown solver {solver!r}; choose one of {list(self.solvers)}")
        self.random_state = random_state
        self.solver_control = widgets.Dropdown(options=list(self.solvers), value=solver,
                                               description="solver")
        self.parameter_box = widgets.VBox()
        self.output = widgets.Output()
        self.status = widgets.Label()
        self.widget = widgets.VBox([self.solver_control, self.parameter_box, self.status,
                                    self.output])
        self.figure = None
        self._build_parameter_controls()
        self.solver_control.observe(self._on_solver, names="value")
        self.refit()

    # ------------------------------------------------------------------ state
    @property
    def selection(self) -> dict:
        """The selected solver label and parameter values."""
        return {"solver": self.solver_control.value,
                **{name: c.value for name, c in self.parameter_controls.items()}}

    def estimator(self):
        """An unfitted estimator of the current selection."""
        class_name, _ = self.solvers[self.solver_control.value]
        model = make_estimator(class_name)
        params = {name: c.value for name, c in self.parameter_controls.items()}
        if "random_state" in model.get_params():
            params["random_state"] = self.random_state
        return clone(model).set_params(**params)

    def _build_parameter_controls(self) -> None:
        class_name, choices = self.solvers[self.solver_control.value]
        defaults = make_estimator(class_name).get_params()
        controls = {}
        for name, options in choices.items():
            if name not in defaults:
                raise ValueError(f"{class_name} has no parameter {name!r}; its parameters: "
                                 f"{sorted(defaults)}")
            options = list(options)
            value = defaults[name] if defaults[name] in options else options[len(options) // 2]
            control = self._widgets.SelectionSlider(options=options, value=value,
                                                    description=name,
                                                    continuous_update=False)
            control.observe(self._on_parameter, names="value")
            controls[name] = control
        self.parameter_controls = controls
        self.parameter_box.children = tuple(controls.values())

    # ------------------------------------------------------------------ actions
    def refit(self):
        """Fit the current selection and redraw the figure; returns the fitted model."""
        model = self.estimator()
        model.fit(self.train, eval_set=self.validation)
        self.model = model
        if self.figure is not None:
            plt.close(self.figure)
        fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.4))
        label = self.solver_control.value
        plot_history({f"{label} (training)": model}, ("train_rmse",), axes=[axes[0]])
        plot_history({label: model}, ("val_rmse",), x="time", axes=[axes[1]])
        axes[0].plot(range(1, len(model.history_) + 1), model.history_["val_rmse"],
                     linestyle="--", label=f"{label} (validation)")
        axes[0].set_ylabel("RMSE")
        axes[0].legend(fontsize="small")
        axes[1].set_ylabel("validation RMSE")
        chosen = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in self.selection.items() if k != "solver")
        fig.suptitle(f"{label}: {chosen}", fontsize="medium")
        fig.tight_layout()
        self.figure = fig
        best = float(min(model.history_["val_rmse"]))
        self.status.value = (f"{model.n_iter_} iterations, {model.history_['time'][-1]:.2f} s, "
                             f"final validation RMSE {model.history_['val_rmse'][-1]:.4f} "
                             f"(best {best:.4f}); stop: {model.stop_reason_}")
        return model

    def _redraw(self) -> None:
        from IPython.display import display  # noqa: PLC0415

        self.refit()
        with self.output:
            self.output.clear_output(wait=True)
            display(self.figure)

    def _on_solver(self, change) -> None:
        self._build_parameter_controls()
        self._redraw()

    def _on_parameter(self, change) -> None:
        self._redraw()

    def show(self) -> None:
        """Display the controls (live front ends redraw inside them) and a static image
        of the current figure (what papermill and nbval keep)."""
        from IPython.display import display  # noqa: PLC0415

        display(self.widget)
        display(self.figure)
        plt.close(self.figure)
