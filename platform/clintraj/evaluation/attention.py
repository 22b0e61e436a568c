"""Final-layer attention of a sequential model under modality ablation (paper §3.6, §4.3, appendix D).

A stay's sequence is e_1 [P] e_2 [P] ... e_n [P] (`models.sequential`). With eager
attention the final decoder layer's causal self-attention, averaged over heads,
gives for every [PREDICT] query the weight on each earlier position. Removing a
modality removes its events and the [PREDICT] after each of them; the shares of
attention mass that the last [PREDICT] puts on each modality (and on the
[PREDICT] tokens) show what the prediction relies on, and which position acts
as an attention sink.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from clintraj.data.sequences import collate  # noqa: E402

PREDICT = "[PREDICT]"


def stay_row(split: dict, index: int) -> dict:
    """One stay of a `read_split` dict, as a one-row chunk."""
    return {key: (value[index:index + 1] if not isinstance(value, list) else [value[index]])
            for key, value in split.items()}


def remove_modality(row: dict, modality: int, latent: int) -> dict:
    """The stay without any event of `modality` (and so without the [PREDICT] after each)."""
    kinds = np.asarray(row["modality"][0])
    kept = kinds != modality
    h = np.asarray(row["h"][0], np.float32).reshape(-1, latent)[kept]
    out = {**row, "modality": [kinds[kept]], "h": [h.ravel()], "n_events": np.array([int(kept.sum())])}
    if "time_hours" in row:
        out["time_hours"] = [np.asarray(row["time_hours"][0])[kept]]
    return out


def final_layer_attention(model, row: dict, latent: int) -> tuple[np.ndarray, np.ndarray]:
    """(attention (2n, 2n): last layer, mean over heads; the logits after each event (n, out))."""
    batch = collate(row, latent)
    model.eval()
    with torch.no_grad():
        logits, attentions = model(batch["events"], batch["event_mask"], output_attentions=True)
    if not attentions:
        raise RuntimeError("the backbone returned no attentions: load the model with attention='eager' "
                           "(sdpa and flash attention do not return them)")
    return attentions[-1][0].float().mean(dim=0).cpu().numpy(), logits[0].float().cpu().numpy()


def position_labels(kinds: np.ndarray, names: list[str]) -> list[str]:
    """The modality name of every position of the interleaved sequence ([PREDICT] for the others)."""
    return [label for kind in kinds for label in (names[int(kind)], PREDICT)]


def modality_shares(attention: np.ndarray, labels: list[str], query: int | None = None) -> dict[str, float]:
    """Share of the attention mass a [PREDICT] query (default: the last) puts on each modality."""
    query = len(labels) - 1 if query is None else query
    weights = attention[query, :query + 1]
    shares: dict[str, float] = {}
    for label, weight in zip(labels[:query + 1], weights):
        shares[label] = shares.get(label, 0.0) + float(weight)
    total = sum(shares.values())
    return {label: value / total for label, value in shares.items()}


def attention_sink(attention: np.ndarray, labels: list[str], query: int | None = None) -> tuple[int, str, float]:
    """(position, its modality, its weight) of the key the query attends to most."""
    query = len(labels) - 1 if query is None else query
    position = int(np.argmax(attention[query, :query + 1]))
    return position, labels[position], float(attention[query, position])


def heatmap(ax, attention: np.ndarray, labels: list[str], times: np.ndarray | None, title: str) -> None:
    """Queries: the [PREDICT] positions; keys: every position; future keys are blank."""
    queries = np.arange(1, len(labels), 2)
    shown = np.where(np.tril(np.ones_like(attention, dtype=bool)), attention, np.nan)[queries]
    ax.imshow(shown, aspect="auto", cmap="viridis", interpolation="nearest")
    keys = [f"{label} {times[i // 2]:.1f}h" if times is not None and label != PREDICT else label
            for i, label in enumerate(labels)]
    step = max(1, len(keys) // 40)
    ax.set_xticks(range(0, len(keys), step), [keys[i] for i in range(0, len(keys), step)], rotation=90, fontsize=6)
    ax.set_yticks(range(0, len(queries), max(1, len(queries) // 20)),
                  [f"after {labels[q - 1]} #{q // 2 + 1}" for q in queries[::max(1, len(queries) // 20)]], fontsize=6)
    ax.set(title=title, xlabel="key position", ylabel="[PREDICT] query")


def comparison_figure(panels: list[dict], path: Path, label: float, task: str) -> Path:
    """One column per model (contrastive / scratch), rows: full and ablated heatmaps, then the
    prediction after each event for both against the true label."""
    columns = len(panels)
    figure, axes = plt.subplots(3, columns, figsize=(7 * columns, 14), squeeze=False,
                                gridspec_kw={"height_ratios": [3, 3, 1.4]})
    for column, panel in enumerate(panels):
        for row, variant in enumerate(("full", "ablated")):
            data = panel[variant]
            heatmap(axes[row, column], data["attention"], data["labels"], data.get("times"),
                    f"{panel['name']}: {variant}")
        curve = axes[2, column]
        for variant, style in (("full", "-"), ("ablated", "--")):
            output = panel[variant]["logits"][:, 0]
            value = output if task == "los" else 1 / (1 + np.exp(-output))
            curve.plot(np.arange(1, len(value) + 1), value, style, label=variant)
        curve.axhline(label, color="k", lw=0.8, label="true label")
        curve.set(xlabel="event", ylabel="prediction", title=f"{panel['name']}: prediction after each event")
        curve.legend(fontsize=7)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
