"""``register(host)``: what the SAM2-PAL plugin adds to Descriptron (or the standalone workspace).

- menu "SAM2-PAL" > "Train SAM2-PAL..." (the training / propagation dialog);
- dock panels "SAM2-PAL Templates" (outline structures with SAM2 clicks) and
  "SAM2-PAL Review" (go through the propagated results, write them back).

One :class:`~.gui.model_session.ModelSession` is shared by the panels: the
SAM2 model is loaded once, lazily, in the background. Propagation results
reach the Review panel through :meth:`Sam2PalPlugin.show_results`.
This is the only module that registers things with a host (see
docs/host_contract.md).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MENU = "SAM2-PAL"
TRAIN_ACTION = "Train SAM2-PAL..."
SUGGEST_ACTION = "Suggest next template..."
TEMPLATES_PANEL = "SAM2-PAL Templates"
REVIEW_PANEL = "SAM2-PAL Review"


class Sam2PalPlugin:
    """The plugin's pieces for one host, kept alive by the host's menu action."""

    def __init__(self, host: Any) -> None:
        from descriptron_sam2pal.gui.model_session import ModelSession
        from descriptron_sam2pal.gui.review_panel import ReviewPanel
        from descriptron_sam2pal.gui.templates_panel import TemplatesPanel

        self.host = host
        self.session = ModelSession(host)
        self.templates_panel = TemplatesPanel(host, self.session)
        self.review_panel = ReviewPanel(host)
        self.train_dialog = None
        self.next_template_dialog = None
        self.session.ready.connect(self._give_review_a_reprompt)
        self.review_panel.template_requested.connect(self.add_template)

    # -- menu -------------------------------------------------------------------
    def open_train_dialog(self):
        from descriptron_sam2pal.gui.train_dialog import TrainDialog

        if self.train_dialog is None:
            self.train_dialog = TrainDialog(self.host, self.session, on_results=self.show_results)
        else:
            self.train_dialog.refresh()
        self.train_dialog.show()
        self.train_dialog.raise_()
        self.train_dialog.activateWindow()
        return self.train_dialog

    # -- results to the Review panel ---------------------------------------------
    def show_results(self, results: list, run_dir: Path | None = None) -> None:
        """Hand propagation results (``TargetResult``s) to the Review panel (the review is kept in
        ``run_dir`` beside its predictions file)."""
        self.review_panel.load_run_results(results, run_dir)
        dock = getattr(self, "review_dock", None)  # set by register()
        if dock is not None:
            dock.show()
            dock.raise_()
        self.host.show_status(f"{len(results)} specimens segmented: review them in the {REVIEW_PANEL} panel",
                              15000)

    def add_template(self, image_id: Any, path: Any, masks: dict) -> None:
        """Review's "Add as template": the specimen's reviewed masks become template structures."""
        self.templates_panel.add_template(image_id, masks)

    def suggest_next_template(self):
        """Rank the reviewed specimens by how much outlining them would teach the model, and
        offer to open the chosen one in the Templates panel."""
        from descriptron_sam2pal.gui.next_template_dialog import NextTemplateDialog, suggestions_for

        session = self.review_panel.session
        templates = self.templates_panel.template_ids()
        suggestions = suggestions_for(session, templates) if session is not None else []
        dialog = NextTemplateDialog(suggestions, self.open_as_template, self.host.main_window(), session)
        dialog.show()
        self.next_template_dialog = dialog
        return dialog

    def open_as_template(self, suggestion) -> None:
        """Show the suggested specimen with the Templates panel raised, ready to outline."""
        record = self.templates_panel.find_record(suggestion.image_id, suggestion.path)
        if record is None:
            self.host.show_error("Suggest next template",
                                 f"{suggestion.path or suggestion.image_id} is not in the open project; "
                                 "open the folder it is in first.")
            return
        self.host.set_current_image(record.id)
        dock = getattr(self, "templates_dock", None)
        if dock is not None:
            dock.show()
            dock.raise_()
        self.host.show_status(f"Outline the structures of {record.file_name}, then Train SAM2-PAL again",
                              15000)

    def _give_review_a_reprompt(self) -> None:
        self.review_panel.set_reprompt(self.session.fix_by_clicks(self.host.store))


def register(host: Any) -> Sam2PalPlugin:
    """Add the SAM2-PAL menu and panels to ``host`` (cheap: no model is loaded here)."""
    plugin = Sam2PalPlugin(host)  # every widget exists before anything is added to the host
    host.add_menu_action(MENU, TRAIN_ACTION, plugin.open_train_dialog, "Ctrl+Shift+T")
    host.add_menu_action(MENU, SUGGEST_ACTION, plugin.suggest_next_template)
    plugin.templates_dock = host.add_dock_panel(TEMPLATES_PANEL, plugin.templates_panel, "right")
    plugin.review_dock = host.add_dock_panel(REVIEW_PANEL, plugin.review_panel, "right")
    plugin.templates_dock.raise_()  # outlining templates comes first
    return plugin
