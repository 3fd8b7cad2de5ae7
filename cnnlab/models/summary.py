"""Keras' model.summary(): layers, output shapes, parameters, plus the FLOPs per image that Keras leaves out."""

from dataclasses import dataclass, field

from cnnlab.models.specs import LayerInfo


@dataclass
class Summary:
    """Prints as Keras' table; `rows` are the layers (name, output shape, params, buffers, FLOPs)."""
    name: str
    input_shape: tuple  # C x H x W
    rows: list[LayerInfo]
    settings: list = field(default_factory=list)  # (setting, value, where it comes from), for the lab's presets

    @property
    def trainable_params(self) -> int:
        return sum(i.params for i in self.rows)

    @property
    def non_trainable_params(self) -> int:  # BatchNorm's moving statistics, as Keras counts them
        return sum(i.buffers for i in self.rows)

    @property
    def params(self) -> int:
        return self.trainable_params + self.non_trainable_params

    @property
    def flops(self) -> int:  # per image, forward pass, a multiply and an add counted as two
        return sum(i.flops for i in self.rows)

    def _table(self) -> list:
        return [("input", keras_shape(self.input_shape), "0", "0")] + [
            (i.name, keras_shape(i.output_shape), f"{i.params + i.buffers:,}", f"{i.flops:,}") for i in self.rows]

    def _totals(self) -> list:
        return [f"Total params: {self.params:,}", f"Trainable params: {self.trainable_params:,}",
                f"Non-trainable params: {self.non_trainable_params:,}",
                f"FLOPs per image (forward): {self.flops:,} ({self.flops / 1e6:.1f} MFLOPs)"]

    def __str__(self) -> str:
        c, h, w = self.input_shape
        rows = [("Layer (type)", "Output Shape", "Param #", "FLOPs"), *self._table()]
        widths = [max(len(r[i]) for r in rows) + 2 for i in range(4)]
        line = "=" * sum(widths)

        def fmt(r):
            return "".join(r[i].ljust(widths[i]) if i < 2 else r[i].rjust(widths[i]) for i in range(4))
        lines = [f"Model: {self.name} (input {h}x{w}x{c})", fmt(rows[0]), line, *map(fmt, rows[1:]), line,
                 *self._totals()]
        if self.settings:
            lines += ["", "Settings (the lab's code, or cnnlab's choice):",
                      *(f"  {key} = {value}: {source}" for key, value, source in self.settings)]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{x}</th>" for x in ("Layer (type)", "Output Shape", "Param #", "FLOPs"))
        body = "".join("<tr>" + "".join(f"<td>{x}</td>" for x in r) + "</tr>" for r in self._table())
        settings = "".join(f"<tr><td>{k}</td><td>{v}</td><td>{src}</td></tr>" for k, v, src in self.settings)
        return (f"<p><b>Model: {self.name}</b></p><table><tr>{head}</tr>{body}</table><p>"
                + "<br>".join(self._totals()) + "</p>"
                + (f"<table><tr><th>Setting</th><th>Value</th><th>From</th></tr>{settings}</table>" if settings else ""))


def keras_shape(s) -> str:
    """(None, H, W, C): channels last, as Keras prints a shape."""
    return "(None, " + ", ".join(str(d) for d in ((*s[1:], s[0]) if len(s) == 3 else s)) + ")"
