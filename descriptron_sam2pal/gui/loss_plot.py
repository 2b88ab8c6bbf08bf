"""The Train dialog's live plot: the training loss (smoothed, over each step's) on a log axis and
the validation that chooses the step kept, on its own axis, with a legend above the plot."""

from __future__ import annotations

import pyqtgraph as pg
from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import QLabel

from descriptron_sam2pal.engine.validation_plan import METRICS

#: metric -> (its one name: legend, axis and log alike; which way is better; tooltip), from
#: engine.validation_plan.METRICS (which also says whether it is measured against labels)
VALIDATION_LABELS = {
    **{
        metric: (
            m.name,
            "higher is better" if m.higher_is_better else "lower is better",
            f"Orange: {m.what}; {m.basis}. Step 0 is the untrained model; the best-scoring step "
            "is the one kept, the untrained model unless training beat it.",
        )
        for metric, m in METRICS.items()
    },
    None: ("validation", "", "Orange: validation, which chooses the step that is kept."),
}
LOSS_COLOR, RAW_LOSS_COLOR, VAL_COLOR = (31, 119, 180), (31, 119, 180, 60), (255, 127, 14)
SMOOTHING = 0.9  # weight of the past in the smoothed loss (an exponential moving average)


def smoothed(values: list[float], weight: float = SMOOTHING) -> list[float]:
    """Exponential moving average with the start-up bias removed (as TensorBoard draws it), so the
    trend of a loss that jumps from step to step can be read."""
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight**i))
    return out


class LossPlot:
    """Two widgets for the dialog to lay out: ``legend_label`` (outside the plot, so it never
    covers a curve) and ``plot``. ``losses`` and ``vals`` are the (step, value) points drawn."""

    def __init__(self) -> None:
        self.losses: list[tuple[int, float]] = []
        self.vals: list[tuple[int, float]] = []
        # Training loss on a log axis (it can fall by orders of magnitude); validation, another
        # quantity (an IoU or a held-out loss), on its own axis at the right.
        self.plot = pg.PlotWidget(background="w")
        item = self.plot.getPlotItem()
        self.plot.setLabel("bottom", "training step")
        self.plot.setLabel("left", "training loss (log scale)")
        self.plot.setLogMode(y=True)
        self.plot.showGrid(x=True, y=True, alpha=0.3)
        # The raw loss jumps from step to step: drawn faint, under its smoothed trend.
        self.raw_loss_curve = self.plot.plot([], [], pen=pg.mkPen(RAW_LOSS_COLOR, width=1))
        self.loss_curve = self.plot.plot([], [], pen=pg.mkPen(LOSS_COLOR, width=2))
        self.legend_label = QLabel()
        self.legend_label.setTextFormat(Qt.RichText)
        self.val_view = pg.ViewBox()
        item.showAxis("right")
        item.scene().addItem(self.val_view)
        item.getAxis("right").linkToView(self.val_view)
        item.getAxis("right").setStyle(showValues=True)  # PlotItem hides the right axis' numbers
        item.getAxis("right").setLogMode(False, False)  # setLogMode(y=True) above is for the loss only
        item.getAxis("right").enableAutoSIPrefix(False)  # an IoU of 0.7, not "700 (x0.001)"
        self.val_view.setXLink(item)
        item.vb.sigResized.connect(lambda: self.val_view.setGeometry(item.vb.sceneBoundingRect()))
        self.val_curve = pg.PlotDataItem(
            [],
            [],
            pen=pg.mkPen(VAL_COLOR, width=1, style=Qt.DashLine),
            symbol="o",
            symbolSize=8,
            symbolBrush=VAL_COLOR,
            symbolPen=None,
        )
        self.val_view.addItem(self.val_curve)
        self.set_validation_metric(None)
        self.plot.setMinimumHeight(200)

    def clear(self) -> None:
        self.losses, self.vals = [], []
        for curve in (self.loss_curve, self.raw_loss_curve, self.val_curve):
            curve.setData([], [])

    def set_validation_metric(self, metric: str | None) -> None:
        """Name the validation after what the trainer measures (see engine.validation_plan): one
        name on the axis, in the legend and in the log (``validation_name``)."""
        name, better, tip = VALIDATION_LABELS.get(metric, VALIDATION_LABELS[None])
        self.validation_name = name
        self.plot.setLabel("right", name)
        swatch = "<span style='color:rgb{}'>&#9632;</span> {}"
        self.legend_label.setText(
            "&nbsp;&nbsp;".join(
                [
                    swatch.format(LOSS_COLOR, "training loss (smoothed; faint: each step)"),
                    swatch.format(VAL_COLOR, name + (f" ({better})" if better else "")),
                ]
            )
        )
        self.plot.setToolTip(
            "Blue: the training loss, smoothed over steps (the faint line is each step's; "
            f"it should trend down).\n{tip}"
        )

    def add_loss(self, step: int, loss: float) -> None:
        self.losses.append((step, max(float(loss), 1e-6)))  # log axis: > 0
        steps, values = [s for s, _ in self.losses], [v for _, v in self.losses]
        self.raw_loss_curve.setData(steps, values)
        self.loss_curve.setData(steps, smoothed(values))

    def add_validation(self, step: int, value: float) -> None:
        self.vals.append((step, float(value)))
        self.val_curve.setData([s for s, _ in self.vals], [v for _, v in self.vals])
