"""tqdm progress bars driven by the library's progress events (the library itself never prints)."""

from __future__ import annotations


class TrainingBars:
    """Bars for cells (when a suite runs) and for the epochs of the current training run."""

    def __init__(self, *, quiet: bool = False, cells: int | None = None):
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self.quiet = quiet
        self.total = cells
        self.cells = None  # opened by the first cell event, so that an input error is reported alone on stderr
        self.epochs = None

    def __call__(self, event: dict) -> None:
        if self.quiet:
            return
        kind = event.get("event")
        if kind == "cell" and self.cells is None and self.total is not None:
            self.cells = self._tqdm(total=self.total, desc="cells", unit="cell", position=0)
        if kind == "cell":
            if event["status"] in ("skip", "done") and self.cells is not None:
                self.cells.update(1)
                if event["status"] == "skip":
                    self.cells.set_postfix_str(f"{event['cell']} (done before)")
            elif event["status"] == "start" and self.cells is not None:
                self.cells.set_postfix_str(event["cell"])
        elif kind == "start":
            self._close_epochs()
            self.epochs = self._tqdm(total=event["epochs"], initial=event["start_epoch"], desc="epochs",
                                     unit="epoch", leave=self.total is None, position=1 if self.total else 0)
        elif kind == "epoch" and self.epochs is not None:
            self.epochs.update(1)
            shown = {k: event[k] for k in ("train_loss", "val_dice", "val_miou") if event.get(k) is not None}
            self.epochs.set_postfix({k: f"{v:.3f}" for k, v in shown.items()})
        elif kind == "end":
            self._close_epochs()

    def _close_epochs(self) -> None:
        if self.epochs is not None:
            self.epochs.close()
            self.epochs = None

    def close(self) -> None:
        self._close_epochs()
        if self.cells is not None:
            self.cells.close()
